"""The documentation site builds with warnings as errors, and documents the whole public API.

Skipped only where mkdocs and its plugins are not installed (they come with the ``test`` and
``docs`` extras).
"""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sketchla

ROOT = Path(__file__).resolve().parents[1]
_NEEDED = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "pymdownx")


def _missing() -> list[str]:
    out = []
    for name in _NEEDED:
        try:
            if importlib.util.find_spec(name) is None:
                out.append(name)
        except ModuleNotFoundError:
            out.append(name)
    return out


pytestmark = pytest.mark.skipif(
    bool(_missing()), reason=f"docs toolchain missing: {_missing()} (pip install -e '.[docs]')"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    config = str(ROOT / "mkdocs.yml")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", config, "-d", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def _html(site: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(site.rglob("*.html")))


# ``sketchla.sketch`` is the function re-exported from sketchla.operators;
# the reference documents the function under its defining path
_API_ID = {"sketch": "sketchla.operators.sketch"}


def test_every_public_name_has_an_api_entry(site):
    html = _html(site / "api")
    missing = [
        name
        for name in sketchla.__all__
        if name != "__version__" and f'id="{_API_ID.get(name, f"sketchla.{name}")}"' not in html
    ]
    assert not missing, f"public names without an API reference entry: {missing}"


def test_docstring_rest_markup_is_converted(site):
    # the griffe extension turns :math:, .. math:: and :class:/:func: roles into Markdown;
    # none may reach the page as literal reST
    html = _html(site / "api")
    leftovers = sorted(set(re.findall(r":(?:math|class|func|meth|mod|attr):`|\.\. math::", html)))
    assert not leftovers, leftovers
    assert not re.search(r"={5,} +={5,}", html)  # reST simple-table borders became tables
    assert html.count('class="arithmatex"') > 50  # the math is there, for MathJax
    assert "autorefs-internal" in html  # cross-references resolved to links


def test_user_guide_pages_and_guarantees_are_built(site):
    for page in (
        "getting_started",
        "guarantees",
        "seed_contract",
        "guide/sketches",
        "guide/scores",
        "guide/lsh_rowsums",
        "guide/attention",
        "guide/distributed",
        "guide/validation",
        "guide/cli",
        "validation/report",
    ):
        assert (site / page / "index.html").is_file(), page
    report = (site / "validation" / "report" / "index.html").read_text()
    assert "PASS" in report and ".png" in report  # the verdicts and the plots are on the page
    guarantees = (site / "guarantees" / "index.html").read_text()
    for name in ("CountSketch", "leverage_scores", "universal_set", "hyper_attention"):
        assert name in guarantees
