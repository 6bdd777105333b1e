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
    inherited: tuple[Flag, ...] = ()  # a parent's persistent flags (listed with the global ones)


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
            flags = [*spec.flags, *spec.inherited, *GLOBAL_FLAGS, help_flag(spec.help.name.split()[-1])]
            parsed = parse_flags(argv, flags)
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
        inherited: Sequence[Flag] = (),
    ) -> tuple[GlobalOptions, P, C]:
        """Environment, --debug, output format, then a client: etcdctl's order, with its errors."""
        options, printer = self.output(parsed, printer_type, discarded_env, inherited, debug=True)
        if not options.endpoints:
            raise CtlExit(EXIT_BAD_CONNECTION, "etcdclient: no available endpoints")
        return options, printer, self.client(options, client_type, options.endpoints)

    @staticmethod
    def client(options: GlobalOptions, client_type: type[C], endpoints: Sequence[str]) -> C:
        """A client of these endpoints with the global flags' timeouts and transport."""
        return client_type(
            endpoints,
            dial_timeout=to_seconds(options.dial_timeout),
            keepalive_time=to_seconds(options.keepalive_time),
            keepalive_timeout=to_seconds(options.keepalive_timeout),
            insecure=options.insecure_transport,
        )

    def output(
        self,
        parsed: ParsedFlags,
        printer_type: type[P],
        discarded_env: Sequence[str] = (),
        inherited: Sequence[Flag] = (),
        *,
        debug: bool,
    ) -> tuple[GlobalOptions, P]:
        """Environment, --debug (if the command dumps the flags), then the output format."""
        apply_environment(parsed, self.streams.environ, self.streams.stderr, discarded_env, inherited)
        if debug and parsed.get_bool("debug"):
            debug_dump(parsed, self.streams.stderr, discarded_env, inherited)
        options = GlobalOptions.from_flags(parsed)
        return options, printer_type(self.streams.stdout, options.write_out, options.hex)
