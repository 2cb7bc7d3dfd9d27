"""Start-up cost: the sampler, the store, raster I/O and the CLI's help never import torch."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "segmentation_models_pytorch", "torchvision")

SCRIPT = """
import sys
import geoembed, geoembed.samplers.triplets, geoembed.samplers.tiling
import geoembed.io.store, geoembed.io.scenes, geoembed.cli
from geoembed.cli import main
for argv in (["--help"], ["tile", "--help"], ["demo", "--help"]):
    try:
        main(argv)
    except SystemExit as exc:
        assert exc.code in (0, None), (argv, exc.code)
print("HEAVY", sorted(m for m in {heavy!r} if m in sys.modules))
"""


def test_light_imports_and_help():
    res = subprocess.run([sys.executable, "-c", SCRIPT.format(heavy=HEAVY)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "Usage: geoembed tile" in res.stdout and "Commands" in res.stdout
    assert "HEAVY []" in res.stdout, res.stdout.splitlines()[-1]


def test_the_check_can_fail():
    """The same probe does report a module that geoembed imports (numpy)."""
    res = subprocess.run([sys.executable, "-c", SCRIPT.format(heavy=("numpy", *HEAVY))],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "HEAVY ['numpy']" in res.stdout
