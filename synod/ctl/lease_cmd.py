"""``lease grant|revoke|timetolive|list|keep-alive``: etcdctl 3.4's lease commands.

Argument checks, errors and exit codes are etcdctl's: ``grant`` and
``revoke`` fail with exit code 1 (``failed to grant lease (...)``) within
the command timeout; ``timetolive``, ``list`` and ``keep-alive`` have no
deadline and fail with exit code 2 and the bare error. ``timetolive`` and
``list`` open the client before reading the lease ID, as etcdctl does (so an
output format error comes first). ``keep-alive`` prints each renewal until
the lease is gone, then (in the simple format) ``lease <ID> expired or
revoked.`` and exits 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from synod.ctl.config import GLOBAL_FLAGS
from synod.ctl.errors import EXIT_BAD_ARGS, EXIT_BAD_CONNECTION, EXIT_ERROR, CtlExit
from synod.ctl.flags import Flag, ParsedFlags, find_command, help_flag, strip_flags, without_first
from synod.ctl.gostrconv import NumError, parse_int
from synod.ctl.invocation import Invocation
from synod.ctl.lease import LeaseClient
from synod.ctl.printer_lease import LeasePrinter, lease_hex
from synod.ctl.rpc import CallError
from synod.ctl.usage import CommandHelp
from synod.duration import to_seconds

T = TypeVar("T")

LEASE_HELP = CommandHelp("lease", "lease <subcommand>", "Grants, renews, revokes and lists leases")
SUBCOMMANDS: dict[str, tuple[CommandHelp, tuple[Flag, ...]]] = {
    "grant": (CommandHelp("lease grant", "lease grant <ttl>", "Grants a lease with a TTL in seconds"), ()),
    "revoke": (CommandHelp("lease revoke", "lease revoke <leaseID>", "Revokes a lease"), ()),
    "timetolive": (
        CommandHelp("lease timetolive", "lease timetolive <leaseID> [options]", "Shows a lease's TTLs"),
        (Flag("keys", "bool", "false", "also list the keys attached to the lease"),),
    ),
    "list": (CommandHelp("lease list", "lease list", "Lists the leases in force"), ()),
    "keep-alive": (
        CommandHelp(
            "lease keep-alive", "lease keep-alive [options] <leaseID>", "Renews a lease until it ends"
        ),
        (Flag("once", "bool", "false", "renew the lease once, print the answer and exit"),),
    ),
}


def _lease_id(text: str) -> int:
    try:
        return parse_int(text, 16, 64)
    except NumError as e:
        raise CtlExit(EXIT_BAD_ARGS, f"bad lease ID arg ({e}), expecting ID in Hex") from None


def _call(call: Callable[[], T], code: int, wording: str = "{}") -> T:
    try:
        return call()
    except CallError as e:
        raise CtlExit(code, wording.format(e)) from None


def _connect(inv: Invocation, parsed: ParsedFlags) -> tuple[float, LeasePrinter, LeaseClient]:
    options, printer, client = inv.connect(parsed, LeaseClient, LeasePrinter)
    return to_seconds(options.command_timeout), printer, client


def _grant(inv: Invocation, parsed: ParsedFlags) -> None:
    if len(parsed.args) != 1:
        raise CtlExit(EXIT_BAD_ARGS, "lease grant command needs TTL argument")
    try:
        ttl = parse_int(parsed.args[0], 10, 64)
    except NumError as e:
        raise CtlExit(EXIT_BAD_ARGS, f"bad TTL ({e})") from None
    timeout, printer, client = _connect(inv, parsed)
    with client:
        resp = _call(lambda: client.grant(ttl, timeout), EXIT_ERROR, "failed to grant lease ({})")
    printer.grant(resp)


def _revoke(inv: Invocation, parsed: ParsedFlags) -> None:
    if len(parsed.args) != 1:
        raise CtlExit(EXIT_BAD_ARGS, "lease revoke command needs 1 argument")
    lease_id = _lease_id(parsed.args[0])
    timeout, printer, client = _connect(inv, parsed)
    with client:
        resp = _call(lambda: client.revoke(lease_id, timeout), EXIT_ERROR, "failed to revoke lease ({})")
    printer.revoke(lease_id, resp)


def _time_to_live(inv: Invocation, parsed: ParsedFlags) -> None:
    if len(parsed.args) != 1:
        raise CtlExit(EXIT_BAD_ARGS, "lease timetolive command needs lease ID as argument")
    keys = parsed.get_bool("keys")
    _, printer, client = _connect(inv, parsed)
    with client:
        lease_id = _lease_id(parsed.args[0])
        resp = _call(lambda: client.time_to_live(lease_id, keys, None), EXIT_BAD_CONNECTION)
    printer.time_to_live(resp, keys)


def _list(inv: Invocation, parsed: ParsedFlags) -> None:
    _, printer, client = _connect(inv, parsed)
    with client:
        resp = _call(lambda: client.leases(None), EXIT_BAD_CONNECTION)
    printer.leases(resp)


def _keep_alive(inv: Invocation, parsed: ParsedFlags) -> None:
    if len(parsed.args) != 1:
        raise CtlExit(EXIT_BAD_ARGS, "lease keep-alive command needs lease ID as argument")
    lease_id = _lease_id(parsed.args[0])
    _, printer, client = _connect(inv, parsed)
    with client:
        if parsed.get_bool("once"):
            resp = _call(lambda: client.keep_alive_once(lease_id), EXIT_BAD_CONNECTION)
            printer.keep_alive(resp)
            return
        for resp in client.keep_alive(lease_id):
            printer.keep_alive(resp)
            inv.flush()
    if printer.format == "simple":
        inv.out(f"lease {lease_hex(lease_id)} expired or revoked.\n")


_HANDLERS: dict[str, Callable[[Invocation, ParsedFlags], None]] = {
    "grant": _grant,
    "revoke": _revoke,
    "timetolive": _time_to_live,
    "list": _list,
    "keep-alive": _keep_alive,
}


def lease_command(inv: Invocation, argv: Sequence[str]) -> None:
    """``lease ...``: the subcommand named (or uniquely prefixed) by the first word; else the usage."""
    words = strip_flags(argv, [*GLOBAL_FLAGS, help_flag("lease")])
    name = find_command(words[0], list(SUBCOMMANDS)) if words else None
    if name is None:
        # Not runnable by itself: cobra checks the flags, then prints the usage.
        inv.parse("lease", argv)
        inv.out(inv.usage("lease"))
        return
    parsed = inv.parse(f"lease {name}", without_first(argv, words[0]))
    _HANDLERS[name](inv, parsed)
