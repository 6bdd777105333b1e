"""The gRPC server's sans-IO parts: message framing, status trailers, and DATA frames written as h2 would."""

from __future__ import annotations

import asyncio
import gzip
import struct

import h2.config
import h2.connection
import h2.events
import pytest
from grpc import StatusCode

from synod.rpctypes import RPCError
from synod.server.wire.connection import GrpcConnection, Route
from synod.server.wire.messages import (
    MessageReader,
    check_encoding,
    encode_grpc_message,
    frame,
    status_headers,
)


def test_messages_reassemble_from_any_split():
    messages = [b"", b"a", b"x" * 300, bytes(range(256))]
    stream = b"".join(frame(m) for m in messages)
    for cut in range(len(stream) + 1):
        reader = MessageReader(limit=1000)
        got = reader.feed(stream[:cut]) + reader.feed(stream[cut:])
        assert got == messages, cut
        assert reader.pending == 0


def test_messages_one_byte_at_a_time():
    stream = frame(b"hello") + frame(b"world")
    reader = MessageReader(limit=10)
    got = [m for i in range(len(stream)) for m in reader.feed(stream[i : i + 1])]
    assert got == [b"hello", b"world"]


def test_message_over_the_limit_is_refused_from_its_prefix_alone():
    reader = MessageReader(limit=100)
    with pytest.raises(RPCError) as e:
        reader.feed(struct.pack(">BI", 0, 101))  # no body yet: nothing is buffered first
    assert e.value.code == StatusCode.RESOURCE_EXHAUSTED
    assert e.value.message == "grpc: received message larger than max (101 vs. 100)"


def test_gzip_message_is_decompressed_under_gzip_encoding():
    body = gzip.compress(b"payload" * 10)
    reader = MessageReader(limit=1000, encoding=b"gzip")
    assert reader.feed(struct.pack(">BI", 1, len(body)) + body) == [b"payload" * 10]


def test_decompressed_message_over_the_limit_is_refused():
    body = gzip.compress(b"\0" * 5000)
    reader = MessageReader(limit=1000, encoding=b"gzip")
    with pytest.raises(RPCError) as e:
        reader.feed(struct.pack(">BI", 1, len(body)) + body)
    assert e.value.code == StatusCode.RESOURCE_EXHAUSTED
    assert "after decompression larger than max (5000 vs. 1000)" in e.value.message


def test_compressed_flag_without_an_encoding_is_an_error():
    reader = MessageReader(limit=1000)
    with pytest.raises(RPCError) as e:
        reader.feed(struct.pack(">BI", 1, 3) + b"abc")
    assert e.value.code == StatusCode.INTERNAL
    assert e.value.message == "grpc: compressed flag set with identity or empty encoding"


def test_unknown_encoding_is_unimplemented_as_grpc_go_says():
    check_encoding(None)
    check_encoding(b"identity")
    check_encoding(b"gzip")
    with pytest.raises(RPCError) as e:
        check_encoding(b"snappy")
    assert e.value.code == StatusCode.UNIMPLEMENTED
    assert e.value.message == 'grpc: Decompressor is not installed for grpc-encoding "snappy"'


def test_grpc_message_percent_encoding():
    assert encode_grpc_message("etcdserver: key not found") == b"etcdserver: key not found"
    assert encode_grpc_message("100% é\n") == b"100%25 %C3%A9%0A"
    assert status_headers(StatusCode.OK, "") == [(b"grpc-status", b"0")]
    assert status_headers(StatusCode.NOT_FOUND, "x") == [(b"grpc-status", b"5"), (b"grpc-message", b"x")]


class _Transport:
    def __init__(self) -> None:
        self.out = bytearray()

    def write(self, data: bytes) -> None:
        self.out += data

    def close(self) -> None:
        pass


def _connected(client: h2.connection.H2Connection) -> tuple[GrpcConnection, _Transport, int]:
    """A server connection with one open stream from ``client``, its response headers sent."""
    conn = GrpcConnection(lambda path: Route(), limit=1 << 20, on_close=lambda c: None)
    transport = _Transport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    client.initiate_connection()
    sid = client.get_next_available_stream_id()
    headers = [(":method", "POST"), (":path", "/x/y"), (":scheme", "http"), (":authority", "a")]
    client.send_headers(sid, headers)
    conn.h2.receive_data(client.data_to_send())
    conn.h2.send_headers(sid, [(b":status", b"200")])
    client.receive_data(bytes(transport.out) + conn.h2.data_to_send())
    transport.out.clear()
    return conn, transport, sid


def test_data_frames_written_directly_are_what_h2_writes():
    async def run() -> None:
        ours_client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        ours, _, sid = _connected(ours_client)
        theirs_client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        theirs, _, sid2 = _connected(theirs_client)
        assert sid == sid2
        payload = bytes(range(256)) * 200  # 51,200 bytes: four frames of at most 16 KiB
        rest = ours.send_data(sid, memoryview(payload))
        assert rest is None
        for i in range(0, len(payload), theirs.h2.max_outbound_frame_size):
            theirs.h2.send_data(sid, payload[i : i + theirs.h2.max_outbound_frame_size])
        assert ours.h2.data_to_send() == theirs.h2.data_to_send()
        assert ours.h2.local_flow_control_window(sid) == theirs.h2.local_flow_control_window(sid)
        assert ours.h2.outbound_flow_control_window == theirs.h2.outbound_flow_control_window

    asyncio.run(run())


def test_data_beyond_the_window_is_returned_and_the_client_gets_the_rest_later():
    async def run() -> None:
        client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn, _, sid = _connected(client)
        window = conn.h2.local_flow_control_window(sid)  # the client's default: 65,535
        payload = b"z" * (window + 1000)
        rest = conn.send_data(sid, memoryview(payload))
        assert rest is not None and len(rest) == 1000
        assert conn.h2.local_flow_control_window(sid) == 0
        events = client.receive_data(conn.h2.data_to_send())
        got = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
        assert got == payload[:window]
        client.increment_flow_control_window(5000, stream_id=sid)
        client.increment_flow_control_window(5000)
        conn.h2.receive_data(client.data_to_send())
        assert conn.send_data(sid, rest) is None
        events = client.receive_data(conn.h2.data_to_send())
        assert b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived)) == payload[window:]

    asyncio.run(run())


def test_a_reset_stream_takes_no_data():
    async def run() -> None:
        client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn, _, sid = _connected(client)
        client.reset_stream(sid)
        conn.h2.receive_data(client.data_to_send())
        assert conn.send_data(sid, memoryview(b"late")) is None
        assert conn.h2.data_to_send() == b""

    asyncio.run(run())
