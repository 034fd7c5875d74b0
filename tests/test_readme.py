"""The README's Python examples run as written (in one namespace, in order) and their
comments' claims hold."""

import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_blocks_run_and_their_comments_hold():
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert len(blocks) >= 4
    ns: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), ns)
    # scores block: 0 <= l <= 1, sum = rank, the sets are sorted index arrays
    lev = ns["lev"]
    assert lev.min() >= 0 and lev.max() <= 1 + 1e-12
    assert abs(lev.sum() - 32) < 1e-8
    for name in ("U", "U4", "Uc"):
        assert np.all(np.diff(ns[name]) > 0)
    # attention block: the error is a finite ratio and the exact output is row-wise in range(V)
    err = ns["sketchla"].spectral_error(ns["Q"], ns["K"], ns["V"], ns["approx"], causal=True)
    assert np.isfinite(err) and err >= 0
    # dask block: lazy, and equal to the in-memory sketch of the same data
    SX = ns["SX"]
    assert type(SX).__module__.startswith("dask")
    S = ns["sketchla"].CountSketch(1024, ns["X"].shape[0], rng=0)
    np.testing.assert_allclose(SX.compute(), S @ ns["X"].compute(), rtol=1e-10, atol=1e-8)
