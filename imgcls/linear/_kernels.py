"""The fused minibatch kernel: scores, loss and data gradient in one pass over the batch.

Why a kernel instead of the two NumPy matrix products of :mod:`imgcls.linear.losses`:
with 10 classes the products ``X_b @ W.T`` and ``dS.T @ X_b`` are so thin that
BLAS spends its time on threading and packing (and, on a busy machine, on
threads waiting for each other), and the batch first has to be gathered into a
copy (``X[idx]``).  This kernel reads each sample row straight from the
training matrix through the permutation, keeps it in L1 cache for both the
forward and the backward step, and skips classes whose score gradient is zero
(most hinge margins once training is under way).

Determinism: the batch is split into a fixed number of chunks (not one per
thread); each chunk accumulates into its own gradient buffer, and the buffers
are summed in chunk order.  The result is therefore bit-for-bit the same for
any number of threads.

The kernel computes the *data* part (sum over the batch, not yet divided by the
batch size); the caller adds ``2 * reg * W`` and averages.  Its results are
tested against :func:`imgcls.linear.losses.svm_loss` / ``softmax_loss``.
"""

from __future__ import annotations

import types

import numpy as np
from numba import njit, prange

SVM = 0
SOFTMAX = 1

# Number of partial gradient buffers per batch (see "Determinism" above).
N_CHUNKS = 8

# Softmax probabilities below this are set to exactly 0 in the gradient.  They are
# ~23 orders of magnitude below float32 resolution, so the gradient does not
# change, but products with them would be subnormal floats, which x86 CPUs
# process ~25x slower than normal ones.
_TINY_PROB = 1e-30


@njit(cache=True, fastmath={"reassoc", "contract"})
def _row_loss(s, yi, kind, delta, ds):
    """Loss of one sample from its scores ``s``; writes dL/ds into ``ds``; returns (loss, correct)."""
    n_classes = s.shape[0]
    top = s[0]
    arg = 0
    for c in range(1, n_classes):
        if s[c] > top:
            top = s[c]
            arg = c
    correct = 1.0 if arg == yi else 0.0
    loss = 0.0
    if kind == SVM:
        sy = s[yi]
        count = 0
        for c in range(n_classes):
            ds[c] = 0.0
            if c != yi:
                margin = np.float64(s[c]) - sy + delta
                if margin > 0:
                    loss += margin
                    ds[c] = 1.0
                    count += 1
        ds[yi] = -count
    else:
        total = 0.0
        for c in range(n_classes):
            e = np.exp(np.float64(s[c]) - top)
            ds[c] = e
            total += e
        loss = np.log(total) - (np.float64(s[yi]) - top)
        for c in range(n_classes):
            p = ds[c] / total
            ds[c] = p if p > _TINY_PROB else 0.0
        ds[yi] -= 1.0
    return loss, correct


def _minibatch_grad(X, rows, y, W, b, kind, delta, gW_parts, gb_parts, stats):
    """Sum of per-sample losses and their gradients over ``X[rows]``.

    Rows are processed four at a time: each weight loaded from cache then
    serves four samples in the forward step, and each gradient entry is loaded
    and stored once per four samples in the backward step (four independent
    multiply-add chains also keep the vector units busy).

    Parameters
    ----------
    X : float32 ndarray of shape (n_samples, n_features), C-contiguous
    rows : int64 ndarray of shape (m,)
        Indices of the batch's samples in ``X``.
    y : int64 ndarray of shape (n_samples,)
        Class indices of all samples (indexed through ``rows`` too).
    W : float32 ndarray of shape (n_classes, n_features)
    b : float32 ndarray of shape (n_classes,)
    kind : int
        ``SVM`` or ``SOFTMAX``.
    delta : float
        Hinge margin (SVM only).
    gW_parts : float32 ndarray of shape (N_CHUNKS, n_classes, n_features)
        Scratch; on return, the chunk sums of ``dL_i/dW``.
    gb_parts : float64 ndarray of shape (N_CHUNKS, n_classes)
        Scratch; on return, the chunk sums of ``dL_i/db``.
    stats : float64 ndarray of shape (N_CHUNKS, 2)
        On return, per chunk: the summed loss and the number of samples whose
        highest score (before this step) was the true class.
    """
    m = rows.shape[0]
    n_classes, n_features = W.shape
    n_chunks = gW_parts.shape[0]
    for ch in prange(n_chunks):
        lo = ch * m // n_chunks
        hi = (ch + 1) * m // n_chunks
        g = gW_parts[ch]
        gb = gb_parts[ch]
        g[:, :] = 0.0
        gb[:] = 0.0
        S = np.empty((4, n_classes), dtype=np.float32)
        DS = np.zeros((4, n_classes), dtype=np.float32)
        loss = 0.0
        correct = 0.0
        for start in range(lo, hi, 4):
            r = min(4, hi - start)
            # missing rows of a short last block repeat the first row with a zero gradient
            i0 = rows[start]
            i1 = rows[start + 1] if r > 1 else i0
            i2 = rows[start + 2] if r > 2 else i0
            i3 = rows[start + 3] if r > 3 else i0
            x0 = X[i0]
            x1 = X[i1]
            x2 = X[i2]
            x3 = X[i3]
            for c in range(n_classes):
                wc = W[c]
                a0 = np.float32(0.0)
                a1 = np.float32(0.0)
                a2 = np.float32(0.0)
                a3 = np.float32(0.0)
                for d in range(n_features):
                    w = wc[d]
                    a0 += w * x0[d]
                    a1 += w * x1[d]
                    a2 += w * x2[d]
                    a3 += w * x3[d]
                S[0, c] = a0 + b[c]
                S[1, c] = a1 + b[c]
                S[2, c] = a2 + b[c]
                S[3, c] = a3 + b[c]
            for j in range(4):
                if j < r:
                    lj, cj = _row_loss(S[j], y[rows[start + j]], kind, delta, DS[j])
                    loss += lj
                    correct += cj
                else:
                    DS[j, :] = 0.0
            for c in range(n_classes):
                d0 = DS[0, c]
                d1 = DS[1, c]
                d2 = DS[2, c]
                d3 = DS[3, c]
                if d0 == 0.0 and d1 == 0.0 and d2 == 0.0 and d3 == 0.0:
                    continue
                gb[c] += np.float64(d0) + np.float64(d1) + np.float64(d2) + np.float64(d3)
                gc = g[c]
                for d in range(n_features):
                    gc[d] += d0 * x0[d] + d1 * x1[d] + d2 * x2[d] + d3 * x3[d]
        stats[ch, 0] = loss
        stats[ch, 1] = correct


def _renamed(func, name):
    """A copy of ``func`` under another name.

    numba's on-disk cache is keyed by the function's qualified name and line, not
    by the compile flags, so the threaded and the serial build of the same code
    must be distinct functions or one would load the other's machine code.
    """
    copy = types.FunctionType(func.__code__, func.__globals__, name, func.__defaults__,
                              func.__closure__)
    copy.__qualname__ = name
    copy.__doc__ = func.__doc__
    return copy


_FLAGS = dict(cache=True, fastmath={"reassoc", "contract"})
_grad_parallel = njit(parallel=True, **_FLAGS)(_renamed(_minibatch_grad, "_grad_parallel"))
# The same code without threads: for small batches, starting the thread team
# costs more than the work.  The chunk structure is identical, so both versions
# give bit-for-bit the same result.
_grad_serial = njit(parallel=False, **_FLAGS)(_renamed(_minibatch_grad, "_grad_serial"))

# Below this many multiply-adds per batch the serial version is used.  Each batch
# ends in a barrier; on the shared 2-core machine this was measured on, a thread
# that has lost its core to another process holds the barrier for a time slice,
# which made the threaded kernel 18x slower than the serial one for MNIST batches
# of 256 (2 M multiply-adds), 4x slower at 1024 and about even at 4096 (32 M).
# So threads are only used for batches of wide models or many classes.
_PARALLEL_MIN_WORK = 32_000_000


def minibatch_grad(X, rows, y, W, b, kind, delta, gW_parts, gb_parts, stats):
    """Dispatch to the threaded or the serial kernel by the size of the batch (same result)."""
    if rows.shape[0] * W.size >= _PARALLEL_MIN_WORK:
        return _grad_parallel(X, rows, y, W, b, kind, delta, gW_parts, gb_parts, stats)
    return _grad_serial(X, rows, y, W, b, kind, delta, gW_parts, gb_parts, stats)


minibatch_grad.__doc__ = _minibatch_grad.__doc__


@njit(cache=True)
def sum_parts(gW_parts, gb_parts, gW, gb):
    """Sum the chunk buffers in chunk order (fixed, so the result is deterministic)."""
    gW[:, :] = gW_parts[0]
    gb[:] = gb_parts[0]
    for ch in range(1, gW_parts.shape[0]):
        gW += gW_parts[ch]
        gb += gb_parts[ch]
