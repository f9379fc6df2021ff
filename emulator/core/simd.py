"""Sixteen f32 lanes as one value that numba keeps in a register: `F32x16` and its operations.

Why: the matrix kernels add, for each output, its products in a fixed order (matmul_order), with
independent outputs side by side.  Written as a loop over outputs inside the loop over k, LLVM
vectorises the inner loop but keeps the sums in memory, so every k costs a load, an add and a
store per sum, and the next k waits on the store (bench/bench_matrix.py: M_MM at MLEN 128,
BLEN 16 ran at ~10 G multiply-adds/s).  Written as 16 scalar sums, LLVM keeps them scalar (its
SLP vectoriser does not pack loop-carried sums).  An explicit vector value stays in a register
for the whole k loop.

Bits: `vadd` and `vmul` are plain IEEE f32 adds and multiplies lane by lane (no fast-math flags,
so no FMA contraction and no reassociation): each lane gives the bits of the scalar `s + x * w`
it replaces.  Which NaN payload survives is not promised (the kernels recompute NaN outputs by
their per-output definitions).  Machines without 512-bit registers get the same results from
two 256-bit (or four 128-bit) halves.

Loads and stores take a 1-D C-contiguous float32 array (`vload_bf16`: uint16 bf16 bits) and the
index of the first of 16 consecutive elements; they do not check bounds (the callers' loops keep
them inside).
"""

from llvmlite import ir
from numba import types
from numba.extending import intrinsic, models, register_model

LANES = 16
_VECTOR = ir.VectorType(ir.FloatType(), LANES)


class F32x16(types.Type):
    def __init__(self):
        super().__init__(name=f"f32x{LANES}")


f32x16 = F32x16()


@register_model(F32x16)
class _F32x16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VECTOR)


def _is_f32_row(arr) -> bool:
    return isinstance(arr, types.Array) and arr.dtype == types.float32 and arr.ndim == 1 and arr.layout == "C"


def _lane_pointer(context, builder, arr_type, arr, index_type, index):
    ary = context.make_array(arr_type)(context, builder, arr)
    i = context.cast(builder, index, index_type, types.intp)
    return builder.bitcast(builder.gep(ary.data, [i]), _VECTOR.as_pointer())


@intrinsic
def vzero(typingctx):
    """Sixteen +0.0."""
    def codegen(context, builder, sig, args):
        return ir.Constant(_VECTOR, None)
    return f32x16(), codegen


def _splat(builder, value):
    one = builder.insert_element(ir.Constant(_VECTOR, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, ir.Constant(_VECTOR, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))


@intrinsic
def vsplat(typingctx, value):
    """`value` (float32) in every lane."""
    if value != types.float32:
        return None
    return f32x16(value), lambda context, builder, sig, args: _splat(builder, args[0])


@intrinsic
def vsplat_at(typingctx, arr, index):
    """arr[index] in every lane: `vsplat(arr[index])` without numba's negative-index wrap-around
    (a compare and select per load, which the matrix kernels' inner loops felt)."""
    if not _is_f32_row(arr) or not isinstance(index, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        i = context.cast(builder, args[1], sig.args[1], types.intp)
        return _splat(builder, builder.load(builder.gep(ary.data, [i]), align=4))
    return f32x16(arr, index), codegen


@intrinsic
def vload(typingctx, arr, index):
    """arr[index : index + 16]."""
    if not _is_f32_row(arr) or not isinstance(index, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        return builder.load(_lane_pointer(context, builder, sig.args[0], args[0], sig.args[1], args[1]), align=4)
    return f32x16(arr, index), codegen


@intrinsic
def vload_bf16(typingctx, arr, index):
    """The f32 values of the bf16 bits arr[index : index + 16] (a uint16 row): exact, bits << 16."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.uint16 and arr.ndim == 1 and arr.layout == "C"
            and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        i = context.cast(builder, args[1], sig.args[1], types.intp)
        halves = ir.VectorType(ir.IntType(16), LANES)
        words = ir.VectorType(ir.IntType(32), LANES)
        raw = builder.load(builder.bitcast(builder.gep(ary.data, [i]), halves.as_pointer()), align=2)
        shifted = builder.shl(builder.zext(raw, words), ir.Constant(words, [16] * LANES))
        return builder.bitcast(shifted, _VECTOR)
    return f32x16(arr, index), codegen


@intrinsic
def vstore(typingctx, arr, index, value):
    """arr[index : index + 16] = value."""
    if not _is_f32_row(arr) or not isinstance(index, types.Integer) or value != f32x16:
        return None

    def codegen(context, builder, sig, args):
        builder.store(args[2], _lane_pointer(context, builder, sig.args[0], args[0], sig.args[1], args[1]), align=4)
        return context.get_dummy_value()
    return types.none(arr, index, value), codegen


@intrinsic
def vany_nan(typingctx, value):
    """Whether any lane is NaN."""
    if value != f32x16:
        return None

    def codegen(context, builder, sig, args):
        unordered = builder.fcmp_unordered("uno", args[0], args[0])
        mask = builder.bitcast(unordered, ir.IntType(LANES))
        return builder.icmp_unsigned("!=", mask, ir.Constant(ir.IntType(LANES), 0))
    return types.boolean(value), codegen


_QUAD = ir.VectorType(ir.FloatType(), 4)


def _shuffle_mask(lanes):
    return ir.Constant(ir.VectorType(ir.IntType(32), len(lanes)), list(lanes))


def _quad(context, builder, arr_type, arr, index_type, index):
    ary = context.make_array(arr_type)(context, builder, arr)
    i = context.cast(builder, index, index_type, types.intp)
    return builder.load(builder.bitcast(builder.gep(ary.data, [i]), _QUAD.as_pointer()), align=4)


@intrinsic
def vload_quads(typingctx, arr, i0, i1, i2, i3):
    """arr[i0 : i0 + 4], arr[i1 : i1 + 4], arr[i2 : i2 + 4], arr[i3 : i3 + 4] side by side: the lane
    orders' four k-interleaved lanes of four outputs in one register."""
    if not _is_f32_row(arr) or not all(isinstance(i, types.Integer) for i in (i0, i1, i2, i3)):
        return None

    def codegen(context, builder, sig, args):
        q = [_quad(context, builder, sig.args[0], args[0], sig.args[j + 1], args[j + 1]) for j in range(4)]
        low = builder.shuffle_vector(q[0], q[1], _shuffle_mask(range(8)))
        high = builder.shuffle_vector(q[2], q[3], _shuffle_mask(range(8)))
        return builder.shuffle_vector(low, high, _shuffle_mask(range(LANES)))
    return f32x16(arr, i0, i1, i2, i3), codegen


@intrinsic
def vsplat_quad(typingctx, arr, index):
    """arr[index : index + 4] repeated four times."""
    if not _is_f32_row(arr) or not isinstance(index, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        q = _quad(context, builder, sig.args[0], args[0], sig.args[1], args[1])
        return builder.shuffle_vector(q, q, _shuffle_mask([0, 1, 2, 3] * 4))
    return f32x16(arr, index), codegen


@intrinsic
def vlane(typingctx, value, index):
    """Lane `index` (0..15) of a register."""
    if value != f32x16 or not isinstance(index, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        return builder.extract_element(args[0], context.cast(builder, args[1], sig.args[1], types.int32))
    return types.float32(value, index), codegen


@intrinsic
def vwith_lane(typingctx, value, index, lane_value):
    """The register with lane `index` (0..15) replaced by `lane_value` (float32)."""
    if value != f32x16 or not isinstance(index, types.Integer) or lane_value != types.float32:
        return None

    def codegen(context, builder, sig, args):
        return builder.insert_element(args[0], args[2], context.cast(builder, args[1], sig.args[1], types.int32))
    return f32x16(value, index, lane_value), codegen


def _lanewise_type(a, b):
    return f32x16(a, b) if a == f32x16 and b == f32x16 else None


@intrinsic
def vadd(typingctx, a, b):
    """a + b lane by lane (IEEE f32 adds)."""
    return _lanewise_type(a, b), lambda context, builder, sig, args: builder.fadd(args[0], args[1])


@intrinsic
def vsub(typingctx, a, b):
    """a - b lane by lane (IEEE f32 subtractions)."""
    return _lanewise_type(a, b), lambda context, builder, sig, args: builder.fsub(args[0], args[1])


@intrinsic
def vmul(typingctx, a, b):
    """a * b lane by lane (IEEE f32 multiplies)."""
    return _lanewise_type(a, b), lambda context, builder, sig, args: builder.fmul(args[0], args[1])
