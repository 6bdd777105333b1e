"""Distributed coordination over etcd's API: clientv3/concurrency and contrib/recipes, in Python.

Each piece comes twice, as in ``synod.client``: an asyncio one over an
``AsyncClient`` (``AsyncSession``, ``AsyncMutex``, ...) and a blocking one over a
``Client`` (``Session``, ``Mutex``, ...), which runs the asyncio one on the
client's event loop and may be used from any number of threads.

- ``session``: a lease kept alive; the liveness of everything below.
- ``mutex``: a fair distributed lock.
- ``election``: leader election, with observation of every leadership change.
- ``stm``: software transactional memory over etcd's transactions, at etcd's isolation levels.
- ``recipes``: barriers, double barriers, queues and priority queues.
"""

from synod.client.concurrency.election import AsyncElection, Election, Observer
from synod.client.concurrency.errors import (
    ConcurrencyError,
    ElectionNoLeaderError,
    ElectionNotLeaderError,
    KeyExistsError,
    SessionExpiredError,
    TooManyClientsError,
)
from synod.client.concurrency.mutex import AsyncMutex, Mutex
from synod.client.concurrency.recipes import (
    AsyncBarrier,
    AsyncDoubleBarrier,
    AsyncPriorityQueue,
    AsyncQueue,
    Barrier,
    DoubleBarrier,
    PriorityQueue,
    Queue,
)
from synod.client.concurrency.session import AsyncSession, Session
from synod.client.concurrency.stm import (
    STM,
    AsyncSTM,
    Isolation,
    ReadCommitted,
    RepeatableReads,
    Serializable,
    SerializableSnapshot,
    run_stm,
)

__all__ = [
    "STM",
    "AsyncBarrier",
    "AsyncDoubleBarrier",
    "AsyncElection",
    "AsyncMutex",
    "AsyncPriorityQueue",
    "AsyncQueue",
    "AsyncSTM",
    "AsyncSession",
    "Barrier",
    "ConcurrencyError",
    "DoubleBarrier",
    "Election",
    "ElectionNoLeaderError",
    "ElectionNotLeaderError",
    "Isolation",
    "KeyExistsError",
    "Mutex",
    "Observer",
    "PriorityQueue",
    "Queue",
    "ReadCommitted",
    "RepeatableReads",
    "Serializable",
    "SerializableSnapshot",
    "Session",
    "SessionExpiredError",
    "TooManyClientsError",
    "run_stm",
]
