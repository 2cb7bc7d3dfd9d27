"""`geoembed --help` and every command's --help: each option has a help text and shows its
default (show_default, or a "[default: ...]" written in the help when it is computed)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner
from geoembed.cli import cli


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        yield (*prefix, name), cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*prefix, name))


COMMANDS = list(_commands(cli))


def test_every_command_is_listed_with_a_summary():
    res = CliRunner().invoke(cli, ["--help"])
    assert res.exit_code == 0
    names = {path[0] for path, _ in COMMANDS}
    assert {"tile", "train", "embed", "similar", "preview", "evaluate", "weak", "segment",
            "demo"} <= names
    for name in names:
        line = next(ln for ln in res.output.splitlines() if ln.strip().startswith(name + " "))
        assert len(line.split(None, 1)[1]) > 10, line


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_options_have_help_and_defaults(path, cmd):
    assert cmd.help and len(cmd.help.strip()) > 20, f"{path}: no docstring"
    for p in cmd.params:
        if not isinstance(p, click.Option) or p.hidden:
            continue
        name = p.opts[0]
        assert p.help and p.help.strip(), f"geoembed {' '.join(path)} {name}: no help text"
        flag = p.is_flag or p.count
        if flag or p.required or p.multiple:
            continue
        if p.default is None:
            # no static default: the help must say what happens without the option
            text = p.help.lower()
            assert "[default:" in text or "[required" in text, \
                f"geoembed {' '.join(path)} {name}: say '[default: ...]' in the help"
        else:
            assert p.show_default, f"geoembed {' '.join(path)} {name}: set show_default=True"


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_help_renders(path, cmd):
    res = CliRunner().invoke(cli, [*path, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage: " in res.output and "--help" in res.output
    if not isinstance(cmd, click.Group):
        assert "[default:" in res.output or not any(
            isinstance(p, click.Option) and not p.is_flag for p in cmd.params)


def test_comma_lists_keep_order_and_repeats():
    """A repeated band or decoder width means it (as before CommaList): nothing is dropped."""
    from geoembed.cli.options import BANDS
    from geoembed.cli.weak import DECODER_WIDTHS

    assert BANDS.convert("3, 1,1", None, None) == (3, 1, 1)
    assert DECODER_WIDTHS.convert("16,16,16", None, None) == (16, 16, 16)
    assert BANDS.convert(" ", None, None) is None
    with pytest.raises(click.BadParameter, match="1-based"):
        BANDS.convert("0,1", None, None)
