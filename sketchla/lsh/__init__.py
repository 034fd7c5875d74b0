"""Locality-sensitive hashing: SimHash codes, the Gray code and the sortLSH permutation."""

from .gray import gray_code, inverse_gray_code
from .simhash import SimHash, gray_sort_order, mips_augment

__all__ = ["SimHash", "gray_code", "gray_sort_order", "inverse_gray_code", "mips_augment"]
