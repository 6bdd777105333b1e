"""``watch``: etcdctl 3.4's watch command, once from the command line or (``-i``) per input line.

Each response is printed as etcdctl prints it: ``watch was canceled (<error>)``
on stderr for a canceled one, ``progress notify: <revision>`` for a progress
notification, then the response in the output format, flushed at once. With
``-- command args``, the command runs once per event, with stdin from
/dev/null, output straight to synodctl's, and ETCD_WATCH_REVISION (the
response's revision), ETCD_WATCH_EVENT_TYPE, ETCD_WATCH_KEY and
ETCD_WATCH_VALUE (Go-quoted) in its environment; if it fails synodctl exits
1 with etcdctl's ``command [...] error (...)`` line. A watch ends only when the
server ends it; then synodctl exits 5 with ``watch is canceled by the server``.
``watch -i`` reads ``watch ...`` and ``progress`` lines until standard input
ends (then exit 3, as etcdctl, even if watches remain).
"""

from __future__ import annotations

import io
import queue
import shutil
import subprocess
import threading
from collections import deque
from collections.abc import Sequence
from typing import BinaryIO

from synod.ctl.errors import EXIT_BAD_ARGS, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_INVALID_INPUT, CtlExit
from synod.ctl.flags import ParsedFlags
from synod.ctl.gostrconv import quote
from synod.ctl.invocation import Invocation
from synod.ctl.printer_watch import WatchPrinter, event_type_name
from synod.ctl.rpc import Client
from synod.ctl.txn_parse import LineReader, argify
from synod.ctl.watch import Watch, WatchResponse, WatchSession
from synod.ctl.watch_args import WatchArgsError, command_line_spec, interactive_spec, watch_request

PROGRAM = "synodctl"
# etcdctl reads these two variables itself; as flags they only keep pkg/flags from warning about them.
DISCARDED_ENV = ("watch-key", "watch-range-end")
CANCELED_BY_SERVER = "watch is canceled by the server"
# Go's names of the signals that end a command (ProcessState.String()).
_GO_SIGNALS = {
    1: "hangup",
    2: "interrupt",
    3: "quit",
    4: "illegal instruction",
    5: "trace/breakpoint trap",
    6: "aborted",
    7: "bus error",
    8: "floating point exception",
    9: "killed",
    10: "user defined signal 1",
    11: "segmentation fault",
    12: "user defined signal 2",
    13: "broken pipe",
    14: "alarm clock",
    15: "terminated",
}
_STDIN = object()  # the inbox source of input lines (watch -i)


def _bad_args(e: WatchArgsError) -> CtlExit:
    return CtlExit(EXIT_BAD_ARGS, str(e), raw=f"{e.usage}Error: {e}\n")


def _fileno(stream: BinaryIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


class Watcher:
    """Shows a command's watch responses and runs its per-event command."""

    def __init__(self, inv: Invocation, printer: WatchPrinter) -> None:
        self.inv = inv
        self.printer = printer

    def show(self, resp: WatchResponse, exec_args: Sequence[str]) -> None:
        if resp.canceled:
            self.inv.err(f"watch was canceled ({resp.err()})\n")
        if resp.is_progress_notify():
            self.inv.out(f"progress notify: {resp.header.revision}\n")
        self.printer.watch(resp)
        self.inv.flush()
        if exec_args:
            for event in resp.events or []:
                env = dict(self.inv.streams.environ)
                env["ETCD_WATCH_REVISION"] = str(resp.header.revision)
                env["ETCD_WATCH_EVENT_TYPE"] = quote(event_type_name(event))
                env["ETCD_WATCH_KEY"] = quote(event.kv.key)
                env["ETCD_WATCH_VALUE"] = quote(event.kv.value)
                error = self._run(exec_args, env)
                if error is not None:
                    words = " ".join(quote(a) for a in exec_args)
                    raise CtlExit(EXIT_ERROR, error, raw=f"command [{words}] error ({error})\n")

    def _run(self, args: Sequence[str], env: dict[str, str]) -> str | None:
        """Run the command as Go's exec.Cmd.Run; its error as Go words it, or None."""
        name = args[0]
        path: str | None = name
        if "/" not in name:
            path = shutil.which(name, path=self.inv.streams.environ.get("PATH")) if name else None
            if path is None:
                return f"exec: {quote(name)}: executable file not found in $PATH"
        assert path is not None
        out, err = self.inv.streams.stdout, self.inv.streams.stderr
        out_fd, err_fd = _fileno(out), _fileno(err)
        capture = out_fd is None or err_fd is None
        try:
            done = subprocess.run(
                list(args),
                executable=path,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if capture else out_fd,
                stderr=subprocess.PIPE if capture else err_fd,
                check=False,
            )
        except OSError as e:
            reason = (e.strerror or str(e)).lower()
            return f"fork/exec {path}: {reason}"
        if capture:
            out.write(done.stdout)
            err.write(done.stderr)
        if done.returncode > 0:
            return f"exit status {done.returncode}"
        if done.returncode < 0:
            return f"signal: {_GO_SIGNALS.get(-done.returncode, f'signal {-done.returncode}')}"
        return None


def _env_keys(inv: Invocation) -> tuple[str, str]:
    environ = inv.streams.environ
    key, range_end = environ.get("ETCDCTL_WATCH_KEY", ""), environ.get("ETCDCTL_WATCH_RANGE_END", "")
    if not key and range_end:
        raise CtlExit(
            EXIT_BAD_ARGS, f"ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END={quote(range_end)}"
        )
    return key, range_end


def _next(inbox: queue.Queue[tuple[object, object]]) -> tuple[object, object]:
    while True:
        try:
            return inbox.get(timeout=0.5)  # a timeout keeps the wait interruptible (SIGINT)
        except queue.Empty:
            continue


def watch_command(inv: Invocation, argv: Sequence[str]) -> None:
    parsed = inv.parse("watch", argv)
    env_key, env_range = _env_keys(inv)
    if parsed.get_bool("interactive"):
        _interactive(inv, parsed, env_key, env_range)
        return
    try:
        spec = command_line_spec([PROGRAM, *inv.argv], parsed, env_key, env_range)
    except WatchArgsError as e:
        raise _bad_args(e) from None
    _, printer, client = inv.connect(parsed, Client, WatchPrinter, DISCARDED_ENV)
    try:
        request = watch_request(spec)
    except WatchArgsError as e:
        raise _bad_args(e) from None
    watcher = Watcher(inv, printer)
    inbox: queue.Queue[tuple[object, object]] = queue.Queue()
    with client:
        session = WatchSession(client, inbox)
        try:
            session.add(request)
            while True:
                for _, resp in session.handle(*_next(inbox)):
                    if resp is None:
                        raise CtlExit(EXIT_INTERRUPTED, CANCELED_BY_SERVER)
                    watcher.show(resp, spec.exec_args)
        finally:
            session.close()


def _unbuffered(stream: BinaryIO) -> BinaryIO:
    """The stream's file itself, if it has one: the reading thread then holds no lock of sys.stdin's buffer,
    which the interpreter takes at exit."""
    fd = _fileno(stream)
    return stream if fd is None else io.FileIO(fd, "rb", closefd=False)


def _read_lines(reader: LineReader, inbox: queue.Queue[tuple[object, object]]) -> None:
    while True:
        try:
            line = reader.read_line()
        except CtlExit:
            inbox.put((_STDIN, None))
            return
        inbox.put((_STDIN, line))


def _interactive(inv: Invocation, parsed: ParsedFlags, env_key: str, env_range: str) -> None:
    _, printer, client = inv.connect(parsed, Client, WatchPrinter, DISCARDED_ENV)
    watcher = Watcher(inv, printer)
    inbox: queue.Queue[tuple[object, object]] = queue.Queue()
    reader = LineReader(_unbuffered(inv.streams.stdin))
    threading.Thread(target=_read_lines, args=(reader, inbox), name="synodctl-stdin", daemon=True).start()
    exec_for: dict[Watch, list[str]] = {}
    lines: deque[bytes | None] = deque()  # read, not yet acted on (a line waits while a watch is created)
    with client:
        session = WatchSession(client, inbox)
        try:
            while True:
                source, item = _next(inbox)
                if source is _STDIN:
                    assert item is None or isinstance(item, bytes)
                    lines.append(item)
                else:
                    for watch, resp in session.handle(source, item):
                        if resp is None:
                            exec_for.pop(watch, None)
                        else:
                            watcher.show(resp, exec_for.get(watch, []))
                while lines and not session.creating:
                    line = lines.popleft()
                    if line is None:
                        raise CtlExit(EXIT_INVALID_INPUT, "Error reading watch request line: EOF")
                    _line(inv, session, exec_for, line, env_key, env_range)
                    inv.flush()
        finally:
            session.close()


def _line(
    inv: Invocation,
    session: WatchSession,
    exec_for: dict[Watch, list[str]],
    line: bytes,
    env_key: str,
    env_range: str,
) -> None:
    """One input line of ``watch -i``: a watch to add, a progress request, or a complaint on stderr."""
    text = line.removesuffix(b"\n").decode("utf-8", "surrogateescape")
    words = argify(text)
    if not words:
        inv.err(f"Invalid command: {text} (watch and progress supported)\n")
    elif words[0] == "watch":
        if len(words) < 2 and not env_key:
            inv.err(f"Invalid command {text} (command type or key is not provided)\n")
            return
        try:
            spec = interactive_spec(words, env_key, env_range)
        except WatchArgsError as e:
            raise _bad_args(e) from None
        try:
            request = watch_request(spec)
        except WatchArgsError as e:
            inv.err(f"Invalid command {text} ({e})\n")
            return
        exec_for[session.add(request)] = spec.exec_args
    elif words[0] == "progress":
        session.request_progress()
    else:
        inv.err(f"Invalid command {text} (only support watch)\n")
