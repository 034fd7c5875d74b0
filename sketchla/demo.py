"""``sketchla demo``: subspace-embedding distortion of each operator, in a few seconds.

For a tall n x d matrix with orthonormal basis U, the distortion of S is
max_i |sigma_i(S U) - 1|: S preserves every ||A x|| within that factor. The table shows the
median over seeds, on a random matrix and on a coherent one (d identity rows hidden among tiny
rows), next to uniform row sampling -- which fails on the coherent matrix -- and the Gaussian
theory sqrt(d/m).
"""

from __future__ import annotations

import numpy as np

from .testing import OPERATOR_KINDS, make_operator


def distortion(SU: np.ndarray) -> float:
    """max_i |sigma_i(SU) - 1|."""
    s = np.linalg.svd(SU, compute_uv=False)
    return float(max(s.max() - 1.0, 1.0 - s.min()))


def test_matrices(n: int, d: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Orthonormal bases of a random tall matrix and of a coherent one."""
    rng = np.random.default_rng(seed)
    coherent = np.vstack([np.eye(d), 1e-4 * rng.standard_normal((n - d, d))])
    return {
        "random": np.linalg.qr(rng.standard_normal((n, d)))[0],
        "coherent": np.linalg.qr(coherent)[0],
    }


def uniform_rows(U: np.ndarray, m: int, seed: int) -> np.ndarray:
    """Uniform row sampling without replacement, rescaled by sqrt(n/m): the naive sketch."""
    n = U.shape[0]
    rows = np.random.default_rng(seed).choice(n, size=m, replace=False)
    return np.sqrt(n / m) * U[rows]


def distortion_table(n: int = 4096, d: int = 16, sizes=(64, 128, 256, 512), seeds: int = 5):
    """Rows ``(method, {m: (median random, median coherent)})``."""
    mats = test_matrices(n, d)
    rows = []
    for kind in (*OPERATOR_KINDS, "uniform rows"):
        cells = {}
        for m in sizes:
            med = []
            for U in mats.values():
                if kind == "uniform rows":
                    vals = [distortion(uniform_rows(U, m, s)) for s in range(seeds)]
                else:
                    vals = [distortion(make_operator(kind, m, n, rng=s) @ U) for s in range(seeds)]
                med.append(float(np.median(vals)))
            cells[m] = tuple(med)
        rows.append((kind, cells))
    rows.append(("theory sqrt(d/m) (Gaussian)", {m: (np.sqrt(d / m),) * 2 for m in sizes}))
    return rows


#: a coherent-matrix distortion at or above this counts as a failure in the caption (the
#: sketched basis lost a direction: sigma_min(SU) ~ 0, or blew one up: sigma_max >= 1.9)
FAIL_DISTORTION = 0.9


def caption(rows, d: int) -> str:
    """The caption under the table, computed from its numbers (never fixed text): which
    methods fail on the coherent matrix (distortion >= ``FAIL_DISTORTION``) and at which m."""
    failing, fine = [], []
    for kind, cells in rows:
        if kind.startswith("theory"):
            continue
        bad = [m for m, (_, coherent) in cells.items() if coherent >= FAIL_DISTORTION]
        if not bad:
            fine.append(kind)
        elif len(bad) == len(cells):
            failing.append(f"{kind} (every m)")
        else:
            failing.append(f"{kind} (m = {', '.join(str(m) for m in bad)})")
    parts = []
    if failing:
        parts.append(
            f"On the coherent matrix (d = {d} identity rows among tiny ones) the distortion "
            f"reaches {FAIL_DISTORTION} or more, i.e. a direction is lost or blown up, for: "
            + "; ".join(failing)
            + "."
        )
    if fine:
        parts.append(f"It stays below {FAIL_DISTORTION} at every m for: {', '.join(fine)}.")
    if any(f.startswith("countsketch (m =") for f in failing):
        parts.append(
            "CountSketch fails at small m when two identity rows hash to one bucket "
            "(probability about 1 - exp(-d^2 / 2m)); sampling fails whenever it misses one."
        )
    return " ".join(parts)
