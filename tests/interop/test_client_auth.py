"""The client's authentication, against a real etcd 3.4 and against synod. A restart drops
simple tokens: the client must get a new one, for unary calls and for the streams it resumes;
so does a token unused for longer than ``--auth-token-ttl``."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable

import pytest

from synod.client import errors
from tests.support.clients import open_client, run, wait_for
from tests.support.servers import ServerProcess


def enable_auth(server: ServerProcess) -> None:
    ctl = shutil.which("etcdctl")
    assert ctl is not None
    for args in (["user", "add", "root:secret"], ["auth", "enable"]):
        subprocess.run(
            [ctl, f"--endpoints={server.endpoint}", *args],
            env={"ETCDCTL_API": "3"}, check=True, capture_output=True, timeout=30,
        )  # fmt: skip


@pytest.mark.parametrize("kind", ["sync"])  # the other client in the next test
def test_auth_across_a_restart(any_server: ServerProcess, kind: str) -> None:
    etcd = any_server
    enable_auth(etcd)

    async def body() -> None:
        async with open_client(kind, etcd.endpoint, user="root", password="secret") as c:
            await c.put("k", "v1")
            assert (await c.get("k")).kvs[0].value == b"v1"
            w = await c.watch("k")
            lid = (await c.lease_grant(6)).ID
            ka = await c.keep_alive(lid, 6)
            await wait_for(lambda: ka.renewals >= 1, 5, "a renewal")
            etcd.kill()
            etcd.start()
            await c.put("k", "v2")
            assert (await c.get("k")).kvs[0].value == b"v2"
            # The watch and the keep-alive resumed with the token, and missed nothing.
            events = await w.events(1, timeout=20)
            assert events[0].kv.value == b"v2"
            before = ka.renewals
            await wait_for(lambda: ka.renewals > before or ka.is_lost(), 10, "a renewal after the restart")
            assert not ka.is_lost()
            await ka.close()
            await w.cancel()

        async with open_client(kind, etcd.endpoint, user="root", password="wrong") as bad:
            with pytest.raises(errors.AuthFailedError):
                await bad.get("k")
        async with open_client(kind, etcd.endpoint) as anonymous:
            with pytest.raises(errors.EtcdError) as e:
                await anonymous.get("k")
            assert type(e.value) in (errors.UserEmptyError, errors.PermissionDeniedError)

    run(body())


@pytest.mark.parametrize("server", ["etcd", "synod"])
@pytest.mark.parametrize("kind", ["async"])
def test_an_expired_token_is_replaced(
    start_server: Callable[..., ServerProcess], kind: str, server: str
) -> None:
    etcd = start_server(server, "--auth-token-ttl", "1")
    enable_auth(etcd)

    async def body() -> None:
        async with open_client(kind, etcd.endpoint, user="root", password="secret") as c:
            await c.put("k", "v1")
            first = c.aio.conn.metadata
            used = time.monotonic()
            # Unused for longer than its TTL (and etcd's 1 s check), the token is dropped...
            await wait_for(lambda: time.monotonic() - used > 2.5, 5, "the token's TTL to pass")
            # ...so the call is refused for it, authenticates again and is retried, once.
            await c.put("k", "v2")
            assert c.aio.conn.metadata != first
            assert (await c.get("k")).kvs[0].value == b"v2"

    run(body())


@pytest.mark.parametrize("server", ["etcd", "synod"])
@pytest.mark.parametrize("kind", ["sync"])
def test_a_watch_refused_for_an_expired_token_authenticates_again(
    start_server: Callable[..., ServerProcess], kind: str, server: str
) -> None:
    """etcd cancels a watch created with an expired token ("... invalid auth token"), where a
    unary call gets the error: the watch, too, gets a new token and is created."""
    etcd = start_server(server, "--auth-token-ttl", "1")
    enable_auth(etcd)

    async def body() -> None:
        async with open_client(kind, etcd.endpoint, user="root", password="secret") as c:
            rev = (await c.put("k", "v1")).header.revision
            first = c.aio.conn.metadata
            used = time.monotonic()
            await wait_for(lambda: time.monotonic() - used > 2.5, 5, "the token's TTL to pass")
            w = await c.watch("k", start_revision=rev)
            assert c.aio.conn.metadata != first
            await c.put("k", "v2")
            assert [e.kv.value for e in await w.events(2)] == [b"v1", b"v2"]
            await w.cancel()

    run(body())
