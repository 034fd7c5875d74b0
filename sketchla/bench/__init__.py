"""Side-by-side benchmarks (``sketchla bench SUITE``): medians and ratios, never asserted."""

from . import attention, dask, lsh, scaling, scores, sketch
from ._timing import machine_summary

SUITES = {
    "sketch": sketch,
    "scores": scores,
    "scaling": scaling,
    "dask": dask,
    "attention": attention,
    "lsh": lsh,
}

__all__ = ["SUITES", "machine_summary"]
