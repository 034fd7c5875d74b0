"""hypothesis strategies for sketchla's inputs (requires the ``test`` extra)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .inputs import INPUT_LAYOUTS, OPERATOR_KINDS

__all__ = ["finite_matrices", "layouts", "operator_kinds", "seeds"]

operator_kinds = st.sampled_from(OPERATOR_KINDS)
layouts = st.sampled_from(INPUT_LAYOUTS)
seeds = st.integers(min_value=0, max_value=2**63 - 1)


@st.composite
def finite_matrices(draw, n: int, d: int, dtype=np.float64, sparsity: bool = True):
    """An (n, d) matrix of finite values of moderate magnitude, sometimes with many zeros."""
    A = draw(
        hnp.arrays(
            dtype,
            (n, d),
            elements=st.floats(-1e3, 1e3, allow_nan=False, width=np.dtype(dtype).itemsize * 8),
        )
    )
    if sparsity and draw(st.booleans()):
        mask = draw(hnp.arrays(np.bool_, (n, d)))
        A = np.where(mask, A, 0).astype(dtype)
    return A
