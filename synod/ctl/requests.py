"""The KV commands' flags, and the requests ``get``/``put``/``del``/``compaction`` make of their arguments.

Shared by the commands themselves and by txn request lines, which take the
same flags. Argument checks happen in etcdctl's order with its messages and
exit codes; the requests are the ones etcd's Go client would send.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.client.keys import prefix_end
from synod.ctl.errors import EXIT_BAD_ARGS, EXIT_BAD_FEATURE, EXIT_ERROR, CtlExit
from synod.ctl.flags import Flag, ParsedFlags
from synod.ctl.gostrconv import NumError, parse_int, quote
from synod.ctl.usage import CommandHelp

GET_FLAGS = (
    Flag("consistency", "string", "l", "read consistency: l (linearizable) or s (serializable)"),
    Flag("order", "string", "", "sort order: ASCEND or DESCEND (ASCEND when only --sort-by is given)"),
    Flag("sort-by", "string", "", "sort by CREATE, KEY, MODIFY, VALUE or VERSION"),
    Flag("limit", "int64", "0", "return at most this many keys (0: no limit)"),
    Flag("prefix", "bool", "false", "get every key that starts with <key>"),
    Flag("from-key", "bool", "false", "get every key at or after <key> (byte order)"),
    Flag("rev", "int64", "0", "read the store as it was at this revision"),
    Flag("keys-only", "bool", "false", "return keys without their values"),
    Flag("count-only", "bool", "false", "return only how many keys match (with --write-out=fields)"),
    Flag("print-value-only", "bool", "false", "print values without keys (simple output only)"),
)
PUT_FLAGS = (
    Flag("lease", "string", "0", "attach the key to this lease (ID in hexadecimal)"),
    Flag("prev-kv", "bool", "false", "also print the key-value pair as it was before"),
    Flag("ignore-value", "bool", "false", "keep the key's current value"),
    Flag("ignore-lease", "bool", "false", "keep the key's current lease"),
)
DEL_FLAGS = (
    Flag("prefix", "bool", "false", "delete every key that starts with <key>"),
    Flag("prev-kv", "bool", "false", "also print the deleted key-value pairs"),
    Flag("from-key", "bool", "false", "delete every key at or after <key> (byte order)"),
)
TXN_FLAGS = (Flag("interactive", "bool", "false", "prompt for each part of the transaction", "i"),)
COMPACTION_FLAGS = (Flag("physical", "bool", "false", "wait until the old revisions are physically removed"),)

GET_HELP = CommandHelp("get", "get [options] <key> [range_end]", "Reads a key or a range of keys")
PUT_HELP = CommandHelp(
    "put",
    "put [options] <key> <value> (<value> can also be given from stdin)",
    "Writes a key",
    """
Writes <value> to <key>.

A <value> that starts with '-' would be read as a flag; put '--' before it:

$ put <key> -- <value>
$ put -- <key> <value>

Without a <value> argument (and without --ignore-value), the value is read
from standard input, so that

$ cat file | put <key>

stores the file's content under <key>.
""",
)
DEL_HELP = CommandHelp(
    "del", "del [options] <key> [range_end]", "Deletes a key or the keys in [key, range_end)"
)
TXN_HELP = CommandHelp(
    "txn", "txn [options]", "Runs compares and requests read from stdin in one transaction"
)
COMPACTION_HELP = CommandHelp(
    "compaction", "compaction [options] <revision>", "Discards the history before a revision"
)
VERSION_HELP = CommandHelp("version", "version", "Prints synodctl's version")

_SORT_ORDERS = {
    "": pb.RangeRequest.NONE,
    "ASCEND": pb.RangeRequest.ASCEND,
    "DESCEND": pb.RangeRequest.DESCEND,
}
_SORT_TARGETS = {
    "": pb.RangeRequest.KEY,
    "CREATE": pb.RangeRequest.CREATE,
    "KEY": pb.RangeRequest.KEY,
    "MODIFY": pb.RangeRequest.MOD,
    "VALUE": pb.RangeRequest.VALUE,
    "VERSION": pb.RangeRequest.VERSION,
}
_ONE_OF = "`--prefix` and `--from-key` cannot be set at the same time, choose one"
_TOO_MANY = "too many arguments, only accept one argument when `--prefix` or `--from-key` is set"
_PUT_ARGS = "put command needs 1 argument and input from stdin or 2 arguments"


def range_request(args: Sequence[bytes], flags: ParsedFlags) -> pb.RangeRequest:
    """``get``'s request."""
    if not args:
        raise CtlExit(
            EXIT_BAD_ARGS, "get command needs one argument as key and an optional argument as range_end"
        )
    prefix, from_key = flags.get_bool("prefix"), flags.get_bool("from-key")
    keys_only, count_only = flags.get_bool("keys-only"), flags.get_bool("count-only")
    if prefix and from_key:
        raise CtlExit(EXIT_BAD_ARGS, _ONE_OF)
    if keys_only and count_only:
        raise CtlExit(
            EXIT_BAD_ARGS, "`--keys-only` and `--count-only` cannot be set at the same time, choose one"
        )
    req = pb.RangeRequest(key=args[0])
    consistency = flags.get_str("consistency")
    if consistency == "s":
        req.serializable = True
    elif consistency != "l":
        raise CtlExit(EXIT_BAD_FEATURE, f"unknown consistency flag {quote(consistency)}")
    if len(args) > 1:
        if prefix or from_key:
            raise CtlExit(EXIT_BAD_ARGS, _TOO_MANY)
        req.range_end = args[1]
    req.limit = flags.get_int("limit")
    if flags.get_int("rev") > 0:
        req.revision = flags.get_int("rev")
    order_text, target_text = flags.get_str("order"), flags.get_str("sort-by")
    order = _SORT_ORDERS.get(order_text.upper())
    if order is None:
        raise CtlExit(EXIT_BAD_FEATURE, f"bad sort order {order_text}")
    target = _SORT_TARGETS.get(target_text.upper())
    if target is None:
        raise CtlExit(EXIT_BAD_FEATURE, f"bad sort target {target_text}")
    if target == pb.RangeRequest.KEY and order == pb.RangeRequest.ASCEND:
        order = pb.RangeRequest.NONE  # keys come in ascending order anyway
    req.sort_order, req.sort_target = order, target
    _apply_range_flags(req, prefix, from_key)
    req.keys_only = keys_only
    req.count_only = count_only
    return req


def _apply_range_flags(req: pb.RangeRequest | pb.DeleteRangeRequest, prefix: bool, from_key: bool) -> None:
    if prefix:
        if not req.key:
            req.key, req.range_end = b"\0", b"\0"
        else:
            req.range_end = prefix_end(req.key)
    if from_key:
        if not req.key:
            req.key = b"\0"
        req.range_end = b"\0"


def put_request(args: Sequence[bytes], flags: ParsedFlags, read_stdin: Callable[[], bytes]) -> pb.PutRequest:
    """``put``'s request; the value comes from ``read_stdin`` when it is not an argument."""
    if not args:
        raise CtlExit(EXIT_BAD_ARGS, _PUT_ARGS)
    ignore_value = flags.get_bool("ignore-value")
    if ignore_value and len(args) > 1:
        raise CtlExit(EXIT_BAD_ARGS, "put command needs only 1 argument when 'ignore-value' is set")
    value = b""
    if not ignore_value:
        value = args[1] if len(args) > 1 else read_stdin()
        if len(args) < 2 and not value:
            raise CtlExit(EXIT_BAD_ARGS, _PUT_ARGS)
    lease_text = flags.get_str("lease")
    try:
        lease = parse_int(lease_text, 16, 64)
    except NumError as e:
        raise CtlExit(EXIT_BAD_ARGS, f"bad lease ID ({e}), expecting ID in Hex") from None
    return pb.PutRequest(
        key=args[0],
        value=value,
        lease=lease,
        prev_kv=flags.get_bool("prev-kv"),
        ignore_value=ignore_value,
        ignore_lease=flags.get_bool("ignore-lease"),
    )


def delete_request(args: Sequence[bytes], flags: ParsedFlags) -> pb.DeleteRangeRequest:
    """``del``'s request."""
    if not args or len(args) > 2:
        raise CtlExit(
            EXIT_BAD_ARGS, "del command needs one argument as key and an optional argument as range_end"
        )
    prefix, from_key = flags.get_bool("prefix"), flags.get_bool("from-key")
    if prefix and from_key:
        raise CtlExit(EXIT_BAD_ARGS, _ONE_OF)
    req = pb.DeleteRangeRequest(key=args[0])
    if len(args) > 1:
        if prefix or from_key:
            raise CtlExit(EXIT_BAD_ARGS, _TOO_MANY)
        req.range_end = args[1]
    _apply_range_flags(req, prefix, from_key)
    req.prev_kv = flags.get_bool("prev-kv")
    return req


def compaction_request(args: Sequence[bytes], flags: ParsedFlags) -> pb.CompactionRequest:
    """``compaction``'s request."""
    if len(args) != 1:
        raise CtlExit(EXIT_BAD_ARGS, "compaction command needs 1 argument")
    try:
        revision = parse_int(args[0].decode("utf-8", "surrogateescape"), 10, 64)
    except NumError as e:
        raise CtlExit(EXIT_ERROR, str(e)) from None
    return pb.CompactionRequest(revision=revision, physical=flags.get_bool("physical"))
