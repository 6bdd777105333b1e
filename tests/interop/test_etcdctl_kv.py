"""etcd's own etcdctl 3.4 gets the same answers from synod as from a real etcd 3.4.

Every test feeds one command sequence to a fresh synod and a fresh etcd in
lockstep; each command's stdout (byte for byte), ``Error:`` line and exit code
must be the same on both (cluster and member IDs normalised, see
tests/support/etcdctl.py). Read-only batches run concurrently to keep the file fast.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator

import pytest

from tests.support.etcdctl import CtlPair, CtlResult
from tests.support.servers import ServerProcess

FORMATS = ["simple", "json", "fields", "protobuf"]

# Keys chosen so that prefixes, from-key ranges and the byte order of keys all matter.
KEYS_AND_VALUES = [
    ("a", "1"),
    ("ab", "2"),
    ("abc", "1"),
    ("b", "x"),
    ("ba", "2"),
    ("c", "3"),
    ("a", "1"),  # a second version of "a", same value
    ("zz", "last"),
    ("k sp", "v with spaces"),
    ("é", "ünïcode"),
]

RANGES = [
    ["a"],
    ["a", "c"],
    ["a", "--prefix"],
    ["b", "--from-key"],
    ["", "--prefix"],
    ["", "--from-key"],
    ["nope"],
    ["c", "a"],  # range_end before key: empty
    ["a", "a"],
    ["zz", "--prefix"],
]

SORTS = [
    [],
    ["--order", "ASCEND"],
    ["--order", "DESCEND"],
    ["--order", "descend"],
    *(
        opts
        for target in ("CREATE", "KEY", "MODIFY", "VALUE", "VERSION", "value")
        for opts in (
            ["--sort-by", target],
            ["--sort-by", target, "--order", "DESCEND"],
            ["--sort-by", target, "--order", "ASCEND", "--limit", "3"],
        )
    ),
]

OPTIONS = [
    [],
    ["--limit", "2"],
    ["--limit", "100"],
    ["--keys-only"],
    ["--print-value-only"],
    ["--consistency", "s"],
    ["--consistency", "l"],
    ["--keys-only", "--limit", "1", "--order", "DESCEND", "--sort-by", "MODIFY"],
    ["--print-value-only", "--sort-by", "VERSION", "--order", "DESCEND"],
    ["--consistency", "s", "--sort-by", "CREATE", "--limit", "2", "--keys-only"],
]


@pytest.fixture
def pair(start_server: Callable[..., ServerProcess]) -> Iterator[CtlPair]:
    p = CtlPair(start_server("synod"), start_server("etcd"))
    yield p
    p.close()


def revision(res: CtlResult) -> int:
    """The header revision of a ``-w json`` answer."""
    m = re.search(rb'"revision":(\d+)', res.stdout)
    assert m is not None, res.stdout
    return int(m.group(1))


def populate(pair: CtlPair, items: list[tuple[str, str]] = KEYS_AND_VALUES) -> int:
    """Put ``items`` one by one; returns the revision after the last put."""
    res = None
    for k, v in items:
        res = pair.run("put", k, v, "-w", "json")
    assert res is not None
    return revision(res)


def test_put_variants(pair: CtlPair) -> None:
    for fmt in FORMATS:
        pair.run("put", f"p-{fmt}", "v1", "-w", fmt)
        pair.run("put", f"p-{fmt}", "v2", "--prev-kv", "-w", fmt)
        pair.run("put", f"p-{fmt}", "--ignore-value", "--prev-kv", "-w", fmt)
        pair.run("put", f"p-{fmt}", "v3", "--ignore-lease", "--prev-kv", "-w", fmt)
        pair.run("put", f"p-{fmt}", "--ignore-value", "--ignore-lease", "-w", fmt)
        pair.run("put", f"p-{fmt}", "--prev-kv", "-w", fmt, stdin="from\nstdin\n")
        pair.run("put", f"p-{fmt}", "-w", fmt, "--prev-kv", "--", "-dash-value")
        pair.run("put", f"p-{fmt}", "", "--prev-kv", "-w", fmt)  # an empty value
    pair.run("put", "p-hex", "v", "--prev-kv", "--hex")
    pair.run("put", "p-hex", "w", "--prev-kv", "--hex", "-w", "json")
    pair.run("put", "p-bin", stdin=bytes(range(256)))
    pair.run("put", "p-bin", "--ignore-value", "--prev-kv", "--hex")
    pair.run("put", "p-bin", "x", "--prev-kv", "-w", "json")
    # Errors: checked by the server, then by the client.
    pair.run("put", "", "v")
    pair.run("put", "missing", "--ignore-value")
    pair.run("put", "missing", "v", "--ignore-lease")
    pair.run("put", "missing", "--ignore-value", "--ignore-lease", "-w", "json")
    pair.run("put", "p-simple", "v", "--lease", "1234abcd")  # no such lease: synod has no leases yet
    pair.run("put", "missing", "v", "--lease", "1", "--prev-kv", "-w", "fields")
    pair.run("put", "p-simple", "v", "--ignore-lease", "--lease", "5")
    pair.run("put", "p-simple", "--ignore-value", "--lease", "7")
    pair.run("put", "p-simple", "--lease", "zz", "v")
    pair.run("put", "p-simple", "v", "--ignore-value")
    pair.run("put", "only-key")
    pair.run("put")
    pair.run("get", "p-", "--prefix", "-w", "json")


def populate_at_once(pair: CtlPair) -> None:
    """Put every key of KEYS_AND_VALUES in one revision (a txn)."""
    puts = [f'put "{k}" "{v}"' for k, v in dict(KEYS_AND_VALUES).items()]
    pair.run("txn", stdin=txn_stdin([], puts, []))


def test_get_flag_matrix(pair: CtlPair) -> None:
    rev = populate(pair)
    pair.run("del", "ba")
    pair.run("put", "c", "3")  # same value, new version
    # json shows every field of every key, in order; simple shows what the printing flags change.
    commands = [["get", *rng, *opts, "-w", "json"] for rng, opts in itertools.product(RANGES, SORTS)]
    commands += [["get", *rng, *opts] for rng, opts in itertools.product(RANGES, OPTIONS)]
    commands += [
        ["get", *rng, *opts, "-w", fmt]
        for rng, opts, fmt in itertools.product(
            [["a", "--prefix"], ["", "--from-key"], ["b"]], OPTIONS[:5], ["fields", "protobuf"]
        )
    ]
    # Old revisions: before and after the delete, and the first revisions of the store.
    for r in (1, 2, 3, rev - 1, rev, rev + 1, rev + 2):
        commands += [
            ["get", "", "--from-key", "--rev", str(r), "-w", "json"],
            ["get", "a", "--prefix", "--rev", str(r), "--sort-by", "VERSION", "--order", "DESCEND"],
            ["get", "ba", "--rev", str(r), "-w", "fields"],
            ["get", "a", "--rev", str(r), "-w", "protobuf"],
        ]
    pair.run_all(commands)


def test_get_errors(pair: CtlPair) -> None:
    rev = populate(pair)
    pair.run_all(
        [
            ["get", ""],
            ["get", "", "-w", "json"],
            ["get", "a", "--rev", str(rev + 1)],
            ["get", "a", "--rev", str(rev + 100), "-w", "json"],
            ["get", "a", "--rev", "-1"],
            ["get", "a", "--prefix", "--from-key"],
            ["get", "a", "c", "--prefix"],
            ["get", "a", "c", "--from-key"],
            ["get", "a", "--order", "SIDEWAYS"],
            ["get", "a", "--sort-by", "SIZE"],
            ["get", "a", "--consistency", "x"],
            ["get", "a", "--print-value-only", "-w", "json"],
            ["get", "a", "--count-only"],  # added in etcdctl 3.5: unknown to 3.4
            ["get", "a", "--limit", "-1"],
            ["get"],
            ["get", "a", "b", "c"],
        ]
    )


def test_delete_variants(pair: CtlPair) -> None:
    cases = [
        ["a"],
        ["a", "--prev-kv"],
        ["nope", "--prev-kv"],
        ["a", "--prefix"],
        ["a", "--prefix", "--prev-kv"],
        ["b", "--from-key", "--prev-kv"],
        ["", "--from-key"],
        ["", "--prefix", "--prev-kv"],
        ["ab", "c", "--prev-kv"],
        ["c", "a", "--prev-kv"],
        ["zz", "--prefix"],
    ]
    for fmt in FORMATS:
        for case in cases:
            populate_at_once(pair)
            pair.run("del", *case, "-w", fmt)
            pair.run("get", "", "--from-key", "--keys-only")
    populate(pair)
    pair.run("del", "a", "--prev-kv", "--hex")
    pair.run("del", "ab", "--prev-kv", "--hex", "-w", "json")
    pair.run("del", "")
    pair.run("del", "", "-w", "json")
    pair.run("del", "a", "--prefix", "--from-key")
    pair.run("del", "a", "b", "--prefix")
    pair.run("del", "a", "b", "c")
    pair.run("del")


TXNS: list[tuple[list[str], list[str], list[str]]] = [
    # (compares, success ops, failure ops)
    ([], [], []),
    (['c("a") = "0"'], ["put a 1"], ["put a 2"]),  # a missing key has create revision 0
    (['create("a") > "0"', 'ver("a") = "1"'], ["put a 2 --prev-kv", "get a"], ["get a"]),
    (['val("a") = "2"', 'm("a") > "1"'], ["get a --prefix", "put ab 3"], ["del a"]),
    (['value("a") != "2"'], ["put x 1"], ["put y 1", "get a --keys-only"]),
    (['version("a") < "5"', 'mod("ab") < "100"'], ["del ab --prev-kv", "put a 3"], []),
    (['val("missing") = ""'], ["put m 1"], ["put m 2"]),  # a value compare on a missing key fails
    (['ver("missing") = "0"', 'm("missing") = "0"'], ["put m 1"], ["put m 2"]),
    (['val("a") > "0"', 'val("a") < "4"'], ["get a --prefix --sort-by VALUE --order DESCEND"], []),
    (['val("a") < "0"'], [], ["get a --prefix --limit 1", "get a --prefix --count-only"]),
    ([], ["put b 1", "put c 1", "del d e"], ["put b 2"]),
    ([], ["del a --from-key", "put b 2"], []),  # a from-key delete overlaps no put for etcd
    ([], ["del a --prefix --prev-kv", "get a --prefix"], []),
    ([], ["put a 1", "put b 1", "get a --from-key --keys-only", "del b --prev-kv", "get b"], []),
    ([], ["put k 1 --lease 1"], []),  # no such lease
    (['c("nope") > "0"'], [], ["put nope v --lease 1a"]),
    (['c("nope") > "0"'], ["put nope v --lease 1a"], ["get nope"]),  # the branch not taken is not checked
    ([], ["put missing --ignore-value"], []),
    ([], ["put a --ignore-value --prev-kv", "put b x --ignore-lease"], []),
    ([], ["put a 1", "put a 2"], []),  # duplicate key
    ([], ["put a 1", "del a"], []),
    ([], ["del a c", "put b 1"], []),
    ([], [], ["put a 1", "del a --prefix"]),
    ([], ["get a --rev 1000"], []),  # future revision
    ([], ["get a --rev 1"], ["put q 1"]),
    ([], ["get '' --prefix"], []),
    ([], ["put '' v"], []),
    ([], ["get a --consistency s", "get b --consistency s"], []),
    ([], ['put "k sp" "v with spaces"', 'get "k sp"'], []),
]

# etcdctl rejects these before sending anything; both sides must fail alike anyway.
CLIENT_REJECTED_TXNS: list[tuple[list[str], list[str], list[str]]] = [
    (['c("a") ~ "1"'], [], []),
    (['nope("a") = "1"'], [], []),
    (['c("a") = "x"'], [], []),
    (["c(a) = 1"], [], []),
    (['lease("a") = "0"'], [], []),  # etcdctl 3.4 panics on any lease compare
    ([], ["frob a"], []),
    ([], ["put"], []),
]


def txn_stdin(compares: list[str], success: list[str], failure: list[str]) -> str:
    return "".join(f"{line}\n" for line in (*compares, "", *success, "", *failure, ""))


def test_txn(pair: CtlPair) -> None:
    for fmt in FORMATS:
        populate(pair, KEYS_AND_VALUES[:3])
        for compares, success, failure in TXNS:
            pair.run("txn", "-w", fmt, stdin=txn_stdin(compares, success, failure))
        pair.run("get", "", "--from-key", "-w", "json")
    for compares, success, failure in CLIENT_REJECTED_TXNS:
        pair.run("txn", stdin=txn_stdin(compares, success, failure))
    pair.run("txn", stdin="")  # end of input before the compares end
    pair.run("txn", "extra-arg", stdin=txn_stdin([], [], []))
    pair.run("txn", "--hex", stdin=txn_stdin(['val("a") != "z"'], ["put a 9 --prev-kv", "get a"], []))


def test_txn_interactive(pair: CtlPair) -> None:
    populate(pair, KEYS_AND_VALUES[:4])
    for fmt in ("simple", "json"):
        for compares, success, failure in TXNS[:8]:
            pair.run("txn", "-i", "-w", fmt, stdin=txn_stdin(compares, success, failure))
        pair.run("txn", "--interactive", stdin=txn_stdin(['ver("a") > "0"'], ["get a"], ["get b"]))


def test_compaction(pair: CtlPair) -> None:
    populate(pair)
    for i in range(5):
        pair.run("put", "h", f"v{i}")
    pair.run("del", "ab")
    rev = revision(pair.run("put", "h", "last", "-w", "json"))
    first = rev - 6  # the first put of "h"

    def reads(at: int) -> list[list[str]]:
        return [
            ["get", "h", "--rev", str(at)],
            ["get", "h", "--rev", str(at), "-w", "json"],
            ["get", "", "--from-key", "--rev", str(at), "-w", "json"],
            ["get", "ab", "--rev", str(at), "-w", "fields"],
        ]

    pair.run("compaction", str(first + 1))
    pair.run_all([cmd for at in (first, first + 1, first + 2, rev, rev + 1) for cmd in reads(at)])
    pair.run("compaction", str(first + 1))  # already compacted
    pair.run("compaction", str(first))
    pair.run("compaction", str(rev + 1))  # future
    pair.run("compaction", "--physical", str(first + 3))
    pair.run_all([cmd for at in (first + 2, first + 3, first + 4) for cmd in reads(at)])
    pair.run("txn", stdin=txn_stdin([], ["get h --rev " + str(first + 2)], []))
    pair.run("txn", stdin=txn_stdin([], ["get h --rev " + str(first + 3), "put h x"], []))
    pair.run("compaction", "--physical", str(first + 3))
    pair.run("compaction", "--physical", str(rev + 2))  # ``rev + 1`` is the txn's put
    pair.run("compaction", "-w", "json", str(rev + 1))  # compaction prints no header in any format
    pair.run("compaction", str(rev + 100))
    pair.run("compaction", "0")
    pair.run("compaction", "-5")
    pair.run("compaction", "abc")
    pair.run("compaction")
    pair.run_all(reads(rev) + reads(rev + 1) + reads(rev + 2) + reads(rev + 3))
    pair.run("del", "", "--from-key", "--prev-kv", "-w", "json")
    pair.run("compaction", str(rev + 3))
    pair.run_all(reads(rev + 3) + reads(0))


def test_hex_output(pair: CtlPair) -> None:
    populate(pair)
    commands = [
        ["get", *rng, "--hex", *opts, "-w", fmt]
        for rng, opts, fmt in itertools.product(
            [["a", "--prefix"], ["é"], ["", "--from-key"]],
            [[], ["--keys-only"], ["--print-value-only"]],
            ["simple", "json", "fields"],
        )
    ]
    pair.run_all(commands)
    pair.run("del", "é", "--prev-kv", "--hex")
    pair.run("txn", "--hex", "-w", "fields", stdin=txn_stdin([], ["put é x --prev-kv", "get a"], []))


@pytest.fixture
def limited_pair(start_server: Callable[..., ServerProcess]) -> Iterator[CtlPair]:
    limits = ("--max-txn-ops", "4", "--max-request-bytes", "1024")
    p = CtlPair(start_server("synod", *limits), start_server("etcd", *limits))
    yield p
    p.close()


def test_limits(limited_pair: CtlPair) -> None:
    pair = limited_pair
    ops4 = [f"put k{i} v" for i in range(4)]
    ops5 = [f"put k{i} v" for i in range(5)]
    cmps5 = [f'ver("k{i}") = "0"' for i in range(5)]
    pair.run("txn", stdin=txn_stdin([], ops4, ["get a"]))
    pair.run("txn", stdin=txn_stdin([], ops5, []))
    pair.run("txn", stdin=txn_stdin([], [], ops5))
    pair.run("txn", stdin=txn_stdin(cmps5, [], []))
    pair.run("txn", stdin=txn_stdin(cmps5[:4], [], ops4))
    pair.run("put", "small", stdin="s" * 500)
    pair.run("put", "big", stdin="b" * 2000)
    pair.run("put", "big", "-w", "json", stdin="b" * 5000)
    pair.run("put", "b" * 1500, "v")
    pair.run("txn", stdin=txn_stdin([], ["put big " + "b" * 2000], []))
    pair.run("txn", stdin=txn_stdin([f'val("small") = "{"s" * 1100}"'], [], []))  # a read-only txn: no limit
    pair.run("del", "small", "--prev-kv", "-w", "json")
    pair.run("get", "", "--from-key", "-w", "json")


def test_message_over_grpc_limit(limited_pair: CtlPair) -> None:
    limited_pair.run("put", "huge", stdin="h" * 600_000)
