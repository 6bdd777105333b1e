"""JSON <-> protobuf as etcd's grpc-gateway encodes them (golang/protobuf's jsonpb, ``OrigName``).

Output: proto field names (``cluster_id``, ``peerURLs``), fields at their
default value left out, 64-bit integers as strings, bytes as standard base64,
enums by name, compact. Input: proto or JSON (camelCase) names, integers as
numbers or strings, enums by name or number; unknown fields are ignored (as
grpc-gateway's unmarshaler is configured). protobuf's ``json_format`` writes the
output (the same proto3 JSON mapping); the input is read here, walking the
message descriptors as jsonpb does, so that what jsonpb refuses is refused with
its words (``json: cannot unmarshal number into Go value of type []uint8``, ...).

Errors: a unary call's is ``{"error": m, "message": m, "code": c}`` with the
HTTP status grpc-gateway gives the gRPC code; a stream's, after its results,
``{"error": {"grpc_code": c, "http_code": h, "message": m, "http_status": text}}``.
"""

from __future__ import annotations

import base64
import json
from http import HTTPStatus
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from grpc import StatusCode

from synod.rpctypes import ErrorCode, RPCError
from synod.server.gateway import gojson

# grpc-gateway's runtime.HTTPStatusFromCode.
HTTP_STATUS: dict[StatusCode, int] = {
    StatusCode.OK: 200,
    StatusCode.CANCELLED: 408,
    StatusCode.UNKNOWN: 500,
    StatusCode.INVALID_ARGUMENT: 400,
    StatusCode.DEADLINE_EXCEEDED: 504,
    StatusCode.NOT_FOUND: 404,
    StatusCode.ALREADY_EXISTS: 409,
    StatusCode.PERMISSION_DENIED: 403,
    StatusCode.UNAUTHENTICATED: 401,
    StatusCode.RESOURCE_EXHAUSTED: 429,
    StatusCode.FAILED_PRECONDITION: 412,
    StatusCode.ABORTED: 409,
    StatusCode.OUT_OF_RANGE: 400,
    StatusCode.UNIMPLEMENTED: 501,
    StatusCode.INTERNAL: 500,
    StatusCode.UNAVAILABLE: 503,
    StatusCode.DATA_LOSS: 500,
}


def _compact(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def to_json(message: Message) -> bytes:
    """A message as jsonpb with ``OrigName`` writes it."""
    return _compact(json_format.MessageToDict(message, preserving_proto_field_name=True))


def response_json(response_type: type[Message], data: bytes) -> bytes:
    return to_json(response_type.FromString(data))


def stream_result(response_type: type[Message], data: bytes) -> bytes:
    """One message of a stream: ``{"result": ...}`` and the newline grpc-gateway puts after it."""
    result = json_format.MessageToDict(response_type.FromString(data), preserving_proto_field_name=True)
    return _compact({"result": result}) + b"\n"


def invalid_argument(message: str) -> RPCError:
    return RPCError(ErrorCode(StatusCode.INVALID_ARGUMENT, message))


def parse_request(request_type: type[Message], value: object) -> bytes:
    """A decoded JSON value (``loads``) as the request message's bytes; RPCError (InvalidArgument) if it
    does not fit, with jsonpb's words."""
    message = request_type()
    try:
        _fill(message, value)
    except _Mismatch as e:
        raise invalid_argument(e.message) from None
    return message.SerializeToString()


class Number:
    """A JSON number as written (Go reads the literal: "1.0" is no int64)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def loads(text: str) -> object:
    """JSON with numbers kept as ``Number``s; raises ValueError as ``json.loads``."""
    return json.loads(text, parse_int=Number, parse_float=Number, parse_constant=_no_constant)


def _no_constant(name: str) -> object:
    raise ValueError(f"invalid character {name[0]!r} looking for beginning of value")


class _Mismatch(Exception):
    def __init__(self, message: str) -> None:
        self.message = message


_INT_RANGES = {
    FieldDescriptor.TYPE_INT64: ("int64", -(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: ("int64", -(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: ("int64", -(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: ("uint64", 0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: ("uint64", 0, 2**64 - 1),
    FieldDescriptor.TYPE_INT32: ("int32", -(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: ("int32", -(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: ("int32", -(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: ("uint32", 0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: ("uint32", 0, 2**32 - 1),
}


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    return "number"


def _cannot(value: object, go_type: str, literal: bool = False) -> _Mismatch:
    kind = _kind(value)
    if literal and isinstance(value, Number):
        kind = f"number {value.text}"
    return _Mismatch(f"json: cannot unmarshal {kind} into Go value of type {go_type}")


def _go_enum_name(enum: Any) -> str:
    """The name golang/protobuf registers an enum under: package, then its nesting joined by "_"."""
    package = enum.file.package
    nested = enum.full_name[len(package) + 1 :] if package else enum.full_name
    return f"{package}.{nested.replace('.', '_')}" if package else nested.replace(".", "_")


def _fill(message: Message, value: object) -> None:
    """jsonpb's Unmarshal of ``value`` into ``message``: fields in declaration order, then oneofs."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise _cannot(value, "map[string]json.RawMessage")
    fields = dict(value)
    descriptor = message.DESCRIPTOR
    for field in descriptor.fields:
        if field.containing_oneof is not None:
            continue
        found, raw = _consume(fields, field)
        if found:
            _field(message, field, raw)
    if fields:
        for field in descriptor.fields:
            if field.containing_oneof is None:
                continue
            found, raw = _consume(fields, field)
            if found:
                if field.type == FieldDescriptor.TYPE_MESSAGE:
                    getattr(message, field.name).SetInParent()
                else:
                    setattr(message, field.name, getattr(message, field.name))  # set, at the default
                _field(message, field, raw)
    # Fields nobody knows are ignored, as grpc-gateway's unmarshaler is told to.


def _consume(fields: dict[str, object], field: Any) -> tuple[bool, object]:
    """The field's value under its proto name or its JSON name (the latter wins if both are there)."""
    found = False
    raw: object = None
    for name in (field.name, field.json_name):
        if name in fields:
            raw, found = fields.pop(name), True
    return found, raw


def _field(message: Message, field: Any, raw: object) -> None:
    if raw is None:
        return  # null: the field keeps its default
    if field.is_repeated:
        if not isinstance(raw, list):
            raise _cannot(raw, "[]json.RawMessage")
        target = getattr(message, field.name)
        for item in raw:
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                sub = target.add()
                _fill(sub, item)
            elif item is not None:
                target.append(_scalar(field, item))
            else:
                target.append(_scalar(field, _ZERO.get(field.type, Number("0"))))
        return
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        sub = getattr(message, field.name)
        sub.SetInParent()
        _fill(sub, raw)
        return
    setattr(message, field.name, _scalar(field, raw))


_ZERO: dict[int, object] = {
    FieldDescriptor.TYPE_BYTES: "",
    FieldDescriptor.TYPE_STRING: "",
    FieldDescriptor.TYPE_BOOL: False,
}


def _scalar(field: Any, raw: object) -> object:
    t = field.type
    if t == FieldDescriptor.TYPE_ENUM:
        enum = field.enum_type
        if isinstance(raw, str):
            found = enum.values_by_name.get(raw)
            if found is None:
                raise _Mismatch(f"unknown value {json.dumps(raw)} for enum {_go_enum_name(enum)}")
            return found.number
        return _integer(raw, _go_enum_name(enum), -(2**31), 2**31 - 1)
    if t == FieldDescriptor.TYPE_BYTES:
        return _bytes(raw)
    if t == FieldDescriptor.TYPE_STRING:
        if not isinstance(raw, str):
            raise _cannot(raw, "string")
        return raw
    if t == FieldDescriptor.TYPE_BOOL:
        if not isinstance(raw, bool):
            raise _cannot(raw, "bool")
        return raw
    if t in _INT_RANGES:
        go_type, low, high = _INT_RANGES[t]
        if isinstance(raw, str):  # jsonpb takes a quoted number's inside as the number's text
            error = gojson.syntax_error(raw, top_level=True)
            if error is not None:
                raise _Mismatch(error)
            raw = loads(raw)
        return _integer(raw, go_type, low, high)
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        if isinstance(raw, str):
            raw = loads(raw)
        if not isinstance(raw, Number):
            raise _cannot(raw, "float64")
        return float(raw.text)
    raise _Mismatch(f"unsupported field type {t}")


def _integer(raw: object, go_type: str, low: int, high: int) -> int:
    if not isinstance(raw, Number):
        raise _cannot(raw, go_type)
    text = raw.text
    if any(c in text for c in ".eE"):
        raise _cannot(raw, go_type, literal=True)
    number = int(text)
    if not low <= number <= high:
        raise _cannot(raw, go_type, literal=True)
    return number


def _bytes(raw: object) -> bytes:
    if isinstance(raw, list):  # encoding/json reads an array of numbers into a []byte too
        return bytes(_integer(item, "uint8", 0, 255) for item in raw)
    if not isinstance(raw, str):
        raise _cannot(raw, "[]uint8")
    data = raw.encode()
    offset = gojson.base64_error(data)
    if offset is not None:
        raise _Mismatch(f"illegal base64 data at input byte {offset}")
    return base64.b64decode(data.replace(b"\r", b"").replace(b"\n", b""))


def error_json(error: RPCError) -> tuple[int, bytes]:
    """A unary call's error: the HTTP status and grpc-gateway's error body."""
    body = {"error": error.message, "message": error.message, "code": error.code.value[0]}
    return HTTP_STATUS.get(error.code, 500), _compact(body)


def stream_error_json(error: RPCError) -> bytes:
    """A stream's closing error, as grpc-gateway writes it (without a newline after it)."""
    status = HTTP_STATUS.get(error.code, 500)
    body = {
        "error": {
            "grpc_code": error.code.value[0],
            "http_code": status,
            "message": error.message,
            "http_status": HTTPStatus(status).phrase,
        }
    }
    return _compact(body)
