"""synod's client for etcd's v3 API (synod's, or any etcd 3.4+'s): ``Client`` and ``AsyncClient``.

See docs/client.md. The pieces: ``aio`` (the asyncio client), ``sync`` (the
blocking one, over the asyncio one), ``connection`` (endpoints, retries, auth),
``watch`` (resuming watches), ``lease`` (keep-alives), ``txn`` (a builder for
transactions), ``errors`` (exceptions named after etcd's errors), ``namespace``
(views under a key prefix) and ``concurrency`` (sessions, mutexes, elections, STM,
barriers and queues).
"""

from synod.client import errors, txn
from synod.client.aio import AsyncClient
from synod.client.connection import TLS
from synod.client.errors import EtcdError
from synod.client.keys import prefix_end
from synod.client.sync import Client

__all__ = ["TLS", "AsyncClient", "Client", "EtcdError", "errors", "prefix_end", "txn"]
