"""The built wheel ships every module, subpackage, the package data, py.typed and the CLI.

The wheel is built from a copy of the sources (so the shared checkout gets no build/ or
egg-info folders) with ``pip wheel --no-deps --no-build-isolation``: no network, the
installed setuptools (>= 77, from the ``test`` extra) as the backend. Installing the wheel into
a fresh virtual environment (downloads numpy, scipy, numba, ...) is too slow for the suite and
is checked by hand: ``pip install .`` and ``python -m build`` + ``pip install dist/*.whl``, then
``sketchla --version``.
"""

import configparser
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "sketchla"


def _setuptools_ok() -> bool:
    try:
        major = int(version("setuptools").split(".")[0])
    except Exception:
        return False
    return major >= 77


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    if not _setuptools_ok():
        pytest.skip("needs setuptools >= 77 as the build backend (pip install -e '.[test]')")
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(PKG, src / "sketchla", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path_factory.mktemp("dist")
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
    proc = subprocess.run(
        [*pip, "--wheel-dir", str(dist), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (path,) = dist.glob("sketchla-*.whl")
    with zipfile.ZipFile(path) as zf:
        yield zf


def _sources() -> list[str]:
    return sorted(
        p.relative_to(ROOT).as_posix()
        for p in PKG.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


def test_wheel_contains_every_module_subpackage_and_data_file(wheel):
    names = set(wheel.namelist())
    assert "sketchla/py.typed" in names  # PEP 561: type hints are part of the API
    subpackages = sorted(p.parent for p in PKG.rglob("__init__.py") if "__pycache__" not in p.parts)
    assert len(subpackages) >= 8
    for pkg in subpackages:
        assert f"{pkg.relative_to(ROOT).as_posix()}/__init__.py" in names, pkg
    data = sorted(PKG.glob("data/*.npz"))
    for path in data:
        assert path.relative_to(ROOT).as_posix() in names, path
    missing = [f for f in _sources() if f.endswith(".py") and f not in names]
    assert not missing, f"modules left out of the wheel: {missing}"
    # nothing outside the package (tests, docs, benchmarks output) is shipped
    top = {n.split("/")[0] for n in names}
    assert top <= {"sketchla", next(n.split("/")[0] for n in names if ".dist-info/" in n)}, top


def test_wheel_metadata_and_console_script(wheel):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    info = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    meta = wheel.read(info).decode()
    assert f"Name: {project['name']}" in meta
    assert f"Version: {project['version']}" in meta
    for dep in project["dependencies"]:
        name = dep.split(">")[0].split("=")[0].split("<")[0].strip()
        assert f"Requires-Dist: {name}" in meta, dep
    entry = next(n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt"))
    parser = configparser.ConfigParser()
    parser.read_string(wheel.read(entry).decode())
    assert parser["console_scripts"]["sketchla"] == "sketchla.cli:main"
