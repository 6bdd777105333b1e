"""``member add|remove|update|list|promote``: etcdctl 3.4's membership commands.

Arguments are checked first, as etcdctl checks them (exit 128: ``member name
not provided``, ``member ID is not provided``, ``bad member ID arg (...),
expecting ID in Hex``, ``member peer urls not provided``); then the client is
opened (environment, ``--debug``, output format); then ``add`` and ``update``
check the peer URLs as clientv3 does (urls.py; exit 1) and the call is made
within the command timeout (a server error: exit 1, bare). ``add`` in the
simple format also prints the ``ETCD_*`` settings the new member starts with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from synod.ctl.cluster import ClusterClient
from synod.ctl.config import GLOBAL_FLAGS
from synod.ctl.errors import EXIT_BAD_ARGS, EXIT_ERROR, CtlExit
from synod.ctl.flags import Flag, ParsedFlags, find_command, help_flag, strip_flags, without_first
from synod.ctl.gostrconv import NumError, parse_uint, quote
from synod.ctl.invocation import Invocation
from synod.ctl.printer_cluster import ClusterPrinter
from synod.ctl.rpc import CallError
from synod.ctl.urls import URLError, check_urls
from synod.ctl.usage import CommandHelp
from synod.duration import to_seconds

T = TypeVar("T")

MEMBER_HELP = CommandHelp(
    "member", "member <subcommand>", "Adds, removes, updates, promotes and lists members"
)
_LIST_LONG = """
In the simple format each member is one line of comma-separated items: ID, status, name,
peer URLs, client URLs, whether it is a learner.
"""
SUBCOMMANDS: dict[str, tuple[CommandHelp, tuple[Flag, ...]]] = {
    "add": (
        CommandHelp("member add", "member add <memberName> [options]", "Adds a member to the cluster"),
        (
            Flag("peer-urls", "string", "", "the new member's peer URLs, comma-separated"),
            Flag("learner", "bool", "false", "add the member as a learner (a non-voting member)"),
        ),
    ),
    "remove": (
        CommandHelp("member remove", "member remove <memberID>", "Removes a member from the cluster"),
        (),
    ),
    "update": (
        CommandHelp("member update", "member update <memberID> [options]", "Changes a member's peer URLs"),
        (Flag("peer-urls", "string", "", "the member's new peer URLs, comma-separated"),),
    ),
    "list": (CommandHelp("member list", "member list", "Lists the cluster's members", _LIST_LONG), ()),
    "promote": (
        CommandHelp(
            "member promote",
            "member promote <memberID>",
            "Promotes a learner to a voting member",
            "Makes a learner that has caught up with the leader a voting member.",
        ),
        (),
    ),
}


def _member_id(parsed: ParsedFlags) -> int:
    if len(parsed.args) != 1:
        raise CtlExit(EXIT_BAD_ARGS, "member ID is not provided")
    try:
        return parse_uint(parsed.args[0], 16, 64)
    except NumError as e:
        raise CtlExit(EXIT_BAD_ARGS, f"bad member ID arg ({e}), expecting ID in Hex") from None


def _peer_urls(parsed: ParsedFlags) -> tuple[str, list[str]]:
    text = parsed.get_str("peer-urls")
    if not text:
        raise CtlExit(EXIT_BAD_ARGS, "member peer urls not provided")
    return text, text.split(",")


def _call(call: Callable[[], T]) -> T:
    try:
        return call()
    except CallError as e:
        raise CtlExit(EXIT_ERROR, str(e)) from None


def _check(urls: list[str]) -> None:
    try:
        check_urls(urls)
    except URLError as e:
        raise CtlExit(EXIT_ERROR, str(e)) from None


def _connect(inv: Invocation, parsed: ParsedFlags) -> tuple[float, ClusterPrinter, ClusterClient]:
    options, printer, client = inv.connect(parsed, ClusterClient, ClusterPrinter)
    return to_seconds(options.command_timeout), printer, client


def _add(inv: Invocation, parsed: ParsedFlags) -> None:
    args = parsed.args
    if not args:
        raise CtlExit(EXIT_BAD_ARGS, "member name not provided")
    if len(args) > 1:
        hints = "".join(f", did you mean --peer-urls={a}" for a in args if a.lower().startswith("http"))
        raise CtlExit(EXIT_BAD_ARGS, "too many arguments" + hints)
    name = args[0]
    text, urls = _peer_urls(parsed)
    learner = parsed.get_bool("learner")
    timeout, printer, client = _connect(inv, parsed)
    with client:
        _check(urls)
        resp = _call(lambda: client.member_add(urls, learner, timeout))
    printer.member_add(resp)
    if printer.format != "simple":
        return
    initial = ",".join(
        f"{name if m.ID == resp.member.ID else m.name}={url}" for m in resp.members for url in m.peerURLs
    )
    inv.out(
        f"\nETCD_NAME={quote(name)}\nETCD_INITIAL_CLUSTER={quote(initial)}\n"
        f'ETCD_INITIAL_ADVERTISE_PEER_URLS={quote(text)}\nETCD_INITIAL_CLUSTER_STATE="existing"\n'
    )


def _remove(inv: Invocation, parsed: ParsedFlags) -> None:
    member_id = _member_id(parsed)
    timeout, printer, client = _connect(inv, parsed)
    with client:
        resp = _call(lambda: client.member_remove(member_id, timeout))
    printer.member_remove(member_id, resp)


def _update(inv: Invocation, parsed: ParsedFlags) -> None:
    member_id = _member_id(parsed)
    _, urls = _peer_urls(parsed)
    timeout, printer, client = _connect(inv, parsed)
    with client:
        _check(urls)
        resp = _call(lambda: client.member_update(member_id, urls, timeout))
    printer.member_update(member_id, resp)


def _list(inv: Invocation, parsed: ParsedFlags) -> None:
    timeout, printer, client = _connect(inv, parsed)
    with client:
        resp = _call(lambda: client.member_list(timeout))
    printer.member_list(resp)


def _promote(inv: Invocation, parsed: ParsedFlags) -> None:
    member_id = _member_id(parsed)
    timeout, printer, client = _connect(inv, parsed)
    with client:
        resp = _call(lambda: client.member_promote(member_id, timeout))
    printer.member_promote(member_id, resp)


_HANDLERS: dict[str, Callable[[Invocation, ParsedFlags], None]] = {
    "add": _add,
    "remove": _remove,
    "update": _update,
    "list": _list,
    "promote": _promote,
}


def member_command(inv: Invocation, argv: Sequence[str]) -> None:
    """``member ...``: the subcommand named (or uniquely prefixed) by the first word; else the usage."""
    words = strip_flags(argv, [*GLOBAL_FLAGS, help_flag("member")])
    name = find_command(words[0], list(SUBCOMMANDS)) if words else None
    if name is None:
        inv.parse("member", argv)
        inv.out(inv.usage("member"))
        return
    parsed = inv.parse(f"member {name}", without_first(argv, words[0]))
    _HANDLERS[name](inv, parsed)
