"""Attention solvers: exact (blockwise, log-sum-exp), HyperAttention, LevAttention, and the
spectral-norm error check; :func:`merge_partials` combines partial softmaxes in log space."""

from .merge import merge_partials

__all__ = ["merge_partials"]
