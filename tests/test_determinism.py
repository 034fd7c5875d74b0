"""Determinism: the same seed gives bit-identical results across calls, fresh processes,
``NUMBA_NUM_THREADS`` in {1, 2} and the serial / parallel compiles of every kernel; no public
function reads or advances NumPy's global random state.

One function, :func:`fingerprints`, runs every seeded (or deterministic) public computation
and returns a SHA-256 of each result's dtype, shape and bytes. The parent computes it in
process (twice, under different global NumPy seeds, and once with every kernel forced onto its
serial compile); two child processes, started with ``NUMBA_NUM_THREADS=1`` and ``=2``, print
theirs. All must agree bit for bit. The inputs are large enough (>= 4 MiB of work) that the
hash sketches and SRHT run their parallel compiles.

GaussianSketch *products* are excluded from the bitwise set: they go through BLAS, whose
summation order may depend on the BLAS build and thread count (its entries are included).
Functions built on BLAS/LAPACK (QR, products) are compared bitwise across processes with the
same BLAS configuration, which is what the seed contract promises.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

import sketchla
from sketchla import _jit

ROOT = Path(__file__).resolve().parents[1]


def _digest(value: Any) -> str:
    h = hashlib.sha256()

    def add(v: Any) -> None:
        if isinstance(v, (tuple, list)):
            for item in v:
                add(item)
        elif isinstance(v, dict):
            for key in sorted(v):
                h.update(str(key).encode())
                add(v[key])
        else:
            a = np.ascontiguousarray(np.asarray(v))
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())

    add(value)
    return h.hexdigest()


def _inputs() -> dict[str, Any]:
    """Fixed inputs from a local Generator (never the global RNG)."""
    rng = np.random.default_rng(20261125)
    n, d = 60_000, 16  # n not a power of two (SRHT pads), 7.7 MB: parallel kernels
    A = rng.standard_normal((n, d))
    A[:, 0] *= rng.lognormal(size=n)  # non-uniform leverage
    csr = sp.random_array((n, d), density=0.2, format="csr", rng=rng)
    Q, K, V = rng.standard_normal((3, 1024, 16)) / 2
    return {
        "A": A,
        "A_f": np.asfortranarray(A),
        "csr": csr,
        "csc": csr.tocsc(),
        "coo": csr.tocoo(),
        "Y": rng.standard_normal((512, d)),
        "K": rng.standard_normal((4000, 8)) * rng.lognormal(size=(4000, 1)),
        "Q": Q,
        "K_att": K,
        "V": V,
    }


def _checks(x: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    A, n = x["A"], x["A"].shape[0]
    cs = sketchla.CountSketch(512, n, rng=11)
    ss = sketchla.SparseSign(512, n, nnz_per_col=8, rng=12)
    srht = sketchla.SRHT(512, n, rng=13)
    gauss = sketchla.GaussianSketch(32, 2000, rng=14)
    checks: dict[str, Callable[[], Any]] = {
        "countsketch dense C": lambda: cs @ A,
        "countsketch dense F": lambda: cs @ x["A_f"],
        "countsketch csr": lambda: cs @ x["csr"],
        "countsketch csc": lambda: cs @ x["csc"],
        "countsketch coo": lambda: cs @ x["coo"],
        "countsketch adjoint": lambda: cs.T @ x["Y"],
        "countsketch float32": lambda: cs @ A.astype(np.float32),
        "sparse_sign dense": lambda: ss @ A,
        "sparse_sign csr": lambda: ss @ x["csr"],
        "sparse_sign adjoint": lambda: ss.T @ x["Y"],
        "sparse_sign table": lambda: ss.table(),
        "srht dense": lambda: srht @ A,
        "srht adjoint": lambda: srht.T @ x["Y"],
        "srht column block": lambda: srht.column_block(1000, 5096) @ A[1000:5096],
        "gaussian entries": lambda: gauss.todense(),
        "gaussian block entries": lambda: gauss.column_block(300, 900).todense(),
        "sketch() functional": lambda: sketchla.sketch(A, 256, kind="sparse_sign", rng=15),
        "stream variates": lambda: [
            getattr(sketchla.random.stream(16, 3), f)(np.arange(10_000))
            for f in ("uint64", "signs", "uniform", "normal")
        ],
        "stream sample": lambda: sketchla.random.stream(16, 4).sample_without_replacement(
            500, 100_000
        ),
        "leverage sketch": lambda: sketchla.leverage_scores(A, method="sketch", rng=17),
        "leverage sketch jl": lambda: sketchla.leverage_scores(
            A[:8000], method="sketch", rng=18, jl_dim=8, sketch_kind="srht"
        ),
        "leverage exact": lambda: sketchla.leverage_scores(x["K"]),
        "universal_set exact": lambda: sketchla.universal_set(x["K"], 0.01),
        "universal_set sketch": lambda: sketchla.universal_set(
            x["K"], 0.01, method="sketch", rng=19
        ),
        "universal_set streaming": lambda: sketchla.universal_set(
            x["K"], 0.01, method="streaming", block_size=1000
        ),
    }
    # the solvers built on top (if they import): SimHash, row sums, AMM, attention
    Q, K, V = x["Q"], x["K_att"], x["V"]
    if hasattr(sketchla, "SimHash"):
        h = sketchla.SimHash(16, 7, rng=21)
        checks["simhash planes"] = lambda: h.planes
        checks["simhash codes"] = lambda: h.codes(Q)
        checks["simhash sort_order"] = lambda: h.sort_order(K)
    if hasattr(sketchla, "approx_rowsums"):
        from sketchla.attention import SortLSH, Uniform

        checks["approx_rowsums"] = lambda: sketchla.approx_rowsums(
            Q, K, keys=SortLSH(128), rest=Uniform(128), rng=22
        )
    if hasattr(sketchla, "approx_matmul"):
        checks["approx_matmul"] = lambda: sketchla.approx_matmul(A[:2000].T, A[:2000], 200, rng=24)
    if hasattr(sketchla, "hyper_attention"):
        checks["hyper_attention"] = lambda: sketchla.hyper_attention(
            Q, K, V, block_size=128, sample_size=128, rng=25, return_lse=True
        )
        checks["hyper_attention causal"] = lambda: sketchla.hyper_attention(
            Q, K, V, causal=True, block_size=64, sample_size=64, min_seq_len=256, rng=26
        )
    if hasattr(sketchla, "lev_attention"):
        checks["lev_attention sketch scores"] = lambda: sketchla.lev_attention(
            Q, K, V, eps=0.01, local_window=8, rng=27, score_method="sketch"
        )
        checks["lev_attention poly"] = lambda: sketchla.lev_attention(
            Q, K, V, eps=0.01, kernel=("poly", 2)
        )
    if hasattr(sketchla, "spectral_error") and hasattr(sketchla, "hyper_attention"):
        checks["spectral_error"] = lambda: sketchla.spectral_error(
            Q[:256], K[:256], V[:256], sketchla.exact_attention(Q[:256], K[:256], V[:256]) * 0.9
        )
    return checks


def fingerprints() -> dict[str, str]:
    """SHA-256 of every check's result (see the module docstring)."""
    return {name: _digest(fn()) for name, fn in _checks(_inputs()).items()}


def _child(threads: int) -> subprocess.Popen:
    env = {**os.environ, "NUMBA_NUM_THREADS": str(threads)}
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--child"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _diff(a: dict[str, str], b: dict[str, str]) -> list[str]:
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def test_same_seed_bit_identical_across_calls_processes_threads_and_compiles(monkeypatch):
    np.random.seed(1)  # noqa: NPY002
    first = fingerprints()  # compiles (and caches) any kernel not compiled yet
    children = {t: _child(t) for t in (1, 2)}  # run while the parent computes again
    try:
        np.random.seed(2)  # noqa: NPY002  # the global RNG must not matter
        second = fingerprints()
        monkeypatch.setattr(_jit, "PARALLEL_MIN_BYTES", 2**62)  # every kernel serial
        serial = fingerprints()
        monkeypatch.undo()
        outs = {}
        for t, proc in children.items():
            stdout, stderr = proc.communicate(timeout=600)
            assert proc.returncode == 0, stderr
            outs[t] = json.loads(stdout.strip().splitlines()[-1])
    finally:
        for proc in children.values():
            if proc.poll() is None:
                proc.kill()
    assert len(first) >= 25
    assert not _diff(first, second), f"differs between calls: {_diff(first, second)}"
    assert not _diff(first, serial), f"serial vs parallel compile: {_diff(first, serial)}"
    for t, out in outs.items():
        assert not _diff(first, out), f"NUMBA_NUM_THREADS={t} process: {_diff(first, out)}"


def test_seeds_change_the_results():
    # the fingerprints are not vacuous: another seed gives another operator
    A = np.random.default_rng(0).standard_normal((5000, 4))
    for make in (sketchla.CountSketch, sketchla.SparseSign, sketchla.SRHT, sketchla.GaussianSketch):
        assert _digest(make(64, 5000, rng=1) @ A) != _digest(make(64, 5000, rng=2) @ A)
    same_ss = np.random.SeedSequence(7)
    assert _digest(sketchla.CountSketch(64, 5000, rng=same_ss) @ A) == _digest(
        sketchla.CountSketch(64, 5000, rng=np.random.SeedSequence(7)) @ A
    )


def test_no_public_function_touches_numpys_global_rng():
    np.random.seed(12345)  # noqa: NPY002
    before = np.random.get_state()  # noqa: NPY002
    fingerprints()
    # seed=None draws OS entropy through SeedSequence, not the global RNG
    x = np.random.default_rng(1).standard_normal((3000, 6))
    for make in (sketchla.CountSketch, sketchla.SparseSign, sketchla.SRHT, sketchla.GaussianSketch):
        make(32, 3000, rng=None) @ x
    sketchla.leverage_scores(x, method="sketch", rng=None)
    sketchla.universal_set(x, 0.05, method="sketch", rng=None)
    after = np.random.get_state()  # noqa: NPY002
    assert before[0] == after[0]
    np.testing.assert_array_equal(before[1], after[1])
    assert before[2:] == after[2:]


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        print(json.dumps(fingerprints()))
    else:
        pytest.main([__file__, "-q"])
