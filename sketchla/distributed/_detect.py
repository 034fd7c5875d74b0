"""Recognise dask arrays without importing dask."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["is_dask_array", "require_dask"]


def is_dask_array(A: Any) -> bool:
    """True for a ``dask.array.Array``. Never imports dask: an object can only be a dask array
    if ``dask.array`` has already been imported by whoever made it."""
    module = sys.modules.get("dask.array")
    return module is not None and isinstance(A, module.Array)


def require_dask(what: str):
    """Import and return ``dask.array``, with an install hint when dask is missing."""
    try:
        import dask.array as da
    except ImportError:  # pragma: no cover - dask is in the test extra
        raise ImportError(
            f"{what} needs dask: pip install 'sketchla[dask]' (dask[array] and distributed)"
        ) from None
    return da
