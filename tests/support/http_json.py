"""A plain HTTP/1.1 client for the JSON gateway tests: whole answers, and streams read line by line."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import time
from dataclasses import dataclass
from typing import Any

_VARYING_HEADERS = {"date", "content-length"}


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def post(
    endpoint: str,
    path: str,
    body: bytes | str | dict[str, Any] | None = None,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> Reply:
    """One request on a new connection; the whole answer."""
    host, port = endpoint.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        data = (
            json.dumps(body).encode()
            if isinstance(body, dict)
            else body.encode()
            if isinstance(body, str)
            else body
        )
        conn.request(method, path, body=data, headers=headers or {})
        resp = conn.getresponse()
        body_bytes = resp.read()
        headers = tuple(
            sorted((k.lower(), v) for k, v in resp.getheaders() if k.lower() not in _VARYING_HEADERS)
        )
        return Reply(resp.status, resp.getheader("content-type", ""), body_bytes, headers)
    finally:
        conn.close()


class Stream:
    """A streaming request (watch, keep-alive, observe): the body goes chunk by chunk, lines are read as
    they come."""

    def __init__(
        self, endpoint: str, path: str, first: dict[str, Any] | None = None, *, timeout: float = 10.0
    ) -> None:
        host, port = endpoint.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {endpoint}\r\nTransfer-Encoding: chunked\r\n"
            "Content-Type: application/json\r\n\r\n".encode()
        )
        self._buffer = b""
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self._chunked = False
        self._ended = False
        self._body = b""
        if first is not None:
            self.send(first)

    def send(self, value: dict[str, Any] | bytes) -> None:
        data = value if isinstance(value, bytes) else json.dumps(value).encode() + b"\n"
        self.sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))

    def end_body(self) -> None:
        self.sock.sendall(b"0\r\n\r\n")

    def _fill(self, deadline: float) -> bool:
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        if not data:
            raise EOFError("the server closed the connection")
        self._buffer += data
        return True

    def _head(self, deadline: float) -> None:
        while b"\r\n\r\n" not in self._buffer:
            if not self._fill(deadline):
                raise TimeoutError("no response head")
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        self._chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"

    def _decode_chunks(self) -> bool:
        """Move whole chunks from the buffer to the body; False once the last chunk came."""
        if self._ended:
            return False
        if not self._chunked:
            self._body += self._buffer
            self._buffer = b""
            return True
        while b"\r\n" in self._buffer:
            size_line, rest = self._buffer.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            if len(rest) < size + 2:
                return True
            if size == 0:
                self._buffer = rest
                self._ended = True
                return False
            self._body += rest[:size]
            self._buffer = rest[size + 2 :]
        return True

    def read_raw(self, timeout: float = 10.0) -> bytes:
        """Everything of the body that has come within ``timeout``, up to its end."""
        deadline = time.monotonic() + timeout
        if self.status is None:
            self._head(deadline)
        while self._decode_chunks():
            try:
                if not self._fill(deadline):
                    break
            except EOFError:
                break
        body, self._body = self._body, b""
        return body

    def line(self, timeout: float = 10.0) -> Any:
        """The next newline-ended JSON value of the response body."""
        deadline = time.monotonic() + timeout
        if self.status is None:
            self._head(deadline)
        while b"\n" not in self._body:
            more = self._decode_chunks()
            if b"\n" in self._body:
                break
            if not more or not self._fill(deadline):
                raise TimeoutError(f"no whole line within {timeout}s (have {self._body!r})")
        line, self._body = self._body.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
