"""Attention: exact attention, the engine (exact key selectors + light estimators, merged in log
space), its presets HyperAttention, LevAttention and ApproxD, and the spectral-norm error.

Where things go: a new way to choose keys is a :class:`KeySelector` in ``selectors.py``; a new
estimate of the rest is a :class:`LightEstimator` in ``estimators.py``; both are evaluated by
``engine.py`` through the one tile kernel of ``_tiles.py``.
"""

from .engine import AttentionResult, approx_attention
from .errors import spectral_error
from .estimators import ControlVariate, Importance, LightEstimator, Uniform
from .exact import exact_attention
from .hyper import hyper_attention
from .lev import lev_attention
from .partial import Partial, merge_partials
from .rowsums import RowSums, approx_rowsums
from .selectors import (
    KeyIndices,
    KeySelector,
    KeyUnion,
    MultiRoundLSH,
    Sinks,
    SortLSH,
    TopBlocks,
    TopNorm,
    UniversalSet,
    Window,
    parse_kernel,
)

__all__ = [
    "AttentionResult",
    "ControlVariate",
    "Importance",
    "KeyIndices",
    "KeySelector",
    "KeyUnion",
    "LightEstimator",
    "MultiRoundLSH",
    "Partial",
    "RowSums",
    "Sinks",
    "SortLSH",
    "TopBlocks",
    "TopNorm",
    "Uniform",
    "UniversalSet",
    "Window",
    "approx_attention",
    "approx_rowsums",
    "exact_attention",
    "hyper_attention",
    "lev_attention",
    "merge_partials",
    "parse_kernel",
    "spectral_error",
]
