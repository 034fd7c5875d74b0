"""Side-by-side benchmarks (``sketchla bench SUITE``): medians and ratios, never asserted."""

from . import sketch

SUITES = {"sketch": sketch}

__all__ = ["SUITES"]
