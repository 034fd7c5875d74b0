"""Sketch-and-solve least squares: min ||A x - b|| from a CountSketch of [A, b].

With S an (1 + eps) subspace embedding of range([A, b]), the solution x~ of the sketched
problem min ||S A x - S b|| has residual ||A x~ - b|| <= (1 + eps) / (1 - eps) * min ||A x - b||
(Sarlos 2006; Clarkson & Woodruff 2013). This script checks that ratio and the time saved.

    python examples/sketch_and_solve.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import sketchla


def main(quick: bool = False) -> float:
    n, d = (20_000, 10) if quick else (1_000_000, 50)
    m = 40 * d
    rng = np.random.default_rng(0)
    A = rng.standard_normal((n, d)) * rng.lognormal(size=d)  # badly scaled columns
    b = A @ rng.standard_normal(d) + rng.standard_normal(n)

    t0 = time.perf_counter()
    x_opt = np.linalg.lstsq(A, b, rcond=None)[0]
    t_exact = time.perf_counter() - t0

    t0 = time.perf_counter()
    S = sketchla.CountSketch(m, n, rng=0)
    SAb = S @ np.column_stack([A, b])
    x_sk = np.linalg.lstsq(SAb[:, :d], SAb[:, d], rcond=None)[0]
    t_sketch = time.perf_counter() - t0

    ratio = np.linalg.norm(A @ x_sk - b) / np.linalg.norm(A @ x_opt - b)
    print(
        f"n={n} d={d} m={m}: residual ratio {ratio:.4f} (>= 1; near 1 is good), "
        f"time exact {t_exact:.3f}s, sketch-and-solve {t_sketch:.3f}s"
    )
    return ratio


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small problem (seconds)")
    main(parser.parse_args().quick)
