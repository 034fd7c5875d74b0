"""Leverage scores, Lewis weights, lp-sensitivity bounds and LevAttention's universal key set."""

from .causal import prefix_leverage_scores
from .leverage import leverage_scores, numerical_rank, online_leverage_scores
from .lewis import LewisInfo, lewis_weights, sensitivity_bounds
from .streaming import StreamingLeverage
from .universal import THRESHOLD_SLACK, universal_set

__all__ = [
    "THRESHOLD_SLACK",
    "LewisInfo",
    "StreamingLeverage",
    "leverage_scores",
    "lewis_weights",
    "numerical_rank",
    "online_leverage_scores",
    "prefix_leverage_scores",
    "sensitivity_bounds",
    "universal_set",
]
