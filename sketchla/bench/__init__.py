"""Side-by-side benchmarks (``sketchla bench SUITE``): medians and ratios, never asserted."""

from . import scores, sketch

SUITES = {"sketch": sketch, "scores": scores}

__all__ = ["SUITES"]
