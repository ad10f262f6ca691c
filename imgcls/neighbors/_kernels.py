"""Numba kernels of the exact neighbour search.

Four kernels, each compiled lazily on first use and cached on disk
(``cache=True``), so a fresh process pays the compile time once per dtype:

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

All top-k kernels scan the training rows in increasing index order and insert a
new candidate only when it is *strictly* closer than the current k-th, so equal
distances keep the smaller training index first: rows come out sorted by
(distance, index) with no separate tie-breaking pass.  Per query they keep only
``k`` (distance, index) pairs; no query-by-training matrix is ever built.

The search kernels work in parallel over tiles of queries (``prange``) inside
a serial loop over blocks of training rows, so one block (about 1.5 MiB) stays
in each core's L2 cache while all queries stream past it.
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
def direct_topk(Q, T, k, metric, block, qnorm, tnorm, out_d, out_i):
    """k nearest training rows, distances computed directly in float64.

    ``metric``: 0 = L1, 1 = squared L2, 2 = cosine distance ``1 - q.t / (|t| |q|)``
    (``qnorm``/``tnorm``: float64 row norms; unused for the other metrics).
    ``out_d``/``out_i`` as in :func:`l1_topk_u8`.
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
                    _insert(out_d, out_i, q, s, j, k)


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
