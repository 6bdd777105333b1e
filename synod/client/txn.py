"""A small typed builder for transactions: compares with operators, operations as functions.

    from synod.client import txn as t

    await client.txn(
        compare=[t.version("cfg") == 0, t.value("owner") != "me"],
        success=[t.put("cfg", "v1"), t.get("cfg")],
        failure=[t.get("cfg")],
    )

A compare is ``<target>(key) <op> <operand>`` with ``==``, ``!=``, ``<`` or ``>``;
the targets are etcd's (``value``, ``version``, ``create_revision``,
``mod_revision``, ``lease``). ``prefix=True`` (or ``range_end=``) compares
every key of a range, as etcd 3.3+ allows. The results are the protobuf
messages etcd's API takes, so anything the builder does not cover can be
written as ``pb.Compare`` / ``pb.RequestOp`` directly.
"""

from __future__ import annotations

from collections.abc import Sequence

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.client.keys import Key, key_range, to_bytes


class _Target:
    """One side of a compare; the operators build the ``pb.Compare``."""

    __slots__ = ("_field", "_key", "_range_end", "_target")

    def __init__(self, target: int, field: str, key: Key, prefix: bool, range_end: Key | None) -> None:
        self._target = target
        self._field = field
        self._key, self._range_end = key_range(key, range_end, prefix)

    def _compare(self, result: int, operand: object) -> pb.Compare:
        if self._field == "value":
            if not isinstance(operand, str | bytes):
                raise TypeError(f"a value compares with str or bytes, not {type(operand).__name__}")
            value: object = to_bytes(operand)
        else:
            if not isinstance(operand, int) or isinstance(operand, bool):
                raise TypeError(f"{self._field} compares with an int, not {type(operand).__name__}")
            value = operand
        return pb.Compare(
            key=self._key,
            range_end=self._range_end,
            target=self._target,  # type: ignore[arg-type]
            result=result,  # type: ignore[arg-type]
            **{self._field: value},  # type: ignore[arg-type]
        )

    def __eq__(self, operand: object) -> pb.Compare:  # type: ignore[override]
        return self._compare(pb.Compare.EQUAL, operand)

    def __ne__(self, operand: object) -> pb.Compare:  # type: ignore[override]
        return self._compare(pb.Compare.NOT_EQUAL, operand)

    def __lt__(self, operand: object) -> pb.Compare:
        return self._compare(pb.Compare.LESS, operand)

    def __gt__(self, operand: object) -> pb.Compare:
        return self._compare(pb.Compare.GREATER, operand)

    __hash__ = None  # type: ignore[assignment]


def value(key: Key, *, prefix: bool = False, range_end: Key | None = None) -> _Target:
    return _Target(pb.Compare.VALUE, "value", key, prefix, range_end)


def version(key: Key, *, prefix: bool = False, range_end: Key | None = None) -> _Target:
    return _Target(pb.Compare.VERSION, "version", key, prefix, range_end)


def create_revision(key: Key, *, prefix: bool = False, range_end: Key | None = None) -> _Target:
    return _Target(pb.Compare.CREATE, "create_revision", key, prefix, range_end)


def mod_revision(key: Key, *, prefix: bool = False, range_end: Key | None = None) -> _Target:
    return _Target(pb.Compare.MOD, "mod_revision", key, prefix, range_end)


def lease(key: Key, *, prefix: bool = False, range_end: Key | None = None) -> _Target:
    return _Target(pb.Compare.LEASE, "lease", key, prefix, range_end)


def put(
    key: Key, value: Key, *, lease: int = 0, prev_kv: bool = False, ignore_value: bool = False,
    ignore_lease: bool = False,
) -> pb.RequestOp:  # fmt: skip
    return pb.RequestOp(request_put=put_request(key, value, lease, prev_kv, ignore_value, ignore_lease))


def get(
    key: Key, *, prefix: bool = False, range_end: Key | None = None, from_key: bool = False,
    revision: int = 0, keys_only: bool = False, count_only: bool = False, limit: int = 0,
    sort_order: int = pb.RangeRequest.NONE, sort_target: int = pb.RangeRequest.KEY,
) -> pb.RequestOp:  # fmt: skip
    """A range read, with ``AsyncClient.get``'s range options (its key range as there)."""
    k, end = key_range(key, range_end, prefix, from_key)
    r = pb.RangeRequest(
        key=k, range_end=end, revision=revision, keys_only=keys_only, count_only=count_only, limit=limit,
        sort_order=sort_order, sort_target=sort_target,  # type: ignore[arg-type]
    )  # fmt: skip
    return pb.RequestOp(request_range=r)


def delete(
    key: Key, *, prefix: bool = False, range_end: Key | None = None, from_key: bool = False,
    prev_kv: bool = False,
) -> pb.RequestOp:  # fmt: skip
    k, end = key_range(key, range_end, prefix, from_key)
    r = pb.DeleteRangeRequest(key=k, range_end=end, prev_kv=prev_kv)
    return pb.RequestOp(request_delete_range=r)


def txn(
    compare: Sequence[pb.Compare], success: Sequence[pb.RequestOp] = (), failure: Sequence[pb.RequestOp] = ()
) -> pb.RequestOp:
    """A nested transaction (etcd 3.3+), as an operation of the outer one."""
    return pb.RequestOp(request_txn=pb.TxnRequest(compare=compare, success=success, failure=failure))


def put_request(
    key: Key, value: Key, lease: int = 0, prev_kv: bool = False, ignore_value: bool = False,
    ignore_lease: bool = False,
) -> pb.PutRequest:  # fmt: skip
    return pb.PutRequest(
        key=to_bytes(key), value=to_bytes(value), lease=lease, prev_kv=prev_kv,
        ignore_value=ignore_value, ignore_lease=ignore_lease,
    )  # fmt: skip
