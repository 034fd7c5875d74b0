"""Kernel-density-style estimation for attention: row sums (ApproxD) and approximate matrix
products by sampling."""

from .amm import approx_matmul
from .rowsums import approx_rowsums

__all__ = ["approx_matmul", "approx_rowsums"]
