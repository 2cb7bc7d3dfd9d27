"""Every ``geoembed ...`` command line in README.md parses as pasted: a known command, known
options, values of the right type (choices, numbers, comma lists), required options given,
no stray arguments. Files need not exist (``click.Path`` is not checked); nothing runs."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
from geoembed.cli import cli

README = Path(__file__).resolve().parents[1] / "README.md"


def command_lines(text: str) -> list[str]:
    """``geoembed`` command lines of the README's shell blocks (continuations joined,
    ``# comments`` dropped); ``python -m geoembed.cli`` / ``torchrun`` ones too."""
    lines = []
    for lang, block in re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
        if lang not in ("", "sh", "bash", "shell", "console"):
            continue
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("geoembed ") or " geoembed.cli " in line:
                lines.append(line)
    return lines


def geoembed_args(line: str) -> list[str]:
    """The arguments after ``geoembed`` (or ``-m geoembed.cli``)."""
    tokens = shlex.split(line, comments=True)
    start = tokens.index("geoembed.cli") if "geoembed.cli" in tokens else tokens.index("geoembed")
    return tokens[start + 1:]


LINES = command_lines(README.read_text(encoding="utf-8"))


def test_command_lines_are_found():
    assert {" ".join(geoembed_args(ln)[:1]) for ln in LINES} >= {
        "tile", "train", "embed", "preview", "similar", "evaluate", "map", "weak", "segment",
        "demo"}
    assert geoembed_args('torchrun -m geoembed.cli train x --out "a b"  # 2 GPUs') == [
        "train", "x", "--out", "a b"]


@pytest.mark.parametrize("line", LINES)
def test_readme_command_parses(line, monkeypatch):
    monkeypatch.setattr(click.Path, "convert", lambda self, value, param, ctx: value)
    args = geoembed_args(line)
    group: click.Command = cli
    ctx = click.Context(cli, info_name="geoembed")
    while isinstance(group, click.Group):
        name, args = args[0], args[1:]
        sub = group.get_command(ctx, name)
        assert sub is not None, f"unknown command {name!r} in: {line}"
        group, ctx = sub, click.Context(sub, info_name=name, parent=ctx)
    try:
        group.make_context(ctx.info_name, list(args), parent=ctx.parent)
    except click.UsageError as e:  # unknown option, bad value, missing option, extra args
        pytest.fail(f"{line}\n  -> {e.format_message()}")
