"""Sampling: seeded index samplers and the approximate matrix product built on them."""

from .draws import Samples, defensive_mixture, draw_samples

__all__ = ["Samples", "defensive_mixture", "draw_samples"]
