"""synodctl's command-line syntax (pflag/cobra's) and Go's strconv texts it reproduces."""

from __future__ import annotations

import pytest

from synod.ctl.flags import (
    Flag,
    FlagError,
    find_command,
    parse_flags,
    read_csv,
    strip_flags,
    suggestions,
    without_first,
)
from synod.ctl.gostrconv import NumError, parse_bool, parse_int, quote, unquote
from synod.ctl.usage import tabwrite

FLAGS = [
    Flag("prefix", "bool", "false", "p"),
    Flag("limit", "int64", "0", "l"),
    Flag("write-out", "string", "simple", "w", "w"),
    Flag("interactive", "bool", "false", "i", "i"),
    Flag("endpoints", "strings", "[127.0.0.1:2379]", "e"),
    Flag("dial-timeout", "duration", "2s", "d"),
]


def test_flag_forms() -> None:
    p = parse_flags(["k", "--prefix", "--limit", "3", "-wjson", "-i=false", "--", "-v", "--limit=9"], FLAGS)
    assert p.args == ["k", "-v", "--limit=9"]
    assert p.values == {"prefix": True, "limit": 3, "write-out": "json", "interactive": False}
    p = parse_flags(
        ["--prefix=false", "-w", "fields", "--limit=0x10", "--dial-timeout", "1m30s", "-iw", "x"], FLAGS
    )
    assert p.values == {
        "prefix": False,
        "write-out": "x",
        "limit": 16,
        "dial-timeout": 90 * 10**9,
        "interactive": True,
    }
    assert p.get_strings("endpoints") == ["127.0.0.1:2379"]


def test_string_slices_replace_the_default_then_append() -> None:
    p = parse_flags(["--endpoints", "a,b", "--endpoints=c"], FLAGS)
    assert p.get_strings("endpoints") == ["a", "b", "c"]


def test_a_value_flag_takes_the_next_word_even_if_it_looks_like_a_flag() -> None:
    assert parse_flags(["--limit", "-1"], FLAGS).values == {"limit": -1}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--foo"], "unknown flag: --foo"),
        (["-x"], "unknown shorthand flag: 'x' in -x"),
        (["-ix"], "unknown shorthand flag: 'x' in -x"),
        (["--limit"], "flag needs an argument: --limit"),
        (["-w"], "flag needs an argument: 'w' in -w"),
        (["---x"], "bad flag syntax: ---x"),
        (
            ["--limit", "abc"],
            'invalid argument "abc" for "--limit" flag: strconv.ParseInt: parsing "abc": invalid syntax',
        ),
        (
            ["--prefix=maybe"],
            'invalid argument "maybe" for "--prefix" flag: '
            'strconv.ParseBool: parsing "maybe": invalid syntax',
        ),
        (
            ["-i=2"],
            'invalid argument "2" for "-i, --interactive" flag: '
            'strconv.ParseBool: parsing "2": invalid syntax',
        ),
        (
            ["--dial-timeout", "1"],
            'invalid argument "1" for "--dial-timeout" flag: time: missing unit in duration "1"',
        ),
    ],
)
def test_flag_errors(argv: list[str], message: str) -> None:
    with pytest.raises(FlagError) as e:
        parse_flags(argv, FLAGS)
    assert str(e.value) == message


def test_finding_the_command_word_as_cobra_does() -> None:
    assert strip_flags(["--limit", "3", "get", "k"], FLAGS) == ["get", "k"]
    assert strip_flags(["--prefix", "get", "k"], FLAGS) == ["get", "k"]
    assert strip_flags(["-w", "json"], FLAGS) == []
    # An unknown flag is taken to have a value.
    assert strip_flags(["--foo", "get", "x"], FLAGS) == ["x"]
    assert without_first(["-w", "get", "get", "k"], "get") == ["-w", "get", "k"]
    names = ["get", "put", "del", "txn", "compaction", "version", "help"]
    assert find_command("ge", names) == "get"
    assert find_command("c", names) == "compaction"
    assert find_command("nope", names) is None
    assert suggestions("x", names) == "\n\nDid you mean this?\n\ttxn\n"
    assert suggestions("ver", names) == "\n\nDid you mean this?\n\tget\n\tdel\n\tversion\n"
    assert suggestions("bogus", names) == ""


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("", []),
        ("a", ["a"]),
        ("a,b", ["a", "b"]),
        (" a , b", [" a ", " b"]),
        ('"a,b",c', ["a,b", "c"]),
        (",", ["", ""]),
    ],
)
def test_csv(text: str, fields: list[str]) -> None:
    assert read_csv(text) == fields


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('"a,b', 'parse error on line 1, column 5: extraneous or missing " in quoted-field'),
        ('a"b', 'parse error on line 1, column 2: bare " in non-quoted-field'),
        ('"a"x', 'parse error on line 1, column 3: extraneous or missing " in quoted-field'),
        ('x,"a,b', 'parse error on line 1, column 7: extraneous or missing " in quoted-field'),
    ],
)
def test_csv_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as e:
        read_csv(text)
    assert str(e.value) == message


def test_go_quoting() -> None:
    assert quote(b"plain") == '"plain"'
    assert quote(b'q"\\') == '"q\\"\\\\"'
    assert quote(b"\t\n\x01\x7f") == '"\\t\\n\\x01\\x7f"'
    assert quote("é€".encode()) == '"é€"'
    assert quote(b"\xff\xc3") == '"\\xff\\xc3"'
    assert quote("\u200b".encode()) == '"\\u200b"'
    assert unquote(b'"a\\tb\\x41\\101\\u00e9\\U0001F600"') == "a\tbAAé\U0001f600".encode()
    assert unquote(b"`raw\\t`") == b"raw\\t"
    for bad in (b'"\\q"', b'"\\xZZ"', b'"\\400"', b'"\\ud800"', b'"a', b"'a'"):
        with pytest.raises(ValueError):
            unquote(bad)


@pytest.mark.parametrize(
    ("text", "base", "value"),
    [("10", 10, 10), ("-7", 10, -7), ("+7", 10, 7), ("1f", 16, 31), ("0x1f", 0, 31), ("010", 0, 8),
     ("0b11", 0, 3), ("1_000", 0, 1000), ("9223372036854775807", 10, (1 << 63) - 1),
     ("-9223372036854775808", 10, -(1 << 63))],
)  # fmt: skip
def test_parse_int(text: str, base: int, value: int) -> None:
    assert parse_int(text, base) == value


@pytest.mark.parametrize(
    ("text", "base", "reason"),
    [("", 10, "invalid syntax"), ("abc", 10, "invalid syntax"), ("0x1f", 16, "invalid syntax"),
     ("1_000", 10, "invalid syntax"), ("08", 0, "invalid syntax"),
     ("9223372036854775808", 10, "value out of range"), ("99999999999999999999x", 10, "value out of range")],
)  # fmt: skip
def test_parse_int_errors(text: str, base: int, reason: str) -> None:
    with pytest.raises(NumError) as e:
        parse_int(text, base)
    assert str(e.value) == f"strconv.ParseInt: parsing {quote(text)}: {reason}"


def test_parse_bool() -> None:
    assert [parse_bool(t) for t in ("1", "t", "T", "true", "TRUE", "True")] == [True] * 6
    assert [parse_bool(t) for t in ("0", "f", "F", "false", "FALSE", "False")] == [False] * 6
    with pytest.raises(NumError):
        parse_bool("yes")


def test_tabwriter_pads_with_tabs_per_block() -> None:
    text = "\tget\tGets\n\tcompaction\tCompacts\n\nOPTIONS:\n  --a\tx\n  --longer-flag\ty\n"
    assert tabwrite(text) == (
        "\tget\t\tGets\n\tcompaction\tCompacts\n\nOPTIONS:\n  --a\t\tx\n  --longer-flag\ty\n"
    )
