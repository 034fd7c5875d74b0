"""sketchla: randomized numerical linear algebra, from sketches to near-linear-time attention.

Sketching operators (:class:`GaussianSketch`, :class:`SRHT`, :class:`CountSketch`,
:class:`SparseSign`) are seeded through the counter-based generator of :mod:`sketchla.random`:
the same seed gives the same operator in every call, process and thread count.
"""

from importlib.metadata import PackageNotFoundError, version

from . import random
from .scores import StreamingLeverage, leverage_scores, online_leverage_scores, universal_set
from .sketch import SRHT, CountSketch, GaussianSketch, SketchOperator, SparseSign, sketch

try:
    __version__ = version("sketchla")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "SRHT",
    "CountSketch",
    "GaussianSketch",
    "SketchOperator",
    "SparseSign",
    "StreamingLeverage",
    "__version__",
    "leverage_scores",
    "online_leverage_scores",
    "random",
    "sketch",
    "universal_set",
]
