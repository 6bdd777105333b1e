"""etcd's `etcdctl check perf` passes against synod (60 s per load: behind --run-slow)."""

from __future__ import annotations

import subprocess

import pytest


@pytest.mark.slow
@pytest.mark.parametrize("load", ["s", "m"])
def test_etcdctl_check_perf_passes(synod, load):
    result = subprocess.run(
        ["etcdctl", f"--endpoints={synod.endpoint}", "check", "perf", f"--load={load}"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    tail = result.stdout.rsplit("\r", 1)[-1]
    assert result.returncode == 0, tail + result.stderr
    assert "FAIL" not in tail
    assert tail.rstrip().endswith("PASS"), tail
