"""``synodctl``: an etcdctl 3.4-compatible command line client for synod (and etcd), KV commands only.

Commands: get, put, del, txn, compaction, version (and help). Flags, defaults,
output and exit codes are etcdctl's. click registers and dispatches the
commands; the command line itself is read as etcdctl's pflag reads it
(synod.ctl.flags), because click's syntax and messages differ.

``synodctl version`` prints ``synodctl version: <synod version>`` and
``API version: 3.4`` (etcdctl's two lines, with synodctl's own name and version).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

import click

from synod import ETCD_API_VERSION, __version__
from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.ctl import txn_parse
from synod.ctl.config import GLOBAL_FLAGS, GlobalOptions, apply_environment, debug_dump
from synod.ctl.duration import to_seconds
from synod.ctl.errors import EXIT_BAD_ARGS, EXIT_BAD_CONNECTION, EXIT_ERROR, CtlExit
from synod.ctl.flags import (
    Flag,
    FlagError,
    ParsedFlags,
    find_command,
    help_flag,
    parse_flags,
    strip_flags,
    suggestions,
    without_first,
)
from synod.ctl.gostrconv import quote
from synod.ctl.kv import KVClient, KVError
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

T = TypeVar("T")
PROGRAM = "synodctl"
ROOT_HELP = CommandHelp(PROGRAM, PROGRAM, "An etcdctl-compatible command line client for synod and etcd.")
HELP_HELP = CommandHelp("help", "help [command]", "Help about any command")


@dataclass(frozen=True)
class CommandSpec:
    help: CommandHelp
    flags: tuple[Flag, ...]


COMMANDS = {
    "get": CommandSpec(GET_HELP, GET_FLAGS),
    "put": CommandSpec(PUT_HELP, PUT_FLAGS),
    "del": CommandSpec(DEL_HELP, DEL_FLAGS),
    "txn": CommandSpec(TXN_HELP, TXN_FLAGS),
    "compaction": CommandSpec(COMPACTION_HELP, COMPACTION_FLAGS),
    "version": CommandSpec(VERSION_HELP, ()),
    "help": CommandSpec(HELP_HELP, ()),
}


@dataclass(frozen=True)
class Streams:
    """Where a run reads and writes (the process's own, or a test's)."""

    stdin: BinaryIO
    stdout: BinaryIO
    stderr: BinaryIO
    environ: Mapping[str, str]


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _usage(name: str | None) -> str:
    root_flags = [*GLOBAL_FLAGS, help_flag(PROGRAM)]
    if name is None:
        helps = [spec.help for spec in COMMANDS.values()]
        return command_usage(None, ROOT_HELP, helps, root_flags, [], __version__, ETCD_API_VERSION)
    spec = COMMANDS[name]
    local = [*spec.flags, help_flag(name)]
    return command_usage(spec.help, ROOT_HELP, [], local, GLOBAL_FLAGS, __version__, ETCD_API_VERSION)


class Invocation:
    """One command's context: its streams, and the steps every KV command takes in etcdctl's order."""

    def __init__(self, streams: Streams) -> None:
        self.streams = streams

    def out(self, text: str | bytes) -> None:
        self.streams.stdout.write(_encode(text) if isinstance(text, str) else text)

    def parse(self, name: str, argv: Sequence[str]) -> ParsedFlags:
        """The command's flags and arguments; on a flag error, etcdctl's two error lines and its usage."""
        spec = COMMANDS[name]
        try:
            parsed = parse_flags(argv, [*spec.flags, *GLOBAL_FLAGS, help_flag(name)])
        except FlagError as e:
            self.out(_usage(name))
            raise CtlExit(EXIT_ERROR, str(e), raw=f"Error: {e}\n\nError: {e}\n") from None
        if parsed.get_bool("help"):
            self.out(_usage(name))
            raise CtlExit(0, "", raw="")
        return parsed

    @staticmethod
    def args(parsed: ParsedFlags) -> list[bytes]:
        return [_encode(a) for a in parsed.args]

    def connect(self, parsed: ParsedFlags) -> tuple[GlobalOptions, Printer, KVClient]:
        """Environment, --debug, output format, then a client: etcdctl's order, with its errors."""
        apply_environment(parsed, self.streams.environ, self.streams.stderr)
        if parsed.get_bool("debug"):
            debug_dump(parsed, self.streams.stderr)
        options = GlobalOptions.from_flags(parsed)
        printer = Printer(self.streams.stdout, options.write_out, options.hex)
        if not options.endpoints:
            raise CtlExit(EXIT_BAD_CONNECTION, "etcdclient: no available endpoints")
        client = KVClient(
            options.endpoints,
            dial_timeout=to_seconds(options.dial_timeout),
            keepalive_time=to_seconds(options.keepalive_time),
            keepalive_timeout=to_seconds(options.keepalive_timeout),
            insecure=options.insecure_transport,
        )
        return options, printer, client


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
    options, printer, client = inv.connect(parsed)
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
    options, printer, client = inv.connect(parsed)
    with client:
        resp = _rpc(lambda: client.put(req, to_seconds(options.command_timeout)))
    printer.put(resp)


@_raw_command("del")
def del_command(inv: Invocation, argv: tuple[str, ...]) -> None:
    parsed = inv.parse("del", argv)
    req = delete_request(inv.args(parsed), parsed)
    options, printer, client = inv.connect(parsed)
    with client:
        resp = _rpc(lambda: client.delete_range(req, to_seconds(options.command_timeout)))
    printer.delete(resp)


@_raw_command("txn")
def txn_command(inv: Invocation, argv: tuple[str, ...]) -> None:
    parsed = inv.parse("txn", argv)
    if parsed.args:
        raise CtlExit(EXIT_BAD_ARGS, "txn command does not accept argument")
    _, printer, client = inv.connect(parsed)
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
    options, _, client = inv.connect(parsed)
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
    name = find_command(words[0], list(COMMANDS))
    if name is None:
        topics = " ".join(f"`{w}`" if "`" not in w and w.isprintable() else quote(w) for w in parsed.args)
        inv.streams.stderr.write(_encode(f"Unknown help topic [{topics}]\n"))
        inv.out(_usage(None))
        return
    inv.out(_usage(name))


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
        streams.stderr.write(_encode(e.stderr_text()))
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
            streams.stdout.write(_encode(_usage(None)))
            raise CtlExit(EXIT_ERROR, str(e), raw=f"Error: {e}\n\nError: {e}\n") from None
        streams.stdout.write(_encode(_usage(None)))
        return
    name = find_command(words[0], list(COMMANDS))
    if name is None:
        message = f"unknown command {quote(words[0])} for {quote(PROGRAM)}"
        message += suggestions(words[0], [n for n in COMMANDS if n != "help"])
        raw = f"Error: {message}\nRun '{PROGRAM} --help' for usage.\nError: {message}\n"
        raise CtlExit(EXIT_ERROR, message, raw=raw)
    # The leading "--" makes click pass the rest through untouched (it drops that one).
    rest = ["--", *without_first(argv, words[0])]
    cli.main(args=[name, *rest], prog_name=PROGRAM, standalone_mode=False, obj=Invocation(streams))


def main() -> None:
    """The console script."""
    streams = Streams(sys.stdin.buffer, sys.stdout.buffer, sys.stderr.buffer, os.environ)
    try:
        code = run(sys.argv[1:], streams)
        sys.stdout.flush()
    except KeyboardInterrupt:
        code = 128 + signal.SIGINT
    except BrokenPipeError:
        # The reader went away (``synodctl get ... | head``): end quietly (click does the same).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_ERROR
    sys.exit(code)


if __name__ == "__main__":
    main()
