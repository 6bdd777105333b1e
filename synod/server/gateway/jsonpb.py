"""JSON <-> protobuf as etcd's grpc-gateway encodes them (golang/protobuf's jsonpb, ``OrigName``).

Output: proto field names (``cluster_id``, ``peerURLs``), fields at their
default value left out, 64-bit integers as strings, bytes as standard base64,
enums by name, compact. Input: proto or JSON (camelCase) names, integers as
numbers or strings, enums by name or number; unknown fields are refused.
protobuf's own ``json_format`` follows the same proto3 JSON mapping, so it does
the work; what is etcd's here is the choice of options and the error answers.

Errors: a unary call's is ``{"error": m, "message": m, "code": c}`` with the
HTTP status grpc-gateway gives the gRPC code; a stream's, after its results,
``{"error": {"grpc_code": c, "http_code": h, "message": m, "http_status": text}}``.
"""

from __future__ import annotations

import json
from http import HTTPStatus

from google.protobuf import json_format
from google.protobuf.message import Message
from grpc import StatusCode

from synod.rpctypes import ErrorCode, RPCError

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
    """A decoded JSON value as the request message's bytes; RPCError (InvalidArgument) if it does not fit."""
    message = request_type()
    if value is None:
        return b""  # jsonpb reads "null" as the empty message
    if not isinstance(value, dict):
        raise invalid_argument(_go_type_error(value, request_type))
    try:
        json_format.ParseDict(value, message)
    except json_format.ParseError as e:
        raise invalid_argument(_go_parse_error(str(e), request_type)) from None
    return message.SerializeToString()


def _go_type_error(value: object, request_type: type[Message]) -> str:
    kinds = {list: "array", str: "string", bool: "bool", int: "number", float: "number"}
    kind = kinds.get(type(value), "value")
    return f"json: cannot unmarshal {kind} into Go value of type map[string]json.RawMessage"


def _go_parse_error(text: str, request_type: type[Message]) -> str:
    """jsonpb's words where protobuf's differ (the common cases: an unknown field, a wrong type)."""
    name = request_type.DESCRIPTOR.full_name
    if "has no field named" in text:
        field = text.split('has no field named "', 1)[-1].split('"', 1)[0]
        return f'unknown field "{field}" in {name}'
    return text


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
