"""An installed geoembed (a wheel, not the checkout) runs ``geoembed demo`` from any directory.

Builds the wheel from a copy of the package sources (offline: ``pip wheel --no-deps
--no-build-isolation``), installs it with ``--no-deps`` into a fresh venv whose dependencies
come from this interpreter's site-packages (a ``.pth`` file: nothing is downloaded, and the
checkout's editable install is not seen), then runs ``geoembed demo --quick`` with the working
directory and the cache outside the repository. The demo must generate the sample data into
the cache, identical to the committed ``sample_data/``. About 1.5 minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data"


def _run(args: list, **kwargs) -> subprocess.CompletedProcess:
    res = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    assert res.returncode == 0, f"{args}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def _source_copy(dst: Path) -> Path:
    """What a source distribution holds: pyproject.toml, README, licence, the packages."""
    dst.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "LICENSE.txt"):
        if (REPO / name).is_file():
            shutil.copy(REPO / name, dst / name)
    for package in ("geoembed", "cli"):
        shutil.copytree(REPO / package, dst / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dst


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(venv, wheel)``: a fresh venv with the wheel installed, dependencies borrowed."""
    tmp = tmp_path_factory.mktemp("install")
    src = _source_copy(tmp / "src")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--no-index", "-q", "-w", tmp / "dist", src], cwd=tmp)
    wheel = next((tmp / "dist").glob("geoembed-*.whl"))
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    site = Path(_run([_venv_python(venv), "-c", "import sysconfig; "
                      "print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_geoembed_test_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    _run([sys.executable, "-m", "pip", "--python", _venv_python(venv), "install", "-q",
          "--no-deps", "--no-index", wheel])
    return venv, wheel


def _clean_env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(XDG_CACHE_HOME=str(cache), PYTHONNOUSERSITE="1", MPLBACKEND="Agg")
    return env


def test_wheel_holds_the_package_only(installed: tuple[Path, Path]) -> None:
    _, wheel = installed
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"geoembed", wheel.name.split("-py")[0] + ".dist-info"}, tops
    assert "geoembed/cli/demo.py" in names and "geoembed/demo/run.py" in names
    assert not any("sample_data" in n or n.startswith("cli/") for n in names)


def test_installed_demo_runs_outside_the_checkout(installed: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    venv, _ = installed
    elsewhere, cache = tmp_path / "elsewhere", tmp_path / "cache"
    elsewhere.mkdir()
    env = _clean_env(cache)
    where = _run([_venv_python(venv), "-c", "import geoembed, geoembed.demo; "
                  "print(geoembed.__file__); print(geoembed.demo.sample_data_cache())"],
                 cwd=elsewhere, env=env).stdout.split()
    assert Path(where[0]).is_relative_to(venv), where  # not the checkout's editable install
    data = Path(where[1])
    assert data.is_relative_to(cache)

    res = _run([venv / "bin" / "geoembed", "demo", "--quick", "--out", "d", "--device", "cpu"],
               cwd=elsewhere, env=env, timeout=900)
    assert f"generating it into {data}" in res.stdout
    out = elsewhere / "d"
    meta = json.loads((out / "demo.json").read_text())
    assert len(meta["outputs"]) >= 16
    for name, path in meta["outputs"].items():
        assert (elsewhere / path).exists(), name  # relative to the working directory
    seg = json.loads((out / "segmentation_report.json").read_text())
    assert Path(seg["scene"]) == data / "scene.tif"  # the demo ran on the generated copy
    _same_sample_data(data)

    again = _run([_venv_python(venv), "-c", "from geoembed.demo import sample_data_dir; "
                  "print(sample_data_dir(echo=print))"], cwd=elsewhere, env=env)
    assert again.stdout.strip() == str(data)  # the cached copy is reused, not regenerated


def _same_sample_data(data: Path) -> None:
    """The generated copy equals the committed sample data (rasters, vectors, text)."""
    assert sorted(p.name for p in data.iterdir()) == sorted(p.name for p in SAMPLE.iterdir())
    for name in ("scene.tif", "landcover.tif"):
        with rasterio.open(data / name) as a, rasterio.open(SAMPLE / name) as b:
            assert (a.crs, a.transform, a.nodata, a.tags()) == (b.crs, b.transform, b.nodata,
                                                                b.tags())
            np.testing.assert_array_equal(a.read(), b.read())
    for name in ("points.gpkg", "weak_tiles.gpkg", "weak_points.gpkg"):
        a, b = gpd.read_file(data / name), gpd.read_file(SAMPLE / name)
        assert a.drop(columns="geometry").equals(b.drop(columns="geometry")), name
        assert a.geometry.geom_equals_exact(b.geometry, tolerance=1e-9).all(), name
    for name in ("classes.json", "README.md"):
        assert (data / name).read_text() == (SAMPLE / name).read_text(), name
