"""Dask clusters for the distributed tests: on 127.0.0.1, closed by the fixtures."""

import logging

import pytest

distributed = pytest.importorskip("distributed", reason="dask distributed is not installed "
                                  "(pip install 'imgcls[distributed]')")


@pytest.fixture(scope="module")
def client():
    """Two in-process workers of one thread each: fast to start, same results."""
    # a lost worker or scattered key is what some tests do on purpose
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    # in-process workers talk over Dask's in-memory transport: no socket at all
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def process_client():
    """Two worker processes of one thread each, as the issue's end-to-end tests ask."""
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as c:
        yield c
