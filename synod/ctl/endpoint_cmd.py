"""``endpoint health|status|hashkv`` and ``move-leader``: etcdctl 3.4's commands about endpoints.

The endpoints are ``--endpoints`` as given, or with ``--cluster`` (which
``endpoint`` passes down to its subcommands, ``ETCDCTL_CLUSTER`` too) every
member's client URLs from a member list (``failed to fetch endpoints from
etcd cluster member list: ...``, exit 1).

- ``health``: every endpoint at once, each with its own client and the
  command timeout: a linearizable get of the key ``health`` (permission denied
  counts as healthy), printed in the order the answers come; if any failed,
  ``unhealthy cluster`` (exit 1). As etcdctl, it never dumps ``--debug``.
- ``status`` and ``hashkv``: one endpoint after another, each with its own
  timeout; a failure prints ``Failed to get the status|hash of endpoint <ep>
  (<error>)`` and the others are printed; then exit 1 (``hashkv`` also with
  ``Error: <the last error>``).
- ``move-leader``: asks each endpoint's status (one deadline for the whole
  command) until one is the leader (none: ``no leader endpoint given at
  [...]``, exit 128), and has it transfer leadership to the member given in hex.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TypeVar

from synod import rpctypes
from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.ctl.cluster import ClusterClient
from synod.ctl.config import GLOBAL_FLAGS, GlobalOptions
from synod.ctl.errors import EXIT_BAD_ARGS, EXIT_ERROR, CtlExit
from synod.ctl.flags import Flag, ParsedFlags, find_command, help_flag, strip_flags, without_first
from synod.ctl.gostrconv import NumError, parse_uint
from synod.ctl.invocation import Invocation
from synod.ctl.kv import KVClient
from synod.ctl.printer_cluster import ClusterPrinter, EndpointHealth, go_strings
from synod.ctl.rpc import CallError
from synod.ctl.usage import CommandHelp
from synod.duration import format_duration, to_seconds

T = TypeVar("T")

CLUSTER_FLAG = Flag("cluster", "bool", "false", "use every member's client URLs, from the member list")
INHERITED = (CLUSTER_FLAG,)
HEALTH_KEY = b"health"

ENDPOINT_HELP = CommandHelp("endpoint", "endpoint <subcommand>", "Checks endpoints: health, status, KV hash")
_STATUS_LONG = """
In the simple format each endpoint is one line of comma-separated items: endpoint, ID, version,
db size, is leader, is learner, raft term, raft index, raft applied index, errors.
"""
SUBCOMMANDS: dict[str, tuple[CommandHelp, tuple[Flag, ...]]] = {
    "health": (
        CommandHelp("endpoint health", "endpoint health", "Checks that each endpoint commits a read"),
        (),
    ),
    "status": (
        CommandHelp("endpoint status", "endpoint status", "Prints each endpoint's status", _STATUS_LONG),
        (),
    ),
    "hashkv": (
        CommandHelp("endpoint hashkv", "endpoint hashkv", "Prints each endpoint's hash of the KV history"),
        (Flag("rev", "int64", "0", "the last revision to hash (0: all of them)"),),
    ),
}
MOVE_LEADER_HELP = CommandHelp(
    "move-leader", "move-leader <transferee-member-id>", "Transfers leadership to another member"
)


def _call(call: Callable[[], T], wording: str = "{}") -> T:
    try:
        return call()
    except CallError as e:
        raise CtlExit(EXIT_ERROR, wording.format(e)) from None


def endpoints_of(inv: Invocation, parsed: ParsedFlags, options: GlobalOptions) -> list[str]:
    """``--endpoints`` as given (spaces kept), or with ``--cluster`` the members' client URLs."""
    if not parsed.get_bool("cluster"):
        return parsed.get_strings("endpoints")
    if not options.endpoints:
        raise CtlExit(EXIT_ERROR, "etcdclient: no available endpoints")
    client = inv.client(options, ClusterClient, options.endpoints)
    with client:
        resp = _call(
            lambda: client.member_list(to_seconds(options.command_timeout)),
            "failed to fetch endpoints from etcd cluster member list: {}",
        )
    return [url for m in resp.members for url in m.clientURLs]


def _check_health(inv: Invocation, options: GlobalOptions, endpoint: str) -> EndpointHealth:
    client = inv.client(options, KVClient, [endpoint])
    with client:
        start = time.monotonic_ns()
        try:
            client.range(pb.RangeRequest(key=HEALTH_KEY), to_seconds(options.command_timeout))
            error = ""
        except CallError as e:
            error = str(e)
        took = format_duration(time.monotonic_ns() - start)
    if error in ("", rpctypes.PERMISSION_DENIED.message):
        return EndpointHealth(endpoint, True, took)
    return EndpointHealth(endpoint, False, took, error)


def _health(inv: Invocation, parsed: ParsedFlags) -> None:
    options, printer = inv.output(parsed, ClusterPrinter, inherited=INHERITED, debug=False)
    endpoints = endpoints_of(inv, parsed, options)
    answers: queue.Queue[EndpointHealth] = queue.Queue()

    def check(endpoint: str) -> None:
        try:
            answers.put(_check_health(inv, options, endpoint))
        except Exception as e:  # never leave the command waiting
            answers.put(EndpointHealth(endpoint, False, "", str(e)))

    for endpoint in endpoints:
        threading.Thread(target=check, args=(endpoint,), daemon=True).start()
    healths = [answers.get() for _ in endpoints]  # in the order they come, as etcdctl's channel
    printer.endpoint_health(healths, inv.streams.stderr)
    if any(h.error for h in healths):
        raise CtlExit(EXIT_ERROR, "unhealthy cluster")


def _status(inv: Invocation, parsed: ParsedFlags) -> None:
    options, printer, client = inv.connect(parsed, ClusterClient, ClusterPrinter, inherited=INHERITED)
    timeout = to_seconds(options.command_timeout)
    statuses: list[tuple[str, pb.StatusResponse]] = []
    failed = False
    with client:
        for endpoint in endpoints_of(inv, parsed, options):
            try:
                statuses.append((endpoint, client.status(endpoint, timeout)))
            except CallError as e:
                failed = True
                inv.err(f"Failed to get the status of endpoint {endpoint} ({e})\n")
    printer.endpoint_status(statuses)
    if failed:
        raise CtlExit(EXIT_ERROR, "", raw="")


def _hashkv(inv: Invocation, parsed: ParsedFlags) -> None:
    options, printer, client = inv.connect(parsed, ClusterClient, ClusterPrinter, inherited=INHERITED)
    timeout = to_seconds(options.command_timeout)
    revision = parsed.get_int("rev")
    hashes: list[tuple[str, pb.HashKVResponse]] = []
    error: CallError | None = None
    with client:
        for endpoint in endpoints_of(inv, parsed, options):
            try:
                hashes.append((endpoint, client.hash_kv(endpoint, revision, timeout)))
            except CallError as e:
                error = e
                inv.err(f"Failed to get the hash of endpoint {endpoint} ({e})\n")
    printer.endpoint_hashkv(hashes)
    if error is not None:
        raise CtlExit(EXIT_ERROR, str(error))


_HANDLERS: dict[str, Callable[[Invocation, ParsedFlags], None]] = {
    "health": _health,
    "status": _status,
    "hashkv": _hashkv,
}


def endpoint_command(inv: Invocation, argv: Sequence[str]) -> None:
    """``endpoint ...``: the subcommand named (or uniquely prefixed) by the first word; else the usage."""
    words = strip_flags(argv, [*GLOBAL_FLAGS, CLUSTER_FLAG, help_flag("endpoint")])
    name = find_command(words[0], list(SUBCOMMANDS)) if words else None
    if name is None:
        inv.parse("endpoint", argv)
        inv.out(inv.usage("endpoint"))
        return
    parsed = inv.parse(f"endpoint {name}", without_first(argv, words[0]))
    _HANDLERS[name](inv, parsed)


def move_leader_command(inv: Invocation, argv: Sequence[str]) -> None:
    """``move-leader <hex ID>``: find the leader among the endpoints, and have it hand over."""
    parsed = inv.parse("move-leader", argv)
    if len(parsed.args) != 1:
        raise CtlExit(EXIT_BAD_ARGS, "move-leader command needs 1 argument")
    try:
        target = parse_uint(parsed.args[0], 16, 64)
    except NumError as e:
        raise CtlExit(EXIT_BAD_ARGS, str(e)) from None
    options, printer, client = inv.connect(parsed, ClusterClient, ClusterPrinter)
    deadline = time.monotonic() + to_seconds(options.command_timeout)

    def remaining() -> float:
        return deadline - time.monotonic()

    with client:
        for endpoint in options.endpoints:
            status = _call(partial(client.status, endpoint, remaining()))
            if status.header.member_id == status.leader:
                leader, leader_endpoint = status.leader, endpoint
                break
        else:
            raise CtlExit(EXIT_BAD_ARGS, f"no leader endpoint given at {go_strings(options.endpoints)}")
        resp = _call(lambda: client.move_leader(leader_endpoint, target, remaining()))
    printer.move_leader(leader, target, resp)
