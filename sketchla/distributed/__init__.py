"""Dask versions: sketches of row-chunked dask arrays, distributed leverage scores and
universal sets. dask is optional (``pip install 'sketchla[dask]'``) and imported only when a
dask array is actually passed.

* ``S @ A`` and ``sketchla.sketch(A, ...)`` with A a dask array return a lazy dask array (the
  hook is registered here with :func:`sketchla.operators._base.register_lazy`); see
  :func:`sketchla.distributed.sketch.dask_forward`. ``S.T @ Y``, ``B @ S.T`` and ``Y @ S``
  with dask inputs are lazy too (:func:`~sketchla.distributed.sketch.dask_adjoint`).
* :func:`leverage_scores` (lazy, exact by ``dask.array.linalg.tsqr`` or sketched),
  :func:`universal_set` (Gram-sum or select / gather / re-select) and :func:`lev_attention`
  (keys and values chunked along n) live in this namespace rather than behind
  ``sketchla.leverage_scores`` and friends: their options, their report of the communication
  volume and their limits (no causal or windowed LevAttention) are specific to the distributed
  setting, and an explicit namespace keeps the in-memory functions' contracts unchanged.
"""

from ..operators._base import register_lazy
from ._detect import is_dask_array
from .attention import lev_attention
from .scores import leverage_scores, universal_set
from .sketch import dask_adjoint, dask_forward

register_lazy(is_dask_array, dask_forward, dask_adjoint)

__all__ = [
    "dask_adjoint",
    "dask_forward",
    "is_dask_array",
    "lev_attention",
    "leverage_scores",
    "universal_set",
]
