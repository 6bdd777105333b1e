"""One synodctl run: its streams, and the steps every command takes in etcdctl's order.

Parse the command's flags (pflag's errors, then its usage), apply the
``ETCDCTL_*`` environment, ``--debug``, choose the output format, and open a
client. The command modules (main.py, lease_cmd.py, watch_cmd.py) share these.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

from synod.ctl.config import GLOBAL_FLAGS, GlobalOptions, apply_environment, debug_dump
from synod.ctl.errors import EXIT_BAD_CONNECTION, EXIT_ERROR, CtlExit
from synod.ctl.flags import Flag, FlagError, ParsedFlags, help_flag, parse_flags
from synod.ctl.printer import Printer
from synod.ctl.rpc import Client
from synod.ctl.usage import CommandHelp
from synod.duration import to_seconds

C = TypeVar("C", bound=Client)
P = TypeVar("P", bound=Printer)


@dataclass(frozen=True)
class Streams:
    """Where a run reads and writes (the process's own, or a test's)."""

    stdin: BinaryIO
    stdout: BinaryIO
    stderr: BinaryIO
    environ: Mapping[str, str]


@dataclass(frozen=True)
class CommandSpec:
    help: CommandHelp
    flags: tuple[Flag, ...]


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


class Invocation:
    """One command's context: its streams, the whole command line, and the table of commands."""

    def __init__(
        self,
        streams: Streams,
        argv: Sequence[str],
        specs: Mapping[str, CommandSpec],
        usage: Callable[[str], str],
    ) -> None:
        self.streams = streams
        self.argv = list(argv)
        self._specs = specs
        self._usage = usage

    def out(self, text: str | bytes) -> None:
        self.streams.stdout.write(encode(text) if isinstance(text, str) else text)

    def err(self, text: str | bytes) -> None:
        self.streams.stderr.write(encode(text) if isinstance(text, str) else text)

    def flush(self) -> None:
        self.streams.stdout.flush()
        self.streams.stderr.flush()

    def usage(self, name: str) -> str:
        return self._usage(name)

    def parse(self, name: str, argv: Sequence[str]) -> ParsedFlags:
        """The command's flags and arguments; on a flag error, etcdctl's two error lines and its usage."""
        spec = self._specs[name]
        try:
            parsed = parse_flags(argv, [*spec.flags, *GLOBAL_FLAGS, help_flag(spec.help.name.split()[-1])])
        except FlagError as e:
            self.out(self._usage(name))
            raise CtlExit(EXIT_ERROR, str(e), raw=f"Error: {e}\n\nError: {e}\n") from None
        if parsed.get_bool("help"):
            self.out(self._usage(name))
            raise CtlExit(0, "", raw="")
        return parsed

    @staticmethod
    def args(parsed: ParsedFlags) -> list[bytes]:
        return [encode(a) for a in parsed.args]

    def connect(
        self,
        parsed: ParsedFlags,
        client_type: type[C],
        printer_type: type[P],
        discarded_env: Sequence[str] = (),
    ) -> tuple[GlobalOptions, P, C]:
        """Environment, --debug, output format, then a client: etcdctl's order, with its errors."""
        apply_environment(parsed, self.streams.environ, self.streams.stderr, discarded_env)
        if parsed.get_bool("debug"):
            debug_dump(parsed, self.streams.stderr, discarded_env)
        options = GlobalOptions.from_flags(parsed)
        printer = printer_type(self.streams.stdout, options.write_out, options.hex)
        if not options.endpoints:
            raise CtlExit(EXIT_BAD_CONNECTION, "etcdclient: no available endpoints")
        client = client_type(
            options.endpoints,
            dial_timeout=to_seconds(options.dial_timeout),
            keepalive_time=to_seconds(options.keepalive_time),
            keepalive_timeout=to_seconds(options.keepalive_timeout),
            insecure=options.insecure_transport,
        )
        return options, printer, client
