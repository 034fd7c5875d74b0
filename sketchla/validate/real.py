r"""Experiment family 6: experiments 3-5 on real attention heads.

Data: :func:`sketchla.datasets.load_minilm_qkv` -- Q, K, V (512 x 32 each) of
all-MiniLM-L6-v2 (BERT, 6 layers, 12 heads, non-causal) on ``pydoc_data.topics["types"]``,
for the shipped layers and heads (see :mod:`sketchla.datasets`). Logits use the model's scale
1/sqrt(32).
"""

from __future__ import annotations

import numpy as np

from .. import datasets
from ..attention import (
    KeyIndices,
    SortLSH,
    Uniform,
    approx_attention,
    approx_rowsums,
    lev_attention,
)
from ..lsh import SimHash, inverse_gray_code
from ..scores import universal_set
from ._core import Context, experiment
from ._plot import figure, finish
from .hyper import (
    YARDSTICKS,
    _spectral_denominators,
    block_mass,
    exact_lse,
    spectral_ratio,
    versus_yardsticks,
    yardstick_ratios,
)
from .softmax_scope import STRATEGIES, captured_mass, softmax_matrix
from .universal import heavy_columns, witness_queries


def heads() -> list[tuple[int, int]]:
    """(layer, head) pairs of the shipped extract."""
    info = datasets.minilm_extract_info()
    return [(layer, head) for layer in info["layers"] for head in info["heads"]]


def _source(ctx: Context) -> str:
    info = datasets.minilm_extract_info()
    text = (
        f"Model {info['model']} (weights from the {info['source_package']} package), "
        f"text {info['text']}, {info['n_tokens']} tokens, layers {info['layers']} x heads "
        f"{info['heads']} (0-based), head dimension {info['head_dim']}."
    )
    ctx.note(text)
    return text


@experiment(
    "real_universal", "Universal sets of real MiniLM heads: size and 100% recall (x^2)", "real"
)
def run_real_universal(ctx: Context) -> None:
    _source(ctx)
    # the size bound |U| <= d/eps bites only when d/eps < n = 512 (d = 32): eps > 1/16
    eps_list = (0.5, 0.25, 0.1)
    pairs = heads()
    ctx.set_total(len(pairs))
    rows, worst_size, missed, total = [], 0.0, 0, 0
    ceiling, everything = 0.0, True  # most |U| eps / d can be; every U = all keys
    for layer, head in pairs:
        Q, K, _ = datasets.load_minilm_qkv(layer, head)
        n, d = K.shape
        sizes = []
        for eps in eps_list:
            U = universal_set(K, eps)
            sizes.append(len(U))
            worst_size = max(worst_size, len(U) * eps / d)
            ceiling = max(ceiling, n * eps / d)
            everything = everything and len(U) == n
            for Qx in (Q, witness_queries(K)):
                heavy = heavy_columns(Qx, K, eps, 2.0)
                total += len(heavy)
                missed += int(np.sum(~np.isin(heavy, U)))
        rows.append([f"L{layer} H{head}", *sizes])
        ctx.step(f"layer {layer} head {head}")
    ctx.check(
        f"real heads: |U_eps| <= d/eps (max |U| eps / d over {len(pairs)} heads, eps in "
        f"{eps_list}; d/eps < n = 512 for each)",
        "LevAttention",
        worst_size,
        "<=",
        1.0,
        ceiling=ceiling,
    )
    ctx.check_true(
        "real heads: every eps-heavy column of (QK^T)^2, for the model's Q and for witness "
        "queries, is in U_eps",
        "LevAttention: x^2 weight <= leverage score",
        missed == 0,
        f"{total - missed}/{total} heavy columns",
        bound="100%",
        vacuous=everything,
    )
    fig, axes = figure(1, width=7.5)
    ax = axes[0]
    x = np.arange(len(rows))
    for i, eps in enumerate(eps_list):
        ax.bar(
            x + (i - 1) * 0.27,
            [r[1 + i] for r in rows],
            width=0.27,
            color=f"C{i}",
            label=f"|U_eps|, eps = {eps}",
        )
        ax.axhline(32 / eps, color=f"C{i}", ls="--", lw=0.8, label=f"d/eps = {32 / eps:g}")
    ax.axhline(512, color="k", ls=":", lw=0.8, label="n = 512 keys")
    ax.set_xticks(x, [r[0] for r in rows], rotation=60, fontsize=7)
    finish(
        ax,
        "universal set size of real MiniLM heads (512 keys, d = 32)",
        "layer / head",
        "|U_eps|",
        logy=True,
    )
    ctx.figure(
        "real_universal",
        fig,
        "Universal set sizes of all-MiniLM-L6-v2 heads on the pydoc text, against the d/eps bound.",
    )
    ctx.table(
        "|U_eps| per head (all-MiniLM-L6-v2, 512 tokens, d = 32)",
        ["layer/head", *[f"eps={e}" for e in eps_list]],
        rows,
    )


@experiment("real_softmax_mass", "Captured softmax mass on real MiniLM heads", "real")
def run_real_mass(ctx: Context) -> None:
    _source(ctx)
    ks = [4, 8, 16, 32, 64, 128]
    window = 8
    pairs = heads()
    ctx.set_total(len(pairs))
    curves = {}
    for layer, head in pairs:
        Q, K, _ = datasets.load_minilm_qkv(layer, head)
        P = softmax_matrix(Q, K)
        curves[layer, head, False] = captured_mass(P, K, ks)
        curves[layer, head, True] = captured_mass(P, K, ks, window=window)
        ctx.step(f"layer {layer} head {head}")
    k0 = 32
    i0 = ks.index(k0)
    for win in (False, True):
        mean = {s: float(np.mean([curves[(*lh, win)][s][i0] for lh in pairs])) for s in STRATEGIES}
        ctx.report(
            f"real heads (mean of {len(pairs)}): captured softmax mass at k = {k0} of 512 keys"
            f"{f' + window {window}' if win else ''} (oracle / leverage / row norm / random)",
            "LevAttention heuristic for softmax (no guarantee)",
            " / ".join(f"{mean[s]:.3f}" for s in STRATEGIES),
        )
    layers = sorted({lh[0] for lh in pairs})
    fig, axes = figure(len(layers), width=4.4, height=3.6)
    for ax, layer in zip(axes, layers, strict=True):
        for s in STRATEGIES:
            vals = np.mean([curves[(*lh, False)][s] for lh in pairs if lh[0] == layer], axis=0)
            valw = np.mean([curves[(*lh, True)][s] for lh in pairs if lh[0] == layer], axis=0)
            style = {"oracle": "k-", "leverage": "C0o-", "row norm": "C1s-", "random": "C7^-"}[s]
            ax.plot(ks, vals, style, ms=4, label=s)
            ax.plot(ks, valw, style.replace("-", ":"), ms=3, alpha=0.6)
        finish(
            ax,
            f"MiniLM layer {layer} (mean of heads; dotted: + window {window})",
            "keys kept k (of 512)",
            "captured softmax mass",
            logx=True,
            legend=layer == layers[0],
        )
        ax.set_ylim(0, 1.02)
    ctx.figure(
        "real_softmax_mass",
        fig,
        "Softmax mass of real all-MiniLM-L6-v2 heads captured "
        "by k global keys (leverage, row norm, random, oracle), with and without a local "
        "window.",
    )
    ctx.table(
        f"captured mass at k = {k0} (no window / window {window})",
        ["layer/head", *STRATEGIES],
        [
            [
                f"L{lh[0]} H{lh[1]}",
                *[
                    f"{curves[(*lh, False)][s][i0]:.3f} / {curves[(*lh, True)][s][i0]:.3f}"
                    for s in STRATEGIES
                ],
            ]
            for lh in pairs
        ],
    )


@experiment(
    "real_hyper",
    "HyperAttention and LevAttention on real MiniLM heads: spectral "
    "ratio, alpha, kappa, sortLSH block mass, ApproxD error",
    "real",
)
def run_real_hyper(ctx: Context) -> None:
    _source(ctx)
    pairs = ctx.pick(heads()[::2], heads())
    if ctx.quick:
        ctx.note("Quick profile: every other shipped head (heads 0 and 6 of each layer).")
    block, m = 64, 128
    ctx.set_total(len(pairs))
    rows: list[list[str]] = []
    spec: list[list[str | int]] = []
    for layer, head in pairs:
        Q, K, V = datasets.load_minilm_qkv(layer, head)
        exact, denom, diag = _spectral_denominators(Q, K, V)
        U = universal_set(K, 0.1)
        lsh_keys, rest = SortLSH(block, n_bits=6), Uniform(m)
        r_hyper = spectral_ratio(
            exact, np.asarray(approx_attention(Q, K, V, keys=lsh_keys, rest=rest, rng=0)), denom
        )
        r_glob = spectral_ratio(
            exact,
            np.asarray(approx_attention(Q, K, V, keys=KeyIndices(U) | lsh_keys, rest=rest, rng=0)),
            denom,
        )
        r_lev = spectral_ratio(exact, lev_attention(Q, K, V, k=block + m), denom)
        r_levw = spectral_ratio(
            exact, lev_attention(Q, K, V, k=block + m - 17, local_window=8), denom
        )
        spec.append(
            [
                f"L{layer} H{head}",
                f"{diag['alpha']:.3g}",
                f"{diag['kappa']:.3g}",
                f"{r_hyper:.3f}",
                f"{r_glob:.3f}",
                len(U),
                f"{r_lev:.3f}",
                f"{r_levw:.3f}",
                *[
                    f"{v:.3f}"
                    for v in yardstick_ratios(Q, K, V, exact, denom, window=block).values()
                ],
            ]
        )
        d = Q.shape[1]
        scale = 1 / np.sqrt(d)
        h = SimHash(d, 6, rng=0)
        oq = np.argsort(inverse_gray_code(h.codes(Q)), kind="stable")
        ok = np.argsort(inverse_gray_code(h.codes(K)), kind="stable")
        lsh = block_mass(Q, K, scale, oq, ok, block)
        rnd = np.random.default_rng(0)
        rand = block_mass(Q, K, scale, rnd.permutation(len(Q)), rnd.permutation(len(K)), block)
        ref = exact_lse(Q, K, scale)
        keys, rest = SortLSH(block, n_bits=6), Uniform(m)
        est = approx_rowsums(Q * scale, K, keys=keys, rest=rest, rng=0)
        rel = np.abs(np.expm1(est - ref))
        rows.append(
            [
                f"L{layer} H{head}",
                f"{lsh:.3f}",
                f"{rand:.3f}",
                f"{np.median(rel):.3g}",
                f"{rel.max():.3g}",
            ]
        )
        ctx.step(f"layer {layer} head {head}")
    med = [float(np.median([float(r[i]) for r in spec])) for i in (3, 4, 6, 7)]
    ctx.report(
        f"real heads, median spectral ratio over heads: hyper (block {block}, m = {m}) / "
        f"+ universal set (eps 0.1) as global keys / LevAttention top-{block + m} / "
        f"LevAttention top-{block + m - 17} + window 8",
        "HyperAttention Thm 1; LevAttention (no softmax guarantee)",
        " / ".join(f"{v:.3f}" for v in med),
        note=f"alpha in [{min(float(r[1]) for r in spec):.3g}, "
        f"{max(float(r[1]) for r in spec):.3g}], kappa in "
        f"[{min(float(r[2]) for r in spec):.3g}, {max(float(r[2]) for r in spec):.3g}]",
    )
    med_ys = {
        y: float(np.median([float(r[8 + i]) for r in spec])) for i, y in enumerate(YARDSTICKS)
    }
    for name, value in zip(
        ("hyper", "hyper + U", f"lev top-{block + m}", "lev + window"), med, strict=True
    ):
        ctx.report(
            f"real heads, median spectral ratio of {name} against the yardsticks' medians "
            f"({' / '.join(YARDSTICKS)}, window {block})",
            "design notes 5: every error next to its yardsticks",
            f"{value:.3f}",
            note=versus_yardsticks(value, med_ys),
        )
    ctx.table(
        "per head: assumptions and spectral ratios",
        [
            "layer/head",
            "alpha",
            "kappa",
            "hyper",
            "hyper + U",
            "|U|",
            f"lev top-{block + m}",
            "lev + window",
            *YARDSTICKS,
        ],
        spec,
    )
    lsh_mean = np.mean([float(r[1]) for r in rows])
    rand_mean = np.mean([float(r[2]) for r in rows])
    ctx.report(
        f"real heads: softmax mass in sortLSH diagonal blocks (block {block} of 512) vs a "
        "random order (means over heads)",
        "HyperAttention heavy part",
        f"{lsh_mean:.3f} / {rand_mean:.3f}",
    )
    ctx.report(
        f"real heads: ApproxD max relative row-sum error (m = {m}, block {block}), worst head",
        "HyperAttention Alg. 2 (no constants)",
        max(float(r[4]) for r in rows),
        note=f"median over heads of the per-head median: "
        f"{np.median([float(r[3]) for r in rows]):.3g}",
    )
    ctx.table(
        "per head: sortLSH block mass / random-order block mass / ApproxD median and max "
        "relative error",
        ["layer/head", "LSH block mass", "random block mass", "ApproxD median", "ApproxD max"],
        rows,
    )
    fig, axes = figure(1, width=7.5)
    ax = axes[0]
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [float(r[1]) for r in rows], width=0.4, label="sortLSH blocks")
    ax.bar(x + 0.2, [float(r[2]) for r in rows], width=0.4, label="random blocks")
    ax.set_xticks(x, [r[0] for r in rows], rotation=60, fontsize=7)
    finish(
        ax,
        f"MiniLM heads: softmax mass in the diagonal blocks (block {block})",
        "layer / head",
        "captured softmax mass",
    )
    ctx.figure(
        "real_hyper",
        fig,
        "sortLSH's heavy part on real heads: softmax mass captured by "
        "the rank-aligned blocks, against a random order.",
    )
