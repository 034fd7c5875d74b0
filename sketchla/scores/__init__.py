"""Leverage scores and LevAttention's universal key set."""

from .leverage import leverage_scores, online_leverage_scores
from .streaming import StreamingLeverage
from .universal import universal_set

__all__ = ["StreamingLeverage", "leverage_scores", "online_leverage_scores", "universal_set"]
