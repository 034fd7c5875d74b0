"""Fuzz suite over the public API of ``sketchla`` (hypothesis).

Every public function and operator of ``sketchla.__all__`` is called with random shapes (n = 1,
d = 1, n not a power of two, tall and wide), dtypes (float16/32/64, int8/int64, bool,
complex128), memory layouts (C, F, strided views), values (NaN, +-inf, huge values near the
dtype's maximum, large values whose squares overflow (~5e154 in float64), denormals, all
zeros, repeated rows, rank-deficient) and argument ranges (including invalid ones). The
property, for every call:

* it returns a finite result of the documented shape and dtype (the policy of
  :mod:`sketchla._backend`: float64 -> float64, float32 -> float32, float16 -> float32,
  bool/int -> float64; several array inputs -> their common type; index outputs int64), or
* it raises ValueError / TypeError whose message names one of the arguments of the call.
  Complex input must raise TypeError and NaN/inf input ValueError, naming that input.

Anything else (another exception type, a numba TypingError, NaN in the output, a wrong dtype
or shape) fails. Sizes are tiny (n, d <= 12). Examples per test: 300 in CI (15 fuzz tests,
derandomised as in the "ci" profile of ``tests/conftest.py``: 4500 examples, about 11 s).
Issue 20 added ndarray subclasses (np.matrix, a user subclass), big-endian and masked input,
concurrent calls (bit-identical results, BLAS threads restored) and failed StreamingLeverage
updates (the stream must end where the good blocks alone lead). Run against the library
before the fixes this suite led to, 300 examples failed 5 of its
tests and the profile's 40 only 3; the thorough runs failed 9 (all fixed since);
``HYPOTHESIS_PROFILE=thorough`` runs 1000 random examples per test on demand (about 35 s).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sketchla

DTYPES = (np.float64, np.float32, np.float16, np.int64, np.int8, np.bool_, np.complex128)
VALUE_KINDS = (
    "normal",
    "normal",
    "normal",
    "nan",
    "inf",
    "-inf",
    "huge",
    "large",
    "denormal",
    "zeros",
    "repeated",
    "rank1",
)
LAYOUTS = ("C", "F", "strided")


class Input:
    """A drawn array and what the library must do with it."""

    def __init__(self, array: np.ndarray, kind: str) -> None:
        self.array = array
        self.kind = kind

    def __repr__(self) -> str:
        a = self.array
        return f"Input({self.kind}, {a.dtype}, shape={a.shape}, strides={a.strides}, {a!r})"

    @property
    def complex(self) -> bool:
        return self.array.dtype.kind == "c"

    @property
    def nonfinite(self) -> bool:
        return self.array.dtype.kind in "fc" and not np.isfinite(self.array).all()

    @property
    def compute_dtype(self):
        dt = self.array.dtype
        if dt in (np.float32, np.float64):
            return dt
        if dt == np.float16:
            return np.dtype(np.float32)
        return np.dtype(np.float64)


def _values(rng: np.random.Generator, shape, dtype, kind: str) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        return rng.integers(-5, 6, size=shape).astype(dtype)
    A = rng.standard_normal(shape)
    if kind == "zeros":
        A[...] = 0.0
    elif kind == "repeated" and A.ndim >= 2:
        A[...] = A[..., :1, :]
    elif kind == "rank1" and A.ndim >= 2:
        A = rng.standard_normal((*shape[:-1], 1)) * rng.standard_normal(shape[-1])
    A = A.astype(dtype)
    finfo = np.finfo(dtype)
    if kind == "huge":
        A *= dtype.type(finfo.max / 8)
    elif kind == "large":  # finite, but squares and products overflow
        A *= dtype.type(4 * np.sqrt(finfo.max))
    elif kind == "denormal":
        A = np.sign(A).astype(dtype) * finfo.smallest_subnormal
    elif kind in ("nan", "inf", "-inf"):
        bad = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}[kind]
        A.flat[rng.integers(A.size)] = bad
    if dtype.kind == "c":
        with np.errstate(invalid="ignore"):  # inf * 1j
            A = A + 1j * A
    return A


def _layout(A: np.ndarray, layout: str) -> np.ndarray:
    if layout == "F":
        return np.asfortranarray(A)
    if layout == "strided" and A.ndim >= 1:
        wide = np.zeros((*A.shape[:-1], 2 * A.shape[-1]), dtype=A.dtype)
        wide[..., ::2] = A
        return wide[..., ::2]
    return np.ascontiguousarray(A)


@st.composite
def arrays(draw, shape, dtypes=DTYPES, kinds=VALUE_KINDS):
    """An Input of ``shape`` with a drawn dtype, value kind and layout."""
    dtype = draw(st.sampled_from(dtypes))
    kind = draw(st.sampled_from(kinds))
    seed = draw(st.integers(0, 2**32 - 1))
    layout = draw(st.sampled_from(LAYOUTS))
    A = _values(np.random.default_rng(seed), shape, dtype, kind)
    return Input(_layout(A, layout), kind)


#: examples per fuzz test: 300 in CI (the "ci" profile's 40 missed most of the bugs this suite
#: found), the profile's count when larger ("thorough": 1000)
FUZZ_EXAMPLES = max(300, settings().max_examples)
fuzz = settings(max_examples=FUZZ_EXAMPLES)

dims = st.integers(1, 12)
seeds = st.integers(0, 2**63 - 1)


def _names_an_argument(message: str, names) -> bool:
    return any(re.search(rf"(?<![A-Za-z_]){re.escape(n)}(?![A-Za-z_])", message) for n in names)


def run(call, names, inputs=(), check=None):
    """Run ``call()``; enforce the contract of the module docstring.

    ``names``: the arguments of the call (an error must name one); ``inputs``: mapping of
    argument name -> Input (complex -> TypeError, NaN/inf -> ValueError naming it);
    ``check(result)``: asserts shape, dtype and finiteness of a returned result.
    """
    inputs = dict(inputs)
    complex_ = [n for n, x in inputs.items() if x.complex]
    nonfinite = [n for n, x in inputs.items() if x.nonfinite and not x.complex]
    try:
        result = call()
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        assert type(exc).__module__ == "builtins", f"{type(exc)}: {msg}"
        assert _names_an_argument(msg, names), f"message names no argument of {names}: {msg}"
        if complex_ and isinstance(exc, ValueError) and not nonfinite:
            # the complex check may come after a shape/range check on another argument
            assert not _names_an_argument(msg, complex_), msg
        return None
    assert not complex_, f"complex input {complex_} was accepted"
    assert not nonfinite, f"non-finite input {nonfinite} was accepted"
    if check is not None:
        check(result)
    return result


def finite_array(shape, dtype):
    def check(out):
        assert isinstance(out, np.ndarray), type(out)
        assert out.shape == tuple(shape), (out.shape, shape)
        assert out.dtype == np.dtype(dtype), (out.dtype, dtype)
        assert np.isfinite(out).all(), out

    return check


def common(*inputs: Input):
    return np.result_type(*(x.compute_dtype for x in inputs))


# -- sketching operators ----------------------------------------------------------------------

OPERATORS = {
    "gaussian": sketchla.GaussianSketch,
    "srht": sketchla.SRHT,
    "countsketch": sketchla.CountSketch,
    "sparse_sign": sketchla.SparseSign,
}


@fuzz
@given(
    kind=st.sampled_from(sorted(OPERATORS)),
    m=st.integers(-1, 14),
    n=dims,
    d=dims,
    vector=st.booleans(),
    seed=seeds,
    data=st.data(),
)
def test_operator_forward_and_adjoint(kind, m, n, d, vector, seed, data):
    """S @ A (m, d) and S.T @ Y (n, d) and B @ S.T (p, m), in the input's compute dtype."""
    try:
        S = OPERATORS[kind](m, n, rng=seed)
    except ValueError as exc:
        assert m < 1 or (kind == "srht" and m > n), exc
        assert _names_an_argument(str(exc), ["m", "n"]), exc
        return
    assert m >= 1 and not (kind == "srht" and m > n)
    shape = (n,) if vector else (n, d)
    A = data.draw(arrays(shape))
    run(lambda: S @ A.array, ["A"], {"A": A}, finite_array((m, *shape[1:]), A.compute_dtype))
    Y = data.draw(arrays((m,) if vector else (m, d)))
    out_shape = (n,) if vector else (n, d)
    run(lambda: S.T @ Y.array, ["Y"], {"Y": Y}, finite_array(out_shape, Y.compute_dtype))
    B = data.draw(arrays((d, n)))
    run(lambda: B.array @ S.T, ["B.T", "B"], {"B.T": B}, finite_array((d, m), B.compute_dtype))


@fuzz
@given(
    kind=st.sampled_from([*sorted(OPERATORS), "fft"]),
    m=st.integers(0, 14),
    n=dims,
    d=dims,
    nnz=st.none() | st.integers(0, 10),
    seed=seeds,
    data=st.data(),
)
def test_sketch(kind, m, n, d, nnz, seed, data):
    A = data.draw(arrays((n, d)))
    params = {"nnz_per_col": nnz} if kind == "sparse_sign" else {}
    run(
        lambda: sketchla.sketch(A.array, m, kind=kind, rng=seed, **params),
        ["A", "m", "n", "kind", "nnz_per_col"],
        {"A": A},
        finite_array((m, d), A.compute_dtype),
    )


# -- scores -----------------------------------------------------------------------------------


def scores_check(n, dtype, upper=1.0):
    base = finite_array((n,), dtype)

    def check(out):
        base(out)
        tol = 1e-5 if np.dtype(dtype) == np.float32 else 1e-9
        assert out.min() >= -tol, out
        if upper is not None:
            assert out.max() <= upper + tol, out

    return check


def index_set_check(n):
    def check(out):
        assert isinstance(out, np.ndarray) and out.dtype == np.int64 and out.ndim == 1
        assert np.all(np.diff(out) > 0), out
        assert out.size == 0 or (out[0] >= 0 and out[-1] < n), out

    return check


@fuzz
@given(
    n=dims,
    d=dims,
    method=st.sampled_from(["qr", "svd", "sketch", "lu"]),
    ridge=st.sampled_from([0.0, 0.0, 1e-3, 1.0, -1.0, np.nan]),
    seed=seeds,
    data=st.data(),
)
def test_leverage_scores(n, d, method, ridge, seed, data):
    A = data.draw(arrays((n, d)))
    upper = 1.0 if method != "sketch" else None
    run(
        lambda: sketchla.leverage_scores(A.array, method=method, ridge=ridge, rng=seed),
        ["A", "method", "ridge", "sketch_size"],
        {"A": A},
        scores_check(n, A.compute_dtype, upper),
    )


@fuzz
@given(
    n=dims,
    d=dims,
    ridge=st.sampled_from([1e-6, 1.0, 0.0, -1.0]),
    block=st.integers(0, 5),
    data=st.data(),
)
def test_online_leverage_scores(n, d, ridge, block, data):
    A = data.draw(arrays((n, d)))
    run(
        lambda: sketchla.online_leverage_scores(A.array, ridge=ridge, block_size=block),
        ["A", "ridge", "block_size"],
        {"A": A},
        scores_check(n, A.compute_dtype, upper=None),
    )


@fuzz
@given(
    n=dims,
    d=dims,
    p=st.sampled_from([0.5, 1.0, 2.0, 3.0, 4.0, 0.0, -1.0]),
    data=st.data(),
)
def test_lewis_weights(n, d, p, data):
    A = data.draw(arrays((n, d)))
    run(
        lambda: sketchla.lewis_weights(A.array, p, max_iter=50),
        ["A", "p"],
        {"A": A},
        scores_check(n, A.compute_dtype),
    )


@fuzz
@given(
    n=dims,
    d=st.integers(1, 4),
    p=st.sampled_from([0.5, 1.0, 2.0, 3.0, 4.0, 0.0]),
    method=st.sampled_from(["lewis", "lift", "best", "other"]),
    data=st.data(),
)
def test_sensitivity_bounds(n, d, p, method, data):
    A = data.draw(arrays((n, d)))
    run(
        lambda: sketchla.sensitivity_bounds(A.array, p, method=method, max_iter=50),
        ["A", "p", "method"],
        {"A": A},
        scores_check(n, A.compute_dtype),
    )


@fuzz
@given(
    n=dims,
    d=st.integers(1, 4),
    eps=st.sampled_from([0.05, 0.3, 1.0, 0.0, 1.5]),
    p=st.sampled_from([1.0, 2.0, 3.0, 4.0]),
    method=st.sampled_from(["exact", "sketch", "streaming"]),
    causal=st.booleans(),
    seed=seeds,
    data=st.data(),
)
def test_universal_set(n, d, eps, p, method, causal, seed, data):
    K = data.draw(arrays((n, d)))
    run(
        lambda: sketchla.universal_set(K.array, eps, p=p, method=method, causal=causal, rng=seed),
        ["K", "eps", "p", "method", "causal", "sketch_size"],
        {"K": K},
        index_set_check(n),
    )


@fuzz
@given(
    d=dims,
    eps=st.sampled_from([0.05, 0.5, 1.0, 0.0]),
    mode=st.sampled_from(["exact", "merge", "other"]),
    sizes=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    data=st.data(),
)
def test_streaming_leverage(d, eps, mode, sizes, data):
    try:
        s = sketchla.StreamingLeverage(d, eps, mode=mode)
    except ValueError as exc:
        assert _names_an_argument(str(exc), ["eps", "mode"]), exc
        return
    n = 0
    for b in sizes:
        block = data.draw(arrays((b, d)))
        if run(lambda blk=block: s.update(blk.array), ["block"], {"block": block}) is None:
            return  # a rejected block: the stream is abandoned
        n += b
    index_set_check(n)(s.universal_set())


# -- LSH ----------------------------------------------------------------------------------------


@fuzz
@given(
    d=dims,
    n=dims,
    n_bits=st.integers(0, 66),
    lead=st.sampled_from([(), (2,)]),
    seed=seeds,
    data=st.data(),
)
def test_simhash(d, n, n_bits, lead, seed, data):
    try:
        h = sketchla.SimHash(d, n_bits, rng=seed)
    except ValueError as exc:
        assert not 1 <= n_bits <= 64 and "n_bits" in str(exc)
        return
    X = data.draw(arrays((*lead, n, d)))

    def check_codes(codes):
        assert codes.dtype == np.uint64 and codes.shape == (*lead, n)
        assert n_bits == 64 or codes.max() < 2**n_bits

    def check_order(order):
        assert order.dtype == np.int64 and order.shape == (*lead, n)
        assert np.array_equal(np.sort(order, axis=-1), np.broadcast_to(np.arange(n), order.shape))

    run(lambda: h.codes(X.array), ["X"], {"X": X}, check_codes)
    run(lambda: h.sort_order(X.array), ["X"], {"X": X}, check_order)


# -- KDE / AMM ---------------------------------------------------------------------------------


@fuzz
@given(
    n_q=dims,
    n_k=dims,
    d=dims,
    block_size=st.integers(0, 8),
    sample_size=st.integers(-1, 8),
    light=st.sampled_from(["uniform", "importance", "control", "none"]),
    replace=st.booleans(),
    kappa=st.sampled_from([None, 4.0, 0.0]),
    seed=seeds,
    data=st.data(),
)
def test_approx_rowsums(n_q, n_k, d, block_size, sample_size, light, replace, kappa, seed, data):
    from sketchla.attention import ControlVariate, Importance, SortLSH, Uniform

    Q, K = data.draw(arrays((n_q, d))), data.draw(arrays((n_k, d)))

    def call():
        rest = {
            "uniform": lambda: Uniform(sample_size, replace=replace),
            "importance": lambda: Importance(sample_size),
            "control": lambda: ControlVariate(sample_size, replace=replace),
            "none": lambda: None,
        }[light]()
        return sketchla.approx_rowsums(
            Q.array, K.array, keys=SortLSH(block_size), rest=rest, rng=seed, kappa=kappa
        )

    run(
        call,
        ["Q", "K", "block_size", "sample_size", "replace", "kappa", "rest"],
        {"Q": Q, "K": K},
        finite_array((n_q,), common(Q, K)),
    )


@fuzz
@given(
    p=dims,
    n=dims,
    q=st.none() | dims,
    m=st.integers(0, 14),
    probs=st.sampled_from(["rownorm", "b_rownorm", "uniform", "weights", "bad"]),
    replace=st.booleans(),
    seed=seeds,
    data=st.data(),
)
def test_approx_matmul(p, n, q, m, probs, replace, seed, data):
    A = data.draw(arrays((p, n)))
    B = data.draw(arrays((n,) if q is None else (n, q)))
    if probs == "weights":
        probs = np.random.default_rng(seed % 2**32).random(n)
    run(
        lambda: sketchla.approx_matmul(A.array, B.array, m, rng=seed, probs=probs, replace=replace),
        ["A", "B", "m", "probs", "replace"],
        {"A": A, "B": B},
        finite_array((p,) if q is None else (p, q), common(A, B)),
    )


# -- attention ---------------------------------------------------------------------------------

ATTENTION_KINDS = (
    "normal",
    "normal",
    "normal",
    "nan",
    "inf",
    "huge",
    "large",
    "zeros",
    "repeated",
    "rank1",
)


@st.composite
def attention_problem(draw, square=False):
    lead = draw(st.sampled_from([(), (), (2,)]))
    n_q, n_k, d, d_v = draw(dims), draw(dims), draw(dims), draw(dims)
    if square:
        n_k = n_q
    # half of the problems share one value kind (logits overflow only when Q and K are large)
    shared = draw(st.sampled_from(ATTENTION_KINDS)) if draw(st.booleans()) else None
    kinds = ATTENTION_KINDS if shared is None else (shared,)
    Q, K, V = (draw(arrays((*lead, *s), kinds=kinds)) for s in ((n_q, d), (n_k, d), (n_k, d_v)))
    return lead, n_q, d_v, Q, K, V


def attention_check(lead, n_q, d_v, dtype, with_lse=False):
    out_check = finite_array((*lead, n_q, d_v), dtype)
    if not with_lse:
        return out_check

    def check(result):
        out, lse = result
        out_check(out)
        finite_array((*lead, n_q), dtype)(lse)

    return check


QKV = ["Q", "K", "V"]


@fuzz
@given(
    problem=attention_problem(),
    causal=st.booleans(),
    scale=st.sampled_from([None, None, 0.5, 0.0, -1.0]),
    block=st.integers(0, 5),
)
def test_attention(problem, causal, scale, block):
    lead, n_q, d_v, Q, K, V = problem
    run(
        lambda: sketchla.exact_attention(
            Q.array,
            K.array,
            V.array,
            causal=causal,
            scale=scale,
            return_lse=True,
            block_q=block or 1024,
            block_k=block,
        ),
        [*QKV, "causal", "scale", "block_k"],
        {"Q": Q, "K": K, "V": V},
        attention_check(lead, n_q, d_v, common(Q, K, V), with_lse=True),
    )


@fuzz
@given(
    problem=attention_problem(),
    causal=st.booleans(),
    block_size=st.integers(0, 6),
    sample_size=st.integers(-1, 6),
    min_seq_len=st.integers(1, 6),
    seed=seeds,
)
def test_hyper_attention(problem, causal, block_size, sample_size, min_seq_len, seed):
    lead, n_q, d_v, Q, K, V = problem
    run(
        lambda: sketchla.hyper_attention(
            Q.array,
            K.array,
            V.array,
            causal=causal,
            block_size=block_size,
            sample_size=sample_size,
            min_seq_len=min_seq_len,
            rng=seed,
            return_lse=True,
        ),
        [*QKV, "causal", "block_size", "sample_size", "min_seq_len"],
        {"Q": Q, "K": K, "V": V},
        attention_check(lead, n_q, d_v, common(Q, K, V), with_lse=True),
    )


@fuzz
@given(
    problem=attention_problem(),
    causal=st.booleans(),
    keys=st.sampled_from(["lsh", "window+sinks", "topnorm", "first+lsh", "none"]),
    size=st.integers(0, 5),
    rest=st.sampled_from(["uniform", "importance", "control", "none"]),
    seed=seeds,
)
def test_approx_attention(problem, causal, keys, size, rest, seed):
    from sketchla.attention import (
        ControlVariate,
        Importance,
        KeyIndices,
        Sinks,
        SortLSH,
        TopNorm,
        Uniform,
        Window,
    )

    lead, n_q, d_v, Q, K, V = problem

    def call():
        selector = {
            "lsh": lambda: SortLSH(size),
            "window+sinks": lambda: Window(size) | Sinks(size),
            "topnorm": lambda: TopNorm(size),
            "first+lsh": lambda: KeyIndices(np.array([0])) | SortLSH(size + 1),
            "none": lambda: None,
        }[keys]()
        light = {
            "uniform": lambda: Uniform(size),
            "importance": lambda: Importance(size),
            "control": lambda: ControlVariate(size),
            "none": lambda: None,
        }[rest]()
        return sketchla.approx_attention(
            Q.array,
            K.array,
            V.array,
            keys=selector,
            rest=light,
            causal=causal,
            rng=seed,
            return_lse=True,
        )

    run(
        call,
        [*QKV, "causal", "keys", "rest", "block_size", "size", "k", "sample_size", "indices"],
        {"Q": Q, "K": K, "V": V},
        attention_check(lead, n_q, d_v, common(Q, K, V), with_lse=True),
    )


@fuzz
@given(
    problem=attention_problem(square=True),
    select=st.sampled_from([("eps", 0.1), ("eps", 1.0), ("k", 2), ("k", 50), ("eps", 0.0)]),
    local_window=st.integers(0, 3),
    kernel=st.sampled_from(["softmax", ("poly", 2), ("poly", 1), ("poly", 3), ("poly", -1)]),
    causal=st.booleans(),
)
def test_lev_attention(problem, select, local_window, kernel, causal):
    lead, n_q, d_v, Q, K, V = problem
    run(
        lambda: sketchla.lev_attention(
            Q.array,
            K.array,
            V.array,
            local_window=local_window,
            kernel=kernel,
            causal=causal,
            **dict([select]),
        ),
        [*QKV, "eps", "k", "kernel", "causal", "local_window"],
        {"Q": Q, "K": K, "V": V},
        attention_check(lead, n_q, d_v, common(Q, K, V)),
    )


@fuzz
@given(problem=attention_problem(), causal=st.booleans(), data=st.data())
def test_spectral_error(problem, causal, data):
    lead, n_q, d_v, Q, K, V = problem
    approx = data.draw(arrays((*lead, n_q, d_v), kinds=ATTENTION_KINDS))

    def check(ratio):
        assert isinstance(ratio, float) and np.isfinite(ratio) and ratio >= 0, ratio

    run(
        lambda: sketchla.spectral_error(Q.array, K.array, V.array, approx.array, causal=causal),
        [*QKV, "approx", "causal"],
        {"Q": Q, "K": K, "V": V, "approx": approx},
        check,
    )


def test_every_public_callable_is_fuzzed():
    """A new public function or operator must get a fuzz test here."""
    fuzzed = {
        "SRHT",
        "CountSketch",
        "GaussianSketch",
        "SparseSign",
        "SketchOperator",  # abstract base: fuzzed through its four subclasses
        "SimHash",
        "StreamingLeverage",
        "approx_attention",
        "approx_matmul",
        "approx_rowsums",
        "attention",
        "exact_attention",  # test_attention
        "hyper_attention",
        "lev_attention",
        "leverage_scores",
        "lewis_weights",
        "online_leverage_scores",
        "sensitivity_bounds",
        "sketch",
        "spectral_error",
        "universal_set",
    }
    public = {n for n in sketchla.__all__ if callable(getattr(sketchla, n))}
    assert public <= fuzzed, sorted(public - fuzzed)


@pytest.mark.parametrize("kind", ["nan", "inf", "-inf"])
def test_fuzz_generator_makes_nonfinite_inputs(kind):
    """The suite's own generator: the bad kinds really hold a bad value."""
    A = _values(np.random.default_rng(0), (3, 2), np.float32, kind)
    assert not np.isfinite(A).all()


# -- issue 20: ndarray subclasses, byte order, concurrency, failed stream updates ---------------
class _Tagged(np.ndarray):
    """A user ndarray subclass that keeps its type through operations (like astropy's
    Quantity or a memmap): must compute like the plain array."""

    def __array_finalize__(self, obj):
        self.tag = getattr(obj, "tag", "tagged")


WRAPPERS = ("matrix", "tagged", "big-endian", "masked", "masked-nomask")


def _wrap(A: np.ndarray, wrapper: str):
    if wrapper == "matrix":
        return np.matrix(A)
    if wrapper == "tagged":
        return A.view(_Tagged)
    if wrapper == "big-endian":
        return A.astype(A.dtype.newbyteorder(">"))
    if wrapper == "masked":
        return np.ma.masked_array(A, mask=np.zeros(A.shape, dtype=bool) | (A > 1))
    return np.ma.masked_array(A)  # no mask at all: still rejected (explicit is better)


#: public entry points of one (n, d) matrix argument named A or K or X
MATRIX_CALLS = {
    "leverage_scores": (
        lambda A, r: sketchla.leverage_scores(A, method=r.choice(["qr", "svd"])),
        "A",
    ),
    "leverage sketch": (lambda A, r: sketchla.leverage_scores(A, method="sketch", rng=1), "A"),
    "online": (lambda A, r: sketchla.online_leverage_scores(A, ridge=1.0), "A"),
    "lewis_weights": (lambda A, r: sketchla.lewis_weights(A, r.choice([1.0, 3.0])), "A"),
    "sensitivity": (lambda A, r: sketchla.sensitivity_bounds(A, 3.0), "A"),
    "universal_set": (lambda A, r: sketchla.universal_set(A, 0.3), "K"),
    "streaming": (
        lambda A, r: sketchla.StreamingLeverage(A.shape[1], 0.3).update(A).universal_set(),
        "block",
    ),
    "SimHash.codes": (lambda A, r: sketchla.SimHash(A.shape[1], 5, rng=2).codes(A), "X"),
    "SimHash.project": (lambda A, r: sketchla.SimHash(A.shape[1], 5, rng=2).project(A), "X"),
    "S @ A": (lambda A, r: OPERATORS[r.choice(sorted(OPERATORS))](3, A.shape[0], rng=3) @ A, "A"),
    "B @ S.T": (lambda A, r: A @ sketchla.CountSketch(3, A.shape[1], rng=3).T, "B"),
    "sketch": (lambda A, r: sketchla.sketch(A, 3, kind="sparse_sign", rng=4), "A"),
}


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix itself
@fuzz
@given(
    call=st.sampled_from(sorted(MATRIX_CALLS)),
    wrapper=st.sampled_from(WRAPPERS),
    n=dims,
    d=dims,
    dtype=st.sampled_from([np.float64, np.float32]),
    seed=st.integers(0, 2**32 - 1),
)
def test_subclasses_and_byte_order(call, wrapper, n, d, dtype, seed):
    """np.matrix, a user subclass and big-endian input give bit for bit the answer of the plain
    native array (or the same error); masked arrays raise TypeError naming the argument."""
    fn, name = MATRIX_CALLS[call]
    A = np.random.default_rng(seed).standard_normal((n, d)).astype(dtype)
    choice = np.random.default_rng(seed)
    try:
        expected = fn(A, choice)
    except (ValueError, TypeError) as exc:
        expected = exc
    wrapped = _wrap(A, wrapper)
    choice = np.random.default_rng(seed)
    if wrapper.startswith("masked"):
        with pytest.raises(TypeError, match=rf"{name} is a numpy masked array"):
            fn(wrapped, choice)
        return
    if isinstance(expected, Exception):
        with pytest.raises(type(expected)):
            fn(wrapped, choice)
        return
    got = fn(wrapped, choice)
    assert type(got) is type(expected), (type(got), type(expected))
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=min(FUZZ_EXAMPLES, 25))
@given(
    call=st.sampled_from(sorted(MATRIX_CALLS)),
    n=st.integers(1, 60),
    d=dims,
    seed=st.integers(0, 2**32 - 1),
)
def test_concurrent_calls(call, n, d, seed):
    """Six threads making the same call concurrently each get the serial answer bit for bit,
    and the process's BLAS thread count is unchanged afterwards (serial_blas is shared)."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_info

    def blas_threads():
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    fn, _ = MATRIX_CALLS[call]
    A = np.random.default_rng(seed).standard_normal((n, d))
    before = blas_threads()
    try:
        expected = fn(A, np.random.default_rng(seed))
    except (ValueError, TypeError):
        return
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: fn(A, np.random.default_rng(seed)), range(6)))
    for r in results:
        np.testing.assert_array_equal(r, expected)
    assert blas_threads() == before


BAD_BLOCKS = ("good", "good", "good", "nan", "inf", "overflow", "wrong-d", "complex", "masked")


@fuzz
@given(
    d=st.integers(1, 6),
    eps=st.floats(0.05, 1.0),
    mode=st.sampled_from(["exact", "merge"]),
    blocks=st.lists(
        st.tuples(st.integers(1, 30), st.sampled_from(BAD_BLOCKS), st.integers(0, 2**32 - 1)),
        min_size=1,
        max_size=6,
    ),
)
def test_failed_stream_updates(d, eps, mode, blocks):
    """A StreamingLeverage fed good and bad blocks (errors caught) ends exactly where one fed
    the good blocks only does: a failed update changes nothing (issue 20, defect 3)."""
    s = sketchla.StreamingLeverage(d, eps, mode=mode)
    clean = sketchla.StreamingLeverage(d, eps, mode=mode)
    good = []
    for rows, kind, seed in blocks:
        rng = np.random.default_rng(seed)
        B = rng.standard_normal((rows, d)) * rng.lognormal(0, 2, (rows, 1))
        if kind == "good":
            s.update(B)
            clean.update(B)
            good.append(B)
            continue
        if kind == "nan":
            B[rng.integers(rows), rng.integers(d)] = np.nan
        elif kind == "inf":
            B[-1, -1] = np.inf
        elif kind == "overflow":
            B[-1] = 1e300  # squares overflow the Gram (merge mode scales and accepts it)
        elif kind == "wrong-d":
            B = rng.standard_normal((rows, d + 1))
        elif kind == "complex":
            B = B + 1j
        elif kind == "masked":
            B = np.ma.masked_array(B)
        n_seen, held = s.n_seen, s.n_candidates
        try:
            s.update(B)
        except (ValueError, TypeError) as exc:
            assert "block" in str(exc), str(exc)
            assert (s.n_seen, s.n_candidates) == (n_seen, held)
            continue
        assert kind == "overflow" and mode == "merge", kind
        clean.update(B)
        good.append(B)
    assert s.n_seen == clean.n_seen == sum(len(B) for B in good)
    np.testing.assert_array_equal(s.universal_set(), clean.universal_set())
