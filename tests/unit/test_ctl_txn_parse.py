"""synodctl's reading of etcdctl's txn input: compares, request lines, and the errors etcdctl gives."""

from __future__ import annotations

import io

import pytest

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.ctl.errors import EXIT_BAD_ARGS, EXIT_BAD_FEATURE, EXIT_INVALID_INPUT, EXIT_PANIC, CtlExit
from synod.ctl.txn_parse import LineReader, argify, parse_compare, parse_request, read_compares, read_requests


def _no_stdin() -> bytes:
    return b""


@pytest.mark.parametrize(
    ("line", "target", "field", "value"),
    [
        ('mod("k") > "3"', pb.Compare.MOD, "mod_revision", 3),
        ('m("k") > "3"', pb.Compare.MOD, "mod_revision", 3),
        ('create("k") = "0"', pb.Compare.CREATE, "create_revision", 0),
        ('c("k") = "-1"', pb.Compare.CREATE, "create_revision", -1),
        ('version("k") != "2"', pb.Compare.VERSION, "version", 2),
        ('ver("k") < "+2"', pb.Compare.VERSION, "version", 2),
        ('value("k") = "v"', pb.Compare.VALUE, "value", b"v"),
        ('val("k") = "a\\tb\\x00\\u00e9"', pb.Compare.VALUE, "value", b"a\tb\x00\xc3\xa9"),
        ("val(`k`) = `a\\tb`", pb.Compare.VALUE, "value", b"a\\tb"),
        ('lease("k") = "1f"', pb.Compare.LEASE, "lease", 0x1F),
        ('mod("k")  >   "3"  trailing words', pb.Compare.MOD, "mod_revision", 3),
    ],
)
def test_compares(line: str, target: int, field: str, value: object) -> None:
    cmp = parse_compare(line)
    assert cmp.key == b"k"
    assert cmp.target == target
    assert getattr(cmp, field) == value


@pytest.mark.parametrize(
    ("op", "result"),
    [
        ("=", pb.Compare.EQUAL),
        ("!=", pb.Compare.NOT_EQUAL),
        (">", pb.Compare.GREATER),
        ("<", pb.Compare.LESS),
    ],
)
def test_compare_operators(op: str, result: int) -> None:
    assert parse_compare(f'val("k") {op} "v"').result == result


@pytest.mark.parametrize(
    ("line", "code", "message"),
    [
        ("no parenthesis", EXIT_INVALID_INPUT, "malformed comparison: no parenthesis"),
        ('mod("k")>"0"', EXIT_INVALID_INPUT, 'malformed comparison: mod("k")>"0"; got mod("k")  ""'),
        ('mod(k) = "1"', EXIT_INVALID_INPUT, 'malformed comparison: mod(k) = "1"; got mod("")  ""'),
        ('mod("k) = "1"', EXIT_INVALID_INPUT, 'malformed comparison: mod("k) = "1"; got mod("k) = ")  ""'),
        ('mod("k") =', EXIT_INVALID_INPUT, 'malformed comparison: mod("k") =; got mod("k") = ""'),
        ('bad("k") = "1"', EXIT_INVALID_INPUT, 'malformed comparison: bad("k") = "1" (unknown target bad)'),
        ('mod("k") = "x"', EXIT_INVALID_INPUT, 'invalid txn compare request: mod("k") = "x"'),
        ('mod("k") => "x"', EXIT_INVALID_INPUT, 'invalid txn compare request: mod("k") => "x"'),
        ('lease("k") = "xyz"', EXIT_INVALID_INPUT, 'invalid txn compare request: lease("k") = "xyz"'),
        ('mod("k") => "1"', EXIT_PANIC, "Unknown result op"),
        ('val("k") ~ "1"', EXIT_PANIC, "Unknown result op"),
    ],
)
def test_compare_errors(line: str, code: int, message: str) -> None:
    with pytest.raises(CtlExit) as e:
        parse_compare(line)
    assert (e.value.code, e.value.message) == (code, message)


def test_a_panic_prints_like_go() -> None:
    with pytest.raises(CtlExit) as e:
        parse_compare('mod("k") => "1"')
    assert e.value.stderr_text() == "panic: Unknown result op\n"


def test_argify() -> None:
    assert argify('put "a key" "a\\nvalue"') == ["put", "a key", "a\nvalue"]
    assert argify("put 'single quoted' 'x'") == ["put", "single quoted", "x"]
    assert argify("get  --prefix\tk") == ["get", "--prefix", "k"]
    with pytest.raises(CtlExit) as e:
        argify('get "a\\q"')
    assert (e.value.code, e.value.message) == (EXIT_INVALID_INPUT, "invalid syntax")


def test_requests() -> None:
    put = parse_request("put k v --prev-kv --lease 1f", _no_stdin).request_put
    assert (put.key, put.value, put.prev_kv, put.lease) == (b"k", b"v", True, 0x1F)
    get = parse_request("get --prefix k --limit 2 --order DESCEND --sort-by VALUE --rev 3", _no_stdin)
    r = get.request_range
    assert (r.key, r.range_end, r.limit, r.revision) == (b"k", b"l", 2, 3)
    assert (r.sort_order, r.sort_target) == (pb.RangeRequest.DESCEND, pb.RangeRequest.VALUE)
    d = parse_request("del --from-key a --prev-kv", _no_stdin).request_delete_range
    assert (d.key, d.range_end, d.prev_kv) == (b"a", b"\0", True)
    # Unique prefixes of the command names work, as on etcdctl's command line.
    assert parse_request("g k", _no_stdin).HasField("request_range")
    assert parse_request("p k v", _no_stdin).HasField("request_put")
    assert parse_request("d k", _no_stdin).HasField("request_delete_range")


def test_get_with_an_empty_prefix_is_every_key() -> None:
    r = parse_request('get --prefix ""', _no_stdin).request_range
    assert (r.key, r.range_end) == (b"\0", b"\0")


@pytest.mark.parametrize(
    ("line", "code", "message"),
    [
        ("get", EXIT_INVALID_INPUT, "invalid txn compare request: get"),
        ("frob k", EXIT_INVALID_INPUT, "invalid txn request: frob k"),
        ("get --foo k", EXIT_INVALID_INPUT, "invalid txn request: get --foo k"),
        (
            "get --prefix",
            EXIT_BAD_ARGS,
            "get command needs one argument as key and an optional argument as range_end",
        ),
        ("get --order UP k", EXIT_BAD_FEATURE, "bad sort order UP"),
        ("put k", EXIT_BAD_ARGS, "put command needs 1 argument and input from stdin or 2 arguments"),
        (
            "del a b c",
            EXIT_BAD_ARGS,
            "del command needs one argument as key and an optional argument as range_end",
        ),
    ],
)
def test_request_errors(line: str, code: int, message: str) -> None:
    with pytest.raises(CtlExit) as e:
        parse_request(line, _no_stdin)
    assert (e.value.code, e.value.message) == (code, message)


def test_an_unknown_flag_prints_cobras_usage_before_the_error() -> None:
    with pytest.raises(CtlExit) as e:
        parse_request("get --foo k", _no_stdin)
    text = e.value.stderr_text()
    assert text.startswith("Usage:\n   get [options] <key> [range_end] [flags]\n\nFlags:\n")
    assert text.endswith("\n\nError: invalid txn request: get --foo k\n")


def test_reading_sections() -> None:
    reader = LineReader(
        io.BytesIO(b'mod("a") > "1"\n  val("b") = "x"  \n\nput a 1\nget b\n \ndel c\n\nleft over')
    )
    assert [c.key for c in read_compares(reader)] == [b"a", b"b"]
    assert [op.WhichOneof("request") for op in read_requests(reader)] == ["request_put", "request_range"]
    assert [op.WhichOneof("request") for op in read_requests(reader)] == ["request_delete_range"]
    with pytest.raises(CtlExit) as e:
        read_requests(reader)
    assert (e.value.code, e.value.message) == (EXIT_INVALID_INPUT, "EOF")


def test_put_without_value_reads_what_the_line_reader_left() -> None:
    tail = b"x" * 10_000
    stdin = io.BytesIO(b"\nput k\n\n\n" + tail)
    reader = LineReader(stdin)
    read_compares(reader)
    # Like Go's bufio.Reader, the reader took the first 4096 bytes; the value is the rest.
    (op,) = read_requests(reader)
    assert op.request_put.value == tail[4096 - len(b"\nput k\n\n\n") :]
