"""Approximate matrix products by sampling (moving to :mod:`sketchla.sampling`)."""

from .amm import approx_matmul

__all__ = ["approx_matmul"]
