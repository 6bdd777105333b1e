"""``synodctl``: an etcdctl 3.4-compatible command line client for synod (and etcd).

Commands: get, put, del, txn, compaction, watch, lease (grant, revoke, timetolive, list,
keep-alive), member (add, remove, update, list, promote), endpoint (health, status, hashkv),
move-leader, version (and help). Flags, defaults, output formats and exit codes are
etcdctl's. click registers and dispatches the commands; the command line itself is read as
etcdctl's pflag reads it (synod.ctl.flags), because click's syntax and messages differ.

``synodctl version`` prints ``synodctl version: <synod version>`` and
``API version: 3.4`` (etcdctl's two lines, with synodctl's own name and version).
"""

from __future__ import annotations

import io
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import BinaryIO, TypeVar, cast

import click

from synod import ETCD_API_VERSION, __version__
from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.ctl import txn_parse
from synod.ctl.config import GLOBAL_FLAGS
from synod.ctl.endpoint_cmd import (
    ENDPOINT_HELP,
    INHERITED,
    MOVE_LEADER_HELP,
    endpoint_command,
    move_leader_command,
)
from synod.ctl.endpoint_cmd import SUBCOMMANDS as ENDPOINT_SUBCOMMANDS
from synod.ctl.errors import EXIT_BAD_ARGS, EXIT_ERROR, CtlExit
from synod.ctl.flags import (
    FlagError,
    find_command,
    help_flag,
    parse_flags,
    strip_flags,
    suggestions,
    without_first,
)
from synod.ctl.gostrconv import quote
from synod.ctl.invocation import CommandSpec, Invocation, Streams, encode
from synod.ctl.kv import KVClient, KVError
from synod.ctl.lease_cmd import LEASE_HELP, SUBCOMMANDS, lease_command
from synod.ctl.lock_cmd import ELECT_FLAGS, ELECT_HELP, LOCK_FLAGS, LOCK_HELP, elect_command, lock_command
from synod.ctl.member_cmd import MEMBER_HELP, member_command
from synod.ctl.member_cmd import SUBCOMMANDS as MEMBER_SUBCOMMANDS
from synod.ctl.printer import Printer
from synod.ctl.requests import (
    COMPACTION_FLAGS,
    COMPACTION_HELP,
    DEL_FLAGS,
    DEL_HELP,
    GET_FLAGS,
    GET_HELP,
    PUT_FLAGS,
    PUT_HELP,
    TXN_FLAGS,
    TXN_HELP,
    VERSION_HELP,
    compaction_request,
    delete_request,
    put_request,
    range_request,
)
from synod.ctl.usage import CommandHelp, command_usage
from synod.ctl.watch_args import WATCH_FLAGS, WATCH_HELP
from synod.ctl.watch_cmd import watch_command
from synod.duration import to_seconds

__all__ = ["Streams", "main", "run"]

T = TypeVar("T")
PROGRAM = "synodctl"
ROOT_HELP = CommandHelp(PROGRAM, PROGRAM, "An etcdctl-compatible command line client for synod and etcd.")
HELP_HELP = CommandHelp("help", "help [command]", "Help about any command")


# Commands by their path ("lease grant"); the root's usage lists those without a parent.
COMMANDS = {
    "get": CommandSpec(GET_HELP, GET_FLAGS),
    "put": CommandSpec(PUT_HELP, PUT_FLAGS),
    "del": CommandSpec(DEL_HELP, DEL_FLAGS),
    "txn": CommandSpec(TXN_HELP, TXN_FLAGS),
    "compaction": CommandSpec(COMPACTION_HELP, COMPACTION_FLAGS),
    "watch": CommandSpec(WATCH_HELP, WATCH_FLAGS),
    "lease": CommandSpec(LEASE_HELP, ()),
    **{f"lease {name}": CommandSpec(help, flags) for name, (help, flags) in SUBCOMMANDS.items()},
    "member": CommandSpec(MEMBER_HELP, ()),
    **{f"member {name}": CommandSpec(help, flags) for name, (help, flags) in MEMBER_SUBCOMMANDS.items()},
    "endpoint": CommandSpec(ENDPOINT_HELP, INHERITED),
    **{
        f"endpoint {name}": CommandSpec(help, flags, INHERITED)
        for name, (help, flags) in ENDPOINT_SUBCOMMANDS.items()
    },
    "move-leader": CommandSpec(MOVE_LEADER_HELP, ()),
    "lock": CommandSpec(LOCK_HELP, LOCK_FLAGS),
    "elect": CommandSpec(ELECT_HELP, ELECT_FLAGS),
    "version": CommandSpec(VERSION_HELP, ()),
    "help": CommandSpec(HELP_HELP, ()),
}
TOP_LEVEL = [name for name in COMMANDS if " " not in name]


def _usage(name: str | None) -> str:
    root_flags = [*GLOBAL_FLAGS, help_flag(PROGRAM)]
    if name is None:
        helps = [COMMANDS[n].help for n in TOP_LEVEL]
        return command_usage(None, ROOT_HELP, helps, root_flags, [], __version__, ETCD_API_VERSION)
    spec = COMMANDS[name]
    local = [*spec.flags, help_flag(name.split()[-1])]
    subcommands = [c.help for path, c in COMMANDS.items() if path.startswith(name + " ")]
    global_flags = [*spec.inherited, *GLOBAL_FLAGS]
    return command_usage(
        spec.help, ROOT_HELP, subcommands, local, global_flags, __version__, ETCD_API_VERSION
    )


def _invocation(streams: Streams, argv: Sequence[str]) -> Invocation:
    return Invocation(streams, argv, COMMANDS, _usage)


_RAW = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@click.group(context_settings={"help_option_names": []})
def cli() -> None:
    """synodctl's commands (flags are read by synod.ctl.flags, not by click)."""


RawCommand = Callable[[Invocation, tuple[str, ...]], None]


def _raw_command(name: str) -> Callable[[RawCommand], click.Command]:
    """A click command that hands its whole command line, untouched, to the function."""

    def register(f: RawCommand) -> click.Command:
        wrapped = click.argument("argv", nargs=-1, type=click.UNPROCESSED)(click.pass_obj(f))
        return cli.command(name, context_settings=_RAW, add_help_option=False)(wrapped)

    return register


@_raw_command("get")
def get_command(inv: Invocation, argv: tuple[str, ...]) -> None:
    parsed = inv.parse("get", argv)
    req = range_request(inv.args(parsed), parsed)
    options, printer, client = inv.connect(parsed, KVClient, Printer)
    with client:
        resp = _rpc(lambda: client.range(req, to_seconds(options.command_timeout)))
    if parsed.get_bool("count-only") and printer.format != "fields":
        raise CtlExit(EXIT_BAD_ARGS, "--count-only is only for `--write-out=fields`")
    if parsed.get_bool("print-value-only"):
        if printer.format != "simple":
            raise CtlExit(EXIT_BAD_ARGS, "print-value-only is only for `--write-out=simple`")
        printer.value_only = True
    printer.get(resp)


@_raw_command("put")
def put_command(inv: Invocation, argv: tuple[str, ...]) -> None:
    parsed = inv.parse("put", argv)
    req = put_request(inv.args(parsed), parsed, inv.streams.stdin.read)
    options, printer, client = inv.connect(parsed, KVClient, Printer)
    with client:
        resp = _rpc(lambda: client.put(req, to_seconds(options.command_timeout)))
    printer.put(resp)


@_raw_command("del")
def del_command(inv: Invocation, argv: tuple[str, ...]) -> None:
    parsed = inv.parse("del", argv)
    req = delete_request(inv.args(parsed), parsed)
    options, printer, client = inv.connect(parsed, KVClient, Printer)
    with client:
        resp = _rpc(lambda: client.delete_range(req, to_seconds(options.command_timeout)))
    printer.delete(resp)


@_raw_command("txn")
def txn_command(inv: Invocation, argv: tuple[str, ...]) -> None:
    parsed = inv.parse("txn", argv)
    if parsed.args:
        raise CtlExit(EXIT_BAD_ARGS, "txn command does not accept argument")
    _, printer, client = inv.connect(parsed, KVClient, Printer)
    interactive = parsed.get_bool("interactive")
    reader = txn_parse.LineReader(inv.streams.stdin)

    def prompt(text: str) -> None:
        if interactive:
            inv.out(text + "\n")
            inv.streams.stdout.flush()

    with client:
        prompt("compares:")
        compares = txn_parse.read_compares(reader)
        prompt("success requests (get, put, del):")
        success = txn_parse.read_requests(reader)
        prompt("failure requests (get, put, del):")
        failure = txn_parse.read_requests(reader)
        req = pb.TxnRequest(compare=compares, success=success, failure=failure)
        resp = _rpc(lambda: client.txn(req, None))  # etcdctl gives txn no deadline
    printer.txn(resp)


@_raw_command("compaction")
def compaction_command(inv: Invocation, argv: tuple[str, ...]) -> None:
    parsed = inv.parse("compaction", argv)
    req = compaction_request(inv.args(parsed), parsed)
    options, _, client = inv.connect(parsed, KVClient, Printer)
    with client:
        _rpc(lambda: client.compact(req, to_seconds(options.command_timeout)))
    inv.out(f"compacted revision {req.revision}\n")


@_raw_command("version")
def version_command(inv: Invocation, argv: tuple[str, ...]) -> None:
    inv.parse("version", argv)
    inv.out(f"{PROGRAM} version: {__version__}\nAPI version: {ETCD_API_VERSION}\n")


@_raw_command("help")
def help_command(inv: Invocation, argv: tuple[str, ...]) -> None:
    parsed = inv.parse("help", argv)
    words = strip_flags(parsed.args, GLOBAL_FLAGS)
    if not words:
        inv.out(_usage(None))
        return
    name = find_command(words[0], TOP_LEVEL)
    if name is not None and len(words) > 1:
        sub = find_command(words[1], [p.split()[1] for p in COMMANDS if p.startswith(name + " ")])
        name = name if sub is None else f"{name} {sub}"
    if name is None:
        topics = " ".join(f"`{w}`" if "`" not in w and w.isprintable() else quote(w) for w in parsed.args)
        inv.streams.stderr.write(encode(f"Unknown help topic [{topics}]\n"))
        inv.out(_usage(None))
        return
    inv.out(_usage(name))


@_raw_command("watch")
def watch_command_(inv: Invocation, argv: tuple[str, ...]) -> None:
    watch_command(inv, argv)


@_raw_command("lease")
def lease_command_(inv: Invocation, argv: tuple[str, ...]) -> None:
    lease_command(inv, argv)


@_raw_command("member")
def member_command_(inv: Invocation, argv: tuple[str, ...]) -> None:
    member_command(inv, argv)


@_raw_command("endpoint")
def endpoint_command_(inv: Invocation, argv: tuple[str, ...]) -> None:
    endpoint_command(inv, argv)


@_raw_command("lock")
def lock_command_(inv: Invocation, argv: tuple[str, ...]) -> None:
    lock_command(inv, argv)


@_raw_command("elect")
def elect_command_(inv: Invocation, argv: tuple[str, ...]) -> None:
    elect_command(inv, argv)


@_raw_command("move-leader")
def move_leader_command_(inv: Invocation, argv: tuple[str, ...]) -> None:
    move_leader_command(inv, argv)


def _rpc(call: Callable[[], T]) -> T:
    try:
        return call()
    except KVError as e:
        raise CtlExit(EXIT_ERROR, str(e)) from None


def run(argv: Sequence[str], streams: Streams) -> int:
    """Run one synodctl command line; returns the exit code."""
    try:
        _dispatch(list(argv), streams)
    except CtlExit as e:
        streams.stderr.write(encode(e.stderr_text()))
        return e.code
    return 0


def _dispatch(argv: list[str], streams: Streams) -> None:
    root_flags = [*GLOBAL_FLAGS, help_flag(PROGRAM)]
    words = strip_flags(argv, root_flags)
    if not words:
        # No command: parse the flags anyway (a bad one is an error), then show the usage.
        try:
            parse_flags(argv, root_flags)
        except FlagError as e:
            streams.stdout.write(encode(_usage(None)))
            raise CtlExit(EXIT_ERROR, str(e), raw=f"Error: {e}\n\nError: {e}\n") from None
        streams.stdout.write(encode(_usage(None)))
        return
    name = find_command(words[0], TOP_LEVEL)
    if name is None:
        message = f"unknown command {quote(words[0])} for {quote(PROGRAM)}"
        message += suggestions(words[0], [n for n in TOP_LEVEL if n != "help"])
        raw = f"Error: {message}\nRun '{PROGRAM} --help' for usage.\nError: {message}\n"
        raise CtlExit(EXIT_ERROR, message, raw=raw)
    # The leading "--" makes click pass the rest through untouched (it drops that one).
    rest = ["--", *without_first(argv, words[0])]
    cli.main(args=[name, *rest], prog_name=PROGRAM, standalone_mode=False, obj=_invocation(streams, argv))


class _Interrupted(BaseException):
    """SIGINT; not a KeyboardInterrupt, which click would turn into its Abort (and print a newline)."""


def _on_sigint(signum: int, frame: object) -> None:
    raise _Interrupted


def main() -> None:
    """The console script."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # ignored stays ignored, as in Go
        signal.signal(signal.SIGINT, _on_sigint)
    stdout = _buffered(sys.stdout.buffer)
    streams = Streams(sys.stdin.buffer, stdout, sys.stderr.buffer, os.environ)
    try:
        code = run(sys.argv[1:], streams)
        stdout.flush()
    except (_Interrupted, KeyboardInterrupt):
        _die_of_sigint()
    except BrokenPipeError:
        # The reader went away (``synodctl get ... | head``): end quietly (click does the same).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_ERROR
    # Exit at once, as a Go program does: no interpreter teardown, which can wait on gRPC's threads
    # (a watch or keep-alive stream's reader).
    try:
        stdout.flush()
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    os._exit(code)


def _buffered(stdout: BinaryIO) -> BinaryIO:
    """stdout with a buffer even under PYTHONUNBUFFERED (or -u), which leaves a raw file.

    Commands flush once per response (a watch response, a keep-alive), so each reaches the
    reader in one write: one unbuffered write per line would let a reader, or SIGINT, see half
    of one. On SIGINT what is still buffered is dropped, as an interrupted Go program drops it.
    """
    if isinstance(stdout, io.RawIOBase):
        return cast(BinaryIO, io.BufferedWriter(stdout))
    return stdout


def _die_of_sigint() -> None:
    """End as a Go program interrupted by SIGINT does (etcdctl has no handler): killed by the signal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)
    sys.exit(128 + signal.SIGINT)  # not reached


if __name__ == "__main__":
    main()
