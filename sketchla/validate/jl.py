r"""Experiment family 1: subspace embeddings (JL for a whole subspace).

For an n x d matrix with orthonormal basis U, a sketch S (m x n) is an eps-subspace embedding
when every singular value of S U lies in [1 - eps, 1 + eps]; the *distortion* is
max_i |sigma_i(S U) - 1|. Guarantees checked:

* Gaussian S = G / sqrt(m): S U has the law of an m x d Gaussian matrix over sqrt(m), and
  sqrt(m) - sqrt(d) - t <= s_min(G) <= s_max(G) <= sqrt(m) + sqrt(d) + t with probability
  >= 1 - 2 exp(-t^2 / 2) (Davidson & Szarek 2001; Vershynin, HDP Thm 4.6.1), so the
  distortion is <= (sqrt(d) + t) / sqrt(m).
* JL second moment: for S Gaussian, CountSketch or SparseSign (independent signs, each column
  +-1/sqrt(s) on s distinct rows), E ||U^T S^T S U - I||_F^2 <= (d^2 + d) / m (a direct
  computation: only the pairs {a, b} = {c, d} survive the expectation; Clarkson & Woodruff
  2013, Nelson & Nguyen 2013, Woodruff 2014 Thm 2.9 / 2.10).
* SRHT: for m >= 4 (sqrt(d) + sqrt(8 log(d n)))^2 log(d), 0.40 <= sigma_i(S U) <= 1.48
  except with probability O(1/d) (Tropp 2011, Thm 3.1).
* Uniform row sampling on a coherent matrix (d identity rows hidden among n - d tiny rows)
  misses an identity row, and then sigma_min(S U) ~ 0, except with probability
  <= (m/n)^d: uniform sampling is not a subspace embedding.
"""

from __future__ import annotations

import numpy as np

from ..demo import test_matrices, uniform_rows
from ..testing import make_operator
from ._core import Context, experiment
from ._plot import figure, finish

_KINDS = ("gaussian", "srht", "countsketch", "sparse_sign")
_SECOND_MOMENT_KINDS = ("gaussian", "countsketch", "sparse_sign")
_COLORS = {
    "gaussian": "C0",
    "srht": "C1",
    "countsketch": "C2",
    "sparse_sign": "C3",
    "uniform rows": "C7",
}


def gaussian_distortion_bound(m: int, d: int, delta: float) -> float:
    """(sqrt(d) + t) / sqrt(m) with t = sqrt(2 log(2 / delta)): the Gaussian sketch's
    distortion bound at failure probability delta."""
    t = np.sqrt(2 * np.log(2 / delta))
    return float((np.sqrt(d) + t) / np.sqrt(m))


def tropp_srht_min_size(n: int, d: int) -> int:
    """4 (sqrt(d) + sqrt(8 log(d n)))^2 log(d): Tropp's (2011) SRHT embedding size."""
    return int(np.ceil(4 * (np.sqrt(d) + np.sqrt(8 * np.log(d * n))) ** 2 * np.log(d)))


@experiment(
    "jl", "Subspace embedding distortion vs sketch size, theory curves, coherent matrix", "jl"
)
def run_jl(ctx: Context) -> None:
    n, d = ctx.pick((4096, 16), (16384, 32))
    sizes = ctx.pick([64, 128, 256, 512, 1024, 2048], [128, 256, 512, 1024, 2048, 4096, 8192])
    seeds = ctx.pick(6, 20)
    mats = test_matrices(n, d)
    ctx.set_total(len(_KINDS) + 1)
    dist = {}  # (kind, matrix, m) -> distortions over seeds
    moment = {}  # (kind, matrix, m) -> ||U^T S^T S U - I||_F^2 over seeds
    singular = {}  # (kind, matrix, m) -> (min sigma, max sigma) over seeds
    names = list(mats)
    both = np.hstack([mats[k] for k in names])  # one sketch applied to both bases
    for kind in (*_KINDS, "uniform rows"):
        for m in sizes:
            # matrix -> (distortions, Gram moments, min sigma, max sigma) over seeds
            cells: dict[str, tuple[list[float], list[float], float, float]] = {
                mn: ([], [], np.inf, 0.0) for mn in names
            }
            for s in range(seeds):
                SB = (
                    uniform_rows(both, m, s)
                    if kind == "uniform rows"
                    else (make_operator(kind, m, n, rng=s) @ both)
                )
                for i, mn in enumerate(names):
                    SU = SB[:, i * d : (i + 1) * d]
                    gram = SU.T @ SU
                    # singular values of SU from its d x d Gram (accurate near 1)
                    sv = np.sqrt(np.clip(np.linalg.eigvalsh(gram), 0.0, None))
                    ds, fs, lo, hi = cells[mn]
                    ds.append(float(max(sv.max() - 1.0, 1.0 - sv.min())))
                    fs.append(float(np.sum((gram - np.eye(d)) ** 2)))
                    cells[mn] = (ds, fs, min(lo, sv.min()), max(hi, sv.max()))
            for mn, (ds, fs, lo, hi) in cells.items():
                dist[kind, mn, m], moment[kind, mn, m] = np.array(ds), np.array(fs)
                singular[kind, mn, m] = (lo, hi)
        ctx.step(kind)

    # Gaussian: every trial within the Davidson-Szarek bound
    delta = 1e-3
    trials = 2 * len(sizes) * seeds
    worst = max(
        float(np.max(dist["gaussian", mn, m] / gaussian_distortion_bound(m, d, delta)))
        for mn in mats
        for m in sizes
    )
    ctx.check(
        f"Gaussian sketch: distortion <= (sqrt(d)+t)/sqrt(m), t = sqrt(2 ln(2/delta)), "
        f"delta = {delta:g}, for all {trials} trials (worst ratio measured/bound shown)",
        "Davidson & Szarek 2001; Vershynin HDP Thm 4.6.1",
        worst,
        "<=",
        1.0,
        note=f"n = {n}, d = {d}, m in {sizes}; P(some trial fails) <= {trials * delta:.2f}",
    )
    # second moment: m ||U^T S^T S U - I||_F^2 / (d^2 + d) has mean <= 1 at every m; pooled
    # over sizes and seeds per (sketch, matrix), with a one-sided 3-standard-error allowance
    worst_z, worst_cell = -np.inf, ""
    for kind in _SECOND_MOMENT_KINDS:
        for mn in mats:
            r = np.concatenate([moment[kind, mn, m] * m / (d * d + d) for m in sizes])
            z = (r.mean() - 1.0) / (r.std(ddof=1) / np.sqrt(r.size))
            if z > worst_z:
                worst_z, worst_cell = z, f"{kind}, {mn}: mean ratio {r.mean():.3f}"
    ctx.check(
        "JL second moment E||U^T S^T S U - I||_F^2 <= (d^2+d)/m for gaussian, countsketch, "
        "sparse_sign: max over (sketch, matrix) of (mean of m F/(d^2+d) - 1) / std. error",
        "Clarkson & Woodruff 2013; Nelson & Nguyen 2013; Woodruff 2014 Thm 2.9",
        worst_z,
        "<=",
        3.0,
        note=f"one-sided 3-sigma test over {len(sizes) * seeds} trials per cell (Gaussian: "
        f"equality in expectation); worst {worst_cell}",
    )
    m0 = tropp_srht_min_size(n, d)
    big = [m for m in sizes if m >= m0]
    if big:
        lo = min(singular["srht", mn, m][0] for mn in mats for m in big)
        hi = max(singular["srht", mn, m][1] for mn in mats for m in big)
        ctx.check_true(
            f"SRHT with m >= {m0} (Tropp's size): all singular values of SU in [0.40, 1.48]",
            "Tropp 2011, Thm 3.1",
            bool(lo >= 0.40 and hi <= 1.48),
            f"[{lo:.3f}, {hi:.3f}]",
            bound="[0.40, 1.48]",
            note=f"m in {big}, failure probability O(1/d) per trial",
        )
    else:
        ctx.note(f"SRHT: no sketch size reaches Tropp's m >= {m0}; its claim is not checked.")
    m_max = max(sizes)
    unif = float(np.median(dist["uniform rows", "coherent", m_max]))
    ctx.check(
        f"uniform row sampling (m = {m_max}) fails on the coherent matrix: median distortion ~ 1",
        "misses an identity row w.p. >= 1 - (m/n)^d",
        unif,
        ">=",
        0.9,
        note=f"(m/n)^d = {(m_max / n) ** d:.1e}",
    )
    sk = float(np.median(dist["sparse_sign", "coherent", m_max]))
    ctx.report(
        f"SparseSign (s = 8) median distortion on the coherent matrix at m = {m_max}",
        "Nelson & Nguyen 2013; Cohen 2016 (constants unspecified)",
        sk,
    )

    fig, axes = figure(2)
    for ax, mn in zip(axes, mats, strict=True):
        for kind in (*_KINDS, "uniform rows"):
            med = [np.median(dist[kind, mn, m]) for m in sizes]
            top = [np.max(dist[kind, mn, m]) for m in sizes]
            ax.plot(sizes, med, "o-", color=_COLORS[kind], label=f"{kind} (median)")
            ax.plot(sizes, top, ":", color=_COLORS[kind], alpha=0.7)
        ax.plot(sizes, [np.sqrt(d / m) for m in sizes], "k--", label="sqrt(d/m)")
        ax.plot(
            sizes,
            [gaussian_distortion_bound(m, d, delta) for m in sizes],
            "k-.",
            label=f"Gaussian bound, delta={delta:g}",
        )
        if big:
            ax.axvline(m0, color="C1", lw=0.8, ls="--", label=f"Tropp SRHT size {m0}")
        finish(
            ax,
            f"{mn} matrix, n={n}, d={d} (dotted: max of {seeds} seeds)",
            "sketch size m",
            "distortion max|sigma(SU) - 1|",
            logx=True,
            logy=True,
        )
    ctx.figure(
        "jl_distortion",
        fig,
        "Subspace-embedding distortion vs sketch size; dashed: "
        "theory. Uniform sampling stays at ~1 on the coherent matrix.",
    )
    fig, axes = figure(1)
    ax = axes[0]
    for kind in _SECOND_MOMENT_KINDS:
        ax.plot(
            sizes,
            [moment[kind, "random", m].mean() for m in sizes],
            "o-",
            color=_COLORS[kind],
            label=f"{kind}, random",
        )
        ax.plot(
            sizes,
            [moment[kind, "coherent", m].mean() for m in sizes],
            "s:",
            color=_COLORS[kind],
            label=f"{kind}, coherent",
        )
    ax.plot(sizes, [(d * d + d) / m for m in sizes], "k--", label="(d^2+d)/m")
    finish(
        ax,
        "JL second moment",
        "sketch size m",
        "mean ||U^T S^T S U - I||_F^2",
        logx=True,
        logy=True,
    )
    ctx.figure(
        "jl_second_moment",
        fig,
        "Mean squared Frobenius error of U^T S^T S U against "
        "the exact second moment bound (d^2+d)/m.",
    )
    ctx.table(
        f"median distortion (random / coherent), n = {n}, d = {d}, {seeds} seeds",
        ["sketch", *[f"m={m}" for m in sizes]],
        [
            [
                k,
                *[
                    f"{np.median(dist[k, 'random', m]):.3f} / "
                    f"{np.median(dist[k, 'coherent', m]):.3f}"
                    for m in sizes
                ],
            ]
            for k in (*_KINDS, "uniform rows")
        ],
    )
    ctx.step("plots")
