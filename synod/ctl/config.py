"""synodctl's global flags, and the ETCDCTL_* environment variables that stand in for them.

As etcdctl does, a global flag not given on the command line takes the value
of ``ETCDCTL_<FLAG_NAME>`` (a value that does not parse is ignored); a variable
that shadows a flag given on the command line is a fatal error; any other
``ETCDCTL_*`` variable draws a warning. Those two messages are etcd's
``pkg/flags`` log lines.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from synod.ctl.errors import EXIT_ERROR, CtlExit
from synod.ctl.flags import Flag, FlagError, ParsedFlags, format_value
from synod.ctl.gostrconv import quote

ENV_PREFIX = "ETCDCTL"

GLOBAL_FLAGS = (
    Flag("endpoints", "strings", "[127.0.0.1:2379]", "gRPC endpoints, comma-separated"),
    Flag("debug", "bool", "false", "print the effective global options on stderr"),
    Flag("write-out", "string", "simple", "output format: simple, json, fields or protobuf", "w"),
    Flag("hex", "bool", "false", "print keys and values as hex-escaped bytes"),
    Flag("dial-timeout", "duration", "2s", "how long to wait for a connection to an endpoint"),
    Flag("command-timeout", "duration", "5s", "deadline of a short command (connecting included)"),
    Flag("keepalive-time", "duration", "2s", "keepalive ping interval of client connections"),
    Flag("keepalive-timeout", "duration", "6s", "keepalive ping timeout of client connections"),
    Flag("insecure-transport", "bool", "true", "connect without TLS (false: TLS with the system's CAs)"),
)


@dataclass(frozen=True)
class GlobalOptions:
    """The global flags' values once the environment has had its say (durations in nanoseconds)."""

    endpoints: list[str]
    debug: bool
    write_out: str
    hex: bool
    dial_timeout: int
    command_timeout: int
    keepalive_time: int
    keepalive_timeout: int
    insecure_transport: bool

    @classmethod
    def from_flags(cls, parsed: ParsedFlags) -> GlobalOptions:
        return cls(
            endpoints=[e.strip() for e in parsed.get_strings("endpoints")],
            debug=parsed.get_bool("debug"),
            write_out=parsed.get_str("write-out"),
            hex=parsed.get_bool("hex"),
            dial_timeout=parsed.get_int("dial-timeout"),
            command_timeout=parsed.get_int("command-timeout"),
            keepalive_time=parsed.get_int("keepalive-time"),
            keepalive_timeout=parsed.get_int("keepalive-timeout"),
            insecure_transport=parsed.get_bool("insecure-transport"),
        )


def env_key(flag_name: str) -> str:
    return f"{ENV_PREFIX}_{flag_name.upper().replace('-', '_')}"


def _log_line(level: str, message: str) -> str:
    """A line of etcd's capnslog: ``2006-01-02 15:04:05.000000 W | pkg/flags: ...``."""
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")
    return f"{stamp} {level} | pkg/flags: {message}\n"


def apply_environment(
    parsed: ParsedFlags,
    environ: Mapping[str, str],
    stderr: BinaryIO,
    discarded: Sequence[str] = (),
    inherited: Sequence[Flag] = (),
) -> None:
    """Fill unset global flags from ETCDCTL_* variables; warn and fail as etcd's pkg/flags does.

    ``discarded``: names of flags that only silence their variables (``watch``'s
    ``watch-key`` and ``watch-range-end``: etcdctl reads those variables itself).
    ``inherited``: a parent command's flags its subcommands inherit (``endpoint``'s
    ``--cluster``), which their variables set as they set the global flags.
    """
    used: set[str] = {env_key(name) for name in discarded if environ.get(env_key(name), "")}
    shadowed: set[str] = set()
    for flag in sorted([*GLOBAL_FLAGS, *inherited], key=lambda f: f.name):
        key = env_key(flag.name)
        if flag.name in parsed.changed:
            shadowed.add(key)
            continue
        value = environ.get(key, "")
        if value:
            used.add(key)
            try:
                parsed.set(flag, value)
            except FlagError:
                pass  # etcdctl ignores a variable it cannot parse
    for key, value in environ.items():
        if key in used:
            continue
        if key in shadowed:
            message = (
                f"conflicting environment variable {quote(key)} is shadowed by corresponding "
                "command-line flag (either unset environment variable or disable flag)"
            )
            raise CtlExit(EXIT_ERROR, message, raw=_log_line("C", message))
        if key.startswith(ENV_PREFIX + "_"):
            stderr.write(_log_line("W", f"unrecognized environment variable {key}={value}").encode())


def debug_dump(
    parsed: ParsedFlags, stderr: BinaryIO, discarded: Sequence[str] = (), inherited: Sequence[Flag] = ()
) -> None:
    """``--debug``: every global flag as ``ETCDCTL_NAME=value`` (discarded flags have no value)."""
    lines = {flag.name: format_value(flag, parsed.value(flag.name)) for flag in [*GLOBAL_FLAGS, *inherited]}
    lines.update({name: "" for name in discarded})
    for name in sorted(lines):
        stderr.write(f"{env_key(name)}={lines[name]}\n".encode())
