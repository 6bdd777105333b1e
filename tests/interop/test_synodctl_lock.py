"""``synodctl lock`` and ``elect`` against synod, beside etcd's own ``etcdctl`` 3.4: the release's
examples with synodctl (recipe and ``--rpc``), the same outputs as etcdctl's, and a holder killed
with SIGKILL releasing the lock when its lease expires.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.interop.test_seed_examples import JSON_LOCK, _bash
from tests.support.etcdctl import etcdctl_binary
from tests.support.servers import ServerProcess, wait_until

SYNODCTL = [sys.executable, "-m", "synod.ctl.main"]


def _env(server: ServerProcess) -> dict[str, str]:
    return dict(os.environ, ETCDCTL_ENDPOINTS=server.endpoint)


def _ctl(
    tool: str, server: ServerProcess, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    argv = [etcdctl_binary()] if tool == "etcdctl" else SYNODCTL
    return subprocess.run([*argv, *args], env=_env(server), capture_output=True, timeout=60, cwd=cwd)


@pytest.mark.parametrize("mode", [[], ["--rpc"]], ids=["recipe", "rpc"])
def test_a_hundred_synodctl_lockers_add_up(synod: ServerProcess, tmp_path: Path, mode: list[str]) -> None:
    (tmp_path / "f").write_text("0\n")
    locker = [*SYNODCTL, "lock", *mode, "mylock", "--", "bash", "-c", "expr 1 + $(cat f) > f"]
    procs = [subprocess.Popen(locker, env=_env(synod), cwd=tmp_path) for _ in range(100)]
    codes = [p.wait(timeout=300) for p in procs]
    assert codes == [0] * 100
    assert (tmp_path / "f").read_text().strip() == "100"


@pytest.mark.parametrize("mode", ["", " --rpc"], ids=["recipe", "rpc"])
def test_the_json_lock_example_with_synodctl(synod: ServerProcess, tmp_path: Path, mode: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "synodctl"
    wrapper.write_text(f'#!/bin/sh\nexec {" ".join(SYNODCTL)} "$@"\n')
    wrapper.chmod(0o755)
    script = JSON_LOCK.replace("ETCDCTL_API=3 etcdctl lock", f"PATH={bin_dir}:$PATH synodctl lock{mode}")
    out = _bash(script, synod, tmp_path, timeout=60).split()
    taken, acquired = float(out[0]), float(out[1])
    assert acquired - taken >= 4.0, "synodctl got the lock while the JSON client's lease still held it"


def _normalised(p: subprocess.CompletedProcess[bytes]) -> tuple[int, bytes, bytes]:
    hexes = lambda b: re.sub(rb"/[0-9a-f]{8,16}\b", b"/<lease>", b)  # noqa: E731
    return p.returncode, hexes(p.stdout), hexes(p.stderr).replace(b"etcdctl", b"synodctl")


@pytest.mark.parametrize(
    "args",
    [
        ["lock"],
        [
            "lock",
            "outname",
            "--",
            "sh",
            "-c",
            'echo "$ETCD_LOCK_KEY" | cut -d/ -f1; test -n "$ETCD_LOCK_REV"',
        ],
        ["lock", "failname", "--", "sh", "-c", "exit 3"],
        ["elect"],
        ["elect", "a", "b", "c"],
        ["elect", "nameonly"],
        ["elect", "-l", "name", "proposal"],
    ],
    ids=[
        "no-name",
        "command-env",
        "command-fails",
        "elect-no-args",
        "elect-3-args",
        "elect-no-l",
        "elect-l-proposal",
    ],
)
def test_outputs_as_etcdctls(synod: ServerProcess, args: list[str]) -> None:
    etcdctl = _normalised(_ctl("etcdctl", synod, *args))
    synodctl = _normalised(_ctl("synodctl", synod, *args))
    assert synodctl == etcdctl


def _hold(tool: str, server: ServerProcess, *args: str) -> subprocess.Popen[bytes]:
    argv = [etcdctl_binary()] if tool == "etcdctl" else SYNODCTL
    return subprocess.Popen(
        [*argv, *args], env=_env(server), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )


def _line(p: subprocess.Popen[bytes]) -> bytes:
    assert p.stdout is not None
    return p.stdout.readline()


def _stop(*procs: subprocess.Popen[bytes]) -> list[int]:
    """SIGINT each, then its exit code (its pipes closed)."""
    codes = []
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
        codes.append(p.wait(timeout=30))
        if p.stdout is not None:
            p.stdout.close()
    return codes


@pytest.mark.parametrize("tool", ["etcdctl", "synodctl"])
def test_lock_held_until_sigint_then_released(synod: ServerProcess, tool: str) -> None:
    holder = _hold(tool, synod, "lock", f"held-{tool}")
    try:
        key = _line(holder)  # printed once the lock is held
        assert key.startswith(f"held-{tool}/".encode())
        keys = _ctl("etcdctl", synod, "get", "--prefix", f"held-{tool}", "--keys-only").stdout
        assert keys.strip() == key.strip()
    finally:
        assert _stop(holder) == [0]
    assert _ctl("etcdctl", synod, "get", "--prefix", f"held-{tool}", "--keys-only").stdout == b""


@pytest.mark.parametrize("mode", [[], ["--rpc"]], ids=["recipe", "rpc"])
def test_a_holder_killed_releases_the_lock_when_its_lease_expires(
    synod: ServerProcess, mode: list[str]
) -> None:
    holder = _hold("synodctl", synod, "lock", *mode, "--ttl", "2", "killed")
    try:
        assert _line(holder).startswith(b"killed/")
        holder.kill()  # SIGKILL: no unlock, no revoke
    finally:
        _stop(holder)
    start = time.monotonic()
    waiter = _ctl("synodctl", synod, "lock", *mode, "killed", "--", "true")
    assert waiter.returncode == 0, waiter
    # Not at once: the 2 s lease had to expire (its last renewal was at most 2/3 s before the kill).
    assert time.monotonic() - start >= 0.5


@pytest.mark.parametrize("mode", [[], ["--rpc"]], ids=["recipe", "rpc"])
def test_elect_and_observe_as_etcdctl(synod: ServerProcess, mode: list[str]) -> None:
    name = f"el{len(mode)}"
    observer = _hold("etcdctl", synod, "elect", "-l", name)
    leader = _hold("synodctl", synod, "elect", *mode, name, "first")
    second: subprocess.Popen[bytes] | None = None
    try:
        assert _line(leader).startswith(f"{name}/".encode())
        assert _line(leader) == b"first\n"
        assert _line(observer).startswith(f"{name}/".encode())
        assert _line(observer) == b"first\n"
        second = _hold("synodctl", synod, "elect", *mode, name, "second")
        assert _stop(leader) == [0]  # resigns: the second campaigner leads
        assert _line(second).startswith(f"{name}/".encode())
        assert _line(second) == b"second\n"
        assert _line(observer).startswith(f"{name}/".encode())
        assert _line(observer) == b"second\n"
    finally:
        _stop(leader, observer, *([second] if second else []))
    wait_until(lambda: _ctl("etcdctl", synod, "get", "--prefix", name).stdout == b"", 10, "resigned")
