"""The package type-checks: ``mypy sketchla`` (configuration in pyproject.toml's [tool.mypy])
reports no error.

Skipped only where mypy is not installed (it comes with the ``test`` extra). mypy's cache goes
to ``.mypy_cache/`` in the repository root (ignored by git), so a rerun takes a second or two.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None, reason="mypy missing (pip install -e '.[test]')"
)
def test_package_is_mypy_clean():
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "sketchla"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"mypy sketchla failed:\n{proc.stdout}\n{proc.stderr}"
    assert "Success: no issues found" in proc.stdout, proc.stdout
