"""``watch``'s arguments as etcdctl 3.4 reads them: key, range end, ``-- command``, ETCDCTL_WATCH_* keys.

etcdctl finds the command to run for each event in the raw command line (the
words after ``watch`` and a ``--``), and cuts it off the parsed arguments by
looking for its first word. ``ETCDCTL_WATCH_KEY``/``ETCDCTL_WATCH_RANGE_END``
stand in for the key and range end, and conflict with a key argument. In
``watch -i`` every input line (``watch [options] key [range_end] [-- command]``)
is read the same way, with the watch flags only. The messages are etcdctl's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.client.keys import prefix_end
from synod.ctl.flags import Flag, FlagError, ParsedFlags, help_flag, parse_flags
from synod.ctl.usage import CommandHelp, flag_defaults

WATCH_FLAGS = (
    Flag("interactive", "bool", "false", "read watch commands from standard input, one a line", "i"),
    Flag("prefix", "bool", "false", "watch every key that starts with <key>"),
    Flag("rev", "int64", "0", "the revision to start watching from (0: the next one)"),
    Flag("prev-kv", "bool", "false", "also print each event's key-value pair as it was before"),
)
WATCH_HELP = CommandHelp(
    "watch",
    "watch [options] [key or prefix] [range_end] [--] [exec-command arg1 arg2 ...]",
    "Prints the events on a key or a range of keys as they happen",
)

BAD_ARGS = "bad number of arguments"
BAD_ARGS_ENV = "bad number of arguments (found conflicting environment key)"
BAD_ARGS_SEPARATOR = "bad number of arguments (found separator --, but no commands)"
PREFIX_AND_RANGE = "`range_end` and `--prefix` are mutually exclusive"
HELP_REQUESTED = "pflag: help requested"


class WatchArgsError(Exception):
    """Arguments etcdctl refuses (exit 128); ``usage`` is written to stderr before the error line."""

    def __init__(self, message: str, usage: str = "") -> None:
        super().__init__(message)
        self.usage = usage


@dataclass(frozen=True)
class WatchSpec:
    """One watch as asked: key and range end (``args``), flags, and the command to run per event."""

    args: list[str]
    exec_args: list[str]
    prefix: bool
    rev: int
    prev_kv: bool


def _find(words: Sequence[str], word: str) -> int | None:
    return words.index(word) if word in words else None


def _after_watch(os_args: Sequence[str]) -> list[str]:
    """The raw words after the first ``watch`` (all of them if there is none: a prefix of the name)."""
    i = _find(os_args, "watch")
    return list(os_args) if i is None else list(os_args[i + 1 :])


def _finish(
    args: list[str], with_sep: list[str], sep: int | None, env_key: str, env_range: str, flags: ParsedFlags
) -> WatchSpec:
    if env_key:
        args = [env_key, *([env_range] if env_range else []), *args]
    exec_args: list[str] = []
    if sep is not None:
        exec_args = with_sep[sep + 1 :]
        # The parsed arguments end with the command's words: cut them at the last match of its first word.
        ends = [i for i, a in enumerate(args) if a == exec_args[0]]
        args = args[: ends[-1] if ends else 0]
    return WatchSpec(
        args, exec_args, flags.get_bool("prefix"), flags.get_int("rev"), flags.get_bool("prev-kv")
    )


def command_line_spec(os_args: Sequence[str], flags: ParsedFlags, env_key: str, env_range: str) -> WatchSpec:
    """The watch of ``synodctl [global flags] watch ...``; ``os_args`` is the whole command line."""
    raw = _after_watch(os_args)
    args = list(flags.args)
    sep = _find(raw, "--")
    if sep is not None and sep == len(raw) - 1:
        raise WatchArgsError(BAD_ARGS_SEPARATOR)
    if sep is None and not raw and not env_key:
        raise WatchArgsError(BAD_ARGS)
    if sep is not None and env_key:
        # An argument before "--" besides the command's words conflicts with ETCDCTL_WATCH_KEY.
        r = len(raw) - 1
        for w in range(len(args) - 1, -1, -1):
            if r >= 0 and args[w] == raw[r]:
                r -= 1
            elif r == sep:
                raise WatchArgsError(BAD_ARGS_ENV)
    if sep is None and args and env_key:
        raise WatchArgsError(BAD_ARGS_ENV)
    return _finish(args, raw, sep, env_key, env_range, flags)


def _parse_line_flags(words: list[str]) -> ParsedFlags:
    try:
        parsed = parse_flags(words, [*WATCH_FLAGS, help_flag("watch")])
    except FlagError as e:
        raise WatchArgsError(str(e)) from None
    if parsed.get_bool("help"):
        # The line's flag set has no help flag: pflag prints its defaults and fails with ErrHelp.
        raise WatchArgsError(HELP_REQUESTED, "Usage of watch:\n" + flag_defaults(WATCH_FLAGS))
    return parsed


def interactive_spec(words: Sequence[str], env_key: str, env_range: str) -> WatchSpec:
    """The watch of one ``watch -i`` input line, split into ``words`` (the first is ``watch``)."""
    args = list(words[1:])
    sep = _find(args, "--")
    if sep is not None and sep == len(args) - 1:
        raise WatchArgsError(BAD_ARGS_SEPARATOR)
    parsed = _parse_line_flags(args)
    if sep is None and not env_key and not parsed.args:
        raise WatchArgsError(BAD_ARGS)
    if sep is None and parsed.args and env_key:
        raise WatchArgsError(BAD_ARGS_ENV)
    return _finish(list(parsed.args), args, sep, env_key, env_range, parsed)


def watch_request(spec: WatchSpec) -> pb.WatchCreateRequest:
    """The create request clientv3 sends for the watch; WatchArgsError for arguments it refuses."""
    if not spec.args:
        raise WatchArgsError(BAD_ARGS)
    key = spec.args[0].encode("utf-8", "surrogateescape")
    req = pb.WatchCreateRequest(key=key, start_revision=spec.rev, prev_kv=spec.prev_kv)
    if len(spec.args) == 2:
        if spec.prefix:
            raise WatchArgsError(PREFIX_AND_RANGE)
        req.range_end = spec.args[1].encode("utf-8", "surrogateescape")
    if spec.prefix:
        if key:
            req.range_end = prefix_end(key)
        else:
            req.key, req.range_end = b"\0", b"\0"
    return req
