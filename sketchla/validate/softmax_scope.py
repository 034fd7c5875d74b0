r"""Experiment family 4: where softmax attention has no universal set.

LevAttention's guarantee is for f(x) = |x|^p. For softmax it provably fails: with Q = K an
n x d matrix of random signs (d >= C log n), the diagonal logits are sqrt(d) and the
off-diagonal ones about N(0, 1), so softmax puts a constant share on the diagonal and *every*
key is heavy for its own query: no universal set smaller than n exists (LevAttention,
OpenReview rebuttal; a needle instance in the spirit of Alman & Song 2023's hardness).

What a key set S of size k (plus, optionally, a local window of keys |i - j| <= w for query
i) captures of the softmax is then an empirical question. Measured here: the captured mass
:math:`\frac1n \sum_i \sum_{j \in S \cup W_i} P_{ij}` of P = softmax(QK^T/sqrt d) for

* leverage top-k (LevAttention's choice: the k largest leverage scores of K),
* row-norm top-k (the k keys of largest norm),
* random k keys,
* the oracle: the best global set of size k, the top-k columns by
  :math:`c_j = \sum_{i : j \notin W_i} P_{ij}` (optimal, since the captured mass is
  separable over columns once the window is fixed).

These are heuristics: verdict REPORTED, except the random-sign theorem.
"""

from __future__ import annotations

import numpy as np

from ..scores import leverage_scores
from ..testing.attention_instances import attention_instance
from ._core import Context, experiment
from ._plot import figure, finish

STRATEGIES: tuple[str, ...] = ("oracle", "leverage", "row norm", "random")
_STYLE = {"oracle": "k-", "leverage": "C0o-", "row norm": "C1s-", "random": "C7^-"}


def softmax_matrix(Q: np.ndarray, K: np.ndarray, scale: float | None = None) -> np.ndarray:
    """Dense P = softmax(scale Q K^T) in float64 with log-sum-exp (a reference for small n)."""
    scale = 1 / np.sqrt(Q.shape[1]) if scale is None else scale
    S = (Q.astype(np.float64) * scale) @ K.astype(np.float64).T
    S -= S.max(axis=1, keepdims=True)
    np.exp(S, out=S)
    S /= S.sum(axis=1, keepdims=True)
    return S


def window_mask(n: int, w: int) -> np.ndarray:
    """Boolean n x n band |i - j| <= w (empty for w < 0)."""
    idx = np.arange(n)
    return np.abs(idx[:, None] - idx[None, :]) <= w


def captured_mass(P: np.ndarray, K: np.ndarray, ks, window: int = -1, seed: int = 0) -> dict:
    """{strategy: [captured mass at each k]} for the strategies of the module docstring;
    ``window`` >= 0 adds the local window |i - j| <= window to every query (square P)."""
    n_q, n_k = P.shape
    inwin = window_mask(n_k, window) if window >= 0 else np.zeros((n_q, n_k), dtype=bool)
    base = float((P * inwin).sum()) / n_q
    col = (P * ~inwin).sum(axis=0) / n_q  # column value outside the window
    orders = {
        "oracle": np.argsort(-col, kind="stable"),
        "leverage": np.argsort(-leverage_scores(K), kind="stable"),
        "row norm": np.argsort(-np.einsum("ij,ij->i", K, K), kind="stable"),
        "random": np.random.default_rng(seed).permutation(n_k),
    }
    cums = {name: np.concatenate([[0.0], np.cumsum(col[o])]) for name, o in orders.items()}
    return {name: [base + float(c[min(k, n_k)]) for k in ks] for name, c in cums.items()}


@experiment(
    "softmax_counterexample",
    "Random-sign Q = K: every key is softmax-heavy, no universal set exists",
    "softmax_scope",
)
def run_counterexample(ctx: Context) -> None:
    n, d = ctx.pick((1024, 64), (4096, 96))
    eps = 0.1
    Q, K, _ = attention_instance("random_sign", n, d, rng=0)
    P = softmax_matrix(Q, K)
    diag = np.diag(P)
    heavy = int(np.sum(np.any(P >= eps, axis=0)))
    ctx.check(
        f"softmax, Q = K random signs (n = {n}, d = {d}): number of eps-heavy columns "
        f"(eps = {eps}) equals n, more than d/eps = {d / eps:g}",
        "LevAttention (rebuttal): w.h.p. for d >= C log n",
        heavy,
        ">=",
        n,
        note=f"min_j P_jj = {diag.min():.3f}; max off-diagonal {np.max(P - np.diag(diag)):.2e}",
    )
    ks = [16, 64, 256, n // 2]
    cm = captured_mass(P, K, ks)
    ctx.report(
        f"random-sign: captured softmax mass with k = {ks[1]} keys "
        "(oracle / leverage / row norm / random)",
        "no guarantee",
        " / ".join(f"{cm[s][1]:.3f}" for s in STRATEGIES),
        note=f"k/n = {ks[1] / n:.3f}: any global key set captures about k/n",
    )
    ctx.step("random sign")


@experiment(
    "softmax_mass",
    "Captured softmax mass: leverage vs row-norm vs random vs oracle, +- local window",
    "softmax_scope",
)
def run_mass(ctx: Context) -> None:
    n, d = ctx.pick((1024, 32), (4096, 64))
    ks = [8, 16, 32, 64, 128, 256]
    window = 8
    kinds = ("flat", "planted", "sink", "large_norm", "random_sign")
    ctx.set_total(len(kinds) + 1)
    curves = {}
    for kind in kinds:
        Q, K, _ = attention_instance(kind, n, d, rng=1)
        P = softmax_matrix(Q, K)
        curves[kind, False] = captured_mass(P, K, ks)
        curves[kind, True] = captured_mass(P, K, ks, window=window)
        ctx.step(kind)
    k0 = 64
    i0 = ks.index(k0)
    for kind in kinds:
        for win in (False, True):
            c = curves[kind, win]
            ctx.report(
                f"{kind}: captured mass at k = {k0}{f' + window {window}' if win else ''} "
                "(oracle / leverage / row norm / random)",
                "LevAttention heuristic for softmax (no guarantee)",
                " / ".join(f"{c[s][i0]:.3f}" for s in STRATEGIES),
            )
    # needle family: strength sweep
    needles = [0.5, 1.0, 1.5, 2.0, 3.0]
    needle_mass: dict[str, list[float]] = {s: [] for s in STRATEGIES}
    for nd in needles:
        Q, K, _ = attention_instance("planted", n, d, needle=nd, rng=2)
        c = captured_mass(softmax_matrix(Q, K), K, [k0])
        for s in STRATEGIES:
            needle_mass[s].append(c[s][0])
    ctx.step("needles")
    ctx.report(
        f"needle family, strongest needle ({needles[-1]} log n): captured mass at k = {k0} "
        "(oracle / leverage / row norm / random)",
        "Alman & Song 2023 style hardness: needles at random keys",
        " / ".join(f"{needle_mass[s][-1]:.3f}" for s in STRATEGIES),
        note=f"k/n = {k0 / n:.3f}",
    )
    fig, axes = figure(3, 2, width=4.6, height=3.5)
    for ax, kind in zip(axes, kinds, strict=False):
        for s in STRATEGIES:
            ax.plot(ks, curves[kind, False][s], _STYLE[s], ms=4, label=s)
            ax.plot(ks, curves[kind, True][s], _STYLE[s].replace("-", ":"), ms=3, alpha=0.6)
        finish(
            ax,
            f"{kind} (n={n}; dotted: + window {window})",
            "keys kept k",
            "captured softmax mass",
            logx=True,
            legend=kind == kinds[0],
        )
        ax.set_ylim(0, 1.02)
    ax = axes[len(kinds)]
    for s in STRATEGIES:
        ax.plot(needles, needle_mass[s], _STYLE[s], ms=4, label=s)
    ax.axhline(k0 / n, color="gray", lw=0.8, ls="--", label="k/n")
    finish(ax, f"needle family, k = {k0}", "needle logit / log n", "captured softmax mass")
    ax.set_ylim(0, 1.02)
    ctx.figure(
        "softmax_mass",
        fig,
        "Softmax mass captured by k global keys chosen by leverage, "
        "row norm, at random, or by the oracle (best global set); dotted: with a local "
        "window. Last panel: needles at random keys defeat every global set.",
    )
    ctx.table(
        f"captured mass at k = {k0} (no window / window {window})",
        ["instance", *STRATEGIES],
        [
            [
                kind,
                *[
                    f"{curves[kind, False][s][i0]:.3f} / {curves[kind, True][s][i0]:.3f}"
                    for s in STRATEGIES
                ],
            ]
            for kind in kinds
        ],
    )
    ctx.step("plots")
