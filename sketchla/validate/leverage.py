r"""Experiment family 2: leverage scores -- sketched vs exact, online and streaming identities.

* Sketched scores (Drineas, Magdon-Ismail, Mahoney & Woodruff 2012): with R from a QR of S A,
  the scores :math:`\tilde l_i = \|a_i^\top R^{-1}\|^2 = u_i^\top ((SU)^\top SU)^{-1} u_i`, so
  :math:`l_i / \sigma_{\max}(SU)^2 \le \tilde l_i \le l_i / \sigma_{\min}(SU)^2` for *every*
  row, deterministically given the sketch. Checked against the singular values of the same
  sketch applied to an orthonormal basis U.
* Exact scores sum to the rank (any rank), QR and SVD paths agree.
* Online ridge scores (Cohen, Musco & Pachocki 2016)
  :math:`x_i = a_i^\top (A_{<i}^\top A_{<i} + \lambda I)^{-1} a_i`: by the matrix determinant
  lemma :math:`\sum_i \log(1 + x_i) = \log\det(I + A^\top A / \lambda)` exactly, hence
  :math:`\sum_i \min(1, x_i) \le 2 \log\det(I + A^\top A/\lambda) \le 2 d \log(1 +
  \|A\|_2^2/\lambda)`; and :math:`x_i / (1 + x_i) \ge` the batch ridge score of row i.
* Streaming (one pass, memory independent of n): the exact mode returns the batch
  :math:`U_\varepsilon`, the merge-and-reduce mode a superset of size <= d / eps.
"""

from __future__ import annotations

import numpy as np

from ..operators import KINDS
from ..random import child_seed
from ..scores import StreamingLeverage, leverage_scores, online_leverage_scores, universal_set
from ._core import Context, experiment
from ._plot import figure, finish

#: nonzeros per column of the SparseSign sketch (passed explicitly: the default may change)
_NNZ = 4
#: relative slack for the sketched scores' final products, computed in float32 when R is
#: well conditioned (documented in ``leverage_scores``: at most ~4e-3)
_FLOAT32_SLACK = 5e-3


def heavy_tailed_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    """A tall matrix with non-uniform leverage: Student-t (2 dof) rows, i.e. rows with
    heavy-tailed norms."""
    rng = np.random.default_rng(seed)
    return rng.standard_t(2, size=(n, d)) @ rng.standard_normal((d, d))


@experiment(
    "leverage", "Sketched vs exact leverage scores; online and streaming identities", "leverage"
)
def run_leverage(ctx: Context) -> None:
    n, d = ctx.pick((20_000, 16), (200_000, 32))
    sizes = ctx.pick([64, 128, 256, 512, 1024], [128, 256, 512, 1024, 2048, 4096, 8192])
    seeds = ctx.pick(2, 10)
    kinds = ("sparse_sign", "countsketch")
    ctx.set_total(len(kinds) + 3)
    A = heavy_tailed_rows(n, d)
    exact = leverage_scores(A)
    U = np.linalg.qr(A)[0]
    worst_violation = 0.0
    err = {}  # (kind, m) -> (max |l~/l - 1| over seeds, theory band half-width)
    for kind in kinds:
        for m in sizes:
            e_max, band = 0.0, 0.0
            for s in range(seeds):
                params = {"nnz_per_col": _NNZ} if kind == "sparse_sign" else {}
                approx = leverage_scores(
                    A, method="sketch", rng=s, sketch_size=m, sketch_kind=kind, **params
                )
                ratio = approx / exact
                # the very same sketch on the orthonormal basis
                if params:
                    params = {"nnz_per_col": min(_NNZ, m)}
                SU = KINDS[kind](m, n, rng=child_seed(s, 0), **params) @ U
                sv = np.linalg.svd(SU, compute_uv=False)
                lo, hi = 1.0 / sv.max() ** 2, 1.0 / sv.min() ** 2
                violation = max(
                    lo * (1 - _FLOAT32_SLACK) - ratio.min(),
                    ratio.max() - hi * (1 + _FLOAT32_SLACK),
                    0.0,
                )
                worst_violation = max(worst_violation, violation)
                e_max = max(e_max, float(np.abs(ratio - 1).max()))
                band = max(band, max(1 - lo, hi - 1))
            err[kind, m] = (e_max, band)
        ctx.step(kind)
    ctx.check(
        "sketched scores: l_i/sigma_max(SU)^2 <= l~_i <= l_i/sigma_min(SU)^2 for every row, "
        f"sketch and seed (largest violation shown; {_FLOAT32_SLACK:g} float32 slack)",
        "Drineas et al. JMLR 2012 (structural bound, deterministic given S)",
        worst_violation,
        "<=",
        0.0,
        note=f"n = {n}, d = {d}, Student-t rows, m in {sizes}, {seeds} seeds, {kinds} "
        f"(sparse_sign s = {_NNZ}); S rebuilt as in leverage_scores: seed child_seed(seed, 0)",
    )
    default = leverage_scores(A, method="sketch", rng=0)
    ctx.report(
        f"sketched scores at the default size (m = {min(n, 32 * d)}, sparse_sign): "
        "max relative error",
        "Drineas et al. 2012 (constant-factor accuracy)",
        float(np.abs(default / exact - 1).max()),
    )

    # exact scores on a rank-deficient matrix
    r = d // 2
    B = A[:, :r] @ np.random.default_rng(1).standard_normal((r, d))
    lq, ls = leverage_scores(B, method="qr"), leverage_scores(B, method="svd")
    ctx.check(
        f"exact scores of a rank-{r} matrix sum to the rank (|sum - r| shown)",
        "identity: sum_i ||U_i||^2 = rank",
        float(abs(lq.sum() - r)),
        "<=",
        1e-8 * r,
    )
    ctx.check(
        "QR and SVD leverage scores agree (max |difference|)",
        "identity",
        float(np.abs(lq - ls).max()),
        "<=",
        1e-8,
    )
    ctx.step("exact")

    # online scores
    n_on = ctx.pick(4000, 20_000)
    C = A[:n_on]
    lam = 1e-3 * float(np.sum(C * C)) / d
    x = online_leverage_scores(C, ridge=lam)
    _, logdet = np.linalg.slogdet(np.eye(d) + C.T @ C / lam)
    lhs = float(np.sum(np.log1p(x)))
    ctx.check(
        "online scores: sum_i log(1 + x_i) = log det(I + A^T A / lambda) (relative error)",
        "matrix determinant lemma; Cohen, Musco & Pachocki 2016",
        abs(lhs - logdet) / abs(logdet),
        "<=",
        1e-9,
        note=f"n = {n_on}, lambda = 1e-3 ||A||_F^2 / d",
    )
    total = float(np.minimum(1.0, x).sum())
    cap = 2 * d * np.log1p(np.linalg.norm(C, 2) ** 2 / lam)
    ctx.check(
        "online scores: sum_i min(1, x_i) <= 2 d log(1 + ||A||_2^2 / lambda)",
        "Cohen, Musco & Pachocki 2016, Thm 2.2",
        total,
        "<=",
        float(cap),
        note=f"sum of batch ridge scores = {leverage_scores(C, ridge=lam).sum():.3g}",
    )
    ridge_batch = leverage_scores(C, ridge=lam)
    gap = float(np.min(x / (1 + x) - ridge_batch))
    ctx.check(
        "online score x_i/(1+x_i) >= batch ridge score of row i (min difference)",
        "monotonicity of ridge scores under added rows",
        gap,
        ">=",
        -1e-10,
    )
    ctx.step("online")

    # streaming
    eps = 0.01
    block = 1000
    batch = universal_set(A, eps)
    streams = {}
    for mode in ("exact", "merge"):
        stream = StreamingLeverage(d, eps, mode=mode)
        for lo in range(0, n, block):
            stream.update(A[lo : lo + block])
        streams[mode] = stream.universal_set()
    ctx.check_true(
        "StreamingLeverage(mode='exact') returns the batch U_eps exactly",
        "adding rows never raises a score",
        bool(np.array_equal(streams["exact"], batch)),
        f"|U| = {len(batch)}, streamed {len(streams['exact'])}",
        bound="equal sets",
    )
    merged = streams["merge"]
    ok = bool(np.all(np.isin(batch, merged)) and len(merged) <= d / eps)
    ctx.check_true(
        "StreamingLeverage(mode='merge') returns a superset of U_eps of size <= d/eps",
        "merge and reduce (LevAttention streaming)",
        ok,
        f"{len(merged)} >= {len(batch)}",
        bound=f"superset, <= {d / eps:g}",
        vacuous=d / eps >= n and len(batch) == 0,
    )
    ctx.step("streaming")

    fig, axes = figure(2)
    ax = axes[0]
    for kind, color in zip(kinds, ("C3", "C2"), strict=True):
        ax.plot(
            sizes,
            [err[kind, m][0] for m in sizes],
            "o-",
            color=color,
            label=f"{kind}: max |l~/l - 1| ({seeds} seeds)",
        )
        ax.plot(
            sizes,
            [err[kind, m][1] for m in sizes],
            "--",
            color=color,
            label=f"{kind}: band from sigma(SU)",
        )
    ax.plot(sizes, [2 * np.sqrt(d / m) for m in sizes], "k:", label="2 sqrt(d/m)")
    finish(
        ax,
        f"sketched leverage, n={n}, d={d} (Student-t rows)",
        "sketch size m",
        "max relative error",
        logx=True,
        logy=True,
    )
    ax = axes[1]
    ax.loglog(ridge_batch, x / (1 + x), ".", ms=2, alpha=0.4, label="rows")
    lim = [max(ridge_batch.min(), 1e-6), 1]
    ax.plot(lim, lim, "k--", label="y = x")
    finish(
        ax,
        f"online vs batch ridge scores, n={n_on}",
        "batch ridge score l_i(lambda)",
        "online x_i / (1 + x_i)",
    )
    ctx.figure(
        "leverage",
        fig,
        "Left: sketched leverage error vs sketch size, with the "
        "deterministic band from the sketch's singular values. Right: online scores "
        "upper-bound the batch ridge scores.",
    )
    ctx.table(
        "sketched leverage: max relative error / band (sparse_sign, countsketch)",
        ["m", *kinds],
        [[m, *[f"{err[k, m][0]:.3f} / {err[k, m][1]:.3f}" for k in kinds]] for m in sizes],
    )
