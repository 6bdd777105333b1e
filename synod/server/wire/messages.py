"""gRPC's message layer over HTTP/2, sans-IO: length-prefixed messages, status trailers.

A gRPC message on an HTTP/2 stream is ``u8 compressed | u32 length | bytes``;
DATA frames split and join messages freely, so ``MessageReader`` reassembles
them. Its size check runs on the declared length, before any of the message
is buffered, and answers as grpc-go (etcd's server) does.
"""

from __future__ import annotations

import struct
import zlib

from grpc import StatusCode

from synod.rpctypes import ErrorCode, RPCError

_PREFIX = struct.Struct(">BI")
PREFIX_SIZE = _PREFIX.size


def frame(message: bytes) -> bytes:
    """One uncompressed gRPC message, ready to go into DATA frames."""
    return _PREFIX.pack(0, len(message)) + message


def _error(code: StatusCode, message: str) -> RPCError:
    return RPCError(ErrorCode(code, message))


def too_large(size: int, limit: int) -> RPCError:
    """grpc-go's words for a message over the receive limit (etcd's answer)."""
    return _error(
        StatusCode.RESOURCE_EXHAUSTED, f"grpc: received message larger than max ({size} vs. {limit})"
    )


class MessageReader:
    """Reassembles the messages of one stream from its DATA payloads.

    ``encoding`` is the stream's ``grpc-encoding`` (checked by ``check_encoding``
    when it opens); a compressed message needs ``gzip``, as in grpc-go.
    """

    __slots__ = ("_buf", "_encoding", "_limit")

    def __init__(self, limit: int, encoding: bytes | None = None) -> None:
        self._buf = bytearray()
        self._limit = limit
        self._encoding = encoding

    @property
    def pending(self) -> int:
        """Bytes of an incomplete message held."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; returns the messages they complete. Raises RPCError for a bad message."""
        buf = self._buf
        if not buf and len(data) >= PREFIX_SIZE:
            # Fast path: the payload holds whole messages (the usual case for small requests).
            flag, size = _PREFIX.unpack_from(data)
            if flag == 0 and len(data) == PREFIX_SIZE + size and size <= self._limit:
                return [data[PREFIX_SIZE:]]
        buf += data
        out: list[bytes] = []
        while len(buf) >= PREFIX_SIZE:
            flag, size = _PREFIX.unpack_from(buf)
            if size > self._limit:
                raise too_large(size, self._limit)
            end = PREFIX_SIZE + size
            if len(buf) < end:
                break
            message = bytes(buf[PREFIX_SIZE:end])
            del buf[:end]
            out.append(self._decompress(message) if flag else message)
        return out

    def _decompress(self, message: bytes) -> bytes:
        if self._encoding != b"gzip":
            raise _error(StatusCode.INTERNAL, "grpc: compressed flag set with identity or empty encoding")
        try:
            out = zlib.decompress(message, wbits=31)
        except zlib.error as e:
            raise _error(StatusCode.INTERNAL, f"grpc: failed to decompress the received message: {e}") from e
        if len(out) > self._limit:
            raise _error(
                StatusCode.RESOURCE_EXHAUSTED,
                f"grpc: received message after decompression larger than max ({len(out)} vs. {self._limit})",
            )
        return out


def check_encoding(encoding: bytes | None) -> None:
    """A request encoding other than identity or gzip is refused when the stream opens, as grpc-go does."""
    if encoding not in (None, b"identity", b"gzip"):
        name = encoding.decode("latin-1") if encoding is not None else ""
        raise _error(
            StatusCode.UNIMPLEMENTED, f'grpc: Decompressor is not installed for grpc-encoding "{name}"'
        )


# gRPC's percent-encoding of grpc-message: bytes outside printable ASCII, and '%', are escaped.
_UNRESERVED = frozenset(range(0x20, 0x7F)) - {ord("%")}


def encode_grpc_message(message: str) -> bytes:
    raw = message.encode("utf-8")
    if all(b in _UNRESERVED for b in raw):
        return raw
    return b"".join(bytes([b]) if b in _UNRESERVED else b"%%%02X" % b for b in raw)


def status_headers(code: StatusCode, message: str) -> list[tuple[bytes, bytes]]:
    """The trailers that end a call with ``code``."""
    headers = [(b"grpc-status", str(code.value[0]).encode())]
    if message:
        headers.append((b"grpc-message", encode_grpc_message(message)))
    return headers
