"""A TCP proxy that delays every byte by a fixed time in each direction: a network's latency on loopback.

Each chunk read from one side is written to the other ``--delay-ms`` later
(order kept), so a round trip through the proxy takes twice the delay more
than without it. Run as its own process, so that its work does not share the
benchmark client's event loop:

    .venv/bin/python benchmarks/delay_proxy.py --listen 127.0.0.1:23000 --target 127.0.0.1:2379 --delay-ms 5
"""

from __future__ import annotations

import argparse
import asyncio
import socket

import uvloop


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    try:
        while data := await reader.read(65536):
            if delay:
                loop.call_later(delay, writer.write, data)
            else:
                writer.write(data)
        if delay:
            await asyncio.sleep(delay)
        writer.close()
    except (ConnectionError, OSError):
        writer.close()


async def serve(listen: tuple[str, int], target: tuple[str, int], delay: float) -> None:
    async def accept(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sr, sw = await asyncio.open_connection(*target)
        for w in (cw, sw):
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(_pipe(cr, sw, delay), _pipe(sr, cw, delay))

    server = await asyncio.start_server(accept, *listen, reuse_address=True, backlog=1024)
    async with server:
        await server.serve_forever()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--delay-ms", type=float, default=0.0)
    args = p.parse_args()
    uvloop.run(serve(_address(args.listen), _address(args.target), args.delay_ms / 1000))


if __name__ == "__main__":
    main()
