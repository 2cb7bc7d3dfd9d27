"""Errors a user causes: catchable as geoembed's and as the fitting builtin, one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from geoembed.cli import cli
from rasterio.transform import from_origin

from geoembed import errors
from geoembed.io.geotiff import write_geotiff
from geoembed.io.outputs import atomic_output
from geoembed.io.scenes import open_scene

BUILTIN = {
    errors.InputError: ValueError,
    errors.RasterError: OSError,
    errors.CRSError: ValueError,
    errors.LabelError: ValueError,
    errors.CheckpointError: ValueError,
    errors.OutputExistsError: FileExistsError,
    errors.DeviceError: RuntimeError,
    errors.TrainingDivergedError: FloatingPointError,
}


@pytest.mark.parametrize("cls", sorted(BUILTIN, key=lambda c: c.__name__))
def test_every_error_is_a_geoembed_error_and_its_builtin(cls):
    with pytest.raises(BUILTIN[cls]) as info:
        raise cls("what went wrong; what to do")
    assert isinstance(info.value, errors.GeoembedError)
    assert str(info.value) == "what went wrong; what to do"


def test_a_file_that_is_not_a_raster_is_an_oserror(tmp_path: Path):
    bad = tmp_path / "notes.tif"
    bad.write_text("not a GeoTIFF")
    with pytest.raises(OSError, match="notes.tif: not a raster GDAL can read"):
        open_scene(bad)
    with pytest.raises(ValueError, match="no such file"):
        open_scene(tmp_path / "missing.tif")


def test_first_line_keeps_one_line_and_names_empty_errors():
    assert errors.first_line(RuntimeError("line one\nline two")) == "line one"
    assert errors.first_line(RuntimeError("x" * 500), limit=10) == "x" * 10
    assert errors.first_line(KeyError()) == "KeyError"


def test_cli_prints_one_line_and_exits_2_for_a_bad_raster(tmp_path: Path):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00garbage")
    res = CliRunner().invoke(cli, ["tile", str(bad), "--out", str(tmp_path / "store")])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert lines == [f"Error: {bad}: not a raster GDAL can read ({lines[0].split('(', 1)[1]}"]
    assert "Traceback" not in res.output
    assert not (tmp_path / "store").exists()


def test_atomic_output_leaves_nothing_on_failure_and_refuses_existing(tmp_path: Path):
    out = tmp_path / "result.json"
    with pytest.raises(RuntimeError), atomic_output(out) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with atomic_output(out) as tmp:
        tmp.write_text("done")
    assert out.read_text() == "done"
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        with atomic_output(out):
            pass
    with atomic_output(tmp_path / "run", directory=True) as tmp:
        (tmp / "a.txt").write_text("a")
    assert (tmp_path / "run" / "a.txt").read_text() == "a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json", "run"]


def test_write_geotiff_refuses_to_overwrite(tmp_path: Path):
    path = tmp_path / "a.tif"
    kw = {"crs": "EPSG:32610", "transform": from_origin(500_000, 4_200_000, 10, 10)}
    write_geotiff(path, np.zeros((1, 4, 4), np.uint8), **kw)
    with pytest.raises(errors.OutputExistsError):
        write_geotiff(path, np.ones((1, 4, 4), np.uint8), **kw)
