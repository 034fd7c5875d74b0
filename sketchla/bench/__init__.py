"""Side-by-side benchmarks (``sketchla bench SUITE``): medians and ratios, never asserted."""

from . import attention, dask, lsh, scores, sketch

SUITES = {"sketch": sketch, "scores": scores, "dask": dask, "attention": attention, "lsh": lsh}

__all__ = ["SUITES"]
