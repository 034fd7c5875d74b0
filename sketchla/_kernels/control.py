"""numba CPU kernels of the control variate's moments (:mod:`sketchla.attention.control`).

Per query, the draws of its light part are summarised by the moments a quadratic fit in the
standardised logit needs, separately for the two halves of the draws (cross-fitting). The
sums run in a fixed order, so serial and parallel runs agree bitwise.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .lsh import _fast_dual_kernel
from .vexp import exp_nonpositive

#: moments per half of the draws: (c, sum z, sum z^2, sum z^3, sum z^4, sum e, sum e z,
#: sum e z^2, sum e^2)
N_MOMENTS = 9


@numba.njit(cache=True, inline="always")
def half_moments(logits, hs, n, mu, inv_sigma, zs, out):
    """Moments of n logits split into two halves (``hs[u]`` in {0, 1}) for the control
    variate: with ``z = (s - mu) inv_sigma`` and ``e = exp(s - max)``, writes ``out[h]`` =
    (c, sum z, sum z^2, sum z^3, sum z^4, sum e, sum e z, sum e z^2, sum e^2) over half h;
    returns the max (-inf for n = 0). ``logits`` is overwritten by e, ``zs`` by z."""
    mx = -np.inf
    for u in range(n):
        mx = max(mx, logits[u])
    for u in range(n):  # vectorised: the exponentials and standardised logits
        zs[u] = (logits[u] - mu) * inv_sigma
        logits[u] = exp_nonpositive(logits[u] - mx)
    for h in range(2):
        c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = c8 = 0.0
        for u in range(n):  # branch-free sums over the draws of half h
            w = 1.0 if hs[u] == h else 0.0
            z = zs[u]
            e = logits[u] * w
            zw = z * w
            z2w = z * zw
            c0 += w
            c1 += zw
            c2 += z2w
            c3 += z2w * z
            c4 += z2w * z * z
            c5 += e
            c6 += e * z
            c7 += e * z * z
            c8 += e * logits[u]
        out[h, 0] = c0
        out[h, 1] = c1
        out[h, 2] = c2
        out[h, 3] = c3
        out[h, 4] = c4
        out[h, 5] = c5
        out[h, 6] = c6
        out[h, 7] = c7
        out[h, 8] = c8
    return mx


@_fast_dual_kernel
def tile_moments(S, log_w, mu, inv_sigma, halves):
    """Control-variate moments of logit tiles ``S (T, r, c)`` (``-inf`` = excluded; ``log_w
    (T, c)`` added weights, subtracted again here) for rows with standardisation ``mu,
    inv_sigma (T, r)``. Returns ``(max (T, r), mom (T, r, 2, 9))``: with ``halves``, the
    moments of :func:`half_moments` with the draw halves given by column parity; without,
    ``mom[..., 0, :3]`` = (count, sum z, sum z^2) of all the row's entries."""
    T, R, C = S.shape
    mx = np.full((T, R), -np.inf)
    mom = np.zeros((T, R, 2, N_MOMENTS))
    for t in prange(T):
        x = np.empty(C)
        zs = np.empty(C)
        hs = np.empty(C, dtype=np.int64)
        for r in range(R):
            if not halves:  # heavy keys: only (count, sum z, sum z^2), no exponentials
                c0 = c1 = c2 = 0.0
                top = -np.inf
                for u in range(C):
                    v = S[t, r, u] - log_w[t, u]
                    w = 1.0 if v > -np.inf else 0.0
                    z = (v - mu[t, r]) * inv_sigma[t, r] if w > 0 else 0.0
                    top = max(top, v)
                    c0 += w
                    c1 += z
                    c2 += z * z
                mx[t, r] = top
                mom[t, r, 0, 0] = c0
                mom[t, r, 0, 1] = c1
                mom[t, r, 0, 2] = c2
                continue
            n = 0
            for u in range(C):
                v = S[t, r, u]
                if v > -np.inf:
                    x[n] = v - log_w[t, u]
                    hs[n] = u % 2
                    n += 1
            mx[t, r] = half_moments(x, hs, n, mu[t, r], inv_sigma[t, r], zs, mom[t, r])
    return mx, mom
