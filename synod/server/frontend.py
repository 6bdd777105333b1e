"""gRPC front-end processes: serve the member's client port and relay every call to it.

``FrontEnds`` (in the member) starts them and restarts one that dies; each
runs ``python -m synod.server.frontend``, listens on the client addresses with
SO_REUSEPORT (the kernel spreads connections over the member and its front
ends) and passes calls through the relay (``synod.server.relay``). A front end
exits when its member goes away.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import secrets
import signal
import struct
import sys
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import uvloop

from synod.rpctypes import RPCError
from synod.server.api.grpc_server import ENGINES, Routes, build_server
from synod.server.api.methods import Dispatcher, Method, StreamWrite
from synod.server.relay import (
    CANCEL,
    CREDIT,
    HALF_CLOSE,
    MSG,
    FrontEndSide,
    connect_front_end_side,
    serve_member_side,
)
from synod.server.wire.connection import Route

log = logging.getLogger("synod.frontend")

_SECRET_ENV = "SYNOD_RELAY_SECRET"
_RESTART_DELAY = 1.0
_CREDIT = struct.Struct(">I")


def _socket_address(name: str) -> str:
    """ "@name" is Linux's abstract socket "\\0name"."""
    return "\0" + name[1:] if name.startswith("@") else name


def relay_routes(relay: FrontEndSide) -> Routes:
    """Relay every method to the member; bytes pass through untouched, the member parses them."""

    def routes(method: Method) -> Route:
        if method.unary:
            return Route(unary=partial(relay.call, method.id))
        relayed = partial(_relay_stream, relay, method.id)
        return Route(stream=relayed, client_streaming=method.client_streaming)

    return routes


async def _relay_stream(
    relay: FrontEndSide, method_id: int, requests: AsyncIterator[bytes], write: StreamWrite
) -> None:
    """Carry one stream between a gRPC client and the member, writing what the member sends."""
    call_id, incoming = relay.open_stream(method_id)

    async def pump_requests() -> None:
        try:
            async for request in requests:
                relay.stream_frame(MSG, call_id, method_id, request)
            relay.stream_frame(HALF_CLOSE, call_id, method_id)
        except RPCError as e:  # a request over the size limit
            incoming.put_nowait(e)

    pump = asyncio.create_task(pump_requests())
    ended = False
    try:
        while True:
            # Write every message that has arrived, then hand back their credit in one frame.
            item = await incoming.get()
            written = 0
            while isinstance(item, bytes):
                await write(item)
                written += 1
                if incoming.empty():
                    break
                item = incoming.get_nowait()
            if written:
                relay.stream_frame(CREDIT, call_id, method_id, _CREDIT.pack(written))
            if item is None:
                break
            if isinstance(item, RPCError):
                ended = True
                raise item
        ended = True
    finally:
        pump.cancel()
        if not ended:
            relay.stream_frame(CANCEL, call_id, method_id)


class FrontEnds:
    """The member's front-end processes."""

    def __init__(
        self,
        count: int,
        addresses: list[str],
        max_request_bytes: int,
        engine: str = "wire",
        gateway: bool = True,
    ) -> None:
        self._count = count
        self._addresses = addresses
        self._max_request_bytes = max_request_bytes
        self._engine = engine
        self._gateway = gateway
        self._secret = secrets.token_bytes(16)
        # An abstract Unix socket (named "@..." on the command line): no file to clean up.
        self._relay_address = f"@synod-relay-{os.getpid()}-{secrets.token_hex(4)}"
        self._relay: asyncio.AbstractServer | None = None
        self._procs: list[asyncio.subprocess.Process] = []
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self, dispatcher: Dispatcher) -> None:
        if self._count <= 0:
            return
        self._relay = await serve_member_side(dispatcher, _socket_address(self._relay_address), self._secret)
        self._procs = [await self._spawn() for _ in range(self._count)]
        self._supervisor = asyncio.create_task(self._supervise(), name="frontends")

    async def _spawn(self) -> asyncio.subprocess.Process:
        args = [sys.executable, "-m", "synod.server.frontend", "--relay", self._relay_address]
        args += ["--max-request-bytes", str(self._max_request_bytes), "--grpc-engine", self._engine]
        if not self._gateway:
            args.append("--no-gateway")
        for address in self._addresses:
            args += ["--listen", address]
        env = dict(os.environ, **{_SECRET_ENV: self._secret.hex()})
        return await asyncio.create_subprocess_exec(*args, env=env, stdin=asyncio.subprocess.DEVNULL)

    async def _supervise(self) -> None:
        while not self._stopping:
            waits = {asyncio.ensure_future(p.wait()): i for i, p in enumerate(self._procs)}
            done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for fut in pending:
                fut.cancel()
            if self._stopping:
                return
            for fut in done:
                i = waits[fut]
                log.warning("front end %d exited with %s; restarting it", self._procs[i].pid, fut.result())
                await asyncio.sleep(_RESTART_DELAY)
                self._procs[i] = await self._spawn()

    async def stop(self) -> None:
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        for p in self._procs:
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
        for p in self._procs:
            try:
                await asyncio.wait_for(p.wait(), 5)
            except TimeoutError:
                p.kill()
                await p.wait()
        if self._relay is not None:
            self._relay.close()


def _die_with_parent() -> None:
    """Ask Linux to kill this process when the member dies, so the port is free at once for its restart."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


async def _run(
    relay_address: str, addresses: list[str], max_request_bytes: int, engine: str, gateway: bool
) -> None:
    relay = await connect_front_end_side(
        _socket_address(relay_address), bytes.fromhex(os.environ[_SECRET_ENV])
    )
    server = build_server(
        relay_routes(relay),
        addresses,
        max_request_bytes=max_request_bytes,
        reuse_port=True,
        engine=engine,
        gateway=gateway,
    )
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    await asyncio.wait([stopped, relay.closed], return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    # Without a member there is nothing to finish: stop at once.
    await server.stop(grace=None if relay.closed.done() else 1.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="synod-frontend", description=__doc__)
    parser.add_argument("--relay", required=True)
    parser.add_argument("--listen", action="append", required=True)
    parser.add_argument("--max-request-bytes", type=int, required=True)
    parser.add_argument("--grpc-engine", choices=ENGINES, default="wire")
    parser.add_argument("--no-gateway", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _die_with_parent()
    uvloop.run(_run(args.relay, args.listen, args.max_request_bytes, args.grpc_engine, not args.no_gateway))


if __name__ == "__main__":
    main()
