"""synod.client.concurrency (sessions, mutexes, elections, STM, recipes): against synod and a real etcd 3.4.

The blocking API is driven from threads and from processes; the asyncio one in
coroutines. Shared counters are incremented non-atomically (read, pause, write)
under the lock, so two holders at once would lose an increment.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from synod.client import AsyncClient, Client
from synod.client import txn as t
from synod.client.concurrency import (
    STM,
    AsyncElection,
    AsyncMutex,
    AsyncQueue,
    AsyncSession,
    AsyncSTM,
    Barrier,
    DoubleBarrier,
    Election,
    ElectionNoLeaderError,
    ElectionNotLeaderError,
    Isolation,
    KeyExistsError,
    Mutex,
    PriorityQueue,
    Queue,
    Session,
    SessionExpiredError,
    TooManyClientsError,
    run_stm,
)
from synod.client.errors import LeaseNotFoundError
from tests.support.servers import ServerProcess, wait_until

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 20.0


def run_threads(targets: list[Callable[[], None]]) -> list[BaseException]:
    """Start a thread per target; the caller joins them with ``join_all``; errors are collected."""
    errors: list[BaseException] = []

    def wrap(target: Callable[[], None]) -> Callable[[], None]:
        def body() -> None:
            try:
                target()
            except BaseException as e:
                errors.append(e)

        return body

    threads = [threading.Thread(target=wrap(target), daemon=True) for target in targets]
    for thread in threads:
        thread.start()
    run_threads.threads = threads  # type: ignore[attr-defined]
    return errors


def join_all(timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    for thread in run_threads.threads:  # type: ignore[attr-defined]
        thread.join(max(0.0, deadline - time.monotonic()))
        assert not thread.is_alive(), "a thread did not finish"


def bump(counter: Path) -> None:
    """The non-atomic increment: two at once lose one."""
    value = int(counter.read_text())
    time.sleep(0.01)
    counter.write_text(str(value + 1))


def keys_under(client: Client, prefix: str) -> int:
    return int(client.get_prefix(prefix, count_only=True).count)


# -- sessions ---------------------------------------------------------------------------------------------


def test_session_lease_close_orphan_resume(any_server: ServerProcess) -> None:
    with Client([any_server.endpoint]) as client:
        session = Session(client, ttl=5)
        assert session.alive and session.ttl == 5
        assert client.lease_time_to_live(session.lease_id).TTL > 0
        client.put("s/k", "v", lease=session.lease_id)
        # Orphaned: no longer renewed, but not revoked; another session resumes it.
        session.orphan()
        assert session.done.is_set() and not session.lost.is_set()
        assert keys_under(client, "s/") == 1
        resumed = Session(client, lease_id=session.lease_id)
        assert resumed.lease_id == session.lease_id and resumed.ttl == 5 and resumed.alive
        # Closed: revoked, its keys gone.
        resumed.close()
        assert keys_under(client, "s/") == 0
        with pytest.raises(LeaseNotFoundError):
            Session(client, lease_id=session.lease_id)


def test_session_lost_when_revoked(any_server: ServerProcess) -> None:
    with Client([any_server.endpoint]) as client:
        seen: list[Exception] = []
        session = Session(client, ttl=2, on_lost=seen.append)
        client.lease_revoke(session.lease_id)
        assert session.lost.wait(5) and session.done.is_set()
        assert len(seen) == 1 and session.error is seen[0]
        with pytest.raises(SessionExpiredError):
            session.check()


# -- mutex ---------------------------------------------------------------------------------------------------


def test_mutex_threads_fifo_and_exclusive(any_server: ServerProcess, tmp_path: Path) -> None:
    n = 8
    counter = tmp_path / "counter"
    counter.write_text("0")
    acquired: list[int] = []
    holders = [0]
    most = [0]
    with Client([any_server.endpoint]) as client:
        first = Session(client, ttl=10)
        gate = Mutex(first, "lock")
        gate.lock()  # everybody queues behind this one

        def locker() -> None:
            with Session(client, ttl=10) as session:
                mutex = Mutex(session, "lock")
                with mutex:
                    holders[0] += 1
                    most[0] = max(most[0], holders[0])
                    acquired.append(mutex.revision)
                    bump(counter)
                    holders[0] -= 1

        errors = run_threads([locker] * n)
        wait_until(lambda: keys_under(client, "lock/") == n + 1, DEADLINE, "every locker queued")
        queued = [kv.create_revision for kv in client.get_prefix("lock/").kvs if kv.key != gate.key]
        assert len(set(queued)) == n
        gate.unlock()
        join_all()
        assert errors == []
        assert acquired == sorted(queued)  # FIFO: in the order of their create revisions
        assert int(counter.read_text()) == n and most[0] == 1
        assert keys_under(client, "lock/") == 0
        first.close()


LOCKER_SCRIPT = """
import pathlib, sys, time
from synod.client import Client
from synod.client.concurrency import Mutex, Session
endpoint, counter, log = sys.argv[1:4]
with Client([endpoint]) as client, Session(client, ttl=10) as session:
    mutex = Mutex(session, "plock")
    mutex.lock(timeout=30)
    try:
        path = pathlib.Path(counter)
        value = int(path.read_text())
        time.sleep(0.01)
        path.write_text(str(value + 1))
        with open(log, "a") as f:
            f.write(f"{mutex.revision}\\n")
    finally:
        mutex.unlock()
"""


def test_mutex_processes_fifo_and_exclusive(any_server: ServerProcess, tmp_path: Path) -> None:
    n = 4
    counter, log = tmp_path / "counter", tmp_path / "log"
    counter.write_text("0")
    log.write_text("")
    with Client([any_server.endpoint]) as client, Session(client, ttl=10) as first:
        gate = Mutex(first, "plock")
        gate.lock()
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", LOCKER_SCRIPT, any_server.endpoint, str(counter), str(log)], cwd=ROOT
            )
            for _ in range(n)
        ]
        try:
            wait_until(lambda: keys_under(client, "plock/") == n + 1, 30, "every process queued")
            kvs = client.get_prefix("plock/").kvs
            queued = sorted(kv.create_revision for kv in kvs if kv.key != gate.key)
            gate.unlock()
            assert [p.wait(30) for p in procs] == [0] * n
        finally:
            for p in procs:
                p.kill()
        assert [int(line) for line in log.read_text().split()] == queued
        assert int(counter.read_text()) == n


def test_mutex_waiter_told_when_its_session_is_revoked(any_server: ServerProcess) -> None:
    with Client([any_server.endpoint]) as client:
        holder, waiter = Session(client, ttl=3), Session(client, ttl=10)
        held = Mutex(holder, "rlock")
        held.lock()
        waiting = Mutex(waiter, "rlock")
        errors = run_threads([lambda: waiting.lock(timeout=DEADLINE)])
        wait_until(lambda: keys_under(client, "rlock/") == 2, DEADLINE, "the waiter queued")
        client.lease_revoke(waiter.lease_id)
        join_all()
        assert len(errors) == 1 and isinstance(errors[0], SessionExpiredError)
        assert keys_under(client, "rlock/") == 1
        assert client.txn([held.is_owner()]).succeeded
        # The holder's lease revoked: its ownership compare fails, it learns the session is lost.
        client.lease_revoke(holder.lease_id)
        assert not client.txn([held.is_owner()]).succeeded
        assert holder.lost.wait(5)
        with pytest.raises(SessionExpiredError):
            held.lock()


def test_mutex_waiter_told_when_its_lease_expires(any_server: ServerProcess) -> None:
    async def body() -> None:
        async with AsyncClient([any_server.endpoint]) as client:
            holder = await AsyncSession(client, ttl=10)
            held = AsyncMutex(holder, "elock")
            await held.lock()
            waiter = await AsyncSession(client, ttl=2)
            waiting = AsyncMutex(waiter, "elock")
            task = asyncio.create_task(waiting.lock(timeout=DEADLINE))
            while (await client.get_prefix("elock/", count_only=True)).count < 2:
                await asyncio.sleep(0.02)
            assert waiter.keepalive is not None
            await waiter.keepalive.close()  # renewals stop, the client does not know: the server expires it
            with pytest.raises(SessionExpiredError):
                await asyncio.wait_for(task, DEADLINE)
            assert not waiter.done.is_set()  # it was the deletion of the key that told
            await held.unlock()
            await holder.close()

    asyncio.run(body())


def test_mutex_try_lock_timeout_and_owner_guard(any_server: ServerProcess) -> None:
    with Client([any_server.endpoint]) as client, Session(client) as a, Session(client) as b:
        ma, mb = Mutex(a, "tlock"), Mutex(b, "tlock")
        assert ma.try_lock()
        assert ma.header is not None and ma.key == b"tlock/" + f"{a.lease_id:x}".encode()
        assert not mb.try_lock()
        with pytest.raises(TimeoutError):
            mb.lock(timeout=0.3)
        assert keys_under(client, "tlock/") == 1  # the waiter that gave up left the queue
        # Only the owner's guarded write goes through.
        assert client.txn([ma.is_owner()], [t.put("tlock-data", "a")]).succeeded
        assert not client.txn([mb.is_owner()], [t.put("tlock-data", "b")]).succeeded
        ma.unlock()
        assert not client.txn([ma.is_owner()]).succeeded
        assert mb.try_lock()
        # A session is one locker: locking again with it is holding already.
        again = Mutex(b, "tlock")
        again.lock(timeout=1)
        assert again.revision == mb.revision
        mb.unlock()


# -- election ------------------------------------------------------------------------------------------------


def test_election_one_leader_at_a_time_and_observe_sees_every_change(
    any_server: ServerProcess, tmp_path: Path
) -> None:
    n = 5
    counter = tmp_path / "counter"
    counter.write_text("0")
    led: list[tuple[int, bytes]] = []
    holders, most = [0], [0]
    with Client([any_server.endpoint]) as client, Session(client) as first, Session(client) as looker:
        watcher = Election(looker, "elect")
        with pytest.raises(ElectionNoLeaderError):
            watcher.leader()
        observer = watcher.observe()
        gate = Election(first, "elect")
        gate.campaign("gate")
        assert observer.get(DEADLINE).value == b"gate"
        gate.proclaim("gate2")
        assert observer.get(DEADLINE).value == b"gate2"
        assert watcher.leader().value == b"gate2"

        def campaigner(name: bytes) -> Callable[[], None]:
            def body() -> None:
                with Session(client, ttl=10) as session:
                    election = Election(session, "elect")
                    election.campaign(name, timeout=DEADLINE)
                    holders[0] += 1
                    most[0] = max(most[0], holders[0])
                    led.append((election.revision, name))
                    assert election.leader().value == name
                    bump(counter)
                    holders[0] -= 1
                    election.resign()

            return body

        errors = run_threads([campaigner(f"c{i}".encode()) for i in range(n)])
        wait_until(lambda: keys_under(client, "elect/") == n + 1, DEADLINE, "every campaigner queued")
        queued = sorted(kv.create_revision for kv in client.get_prefix("elect/").kvs if kv.key != gate.key)
        gate.resign()
        join_all()
        assert errors == []
        assert [revision for revision, _ in led] == queued  # leadership handed on in queue order
        assert int(counter.read_text()) == n and most[0] == 1
        observed = [observer.get(DEADLINE).value for _ in range(n)]
        assert observed == [name for _, name in led]
        with pytest.raises(ElectionNoLeaderError):
            watcher.leader()
        observer.close()
        with pytest.raises(StopIteration):
            next(observer)


def test_election_timeout_resign_hands_on_not_leader(any_server: ServerProcess) -> None:
    with Client([any_server.endpoint]) as client, Session(client) as sa, Session(client, ttl=3) as sb:
        a, b = Election(sa, "e2"), Election(sb, "e2")
        a.campaign("a")
        with pytest.raises(TimeoutError):
            b.campaign("b", timeout=0.3)
        assert keys_under(client, "e2/") == 1  # the campaigner that gave up left the queue
        with pytest.raises(ElectionNotLeaderError):
            b.proclaim("b?")
        errors = run_threads([lambda: b.campaign("b", timeout=DEADLINE)])
        wait_until(lambda: keys_under(client, "e2/") == 2, DEADLINE, "b queued")
        assert a.leader().value == b"a"
        assert client.txn(a.is_leader()).succeeded and not client.txn(b.is_leader()).succeeded
        a.resign()
        join_all()
        assert errors == []
        assert a.leader().value == b"b" and client.txn(b.is_leader()).succeeded
        with pytest.raises(ElectionNotLeaderError):
            a.proclaim("a again")
        # The leader's session revoked: no leader, and it can proclaim no more.
        client.lease_revoke(sb.lease_id)
        with pytest.raises(ElectionNoLeaderError):
            a.leader()
        with pytest.raises(ElectionNotLeaderError):
            b.proclaim("b again")


def test_election_observe_misses_no_brief_leader(any_server: ServerProcess) -> None:
    """Leaders that resign at once, faster than the observer reads: each is still seen, in order."""

    async def body() -> None:
        async with AsyncClient([any_server.endpoint]) as client, AsyncSession(client) as looker:
            seen: list[bytes] = []

            async def observe() -> None:
                async for kv in AsyncElection(looker, "e3").observe():
                    seen.append(kv.value)
                    await asyncio.sleep(0.05)  # a slow observer

            task = asyncio.create_task(observe())
            names = [f"l{i}".encode() for i in range(4)]
            async with AsyncSession(client) as first:
                gate = AsyncElection(first, "e3")
                await gate.campaign("gate")
                async with asyncio.timeout(DEADLINE):
                    while seen != [b"gate"]:
                        await asyncio.sleep(0.01)
                await gate.resign()
            for name in names:
                async with AsyncSession(client) as session:
                    election = AsyncElection(session, "e3")
                    await election.campaign(name)
                    await election.proclaim(name + b"+")
                    await election.resign()
            async with asyncio.timeout(DEADLINE):
                while len(seen) < 1 + 2 * len(names):
                    await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert seen == [b"gate", *[v for name in names for v in (name, name + b"+")]]

    asyncio.run(body())


# -- STM ---------------------------------------------------------------------------------------------------

ACCOUNTS = [f"acct/{i}" for i in range(4)]
SAFE = [Isolation.SERIALIZABLE_SNAPSHOT, Isolation.SERIALIZABLE, Isolation.REPEATABLE_READS]


def balances(client: Client) -> list[int]:
    return [int(kv.value) for kv in client.get_prefix("acct/").kvs]


@pytest.mark.parametrize("isolation", SAFE, ids=lambda i: i.name)
def test_stm_concurrent_transfers_keep_the_sum(any_server: ServerProcess, isolation: Isolation) -> None:
    workers, transfers = 4, 8
    attempts = [0]
    with Client([any_server.endpoint]) as client:
        for account in ACCOUNTS:
            client.put(account, "100")

        def transfer(source: str, target: str, amount: int) -> Callable[[STM], None]:
            def apply(stm: STM) -> None:
                attempts[0] += 1
                have = int(stm.get(source))
                time.sleep(0.002)  # widen the window for a conflicting commit
                moved = min(have, amount)
                stm.put(source, str(have - moved))
                stm.put(target, str(int(stm.get(target)) + moved))

            return apply

        def worker(seed: int) -> Callable[[], None]:
            rng = random.Random(seed)

            def body() -> None:
                for _ in range(transfers):
                    source, target = rng.sample(ACCOUNTS, 2)
                    run_stm(client, transfer(source, target, rng.randint(1, 30)), isolation=isolation)

            return body

        errors = run_threads([worker(i) for i in range(workers)])
        join_all(40)
        assert errors == []
        final = balances(client)
        assert sum(final) == 100 * len(ACCOUNTS) and min(final) >= 0
        assert attempts[0] >= workers * transfers


def test_stm_asyncio_transfers_keep_the_sum(any_server: ServerProcess) -> None:
    async def body() -> None:
        async with AsyncClient([any_server.endpoint]) as client:
            for account in ACCOUNTS:
                await client.put(account, "100")
            attempts = [0]

            def transfer(source: str, target: str) -> Callable[[AsyncSTM], Awaitable[None]]:
                async def apply(stm: AsyncSTM) -> None:
                    attempts[0] += 1
                    have, dest = int(await stm.get(source)), int(await stm.get(target))
                    await asyncio.sleep(0.002)
                    stm.put(source, str(have - min(have, 25)))
                    stm.put(target, str(dest + min(have, 25)))

                return apply

            async def worker(seed: int) -> None:
                rng = random.Random(seed)
                for _ in range(8):
                    await run_stm(client, transfer(*rng.sample(ACCOUNTS, 2)))

            await asyncio.gather(*(worker(i) for i in range(4)))
            resp = await client.get_prefix("acct/")
            assert sum(int(kv.value) for kv in resp.kvs) == 400
            assert attempts[0] > 32  # coroutines interleave at every await: some commits conflicted

    asyncio.run(body())


# For each level: how many attempts a transaction takes when another client commits in the middle of
# its first attempt, and what it reads.
ISOLATION_TABLE = {
    #                              lost update?  blind write retried  snapshot reads (per attempt)
    Isolation.SERIALIZABLE_SNAPSHOT: (False, True, [b"old", b"new"]),
    Isolation.SERIALIZABLE: (False, False, [b"old", b"new"]),
    Isolation.REPEATABLE_READS: (False, False, [b"new"]),
    Isolation.READ_COMMITTED: (True, False, [b"new"]),
}


@pytest.mark.parametrize("isolation", list(ISOLATION_TABLE), ids=lambda i: i.name)
def test_stm_isolation_levels(any_server: ServerProcess, isolation: Isolation) -> None:
    lost_update, blind_retried, snapshot_reads = ISOLATION_TABLE[isolation]
    with Client([any_server.endpoint]) as client:
        # A read-modify-write with a concurrent increment committed between its read and its commit.
        client.put("n", "0")

        def increment(stm: STM) -> None:
            value = int(stm.get("n"))
            if stm.attempts == 1:
                client.put("n", str(int(client.get("n").kvs[0].value) + 1))
            stm.put("n", str(value + 1))

        run_stm(client, increment, isolation=isolation)
        assert client.get("n").kvs[0].value == (b"1" if lost_update else b"2")

        # A blind write (a key written, not read) that another client wrote after the first read.
        tries = [0]

        def blind(stm: STM) -> None:
            tries[0] += 1
            stm.get("n")
            if stm.attempts == 1:
                client.put("w", "theirs")
            stm.put("w", "mine")

        run_stm(client, blind, isolation=isolation)
        assert tries[0] == (2 if blind_retried else 1)
        assert client.get("w").kvs[0].value == b"mine"

        # A key changed between two reads of the same attempt: a snapshot still sees the old value.
        client.put("b", "old")
        seen: list[bytes] = []

        def reads(stm: STM) -> None:
            stm.get("n")
            if stm.attempts == 1:
                client.put("b", "new")
            seen.append(stm.get("b"))
            stm.put("c", "x")

        run_stm(client, reads, isolation=isolation)
        assert seen == snapshot_reads


# -- recipes ----------------------------------------------------------------------------------------------


def test_barrier(any_server: ServerProcess) -> None:
    with Client([any_server.endpoint]) as client:
        barrier = Barrier(client, "barrier")
        barrier.wait(timeout=1)  # not up: passes
        barrier.hold()
        with pytest.raises(KeyExistsError):
            barrier.hold()
        with pytest.raises(TimeoutError):
            barrier.wait(timeout=0.3)
        passed: list[int] = []

        def waiter(i: int) -> Callable[[], None]:
            return lambda: (barrier.wait(timeout=DEADLINE), passed.append(i))

        errors = run_threads([waiter(i) for i in range(3)])
        client.put("unrelated", "x")
        assert passed == []
        barrier.release()
        join_all()
        assert errors == [] and sorted(passed) == [0, 1, 2]


def test_double_barrier(any_server: ServerProcess) -> None:
    n = 3
    log: list[str] = []
    entered = threading.Event()
    with Client([any_server.endpoint]) as client:

        def participant() -> None:
            with Session(client, ttl=10) as session:
                barrier = DoubleBarrier(session, "dbar", n)
                log.append("arrive")
                barrier.enter(timeout=DEADLINE)
                log.append("enter")
                assert entered.wait(DEADLINE)
                log.append("leaving")
                barrier.leave(timeout=DEADLINE)
                log.append("left")

        errors = run_threads([participant] * n)
        wait_until(lambda: log.count("enter") == n, DEADLINE, "everybody through the barrier")
        with Session(client) as late, pytest.raises(TooManyClientsError):
            DoubleBarrier(late, "dbar", n).enter(timeout=DEADLINE)
        entered.set()
        join_all()
        assert errors == []
        # Nobody entered before all had arrived, nobody left before all were leaving.
        assert log[:n] == ["arrive"] * n and log[n : 2 * n] == ["enter"] * n
        assert log[2 * n : 3 * n] == ["leaving"] * n and log[3 * n :] == ["left"] * n
        assert keys_under(client, "dbar/") == 0


def test_queue_fifo_and_each_item_once(any_server: ServerProcess) -> None:
    with Client([any_server.endpoint]) as client:
        queue = Queue(client, "queue")
        for i in range(5):
            queue.enqueue(f"item{i}")
        assert [queue.dequeue(timeout=DEADLINE) for _ in range(5)] == [f"item{i}".encode() for i in range(5)]
        with pytest.raises(TimeoutError):
            queue.dequeue(timeout=0.3)
        # Consumers waiting on an empty queue: each item goes to exactly one of them.
        got: list[bytes] = []
        errors = run_threads([lambda: got.extend(queue.dequeue(timeout=DEADLINE) for _ in range(3))] * 4)
        for i in range(12):
            queue.enqueue(f"job{i}")
        join_all()
        assert errors == []
        assert sorted(got) == sorted(f"job{i}".encode() for i in range(12))
        assert keys_under(client, "queue/") == 0


def test_queue_asyncio(any_server: ServerProcess) -> None:
    async def body() -> None:
        async with AsyncClient([any_server.endpoint]) as client:
            queue = AsyncQueue(client, "aqueue")
            consumers = [asyncio.create_task(queue.dequeue(timeout=DEADLINE)) for _ in range(3)]
            for i in range(3):
                await queue.enqueue(f"v{i}")
            assert sorted(await asyncio.gather(*consumers)) == [b"v0", b"v1", b"v2"]

    asyncio.run(body())


def test_priority_queue(any_server: ServerProcess) -> None:
    with Client([any_server.endpoint]) as client:
        queue = PriorityQueue(client, "pq")
        items = [("low-a", 9), ("high-a", 1), ("mid", 5), ("high-b", 1), ("low-b", 9), ("top", 0)]
        for value, priority in items:
            queue.enqueue(value, priority)
        expected = [b"top", b"high-a", b"high-b", b"mid", b"low-a", b"low-b"]
        assert [queue.dequeue(timeout=DEADLINE) for _ in items] == expected
        with pytest.raises(ValueError):
            queue.enqueue("x", 70000)
        waiter = run_threads([lambda: client.put("pq-got", queue.dequeue(timeout=DEADLINE))])
        queue.enqueue("late", 3)
        join_all()
        assert waiter == [] and client.get("pq-got").kvs[0].value == b"late"


def test_resumed_session_keeps_its_lock(any_server: ServerProcess) -> None:
    """etcd 3.2's session resuming: a new session on the lease of an orphaned one holds its lock."""
    with Client([any_server.endpoint]) as client, Client([any_server.endpoint]) as other:
        first = Session(client, ttl=10)
        mutex = Mutex(first, "resume")
        mutex.lock()
        revision = mutex.revision
        first.orphan()  # e.g. the process restarts, remembering the lease ID
        with Session(other, lease_id=first.lease_id) as resumed, Session(other) as rival:
            again = Mutex(resumed, "resume")
            again.lock(timeout=1)
            assert (again.key, again.revision) == (mutex.key, revision)
            assert not Mutex(rival, "resume").try_lock()
        assert keys_under(other, "resume/") == 0  # closing the resumed session revoked the lease
