"""The etcd 3.2 release's lock examples (../shared/reference/seed-etcd-3.2-announcement.txt), run by bash
with etcd's own etcdctl 3.4 and curl against synod: only the address is changed (and the loop's
missing variable supplied).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import grpc

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc
from tests.support.etcdctl import etcdctl_binary
from tests.support.servers import ServerProcess

# As printed in the release post (its `for` line lacks its variable).
JSON_LOCK = """
lid=$(ETCDCTL_API=3 etcdctl -w fields lease grant 5 | grep '"ID"' | awk ' { print $3 } ')
# acquire lock by name "mylock" (base64 encoded) using JSON
curl localhost:2379/v3alpha/lock/lock -XPOST -d"{\\"name\\":\\"bXlsb2Nr\\", \\"lease\\" : $lid }" >/dev/null
date +%s.%N
# lease expires in five seconds, unlocking "mylock" and letting etcdctl acquire the lock
ETCDCTL_API=3 etcdctl lock mylock date +%s.%N
echo "lease $lid"
"""

COUNTER = """
echo 0 >f
for i in `seq 1 100`; do
  ETCDCTL_API=3 etcdctl lock mylock -- bash -c 'expr 1 + $(cat f) > f' &
  pids="$pids $!"
done
wait $pids
cat f
"""


def _bash(script: str, server: ServerProcess, cwd: Path, timeout: float) -> str:
    assert shutil.which("curl"), "curl is installed by ./dev test"
    bin_dir = cwd / "bin"
    bin_dir.mkdir(exist_ok=True)
    link = bin_dir / "etcdctl"
    if not link.exists():
        link.symlink_to(etcdctl_binary())
    env = dict(os.environ, ETCDCTL_ENDPOINTS=server.endpoint, PATH=f"{bin_dir}:{os.environ['PATH']}")
    text = script.replace("localhost:2379", server.endpoint)
    done = subprocess.run(
        ["bash", "-c", text], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done
    return done.stdout


def test_a_lock_taken_with_json_is_released_by_its_lease(synod: ServerProcess, tmp_path: Path) -> None:
    out = _bash(JSON_LOCK, synod, tmp_path, timeout=60).split()
    taken, acquired, lease = float(out[0]), float(out[1]), int(out[3])
    # etcdctl waited for the lease (5 s, granted before ``taken``) to expire: it did not get the lock
    # while the JSON client held it.
    assert acquired - taken >= 4.0, (taken, acquired)
    with grpc.insecure_channel(synod.endpoint) as ch:
        ttl = rpc_pb2_grpc.LeaseStub(ch).LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=lease), timeout=5)
    assert ttl.TTL == -1, "the JSON client's lease expired"


def test_a_hundred_etcdctl_lockers_add_up(synod: ServerProcess, tmp_path: Path) -> None:
    out = _bash(COUNTER, synod, tmp_path, timeout=300)
    assert out.strip() == "100"
