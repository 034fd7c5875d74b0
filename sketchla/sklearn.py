r"""scikit-learn random projections over sketchla's operators (optional: needs scikit-learn).

:class:`SketchRandomProjection` is a drop-in for scikit-learn's ``GaussianRandomProjection`` /
``SparseRandomProjection`` (``fit`` / ``transform``, ``n_components="auto"`` from the
Johnson-Lindenstrauss bound) that also offers the operators scikit-learn lacks: the
subsampled randomized Hadamard transform (O(d log d) per sample) and CountSketch / SparseSign
(O(nnz) per sample, sparse output for sparse input).

Install with ``pip install 'sketchla[sklearn]'``; ``import sketchla`` itself never imports
scikit-learn.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:  # pragma: no cover - exercised only without scikit-learn
    raise ImportError(
        "sketchla.sklearn needs scikit-learn >= 1.6: pip install 'sketchla[sklearn]'"
    ) from exc

from ._backend import is_sparse
from .operators import KINDS, CountSketch, SketchOperator, SparseSign
from .random import RngLike, resolve_rng

__all__ = ["SketchRandomProjection", "jl_min_dim"]

_SPARSE_FORMATS = ["csr", "csc", "coo"]


def jl_min_dim(n_samples: int, eps: float) -> int:
    r"""The Johnson-Lindenstrauss target dimension
    :math:`k = \lceil 4 \ln(n) / (\varepsilon^2/2 - \varepsilon^3/3) \rceil` (Dasgupta &
    Gupta 2003; scikit-learn's ``johnson_lindenstrauss_min_dim`` up to rounding): a Gaussian
    projection to k dimensions keeps every pairwise squared distance of n points within a factor
    :math:`1 \pm \varepsilon` with probability at least 1 - 1/n. (SRHT and the sparse sketches
    need constant factors more in theory; in practice about the same k.)"""
    if not 0.0 < eps < 1.0:
        raise ValueError(f"eps must be in (0, 1) for the JL bound, got {eps!r}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    return int(np.ceil(4.0 * np.log(n_samples) / (eps**2 / 2.0 - eps**3 / 3.0)))


class SketchRandomProjection(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    r"""Random projection :math:`x \mapsto S x` of each sample by a sketchla operator.

    ``transform(X)`` returns :math:`X S^\top`, shape (n_samples, n_components), where S is the
    (n_components, n_features) operator of ``kind`` with :math:`\mathbb E[S^\top S] = I`, so
    squared norms and distances are preserved in expectation.

    Parameters
    ----------
    n_components : int or "auto", default "auto"
        Target dimension k. "auto": the Johnson-Lindenstrauss bound :func:`jl_min_dim` for the
        number of samples seen by ``fit`` and ``eps``; a ValueError if that exceeds
        n_features (no reduction; pass an int).
    kind : {"srht", "countsketch", "sparse_sign", "gaussian"}, default "sparse_sign"
        The operator: :class:`~sketchla.SRHT` (needs k <= n_features),
        :class:`~sketchla.CountSketch`, :class:`~sketchla.SparseSign` (``nnz_per_col``
        nonzeros per feature), :class:`~sketchla.GaussianSketch`.
    eps : float in (0, 1), default 0.1
        Distortion of the JL bound (``n_components="auto"`` only).
    nnz_per_col : int or None, default None
        Nonzeros per column of SparseSign (None: ``min(8, k)``).
    dense_output : bool, default True
        For sparse X with kind "countsketch" / "sparse_sign": False returns a sparse CSR
        result (see :meth:`sketchla.CountSketch.apply`). Other kinds always return dense.
    rng : int, SeedSequence, numpy Generator or None, default None
        Seed of S (SPEC 7; see :mod:`sketchla.random`). None draws fresh entropy at each
        ``fit``; an int makes ``fit`` reproducible.

    Attributes
    ----------
    n_components_ : int
    operator_ : SketchOperator, shape (n_components_, n_features_in_)
    n_features_in_ : int
    feature_names_in_ : ndarray of str (when X has string feature names)

    Examples
    --------
    >>> import numpy as np
    >>> from sketchla.sklearn import SketchRandomProjection
    >>> X = np.random.default_rng(0).standard_normal((100, 2000))
    >>> proj = SketchRandomProjection(n_components=256, kind="srht", rng=0).fit(X)
    >>> proj.transform(X).shape
    (100, 256)
    """

    def __init__(
        self,
        n_components: int | str = "auto",
        *,
        kind: str = "sparse_sign",
        eps: float = 0.1,
        nnz_per_col: int | None = None,
        dense_output: bool = True,
        rng: RngLike = None,
    ) -> None:
        self.n_components = n_components
        self.kind = kind
        self.eps = eps
        self.nnz_per_col = nnz_per_col
        self.dense_output = dense_output
        self.rng = rng

    def _target_dim(self, n_samples: int, n_features: int) -> int:
        if isinstance(self.n_components, str):
            if self.n_components != "auto":
                raise ValueError(
                    f"n_components must be a positive int or 'auto', got {self.n_components!r}"
                )
            if not isinstance(self.eps, numbers.Real) or not 0.0 < self.eps < 1.0:
                raise ValueError(f"eps must be a number in (0, 1), got {self.eps!r}")
            k = jl_min_dim(n_samples, float(self.eps))
            if k > n_features:
                raise ValueError(
                    f"n_components='auto' with eps={self.eps} and n_samples={n_samples} gives "
                    f"the JL dimension {k}, larger than n_features={n_features}: no reduction. "
                    "Pass n_components explicitly or a larger eps."
                )
            return k
        if (
            isinstance(self.n_components, (bool, np.bool_))
            or not isinstance(self.n_components, numbers.Integral)
            or self.n_components < 1
        ):
            raise ValueError(
                f"n_components must be a positive int or 'auto', got {self.n_components!r}"
            )
        k = int(self.n_components)
        if self.kind == "srht" and k > n_features:
            raise ValueError(
                f"n_components={k} exceeds n_features={n_features}; kind='srht' samples rows "
                "of an n_features-dimensional transform (use another kind for k > n_features)"
            )
        return k

    def fit(self, X: Any, y: Any = None) -> SketchRandomProjection:
        """Draw the operator S for X's number of features (and samples, for "auto")."""
        if not isinstance(self.kind, str) or self.kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}, got {self.kind!r}")
        if not isinstance(self.dense_output, (bool, np.bool_)):
            raise ValueError(f"dense_output must be a bool, got {self.dense_output!r}")
        X = validate_data(self, X, accept_sparse=_SPARSE_FORMATS, dtype=[np.float64, np.float32])
        n_samples, n_features = X.shape
        k = self._target_dim(n_samples, n_features)
        seed_sequence = resolve_rng(self.rng)
        params: dict[str, Any] = {}
        if self.kind == "sparse_sign" and self.nnz_per_col is not None:
            params["nnz_per_col"] = min(int(self.nnz_per_col), k)
        self.operator_: SketchOperator = KINDS[self.kind](
            k, n_features, rng=seed_sequence, **params
        )
        self.n_components_ = k
        return self

    def transform(self, X: Any) -> Any:
        """:math:`X S^\\top`, shape (n_samples, n_components_), X's float dtype (float32 stays
        float32); sparse CSR for sparse X when ``dense_output=False`` and S is a hash sketch."""
        check_is_fitted(self)
        X = validate_data(
            self, X, accept_sparse=_SPARSE_FORMATS, dtype=[np.float64, np.float32], reset=False
        )
        op = self.operator_
        if is_sparse(X) and not self.dense_output and isinstance(op, (CountSketch, SparseSign)):
            return op.apply(X.T, sparse_output=True).T.tocsr()
        return X @ op.T

    @property
    def _n_features_out(self) -> int:
        return self.n_components_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
