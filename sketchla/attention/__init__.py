"""Attention solvers: exact (blockwise, log-sum-exp), HyperAttention, LevAttention, and the
spectral-norm error check; :func:`merge_partials` combines partial softmaxes in log space."""

from .errors import spectral_error
from .exact import exact_attention
from .hyper import hyper_attention
from .lev import lev_attention
from .merge import merge_partials

__all__ = [
    "exact_attention",
    "hyper_attention",
    "lev_attention",
    "merge_partials",
    "spectral_error",
]
