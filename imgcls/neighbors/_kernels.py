"""Numba kernels of the exact neighbour search.

The kernels are compiled lazily on first use and cached on disk
(``cache=True``), so a fresh process pays the compile time once per dtype.
numba cannot read float16 arrays: the search hands float16 training rows to
these kernels as float32 blocks (the conversion is exact).

``l1_topk_u8``
    L1 on ``uint8`` rows, exact in integers.  The inner loop is written so that
    LLVM turns it into ``(v)psadbw`` (sum of absolute differences of bytes):
    a tile of four query rows shares each load of a training row, and the
    accumulators are ``int32`` (784 x 255 fits easily).
``direct_topk``
    L1, squared L2 or cosine distance on any dtype, accumulated in float64 (exact
    for ``uint8`` input; float32/float64 input is summed in float64 so the only
    error is float64 rounding, about d * 1e-16 relative).  It is the L1 path for
    float input and the exact fallback for the rare rows the L2/cosine path
    cannot certify.
``merge_scores``
    Folds a block of float32 matrix-multiply scores (``a[j] + c * (q . t_j)``,
    from numpy's sgemm) into each query's running list of candidates: the
    candidate step of the L2/cosine search.
``pair_dist``
    The float64 distance of given (query, candidate) pairs: the exact recompute
    of those candidates.
``u8_rows_topk`` and ``rows_topk``
    The few-queries path (e.g. one query): the same exact distances as
    ``l1_topk_u8`` (L1), an integer sum of squared differences (squared L2 on
    ``uint8``, exact: ``_ssd4`` below) and ``direct_topk`` (float input,
    cosine), but parallel over chunks of *training* rows, since one query
    gives a query-parallel kernel a single thread.  Each chunk keeps its own
    k best per query; the chunks are merged in index order.

All top-k kernels scan the training rows in increasing index order and insert a
new candidate only when it is *strictly* closer than the current k-th, so equal
distances keep the smaller training index first: rows come out sorted by
(distance, index) with no separate tie-breaking pass.  Per query they keep only
``k`` (distance, index) pairs; no query-by-training matrix is ever built.

The many-queries kernels work in parallel over tiles of queries (``prange``)
inside a serial loop over blocks of training rows, so one block (about 1.5 MiB)
stays in each core's L2 cache while all queries stream past it.
"""

from __future__ import annotations

import llvmlite.binding as _llvm
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.core.extending import intrinsic

# Metric codes shared with search.py.
L1, L2SQ, COSINE = 0, 1, 2

# Queries per tile: each training-row load is reused by this many queries.
_QT = 4


def _sad_width() -> int:
    """Bytes per SAD instruction on this CPU: 64 (AVX-512BW), 32 (AVX2), 16 (SSE2), 0 (none)."""
    try:
        if _llvm.get_process_triple().split("-")[0] not in ("x86_64", "amd64"):
            return 0
        feats = _llvm.get_host_cpu_features()
    except Exception:  # pragma: no cover - an exotic llvmlite; use the portable loop
        return 16 if _llvm.get_process_triple().startswith("x86_64") else 0
    if feats.get("avx512bw", False):
        return 64
    if feats.get("avx2", False):
        return 32
    return 16


# LLVM's auto-vectoriser turns the plain |a - b| byte loop into byte min/max and
# widening adds (~6 G bytes/s per core here), never into psadbw, because numba
# widens integer arithmetic to int64.  So the hot loop calls the x86
# sum-of-absolute-differences instruction directly: one instruction handles
# 16/32/64 byte pairs and sums them into 64-bit lanes, exactly.
SAD_WIDTH = _sad_width()
# _sad4 packs two rows' partial sums into one 64-bit lane: each must stay < 2**32
MAX_SAD_BYTES = 2**24
_SAD_NAMES = {64: "llvm.x86.avx512.psad.bw.512", 32: "llvm.x86.avx2.psad.bw",
              16: "llvm.x86.sse2.psad.bw"}


@intrinsic
def _sad4(typingctx, a0, a1, a2, a3, b, n):
    """Exact sums of |a_r[c] - b[c]| over c < n for four uint8 rows.

    ``n`` must be a multiple of 16 with 255 * n < 2**32.  Uses SAD_WIDTH-byte
    vectors, then 16-byte vectors for the rest.
    """
    sig = types.UniTuple(types.int64, 4)(a0, a1, a2, a3, b, n)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        i32 = ir.IntType(32)
        ptrs = [context.make_array(t)(context, builder, v).data
                for t, v in zip(signature.args[:5], args[:5])]
        width = SAD_WIDTH
        lanes = width // 8
        at = ir.VectorType(i64, lanes)
        nbytes = args[5]
        accs = [cgutils.alloca_once_value(builder, ir.Constant(at, None)) for _ in range(4)]
        done = ir.Constant(i64, 0)
        for w in ([width, 16] if width > 16 else [16]):
            vt = ir.VectorType(ir.IntType(8), w)
            rt = ir.VectorType(i64, w // 8)
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(rt, [vt, vt]),
                                                _SAD_NAMES[w])
            vptrs = [builder.bitcast(builder.gep(p, [done]), vt.as_pointer()) for p in ptrs]
            nvec = builder.udiv(builder.sub(nbytes, done), ir.Constant(i64, w))
            with cgutils.for_range(builder, nvec) as loop:
                bv = builder.load(builder.gep(vptrs[4], [loop.index]), align=1)
                for r in range(4):
                    av = builder.load(builder.gep(vptrs[r], [loop.index]), align=1)
                    s = builder.call(fn, [av, bv])
                    if w != width:  # widen the 16-byte result into the accumulator's lanes
                        s = builder.shuffle_vector(
                            s, ir.Constant(rt, None),
                            ir.Constant(ir.VectorType(i32, lanes),
                                        [0, 1] + [2] * (lanes - 2)))
                    builder.store(builder.add(builder.load(accs[r]), s), accs[r])
            done = builder.add(done, builder.mul(nvec, ir.Constant(i64, w)))
        # Two sums share one horizontal reduction: each lane's partial sum is
        # below 2^32 (255 * n < 2^32 is checked by the caller), so the second
        # row's lanes go in the upper 32 bits without carrying into each other.
        red = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, [at]),
                                             f"llvm.vector.reduce.add.v{lanes}i64")
        shift = ir.Constant(at, [32] * lanes)
        mask = ir.Constant(i64, 0xFFFFFFFF)
        out = []
        for r in (0, 2):
            packed = builder.add(builder.load(accs[r]), builder.shl(builder.load(accs[r + 1]), shift))
            tot = builder.call(red, [packed])
            out += [builder.and_(tot, mask), builder.lshr(tot, ir.Constant(i64, 32))]
        return context.make_tuple(builder, signature.return_type, out)

    return sig, codegen


# Squared L2 on bytes: the x86 multiply-add of 16-bit pairs (pmaddwd) squares
# the differences of two bytes (widened to 16 bits, |diff| <= 255) and adds
# neighbouring pairs into 32-bit lanes, exactly.  Bytes per step: 32 (AVX-512BW),
# 16 (AVX2), 8 (SSE2), 0 (not x86: the kernel's scalar loop is used).
SSD_STEP = SAD_WIDTH // 2
# the 32-bit lanes hold at most 255^2 * n in total: n <= 2^15 keeps it below 2^31
MAX_SSD_BYTES = 2**15
_MADD_NAMES = {32: "llvm.x86.avx512.pmaddw.d.512", 16: "llvm.x86.avx2.pmadd.wd",
               8: "llvm.x86.sse2.pmadd.wd"}


def _madd4(name, square_difference):
    """An intrinsic ``name(a0, a1, a2, a3, b, n)``: exact sums over c < n, for four uint8 rows.

    Of (a_r[c] - b[c])^2 with ``square_difference``, else of a_r[c] * b[c].
    ``n`` must be a multiple of 16 and at most ``MAX_SSD_BYTES`` (255^2 n < 2^31).
    """
    def impl(typingctx, a0, a1, a2, a3, b, n):
        return _madd4_signature(a0, a1, a2, a3, b, n), lambda *a: _madd4_codegen(
            square_difference, *a)

    impl.__name__ = impl.__qualname__ = name
    return intrinsic(impl)


def _madd4_signature(a0, a1, a2, a3, b, n):
    return types.UniTuple(types.int64, 4)(a0, a1, a2, a3, b, n)


def _madd4_codegen(square_difference, context, builder, signature, args):
    i64 = ir.IntType(64)
    i32 = ir.IntType(32)
    i16 = ir.IntType(16)
    step = SSD_STEP
    if step == 0:  # never called: the kernel checks SSD_STEP first
        zero = ir.Constant(i64, 0)
        return context.make_tuple(builder, signature.return_type, [zero] * 4)
    ptrs = [context.make_array(t)(context, builder, v).data
            for t, v in zip(signature.args[:5], args[:5])]
    lanes = step // 2
    at = ir.VectorType(i32, lanes)
    nbytes = args[5]
    accs = [cgutils.alloca_once_value(builder, ir.Constant(at, None)) for _ in range(4)]
    done = ir.Constant(i64, 0)
    # n is a multiple of 16: after 32-byte steps at most one 16-byte step is left
    for w in ([step, 16] if step > 16 else [step]):
        vt = ir.VectorType(ir.IntType(8), w)
        wt = ir.VectorType(i16, w)
        rt = ir.VectorType(i32, w // 2)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(rt, [wt, wt]),
                                            _MADD_NAMES[w])
        vptrs = [builder.bitcast(builder.gep(p, [done]), vt.as_pointer()) for p in ptrs]
        nvec = builder.udiv(builder.sub(nbytes, done), ir.Constant(i64, w))
        with cgutils.for_range(builder, nvec) as loop:
            bv = builder.zext(builder.load(builder.gep(vptrs[4], [loop.index]), align=1), wt)
            for r in range(4):
                av = builder.zext(builder.load(builder.gep(vptrs[r], [loop.index]), align=1), wt)
                if square_difference:
                    diff = builder.sub(av, bv)
                    s = builder.call(fn, [diff, diff])
                else:  # products of bytes widened to 16 bits: <= 255^2, exact in 32
                    s = builder.call(fn, [av, bv])
                if w != step:  # widen the 8-lane result into the accumulator's lanes
                    s = builder.shuffle_vector(
                        s, ir.Constant(rt, None),
                        ir.Constant(ir.VectorType(i32, lanes),
                                    list(range(w // 2)) + [w // 2] * (lanes - w // 2)))
                builder.store(builder.add(builder.load(accs[r]), s), accs[r])
        done = builder.add(done, builder.mul(nvec, ir.Constant(i64, w)))
    red = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i32, [at]),
                                         f"llvm.vector.reduce.add.v{lanes}i32")
    out = [builder.zext(builder.call(red, [builder.load(accs[r])]), i64) for r in range(4)]
    return context.make_tuple(builder, signature.return_type, out)


_ssd4 = _madd4("_ssd4", True)  # squared L2 of bytes
_dot4 = _madd4("_dot4", False)  # dot products of bytes (cosine)


@njit(inline="always")
def _insert(out_d, out_i, q, dist, j, k):
    # Keep out_d[q, :k] sorted ascending; called only when dist < out_d[q, k-1].
    p = k - 1
    while p > 0 and out_d[q, p - 1] > dist:
        out_d[q, p] = out_d[q, p - 1]
        out_i[q, p] = out_i[q, p - 1]
        p -= 1
    out_d[q, p] = dist
    out_i[q, p] = j


@njit(parallel=True, cache=True, nogil=True)
def l1_topk_u8(Q, T, k, block, out_d, out_i):
    """k nearest training rows by L1 for uint8 ``Q`` (nq, d) and ``T`` (nt, d).

    ``out_d`` (nq, k) float64 must be filled with +inf and ``out_i`` (nq, k)
    int64 with -1; both are updated in place.  ``block``: training rows per block.
    """
    nq, d = Q.shape
    nt = T.shape[0]
    ntiles = (nq + _QT - 1) // _QT
    # bytes handled by the SAD instruction (a multiple of 16); the rest is scalar
    dv = (d // 16) * 16 if SAD_WIDTH > 0 and d < MAX_SAD_BYTES else 0
    for t0 in range(0, nt, block):
        t1 = min(nt, t0 + block)
        for tile in prange(ntiles):
            q0 = tile * _QT
            if q0 + _QT <= nq:
                a0 = Q[q0]
                a1 = Q[q0 + 1]
                a2 = Q[q0 + 2]
                a3 = Q[q0 + 3]
                for j in range(t0, t1):
                    b = T[j]
                    if dv > 0:
                        s0, s1, s2, s3 = _sad4(a0, a1, a2, a3, b, dv)
                    else:
                        s0 = s1 = s2 = s3 = 0
                    for c in range(dv, d):
                        bc = np.int64(b[c])
                        s0 += abs(np.int64(a0[c]) - bc)
                        s1 += abs(np.int64(a1[c]) - bc)
                        s2 += abs(np.int64(a2[c]) - bc)
                        s3 += abs(np.int64(a3[c]) - bc)
                    if s0 < out_d[q0, k - 1]:
                        _insert(out_d, out_i, q0, float(s0), j, k)
                    if s1 < out_d[q0 + 1, k - 1]:
                        _insert(out_d, out_i, q0 + 1, float(s1), j, k)
                    if s2 < out_d[q0 + 2, k - 1]:
                        _insert(out_d, out_i, q0 + 2, float(s2), j, k)
                    if s3 < out_d[q0 + 3, k - 1]:
                        _insert(out_d, out_i, q0 + 3, float(s3), j, k)
            else:
                for q in range(q0, nq):
                    a = Q[q]
                    for j in range(t0, t1):
                        b = T[j]
                        s = 0
                        for c in range(d):
                            s += abs(np.int64(a[c]) - np.int64(b[c]))
                        if s < out_d[q, k - 1]:
                            _insert(out_d, out_i, q, float(s), j, k)


# 'reassoc' lets LLVM vectorise the float64 sums (the order of a sum of
# non-negative terms changes its value by at most d ulps); no 'nnan'/'ninf',
# because the top-k arrays start at +inf.
_FM = {"reassoc", "contract", "nsz"}


@njit(fastmath=_FM, inline="always")
def _dist(a, b, metric, bnorm_inv):
    d = a.shape[0]
    s = 0.0
    if metric == 0:
        for c in range(d):
            s += abs(np.float64(a[c]) - np.float64(b[c]))
    elif metric == 1:
        for c in range(d):
            t = np.float64(a[c]) - np.float64(b[c])
            s += t * t
    else:
        for c in range(d):
            s += np.float64(a[c]) * np.float64(b[c])
    return s


@njit(inline="always")
def _cosine_distance(dot, qn, tn):
    # the reference's formula and rounding: 1 - dot / (|t| |q|), similarity 0
    # for a zero vector, clamped at 0
    den = tn * qn
    cos = dot / den if den > 0 else 0.0
    return max(0.0, 1.0 - cos)


@njit(parallel=True, cache=True, nogil=True, fastmath=_FM)
def direct_topk(Q, T, k, metric, block, qnorm, tnorm, j0, out_d, out_i):
    """k nearest training rows, distances computed directly in float64.

    ``metric``: 0 = L1, 1 = squared L2, 2 = cosine distance ``1 - q.t / (|t| |q|)``
    (``qnorm``/``tnorm``: float64 row norms of ``Q`` and ``T``; unused for the
    other metrics).  ``T`` holds training rows ``j0, j0 + 1, ...``: called on
    consecutive blocks of a training set in increasing order, the result is that
    of one call on the whole set.  ``out_d``/``out_i`` as in :func:`l1_topk_u8`.
    """
    nq = Q.shape[0]
    nt = T.shape[0]
    for t0 in range(0, nt, block):
        t1 = min(nt, t0 + block)
        for q in prange(nq):
            a = Q[q]
            for j in range(t0, t1):
                s = _dist(a, T[j], metric, 0.0)
                if metric == 2:
                    s = _cosine_distance(s, qnorm[q], tnorm[j])
                if s < out_d[q, k - 1]:
                    _insert(out_d, out_i, q, s, j0 + j, k)


@njit(parallel=True, cache=True, nogil=True, fastmath=_FM)
def pair_dist(Q, T, cand, metric, qnorm, tnorm, out):
    """float64 distances of ``Q[i]`` to ``T[cand[i, m]]`` into ``out`` (nq, m).

    Same arithmetic as :func:`direct_topk`; entries with ``cand < 0`` get +inf.
    """
    nq, m = cand.shape
    for q in prange(nq):
        a = Q[q]
        for r in range(m):
            j = cand[q, r]
            if j < 0:
                out[q, r] = np.inf
                continue
            s = _dist(a, T[j], metric, 0.0)
            if metric == 2:
                s = _cosine_distance(s, qnorm[q], tnorm[j])
            out[q, r] = s


@njit(cache=True, nogil=True)
def merge_scores(S, a, c, j0, q0, cand_d, cand_i):
    """Fold the scores ``a[j] + c * S[r, j]`` into the candidates of queries ``q0 + r``.

    ``S`` (rows, nb) float32: dot products of a block of queries with training
    rows ``j0 .. j0 + nb - 1``; ``a`` (nb,) float32 and ``c`` float32 turn them
    into scores that rank like distances (L2: ``|t|^2 - 2 q.t``; cosine:
    ``1 - q.t``).  ``cand_d`` (nq, kc) float32 ascending and ``cand_i`` (nq, kc)
    int64 hold each query's kc smallest scores so far and are updated in place;
    training blocks must come in increasing index order, so equal scores keep
    the smaller index first.  Serial, GIL released: the search runs one call
    per core at a time, on disjoint query rows, so no locking.
    """
    nq, nb = S.shape
    kc = cand_d.shape[1]
    for r in range(nq):
        q = q0 + r
        # the kc-th score in a register: almost every score fails this one test
        worst = cand_d[q, kc - 1]
        for j in range(nb):
            s = a[j] + c * S[r, j]
            if s < worst:
                _insert(cand_d, cand_i, q, s, j0 + j, kc)
                worst = cand_d[q, kc - 1]


# ------------------------------------------------------------ few queries ---
@njit(inline="always")
def _u8_dist4(a0, a1, a2, a3, b, d, metric):
    """Exact L1 (``metric`` 0), squared L2 (1) or dot product (2) of four uint8 rows with ``b``."""
    s0 = s1 = s2 = s3 = 0
    dv = 0
    if metric == 0:
        if SAD_WIDTH > 0 and d < MAX_SAD_BYTES:
            dv = (d // 16) * 16
            s0, s1, s2, s3 = _sad4(a0, a1, a2, a3, b, dv)
    elif SSD_STEP > 0:
        dv = (d // 16) * 16
        for c0 in range(0, dv, MAX_SSD_BYTES):
            c1 = min(dv, c0 + MAX_SSD_BYTES)
            if metric == 1:
                r0, r1, r2, r3 = _ssd4(a0[c0:c1], a1[c0:c1], a2[c0:c1], a3[c0:c1], b[c0:c1],
                                       c1 - c0)
            else:
                r0, r1, r2, r3 = _dot4(a0[c0:c1], a1[c0:c1], a2[c0:c1], a3[c0:c1], b[c0:c1],
                                       c1 - c0)
            s0 += r0
            s1 += r1
            s2 += r2
            s3 += r3
    for c in range(dv, d):
        bc = np.int64(b[c])
        t0 = np.int64(a0[c]) - bc
        t1 = np.int64(a1[c]) - bc
        t2 = np.int64(a2[c]) - bc
        t3 = np.int64(a3[c]) - bc
        if metric == 0:
            s0 += abs(t0)
            s1 += abs(t1)
            s2 += abs(t2)
            s3 += abs(t3)
        elif metric == 2:
            s0 += np.int64(a0[c]) * bc
            s1 += np.int64(a1[c]) * bc
            s2 += np.int64(a2[c]) * bc
            s3 += np.int64(a3[c]) * bc
        else:
            s0 += t0 * t0
            s1 += t1 * t1
            s2 += t2 * t2
            s3 += t3 * t3
    return s0, s1, s2, s3


@njit(cache=True, nogil=True)
def _merge_chunks(cd, ci, out_d, out_i):
    # chunks hold increasing training indices and each chunk's list is sorted
    # by (distance, index): inserting strictly smaller distances chunk by chunk
    # keeps equal distances in index order
    nchunks, nq, k = cd.shape
    for q in range(nq):
        for c in range(nchunks):
            for r in range(k):
                s = cd[c, q, r]
                if not s < out_d[q, k - 1]:
                    break  # the rest of this chunk's list is no closer
                _insert(out_d, out_i, q, s, ci[c, q, r], k)


@njit(inline="always")
def _u8_finish(s, metric, qn, tn):
    # the integer sum as the distance: itself, or (cosine) through the float64 formula
    return _cosine_distance(float(s), qn, tn) if metric == 2 else float(s)


@njit(inline="always")
def _u8_rows_chunk(Q, T, k, metric, qnorm, tnorm, j0, t0, t1, bd, bi):
    # training rows t0..t1-1 of T into the (nq, k) lists bd/bi
    nq, d = Q.shape
    cos = metric == 2
    j = t0
    # four training rows share each load of a query row
    while j + 4 <= t1:
        for q in range(nq):
            s0, s1, s2, s3 = _u8_dist4(T[j], T[j + 1], T[j + 2], T[j + 3], Q[q], d, metric)
            qn = qnorm[q] if cos else 0.0
            for r, sr in enumerate((s0, s1, s2, s3)):
                dist = _u8_finish(sr, metric, qn, tnorm[j + r] if cos else 0.0)
                if dist < bd[q, k - 1]:
                    _insert(bd, bi, q, dist, j0 + j + r, k)
        j += 4
    while j < t1:
        for q in range(nq):
            s = 0
            for col in range(d):
                a = np.int64(Q[q, col])
                b = np.int64(T[j, col])
                s += abs(a - b) if metric == 0 else ((a - b) * (a - b) if metric == 1 else a * b)
            dist = _u8_finish(s, metric, qnorm[q] if cos else 0.0, tnorm[j] if cos else 0.0)
            if dist < bd[q, k - 1]:
                _insert(bd, bi, q, dist, j0 + j, k)
        j += 1


@njit(parallel=True, cache=True, nogil=True)
def u8_rows_topk(Q, T, k, metric, qnorm, tnorm, j0, nchunks, out_d, out_i):
    """k nearest uint8 rows by L1 (``metric`` 0), squared L2 (1) or cosine (2).

    The sums are exact in integers (cosine: the dot product, then
    :func:`direct_topk`'s float64 formula with the norms ``qnorm``/``tnorm`` of
    ``Q``'s and ``T``'s rows, so the distances are bit-identical to its).
    Parallel over ``nchunks`` chunks of the training rows ``T`` (rows ``j0,
    j0 + 1, ...`` of the training set); for few queries.  ``out_d``/``out_i``
    (nq, k) are updated in place as in :func:`l1_topk_u8` (they may hold the
    result of earlier training rows).
    """
    nq = Q.shape[0]
    nt = T.shape[0]
    per = (nt + nchunks - 1) // nchunks
    cd = np.full((nchunks, nq, k), np.inf)
    ci = np.full((nchunks, nq, k), -1, dtype=np.int64)
    for c in prange(nchunks):
        _u8_rows_chunk(Q, T, k, metric, qnorm, tnorm, j0, c * per, min(nt, c * per + per),
                       cd[c], ci[c])
    _merge_chunks(cd, ci, out_d, out_i)


@njit(cache=True, nogil=True)
def u8_rows_topk_serial(Q, T, k, metric, qnorm, tnorm, j0, out_d, out_i):
    """:func:`u8_rows_topk` on one thread: for work too small to pay a parallel launch."""
    _u8_rows_chunk(Q, T, k, metric, qnorm, tnorm, j0, 0, T.shape[0], out_d, out_i)


@njit(inline="always", fastmath=_FM)
def _rows_chunk(Q, T, k, metric, qnorm, tnorm, j0, t0, t1, bd, bi):
    nq = Q.shape[0]
    for j in range(t0, t1):
        b = T[j]
        for q in range(nq):
            s = _dist(Q[q], b, metric, 0.0)
            if metric == 2:
                s = _cosine_distance(s, qnorm[q], tnorm[j])
            if s < bd[q, k - 1]:
                _insert(bd, bi, q, s, j0 + j, k)


@njit(parallel=True, cache=True, nogil=True, fastmath=_FM)
def rows_topk(Q, T, k, metric, qnorm, tnorm, j0, nchunks, out_d, out_i):
    """:func:`direct_topk`'s distances, parallel over chunks of training rows.

    For few queries.  ``tnorm`` holds the norms of ``T``'s rows; other
    arguments as in :func:`direct_topk` and :func:`u8_rows_topk`.
    """
    nq = Q.shape[0]
    nt = T.shape[0]
    per = (nt + nchunks - 1) // nchunks
    cd = np.full((nchunks, nq, k), np.inf)
    ci = np.full((nchunks, nq, k), -1, dtype=np.int64)
    for c in prange(nchunks):
        _rows_chunk(Q, T, k, metric, qnorm, tnorm, j0, c * per, min(nt, c * per + per),
                    cd[c], ci[c])
    _merge_chunks(cd, ci, out_d, out_i)


@njit(cache=True, nogil=True, fastmath=_FM)
def rows_topk_serial(Q, T, k, metric, qnorm, tnorm, j0, out_d, out_i):
    """:func:`rows_topk` on one thread: for work too small to pay a parallel launch."""
    _rows_chunk(Q, T, k, metric, qnorm, tnorm, j0, 0, T.shape[0], out_d, out_i)
