"""Explicit SIMD building blocks for the numba CPU kernels (LLVM vector IR via intrinsics).

LLVM's loop vectoriser does not vectorise a scatter-add whose destination row is chosen at
run time (``acc[b, c] += v * A[j, c]`` over a short column range): it cannot prove that
``acc`` and ``A`` do not overlap, and a constant trip count of 8 is fully unrolled into scalar
code that the SLP vectoriser then leaves alone. The intrinsic here writes the 8-wide operation
directly. It multiplies and adds with separate roundings, exactly as the scalar loop does
(no fused multiply-add), so kernels using it give bit-identical results to the scalar code.
"""

from __future__ import annotations

from llvmlite import ir  # type: ignore[import-untyped]
from numba.core import cgutils, types
from numba.extending import intrinsic

#: lanes of one vector operation (one 64-byte cache line of float64)
LANES = 8


@intrinsic
def axpy_lanes(typingctx, acc, b, ca, v, src, j, cs):
    """``acc[b, ca:ca + 8] += v * src[j, cs:cs + 8]`` as one 8-lane float64 multiply and add.

    ``acc`` is a float64 2-D array, ``src`` a float32/float64 2-D array whose rows have unit
    stride (the caller checks); float32 entries are widened to float64 first (exact). No bounds
    or negative-index handling: every index must be in range."""
    if not (
        isinstance(acc, types.Array)
        and acc.dtype == types.float64
        and acc.ndim == 2
        and isinstance(src, types.Array)
        and src.dtype in (types.float32, types.float64)
        and src.ndim == 2
    ):
        return None
    sig = types.void(acc, types.intp, types.intp, types.float64, src, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        acc_t, src_t = signature.args[0], signature.args[4]
        acc_v, b_v, ca_v, v_v, src_v, j_v, cs_v = args
        acc_a = context.make_array(acc_t)(context, builder, acc_v)
        src_a = context.make_array(src_t)(context, builder, src_v)
        p_dst = cgutils.get_item_pointer(
            context, builder, acc_t, acc_a, [b_v, ca_v], wraparound=False
        )
        p_src = cgutils.get_item_pointer(
            context, builder, src_t, src_a, [j_v, cs_v], wraparound=False
        )
        dvec = ir.VectorType(ir.DoubleType(), LANES)
        p_dvec = builder.bitcast(p_dst, dvec.as_pointer())
        x = builder.load(p_dvec, align=8)
        if src_t.dtype == types.float32:
            fvec = ir.VectorType(ir.FloatType(), LANES)
            y = builder.load(builder.bitcast(p_src, fvec.as_pointer()), align=4)
            y = builder.fpext(y, dvec)
        else:
            y = builder.load(builder.bitcast(p_src, dvec.as_pointer()), align=8)
        undef = ir.Constant(dvec, ir.Undefined)
        splat = builder.insert_element(undef, v_v, ir.Constant(ir.IntType(32), 0))
        mask = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
        splat = builder.shuffle_vector(splat, undef, mask)
        builder.store(builder.fadd(x, builder.fmul(splat, y)), p_dvec, align=8)
        return context.get_dummy_value()

    return sig, codegen
