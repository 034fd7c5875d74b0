"""torch tensors in, torch tensors out (sketchla/_torch.py): every public function that takes
arrays, in float32 / float64 / float16 / bfloat16; no copy of contiguous float32 CPU tensors;
clear errors for CUDA tensors and tensors that require grad; torch imported only when a
tensor is passed."""

import subprocess
import sys
import types

import numpy as np
import pytest

import sketchla
from sketchla import _torch
from sketchla.attention import AttentionResult, RowSums, Uniform, Window

torch = pytest.importorskip("torch")

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def _data(seed, *shape):
    """Multiples of 1/16 in [-3, 3]: exact in every dtype, so that the float32 NumPy view of
    a float32, float16 or bfloat16 tensor holds the same numbers (one reference for all)."""
    return torch.from_numpy(np.random.default_rng(seed).integers(-48, 49, shape) / 16)


def _inputs(dtype):
    """Tensors of ``dtype`` for every case."""
    t = {
        "A": _data(0, 100, 5),
        "B": _data(1, 100, 3),
        "Y": _data(2, 40, 3),
        "W": _data(3, 5, 100),
        "Q": _data(4, 2, 2, 64, 8),
        "K": _data(5, 2, 2, 64, 8),
        "V": _data(6, 2, 2, 64, 8),
    }
    t["P"] = 0.75 * t["V"]  # an "approximation" for spectral_error (exact in bfloat16)
    return {k: v.to(dtype) for k, v in t.items()}


S = sketchla.CountSketch(40, 100, rng=0)
H = sketchla.SimHash(8, 5, rng=0)

#: name -> f(inputs) -> result; called once with tensors and once with their NumPy views
CASES = {
    "S @ A": lambda x: S @ x["A"],
    "A.T @ S.T": lambda x: x["A"].T @ S.T,
    "S.T @ Y": lambda x: S.T @ x["Y"],
    "W @ S.T": lambda x: x["W"] @ S.T,
    "Y.T @ S": lambda x: x["Y"].T @ S,
    "sketch srht": lambda x: sketchla.sketch(x["A"], 32, kind="srht", rng=1),
    "leverage_scores": lambda x: sketchla.leverage_scores(x["A"]),
    "leverage_scores sketch": lambda x: sketchla.leverage_scores(x["A"], method="sketch", rng=0),
    "online_leverage_scores": lambda x: sketchla.online_leverage_scores(x["A"], ridge=1e-3),
    "prefix_leverage_scores": lambda x: sketchla.scores.prefix_leverage_scores(x["A"]),
    "lewis_weights": lambda x: sketchla.lewis_weights(x["A"], p=3),
    "sensitivity_bounds": lambda x: sketchla.sensitivity_bounds(x["A"], p=3),
    "universal_set": lambda x: sketchla.universal_set(x["A"], eps=0.04),
    "S.apply": lambda x: S.apply(x["A"]),
    "SimHash.project": lambda x: H.project(x["Q"]),
    "SimHash.codes": lambda x: H.codes(x["Q"]),
    "mips_augment": lambda x: sketchla.lsh.mips_augment(x["Q"], x["K"]),
    "SimHash.sort_order": lambda x: H.sort_order(x["Q"]),
    "approx_matmul": lambda x: sketchla.approx_matmul(x["A"].T, x["B"], 50, rng=0),
    "exact_attention": lambda x: sketchla.exact_attention(x["Q"], x["K"], x["V"], causal=True),
    "exact_attention lse": lambda x: sketchla.exact_attention(
        x["Q"], x["K"], x["V"], return_lse=True
    ),
    "approx_attention": lambda x: sketchla.approx_attention(
        x["Q"],
        x["K"],
        x["V"],
        keys=Window(16),
        rest=Uniform(16),
        causal=True,
        rng=0,
        return_lse=True,
    ),
    "hyper_attention": lambda x: sketchla.hyper_attention(
        x["Q"], x["K"], x["V"], block_size=16, sample_size=16, rng=0
    ),
    "lev_attention": lambda x: sketchla.lev_attention(
        x["Q"], x["K"], x["V"], k=16, local_window=4, rng=0
    ),
    "approx_rowsums": lambda x: sketchla.approx_rowsums(x["Q"], x["K"], rng=0, return_stderr=True),
    "spectral_error": lambda x: sketchla.spectral_error(x["Q"], x["K"], x["V"], x["P"]),
}


def _numpy_view(t):
    return (t.float() if t.dtype in (torch.float16, torch.bfloat16) else t).numpy()


def _check_same(out, ref, dtype):
    """``out`` (torch) is ``ref`` (NumPy) brought to torch: same structure and type, floating
    arrays in ``dtype``, integer arrays in their own dtype, other values unchanged."""
    if isinstance(ref, np.ndarray):
        assert isinstance(out, torch.Tensor) and out.device.type == "cpu"
        expected = torch.from_numpy(np.array(ref))
        if expected.is_floating_point():
            assert out.dtype == dtype
            expected = expected.to(dtype)
        else:
            assert out.dtype == expected.dtype
        torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-7)
    elif isinstance(ref, tuple):
        assert type(out) is type(ref) and len(out) == len(ref)
        for o, r in zip(out, ref, strict=True):
            _check_same(o, r, dtype)
    else:
        assert type(out) is type(ref)
        np.testing.assert_allclose(out, ref, rtol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", list(CASES))
def test_torch_in_torch_out(case, dtype):
    x = _inputs(dtype)
    out = CASES[case](x)
    views = {k: _numpy_view(v) for k, v in x.items()}
    key = (case, views["A"].dtype)  # float32 views of float32/16 and bfloat16 tensors agree
    if key not in _REFERENCES:
        _REFERENCES[key] = CASES[case](views)
    _check_same(out, _REFERENCES[key], dtype)


_REFERENCES: dict = {}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_streaming_leverage_takes_tensor_blocks(dtype):
    A = _inputs(dtype)["A"]
    stream = sketchla.StreamingLeverage(5, eps=0.1)
    for block in A.split(30):
        stream.update(block)
    ref = sketchla.StreamingLeverage(5, eps=0.1).update(_numpy_view(A))
    np.testing.assert_array_equal(stream.universal_set(), ref.universal_set())


def test_named_tuples_keep_their_type():
    x = _inputs(torch.float32)
    assert type(CASES["exact_attention lse"](x)) is AttentionResult
    assert type(CASES["approx_attention"](x)) is AttentionResult
    res = CASES["approx_rowsums"](x)
    assert type(res) is RowSums and isinstance(res.log_d, torch.Tensor)


@pytest.mark.parametrize("case", list(CASES))
def test_no_copy_of_contiguous_float32(case, monkeypatch):
    """The array each function receives is the tensor's own memory."""
    seen = []
    convert = _torch.to_numpy

    def spy(t, name):
        arr = convert(t, name)
        seen.append((t, arr))
        return arr

    monkeypatch.setattr(_torch, "to_numpy", spy)
    x = _inputs(torch.float32)
    CASES[case](x)
    assert seen
    for t, arr in seen:
        assert arr.__array_interface__["data"][0] == t.data_ptr()
        assert arr.shape == tuple(t.shape) and arr.dtype == np.float32


def test_no_copy_of_strided_views_either(monkeypatch):
    seen = []
    convert = _torch.to_numpy
    monkeypatch.setattr(_torch, "to_numpy", lambda t, n: seen.append(convert(t, n)) or seen[-1])
    base = torch.randn(2, 64, 2, 8)  # (batch, n, heads, d): transposed to (batch, heads, n, d)
    Q = base.transpose(1, 2)
    out = sketchla.exact_attention(Q, Q, Q)
    assert np.shares_memory(seen[0], base.numpy())
    ref = sketchla.exact_attention(*(Q.contiguous().numpy(),) * 3)
    torch.testing.assert_close(out, torch.from_numpy(ref))


def test_dtype_promotion_and_mixed_inputs():
    x = _inputs(torch.float32)
    Q64 = x["Q"].double()
    out = sketchla.exact_attention(Q64, x["K"], x["V"])
    assert out.dtype == torch.float64
    # a NumPy array next to a tensor: torch out, the promoted dtype
    out = sketchla.exact_attention(x["Q"], x["K"].numpy(), x["V"].numpy())
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    out = sketchla.exact_attention(x["Q"].half(), x["K"].half(), x["V"].half())
    assert out.dtype == torch.float16
    # integer data is computed in float64 (the NumPy policy) and stays float64
    lev = sketchla.leverage_scores(torch.arange(12).reshape(6, 2) ** 2)
    assert lev.dtype == torch.float64
    torch.testing.assert_close(lev.sum(), torch.tensor(2.0, dtype=torch.float64))


class _FakeCudaTensor:
    """Stands in for a CUDA tensor on a machine without one."""

    __module__ = "torch.fake"
    is_cuda = True
    device = types.SimpleNamespace(type="cuda", index=0)
    shape = (4, 3)
    dtype = "float32"

    def __str__(self):
        return "cuda:0"


@pytest.mark.parametrize(
    "call",
    [
        lambda t: sketchla.exact_attention(t, t, t),
        lambda t: sketchla.hyper_attention(t, t, t, rng=0),
        lambda t: sketchla.leverage_scores(t),
        lambda t: sketchla.CountSketch(2, 4, rng=0) @ t,
        lambda t: H.codes(t),
    ],
)
def test_cuda_tensor_is_a_clear_type_error(call):
    with pytest.raises(TypeError, match=r"CUDA tensor.*GPU path.*not built yet.*\.cpu\(\)"):
        call(_FakeCudaTensor())


def test_other_devices_and_layouts_are_type_errors():
    with pytest.raises(TypeError, match="device meta"):
        sketchla.leverage_scores(torch.empty(5, 2, device="meta"))
    with pytest.raises(TypeError, match=r"to_dense\(\)"):
        sketchla.leverage_scores(torch.eye(5).to_sparse())


def test_requires_grad_is_a_clear_type_error():
    Q = torch.randn(16, 4, requires_grad=True)
    with pytest.raises(TypeError, match=r"Q requires grad.*forward-only.*Q\.detach\(\)"):
        sketchla.exact_attention(Q, Q.detach(), Q.detach())
    with pytest.raises(TypeError, match="forward-only"):
        sketchla.CountSketch(4, 16, rng=0) @ torch.nn.Parameter(torch.randn(16, 2))
    with pytest.raises(TypeError, match=r"torch\.no_grad\(\)"):
        sketchla.leverage_scores(Q)
    # what the messages suggest works
    ref = sketchla.exact_attention(*(Q.detach(),) * 3)
    with torch.no_grad():
        torch.testing.assert_close(sketchla.exact_attention(Q, Q, Q), ref)
    with torch.inference_mode():
        torch.testing.assert_close(sketchla.exact_attention(Q * 1, Q * 1, Q * 1), ref)


def test_calls_without_tensors_are_untouched():
    A = np.random.default_rng(0).standard_normal((30, 3))
    assert type(sketchla.leverage_scores(A)) is np.ndarray
    assert sketchla.leverage_scores.__wrapped__.__name__ == "leverage_scores"


def test_decorator_checks_its_names():
    with pytest.raises(ValueError, match="no parameter"):
        _torch.accepts_torch("X")(lambda A: A)


def test_torch_is_imported_only_when_a_tensor_is_passed():
    code = (
        "import sys, numpy as np, sketchla\n"
        "Q = np.ones((2, 8, 4))\n"
        "sketchla.exact_attention(Q, Q, Q); sketchla.leverage_scores(Q[0])\n"
        "sketchla.CountSketch(2, 8, rng=0) @ Q[0]\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
