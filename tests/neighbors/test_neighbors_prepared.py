"""The prepared training set: float16 and memory-mapped rows, the few-queries kernels, the cache.

Every answer is checked against the brute-force reference computed in float64
on the very values searched (float16 values included).
"""

import numpy as np
import pytest

import imgcls
from imgcls._validation import FINITE_BLOCK_BYTES
from imgcls.neighbors import KNearestNeighbor
from imgcls.neighbors.prepared import PreparedTrainingSet
from imgcls.neighbors.reference import reference_kneighbors
from imgcls.neighbors.search import knn_search

from peak_memory import traced_peak
from .conftest import tie_data

DTYPES = [np.uint8, np.float16, np.float32, np.float64]
METRICS = ["l1", "l2", "cosine"]


def assert_same(got, ref):
    (d, i), (rd, ri) = got, ref
    assert d.dtype == np.float64 and i.dtype == np.int64
    np.testing.assert_array_equal(i, ri)
    np.testing.assert_allclose(d, rd, rtol=1e-12, atol=1e-12)


def _continuous(rng, dtype, n, d=24):
    if dtype == np.uint8:
        return rng.integers(0, 256, (n, d)).astype(np.uint8)
    return rng.normal(size=(n, d)).astype(dtype)


# ---------------------------------------------------------- every engine ---
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("engine", ["rows", "blocked"])
def test_every_engine_dtype_and_metric_equals_reference(dtype, metric, engine, rng):
    # ties and duplicates, then continuous values (float16: rounded to float16
    # first, and the reference works on those float16 values in float64)
    Q, X = tie_data(dtype)
    for k in (1, 6, len(X)):
        assert_same(knn_search(Q, X, k, metric, _engine=engine),
                    reference_kneighbors(Q, X, k, metric))
    X = _continuous(rng, dtype, 301)
    Q = _continuous(rng, dtype, 5)
    for q in (Q[:1], Q):  # one query: the case the few-queries kernels are for
        assert_same(knn_search(q, X, 7, metric, _engine=engine),
                    reference_kneighbors(q, X, 7, metric))


@pytest.mark.parametrize("serial_bytes", [0, 1 << 62])
@pytest.mark.parametrize("dtype", DTYPES)
def test_few_queries_kernels_serial_and_parallel(serial_bytes, dtype, rng, monkeypatch):
    # small work runs on one thread, the rest over chunks of training rows:
    # both give the reference's answer (n_jobs=2: two threads even on one core)
    from imgcls.neighbors import search

    monkeypatch.setattr(search, "_SERIAL_BYTES", serial_bytes)
    X = _continuous(rng, dtype, 1003, d=19)
    X[500:520] = X[3]  # duplicates across chunk boundaries: ties in index order
    Q = np.concatenate([X[3:4], _continuous(rng, dtype, 3, d=19)])
    for metric in METRICS:
        assert_same(knn_search(Q, X, 25, metric, n_jobs=2, _engine="rows"),
                    reference_kneighbors(Q, X, 25, metric))


@pytest.mark.parametrize("metric", METRICS)
def test_float16_in_blocks_of_one_row_and_a_tiny_budget(metric, rng):
    # float16 rows reach the kernels as float32 blocks: one-row blocks (a tiny
    # working memory) must give the answer of one block
    X = _continuous(rng, np.float16, 60, d=9)
    Q = _continuous(rng, np.float16, 11, d=9)
    ref = reference_kneighbors(Q, X, 4, metric)
    for engine in ("rows", "blocked"):
        assert_same(knn_search(Q, X, 4, metric, working_memory=1e-5, _engine=engine), ref)
    assert_same(knn_search(Q, X, 4, metric, _block_rows=1), ref)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_float16_near_ties_go_to_the_exact_fallback(metric):
    # values ~1000 differing by one unit: float32's |q|^2 + |t|^2 - 2 q.t cannot
    # separate them, the certificate refuses, and the float16 rows are searched
    # again exactly, block by block
    rng = np.random.default_rng(3)
    X = (1000 + rng.integers(0, 3, (200, 64))).astype(np.float16)
    Q = (1000 + rng.integers(0, 3, (40, 64))).astype(np.float16)
    assert_same(knn_search(Q, X, 5, metric, _engine="blocked"),
                reference_kneighbors(Q, X, 5, metric))


def test_float16_queries_on_uint8_and_float_queries_on_float16(rng):
    _, X = tie_data(np.uint8)
    Q16 = X[:5].astype(np.float16)  # pixel values: searched as uint8
    assert_same(knn_search(Q16, X, 3, "l2"), reference_kneighbors(Q16, X, 3, "l2"))
    X16 = _continuous(rng, np.float16, 80)
    Q64 = rng.normal(size=(40, 24))  # float64 queries against float16 rows
    for metric in METRICS:
        assert_same(knn_search(Q64, X16, 3, metric), reference_kneighbors(Q64, X16, 3, metric))


def test_uint8_l2_single_query_is_exact_beyond_one_pmaddwd_run(rng):
    # more than 2^15 bytes per row: the integer kernel sums several runs
    X = rng.integers(0, 256, (9, 40_000)).astype(np.uint8)
    q = X[4:5].copy()
    q[0, -1] = q[0, -1] + 3 if q[0, -1] < 253 else q[0, -1] - 3  # squared distance 9
    d, i = knn_search(q, X, 3, "l2", _engine="rows")
    assert i[0, 0] == 4 and d[0, 0] == 3.0
    assert_same((d, i), reference_kneighbors(q, X, 3, "l2"))


# ------------------------------------------------------- the preparation ---
@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float16, np.float64])
def test_kept_float32_rows_give_the_answers_of_converting_each_time(metric, dtype, rng):
    X = _continuous(rng, dtype, 400)
    X[:, 3] = 0  # an all-zero column: the kept copy leaves it out
    Q = _continuous(rng, dtype, 50)
    budget = 2**20
    prep = PreparedTrainingSet(X, cache_bytes=2**30).prepare(metric, budget)
    assert prep.cached_bytes == 400 * 23 * 4
    cached = knn_search(Q, X, 5, metric, working_memory=1, prepared=prep)
    plain = knn_search(Q, X, 5, metric, working_memory=1)
    np.testing.assert_array_equal(cached[1], plain[1])
    np.testing.assert_array_equal(cached[0], plain[0])
    assert_same(cached, reference_kneighbors(Q, X, 5, metric))
    # no copy over the limit; float32 rows needing no conversion are not copied
    assert PreparedTrainingSet(X, cache_bytes=1000).prepare(metric, budget).cached_bytes == 0
    X32 = rng.normal(size=(50, 8)).astype(np.float32)
    p32 = PreparedTrainingSet(X32, cache_bytes=2**30).prepare("l2", budget)
    assert p32.cached_bytes == 0 and np.shares_memory(p32.gemm_rows("l2", 0, 50, budget), X32)


def test_prepared_for_another_array_is_refused(rng):
    X = _continuous(rng, np.float32, 30)
    prep = PreparedTrainingSet(X.copy())
    with pytest.raises(ValueError, match="prepared was made for another training set"):
        knn_search(X[:2], X, 1, "l2", prepared=prep)


def test_fit_prepares_once_and_searches_reuse_it(rng, monkeypatch):
    from imgcls.neighbors import prepared as prepared_module

    X = _continuous(rng, np.uint8, 300)
    y = rng.integers(0, 3, 300)
    est = KNearestNeighbor(k=3, metric="l2").fit(X, y)
    prep = est._prepared_set
    assert prep.source is est.X_fit_ and prep.cached_bytes > 0
    calls = []
    real = prepared_module.row_sq_norms
    monkeypatch.setattr(prepared_module, "row_sq_norms",
                        lambda A, b: calls.append(A.shape) or real(A, b))
    for q in (X[:1], X[:40]):
        est.kneighbors(q)
    assert calls == [] and est._prepared_set is prep  # the training norms were not recomputed


def test_preparation_follows_refit_set_params_load_and_a_replaced_X(rng, tmp_path):
    X = _continuous(rng, np.float32, 200)
    y = rng.integers(0, 4, 200)
    Q = _continuous(rng, np.float32, 20)
    est = KNearestNeighbor(k=4, metric="cosine").fit(X, y)
    first = est._prepared_set
    assert_same(est.kneighbors(Q), reference_kneighbors(Q, X, 4, "cosine"))
    # refit on other rows: a new preparation, the new answers
    X2 = _continuous(rng, np.float32, 150)
    est.fit(X2, y[:150])
    assert est._prepared_set is not first and est._prepared_set.source is est.X_fit_
    assert_same(est.kneighbors(Q), reference_kneighbors(Q, X2, 4, "cosine"))
    # another metric after fit: the kept rows are those of the new metric
    est.set_params(metric="l2")
    assert_same(est.kneighbors(Q), reference_kneighbors(Q, X2, 4, "l2"))
    est.set_params(cache_memory=0)
    assert_same(est.kneighbors(Q), reference_kneighbors(Q, X2, 4, "l2"))
    assert est._prepared_set.cached_bytes == 0
    # X_fit_ replaced by hand: prepared again on the next search
    est.X_fit_ = X[:150].copy()
    assert_same(est.kneighbors(Q), reference_kneighbors(Q, X[:150], 4, "l2"))
    # a model file holds no preparation; the first search after load makes it
    path = tmp_path / "knn.imgcls"
    imgcls.save(est, path)
    loaded = imgcls.load(path)
    assert getattr(loaded, "_prepared_set", None) is None
    assert_same(loaded.kneighbors(Q), reference_kneighbors(Q, X[:150], 4, "l2"))
    assert loaded._prepared_set.source is loaded.X_fit_


# ------------------------------------------------ memory-mapped training ---
@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float16, np.uint8])
@pytest.mark.parametrize("metric", METRICS)
def test_memmap_is_kept_and_searched_in_blocks(dtype, metric, tmp_path):
    rng = np.random.default_rng(7)
    n, d = 12_000, 1024  # 12 MB of uint8, 25 MB of float16: several times the budget
    path = tmp_path / "X.npy"
    np.save(path, _continuous(rng, dtype, n, d))
    mm = np.load(path, mmap_mode="r")
    X_bytes = mm.nbytes
    y = rng.integers(0, 10, n)
    Q = np.asarray(mm[:40], dtype=np.float32) + 0.25
    est = KNearestNeighbor(k=5, metric=metric, working_memory=4, cache_memory=0)
    with traced_peak() as fit_peak:
        est.fit(mm, y)
    assert est.X_fit_ is mm and isinstance(est.X_fit_, np.memmap)
    # fit holds one block of the finiteness scan, the labels, classes and the
    # O(n) norms (a few n-element float64 arrays), never the rows
    assert fit_peak.bytes < FINITE_BLOCK_BYTES + 2**20 + 5 * 8 * n < X_bytes, fit_peak.bytes
    ref = reference_kneighbors(Q[:2], mm, 5, metric)
    for q in (Q[:1], Q):  # the few-queries kernels, then the matrix multiply
        est.kneighbors(q)  # numba's compilation or cache loading is not the search's
        with traced_peak() as peak:
            got = est.kneighbors(q)
        assert peak.bytes < 4 * 2**20, (len(q), peak.bytes)  # working_memory
        assert_same((got[0][:2], got[1][:2]), (ref[0][:len(q)], ref[1][:len(q)]))


def test_fit_refuses_nan_and_float16_overflow_in_blocks(rng):
    X = _continuous(rng, np.float16, 50)
    X[31, 2] = np.inf  # what a float16 overflow stores
    with pytest.raises(ValueError, match=r"infinity \(row 31\) \(float16 holds values up to 65504\)"):
        KNearestNeighbor().fit(X, np.arange(50) % 2)
    X[31, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN \(row 31\)"):
        KNearestNeighbor().fit(X, np.arange(50) % 2)


def test_cache_memory_is_validated():
    from sklearn.utils._param_validation import InvalidParameterError

    Q, X = tie_data(np.uint8)
    with pytest.raises(InvalidParameterError, match="'cache_memory' parameter"):
        KNearestNeighbor(cache_memory=-1).fit(X, np.arange(len(X)) % 2)
