"""Assemble bench/RESULTS.md from the summary in bench/results/_summary.md and each
benchmark's own output in bench/results/<area>.md (run after re-running a benchmark)."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["tile", "train", "embed", "evaluate", "map", "real", "shards", "weak", "synthetic"]


def main() -> None:
    parts = [(HERE / "results" / "_summary.md").read_text().rstrip()]
    for name in ORDER:
        path = HERE / "results" / f"{name}.md"
        if path.exists():
            parts.append(f"<!-- from bench/results/{name}.md -->\n" + path.read_text().rstrip())
    (HERE / "RESULTS.md").write_text("\n\n---\n\n".join(parts) + "\n")
    print(f"wrote {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
