"""Sampling: seeded index samplers and the approximate matrix product built on them."""

from .amm import approx_matmul
from .draws import Samples, defensive_mixture, draw_samples

__all__ = ["Samples", "approx_matmul", "defensive_mixture", "draw_samples"]
