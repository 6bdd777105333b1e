"""etcdctl's txn input: compares, blank line, success requests, blank line, failure requests, blank line.

A compare is ``<target>("<key>") <op> "<value>"`` with target ``c``/``create``,
``m``/``mod``, ``ver``/``version``, ``val``/``value`` or ``lease`` and op ``=``,
``!=``, ``<`` or ``>``; keys and values are Go-quoted (``"..."`` with escapes,
or back-quoted raw). A request is a ``put``/``get``/``del`` command line with
the same flags as the commands. Errors are etcdctl's (exit code 3 for input it
cannot read, 128 for a request line's bad arguments).

Two deliberate differences from etcdctl 3.4: ``lease("k") = "<hex ID>"`` works
(etcdctl 3.4 panics on any lease compare; later etcdctl parses it this way),
and a single-quoted word loses exactly its quotes (etcdctl 3.4 cuts it by the
number of words on the line).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import BinaryIO

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.ctl.errors import EXIT_INVALID_INPUT, EXIT_PANIC, CtlExit
from synod.ctl.flags import FlagError, find_command, help_flag, parse_flags, strip_flags, without_first
from synod.ctl.gostrconv import GoSyntaxError, NumError, is_space, parse_int, quote, trim_space, unquote
from synod.ctl.requests import (
    DEL_FLAGS,
    DEL_HELP,
    GET_FLAGS,
    GET_HELP,
    PUT_FLAGS,
    PUT_HELP,
    delete_request,
    put_request,
    range_request,
)
from synod.ctl.usage import cobra_usage

_READ_SIZE = 4096  # Go's bufio.Reader fills its buffer this much at a time
_RESULTS = {
    "=": pb.Compare.EQUAL,
    "!=": pb.Compare.NOT_EQUAL,
    ">": pb.Compare.GREATER,
    "<": pb.Compare.LESS,
}
# Go regexp's \s is ASCII-only: [\t\n\f\r ].
_WORD = re.compile(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'|[^\'"\t\n\f\r ][^\t\n\f\r ]*[^\'"\t\n\f\r ]?')
_REQUEST_COMMANDS = ("put", "get", "del")


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


class LineReader:
    """Reads lines as etcdctl's bufio.Reader does, so that ``rest()`` sees what it would leave unread."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._buffer = b""
        self._eof = False

    def _fill(self) -> None:
        read1 = getattr(self._stream, "read1", None)
        chunk: bytes = read1(_READ_SIZE) if read1 is not None else self._stream.read(_READ_SIZE)
        if chunk:
            self._buffer += chunk
        else:
            self._eof = True

    def read_line(self) -> bytes:
        """The next line with its newline; ``Error: EOF`` (exit 3) if input ends first."""
        while b"\n" not in self._buffer and not self._eof:
            self._fill()
        line, newline, self._buffer = self._buffer.partition(b"\n")
        if not newline:
            raise CtlExit(EXIT_INVALID_INPUT, "EOF")
        return line + newline

    def rest(self) -> bytes:
        """All input not yet buffered (what ``put <key>`` in a request line reads as its value)."""
        return self._stream.read()


def read_compares(reader: LineReader) -> list[pb.Compare]:
    """Compare lines up to a blank line."""
    compares = []
    while line := trim_space(reader.read_line()):
        compares.append(parse_compare(_decode(line)))
    return compares


def read_requests(reader: LineReader) -> list[pb.RequestOp]:
    """Request lines up to a blank line."""
    ops = []
    while line := trim_space(reader.read_line()):
        ops.append(parse_request(_decode(line), reader.rest))
    return ops


def argify(line: str) -> list[str]:
    """Split a request line into words; ``"..."`` words are Go-unquoted, ``'...'`` words lose their quotes."""
    words = []
    for word in _WORD.findall(line):
        if word.startswith("'"):
            word = word[1:-1]
        elif word.startswith('"'):
            try:
                word = _decode(unquote(_encode(word)))
            except GoSyntaxError as e:
                raise CtlExit(EXIT_INVALID_INPUT, str(e)) from None
        words.append(word)
    return words


def parse_request(line: str, read_stdin: Callable[[], bytes]) -> pb.RequestOp:
    """One ``put``/``get``/``del`` line (prefixes of the names work, as on the command line)."""
    words = argify(line)
    if len(words) < 2:
        raise CtlExit(EXIT_INVALID_INPUT, f"invalid txn compare request: {line}")
    invalid = CtlExit(EXIT_INVALID_INPUT, f"invalid txn request: {line}")
    commands = strip_flags(words, [help_flag("")])
    name = find_command(commands[0], _REQUEST_COMMANDS) if commands else None
    if name is None:
        raise invalid
    flags, helps = {"put": (PUT_FLAGS, PUT_HELP), "get": (GET_FLAGS, GET_HELP), "del": (DEL_FLAGS, DEL_HELP)}[
        name
    ]
    all_flags = [*flags, help_flag(name)]
    try:
        parsed = parse_flags(without_first(words, commands[0]), all_flags)
    except FlagError:
        usage = cobra_usage(helps.use, all_flags) + "\n"
        raise CtlExit(EXIT_INVALID_INPUT, invalid.message, raw=usage + invalid.stderr_text()) from None
    if parsed.value("help"):
        raise invalid
    args = [_encode(a) for a in parsed.args]
    if name == "put":
        return pb.RequestOp(request_put=put_request(args, parsed, read_stdin))
    if name == "get":
        return pb.RequestOp(request_range=range_request(args, parsed))
    return pb.RequestOp(request_delete_range=delete_request(args, parsed))


class _ScanError(Exception):
    pass


class _Scanner:
    """The part of Go's fmt.Sscanf that ``%q) %s %q`` exercises."""

    def __init__(self, text: str) -> None:
        # Go reads runes: a byte that is not UTF-8 reads as U+FFFD.
        self._text = re.sub("[\udc80-\udcff]", "\ufffd", text)
        self._pos = 0

    def _get(self) -> str | None:
        if self._pos >= len(self._text):
            return None
        self._pos += 1
        return self._text[self._pos - 1]

    def _must_get(self) -> str:
        ch = self._get()
        if ch is None:
            raise _ScanError("unexpected EOF")
        return ch

    def _skip_space(self) -> None:
        while self._pos < len(self._text) and is_space(ord(self._text[self._pos])):
            self._pos += 1
        if self._pos >= len(self._text):
            raise _ScanError("unexpected EOF")

    def quoted(self) -> bytes:
        self._skip_space()
        quote_char = self._must_get()
        if quote_char == "`":
            raw = []
            while (ch := self._must_get()) != "`":
                raw.append(ch)
            return _encode("".join(raw))
        if quote_char != '"':
            raise _ScanError("expected quoted string")
        buf = ['"']
        while True:
            ch = self._must_get()
            buf.append(ch)
            if ch == "\\":
                buf.append(self._must_get())
            elif ch == '"':
                break
        try:
            return unquote(_encode("".join(buf)))
        except GoSyntaxError as e:
            raise _ScanError(str(e)) from None

    def word(self) -> str:
        self._skip_space()
        start = self._pos
        while self._pos < len(self._text) and not is_space(ord(self._text[self._pos])):
            self._pos += 1
        return self._text[start : self._pos]

    def literal(self, ch: str) -> None:
        if self._must_get() != ch:
            self._pos -= 1
            raise _ScanError("input does not match format")

    def space(self) -> None:
        """A lone space in the format: at least one space in the input, or its end."""
        ch = self._get()
        if ch is not None and not is_space(ord(ch)):
            raise _ScanError("expected space in input to match format")
        while self._pos < len(self._text) and is_space(ord(self._text[self._pos])):
            self._pos += 1


def parse_compare(line: str) -> pb.Compare:
    """One compare line."""
    target, paren, rest = line.partition("(")
    if not paren:
        raise CtlExit(EXIT_INVALID_INPUT, f"malformed comparison: {line}")
    key, op, value = b"", "", b""
    scanned = 0
    scanner = _Scanner(rest)
    try:
        key = scanner.quoted()
        scanned = 1
        scanner.literal(")")
        scanner.space()
        op = scanner.word()
        scanned = 2
        scanner.space()
        value = scanner.quoted()
        scanned = 3
    except _ScanError:
        pass
    if scanned != 3:
        got = f"{target}({quote(key)}) {op} {quote(value)}"
        raise CtlExit(EXIT_INVALID_INPUT, f"malformed comparison: {line}; got {got}")
    cmp = pb.Compare(key=key)
    invalid = CtlExit(EXIT_INVALID_INPUT, f"invalid txn compare request: {line}")
    text = _decode(value)
    try:
        if target in ("ver", "version"):
            cmp.target, cmp.version = pb.Compare.VERSION, parse_int(text, 10, 64)
        elif target in ("c", "create"):
            cmp.target, cmp.create_revision = pb.Compare.CREATE, parse_int(text, 10, 64)
        elif target in ("m", "mod"):
            cmp.target, cmp.mod_revision = pb.Compare.MOD, parse_int(text, 10, 64)
        elif target in ("val", "value"):
            cmp.target, cmp.value = pb.Compare.VALUE, value
        elif target == "lease":
            cmp.target, cmp.lease = pb.Compare.LEASE, parse_int(text, 16, 64)
        else:
            raise CtlExit(EXIT_INVALID_INPUT, f"malformed comparison: {line} (unknown target {target})")
    except NumError:
        raise invalid from None
    result = _RESULTS.get(op)
    if result is None:
        # etcd's Go client panics here; etcdctl dies with Go's panic exit status.
        raise CtlExit(EXIT_PANIC, "Unknown result op", raw="panic: Unknown result op\n")
    cmp.result = result
    return cmp
