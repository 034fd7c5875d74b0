"""sketchla: randomized numerical linear algebra, from sketches to near-linear-time attention.

Sketching operators (:class:`GaussianSketch`, :class:`SRHT`, :class:`CountSketch`,
:class:`SparseSign`) are seeded through the counter-based generator of :mod:`sketchla.random`:
the same seed gives the same operator in every call, process and thread count.
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from . import distributed, random
from .attention import (
    approx_attention,
    approx_rowsums,
    exact_attention,
    hyper_attention,
    lev_attention,
    spectral_error,
)
from .lsh import SimHash
from .operators import SRHT, CountSketch, GaussianSketch, SketchOperator, SparseSign, sketch
from .sampling import approx_matmul
from .scores import (
    StreamingLeverage,
    leverage_scores,
    lewis_weights,
    online_leverage_scores,
    sensitivity_bounds,
    universal_set,
)

try:
    __version__ = _version("sketchla")
except _PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "SRHT",
    "CountSketch",
    "GaussianSketch",
    "SimHash",
    "SketchOperator",
    "SparseSign",
    "StreamingLeverage",
    "__version__",
    "approx_attention",
    "approx_matmul",
    "approx_rowsums",
    "distributed",
    "exact_attention",
    "hyper_attention",
    "lev_attention",
    "leverage_scores",
    "lewis_weights",
    "online_leverage_scores",
    "random",
    "sensitivity_bounds",
    "sketch",
    "spectral_error",
    "universal_set",
]
