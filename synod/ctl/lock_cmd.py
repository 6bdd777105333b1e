"""``lock`` and ``elect``: etcdctl 3.4's coordination commands, by the client-side recipes or the RPCs.

``lock <name> [command args...]`` takes the lock with a session of ``--ttl``
seconds (renewed while the command holds it). With a command, it runs the
command with ``ETCD_LOCK_KEY`` and ``ETCD_LOCK_REV`` in its environment and its
output straight to synodctl's, then unlocks; a command that fails makes it
exit 1 with Go's words (``Error: exit status 3``). Without one, it prints the
lock's key-value as ``get`` does and holds the lock until SIGINT or SIGTERM
(then unlocks and exits 0), or until the session is lost (``Error: session
expired``).

``elect <name> <proposal>`` campaigns, prints the leader's key-value once
elected, and leads until SIGINT or SIGTERM (then resigns); ``elect -l <name>``
prints the leader at every change.

By default, as etcdctl, the recipes run in synodctl (synod.client.concurrency);
``--rpc`` asks the server's Lock and Election services instead (one round trip
to wait in the queue, whatever the network's latency), with the same session
lease, kept alive by synodctl.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Sequence
from typing import Any

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.client import AsyncClient
from synod.client.concurrency import AsyncElection, AsyncMutex, AsyncSession, ConcurrencyError
from synod.client.errors import EtcdError
from synod.ctl.errors import EXIT_BAD_ARGS, EXIT_BAD_CONNECTION, EXIT_ERROR, CtlExit
from synod.ctl.flags import Flag
from synod.ctl.invocation import Invocation
from synod.ctl.printer import Printer
from synod.ctl.usage import CommandHelp
from synod.ctl.watch_cmd import _GO_SIGNALS

RPC_FLAG = Flag(
    "rpc", "bool", "false", "use the server's Lock and Election services rather than the client-side recipe"
)
LOCK_HELP = CommandHelp("lock", "lock <lockname> [exec-command arg1 arg2 ...]", "Acquires a named lock")
LOCK_FLAGS = (Flag("ttl", "int64", "10", "timeout for session"), RPC_FLAG)
ELECT_HELP = CommandHelp(
    "elect", "elect <election-name> [proposal]", "Observes and participates in leader election"
)
ELECT_FLAGS = (Flag("listen", "bool", "false", "observation mode", shorthand="l"), RPC_FLAG)
DEFAULT_SESSION_TTL = 60  # clientv3/concurrency's, which etcdctl elect uses


class _Stop:
    """SIGINT and SIGTERM, seen as an event on the running loop (etcdctl's signal.Notify)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.event.set)

    async def wait(self) -> None:
        await self.event.wait()


async def _first(*aws: asyncio.Future[object] | asyncio.Task[object]) -> None:
    _, pending = await asyncio.wait(aws, return_when=asyncio.FIRST_COMPLETED)
    for p in pending:
        p.cancel()


def _failed(e: BaseException) -> CtlExit:
    return CtlExit(EXIT_ERROR, getattr(e, "message", None) or str(e))


# -- lock --------------------------------------------------------------------------------------------------


def lock_command(inv: Invocation, argv: Sequence[str]) -> None:
    parsed = inv.parse("lock", argv)
    options, printer = inv.output(parsed, Printer, debug=True)
    args = list(parsed.args)
    if not args:
        raise CtlExit(EXIT_BAD_ARGS, "lock takes a lock name argument and an optional command to execute")
    if not options.endpoints:
        raise CtlExit(EXIT_BAD_CONNECTION, "etcdclient: no available endpoints")
    ttl, rpc = parsed.get_int("ttl"), parsed.get_bool("rpc")
    asyncio.run(_lock(inv, options.endpoints, printer, args[0], args[1:], ttl, rpc))


async def _lock(
    inv: Invocation,
    endpoints: list[str],
    printer: Printer,
    name: str,
    command: list[str],
    ttl: int,
    rpc: bool,
) -> None:
    stop = _Stop()
    async with AsyncClient(endpoints, timeout=None) as client:
        try:
            session = await AsyncSession(client, ttl)
        except EtcdError as e:
            raise _failed(e) from None
        key, revision, unlock = await _acquire(client, session, name, rpc, stop)
        try:
            if command:
                await _run(inv, command, key, revision)
                return
            got = await client.get(key)
            if not got.kvs:
                raise CtlExit(EXIT_ERROR, "lock lost on init")
            printer.get(got)
            inv.flush()
            await _first(asyncio.ensure_future(stop.wait()), asyncio.ensure_future(session.wait_done()))
            if not stop.event.is_set():
                raise CtlExit(EXIT_ERROR, "session expired")
        finally:
            with contextlib.suppress(EtcdError):
                await unlock()
            with contextlib.suppress(EtcdError):
                await session.close()


async def _acquire(client: AsyncClient, session: AsyncSession, name: str, rpc: bool, stop: _Stop):  # type: ignore[no-untyped-def]
    """(key, revision, unlock) once the lock is held; interrupted by SIGINT/SIGTERM as etcdctl's."""
    mutex = AsyncMutex(session, name)
    call: asyncio.Future[Any] = asyncio.ensure_future(
        client.lock(name, session.lease_id) if rpc else mutex.lock()
    )
    interrupted = asyncio.ensure_future(stop.wait())
    await asyncio.wait([call, interrupted], return_when=asyncio.FIRST_COMPLETED)
    if not call.done():
        call.cancel()
        with contextlib.suppress(BaseException):
            await call
        await session.close()  # as etcdctl's lease: its key goes with it
        raise CtlExit(EXIT_ERROR, "context canceled")
    interrupted.cancel()
    try:
        result = call.result()
    except (EtcdError, ConcurrencyError) as e:
        raise _failed(e) from None
    if rpc:
        resp = result
        return resp.key, resp.header.revision, lambda: client.unlock(resp.key)
    assert mutex.header is not None
    return mutex.key, mutex.header.revision, mutex.unlock


async def _run(inv: Invocation, command: list[str], key: bytes, revision: int) -> None:
    # etcdctl puts these before its own environment, whose values win (Go keeps a name's last value).
    env = {
        "ETCD_LOCK_KEY": key.decode("utf-8", "replace"),
        "ETCD_LOCK_REV": str(revision),
        **inv.streams.environ,
    }
    inv.flush()
    try:
        proc = await asyncio.create_subprocess_exec(*command, env=env, stdout=_fd(inv, 1), stderr=_fd(inv, 2))
    except OSError as e:
        raise CtlExit(EXIT_ERROR, f"exec: {e.strerror}") from None
    code = await proc.wait()
    if code > 0:
        raise CtlExit(EXIT_ERROR, f"exit status {code}")
    if code < 0:
        raise CtlExit(EXIT_ERROR, f"signal: {_GO_SIGNALS.get(-code, f'signal {-code}')}")


def _fd(inv: Invocation, which: int) -> int | None:
    stream = inv.streams.stdout if which == 1 else inv.streams.stderr
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


# -- elect -------------------------------------------------------------------------------------------------


def elect_command(inv: Invocation, argv: Sequence[str]) -> None:
    parsed = inv.parse("elect", argv)
    args = list(parsed.args)
    listen = parsed.get_bool("listen")
    if len(args) not in (1, 2):
        raise CtlExit(
            EXIT_BAD_ARGS, "elect takes one election name argument and an optional proposal argument"
        )
    if len(args) == 1 and not listen:
        raise CtlExit(EXIT_BAD_ARGS, "no proposal argument but -l not set")
    if len(args) == 2 and listen:
        raise CtlExit(EXIT_BAD_ARGS, "proposal given but -l is set")
    options, printer = inv.output(parsed, Printer, debug=True)
    if not options.endpoints:
        raise CtlExit(EXIT_BAD_CONNECTION, "etcdclient: no available endpoints")
    if listen:
        asyncio.run(_observe(inv, options.endpoints, printer, args[0]))
    else:
        asyncio.run(_campaign(inv, options.endpoints, printer, args[0], args[1], parsed.get_bool("rpc")))


async def _observe(inv: Invocation, endpoints: list[str], printer: Printer, name: str) -> None:
    stop = _Stop()
    async with AsyncClient(endpoints, timeout=None) as client:
        election = AsyncElection(AsyncSession(client, keep_alive=False), name)

        async def show() -> None:
            async for kv in election.observe():
                printer.get(pb.RangeResponse(kvs=[kv], count=1))
                inv.flush()

        shown = asyncio.ensure_future(show())
        await _first(shown, asyncio.ensure_future(stop.wait()))
        if not stop.event.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                error = shown.exception()
                if isinstance(error, EtcdError | ConcurrencyError):
                    raise _failed(error)
            raise CtlExit(EXIT_ERROR, "elect: observer lost")


async def _campaign(
    inv: Invocation, endpoints: list[str], printer: Printer, name: str, proposal: str, rpc: bool
) -> None:
    stop = _Stop()
    async with AsyncClient(endpoints, timeout=None) as client:
        try:
            session = await AsyncSession(client, DEFAULT_SESSION_TTL)
        except EtcdError as e:
            raise _failed(e) from None
        election = AsyncElection(session, name)
        call: asyncio.Future[Any] = asyncio.ensure_future(
            client.campaign(name, proposal, session.lease_id) if rpc else election.campaign(proposal)
        )
        interrupted = asyncio.ensure_future(stop.wait())
        await asyncio.wait([call, interrupted], return_when=asyncio.FIRST_COMPLETED)
        try:
            if not call.done():
                call.cancel()
                with contextlib.suppress(BaseException):
                    await call
                raise CtlExit(EXIT_ERROR, "context canceled")
            try:
                result = call.result()
            except (EtcdError, ConcurrencyError) as e:
                raise _failed(e) from None
            key = result.leader.key if rpc else election.key
            printer.get(await client.get(key))
            inv.flush()
            await _first(interrupted, asyncio.ensure_future(session.wait_done()))
            if not stop.event.is_set():
                raise CtlExit(EXIT_ERROR, "elect: session expired")
            with contextlib.suppress(EtcdError):
                if rpc:
                    await client.resign(result.leader)
                else:
                    await election.resign()
        finally:
            with contextlib.suppress(EtcdError):
                await session.close()
