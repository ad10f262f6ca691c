"""imgcls on a Dask cluster: exact kNN over training shards held by the workers.

Optional: ``pip install 'imgcls[distributed]'``.  Dask does the transport,
scheduling, retries and placement; imgcls adds the shard placement, the
per-worker exact search and the client-side merge
(:class:`ShardedKNearestNeighbor`), and :func:`connect`.
"""

from .cluster import CONNECT_TIMEOUT_S, check_workers, connect
from .sharded import ShardedKNearestNeighbor

__all__ = ["ShardedKNearestNeighbor", "connect", "check_workers", "CONNECT_TIMEOUT_S"]
