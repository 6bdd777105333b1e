"""The linearizability checker (tests/support/linearizability.py) on hand-written and random histories.

The hand-written histories each show one thing a register may or may not do.
The random ones come from a real sequential register driven by concurrent
clients whose request windows surround the moment the register applied them,
so they are linearizable by construction; with one read changed to a value
nobody wrote they are not. Small arbitrary histories are also compared with a
brute-force checker that tries every order of every subset of the unanswered
operations. Randomized tests name their seed in the assertion message.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence

import pytest

from tests.support import linearizability
from tests.support.linearizability import CheckResult, Operation, check

INF = math.inf
K = b"k"


def put(client: int, call: float, ret: float, value: bytes, key: bytes = K) -> Operation:
    return Operation(client, call, ret, "put", key, value=value)


def get(client: int, call: float, ret: float, output: bytes | None, key: bytes = K) -> Operation:
    return Operation(client, call, ret, "get", key, output=output)


def cas(
    client: int,
    call: float,
    ret: float,
    expected: bytes | None,
    value: bytes,
    ok: bool | None,
    key: bytes = K,
) -> Operation:
    return Operation(client, call, ret, "cas", key, value=value, expected=expected, output=ok)


def delete(client: int, call: float, ret: float, key: bytes = K) -> Operation:
    return Operation(client, call, ret, "delete", key)


def assert_ok(history: Sequence[Operation]) -> None:
    result = check(history)
    assert result == CheckResult(ok=True, key=None, explanation=""), result


def assert_fails(history: Sequence[Operation], key: bytes = K) -> CheckResult:
    result = check(history)
    assert not result.ok and not result.timed_out, result
    assert result.key == key
    assert result.explanation
    return result


# Hand-written histories.


def test_empty_history() -> None:
    assert_ok([])


def test_sequential_history() -> None:
    assert_ok(
        [
            get(0, 0, 1, None),
            put(0, 2, 3, b"a"),
            get(1, 4, 5, b"a"),
            cas(0, 6, 7, b"a", b"b", True),
            cas(1, 8, 9, b"a", b"c", False),
            get(0, 10, 11, b"b"),
            delete(1, 12, 13),
            get(0, 14, 15, None),
            cas(1, 16, 17, None, b"d", True),
            cas(0, 18, 19, None, b"e", False),
            get(1, 20, 21, b"d"),
            put(0, 22, 23, b""),
            get(1, 24, 25, b""),  # an empty value is not absence
        ]
    )


def test_empty_value_is_not_absence() -> None:
    assert_fails([put(0, 0, 1, b""), get(1, 2, 3, None)])


@pytest.mark.parametrize("seen", [None, b"a"])
def test_read_concurrent_with_a_write_may_see_either_value(seen: bytes | None) -> None:
    assert_ok([put(0, 0, 10, b"a"), get(1, 1, 2, seen)])


def test_concurrent_writes_may_take_effect_in_either_order() -> None:
    for last in (b"a", b"b"):
        assert_ok([put(0, 0, 5, b"a"), put(1, 1, 6, b"b"), get(2, 7, 8, last)])


def test_reads_during_a_write_cannot_flip_back() -> None:
    # Both reads overlap the write, but once one saw it a later one cannot miss it.
    assert_ok([put(0, 0, 10, b"a"), get(1, 1, 2, None), get(2, 3, 4, b"a")])
    assert_fails([put(0, 0, 10, b"a"), get(1, 1, 2, b"a"), get(2, 3, 4, None)])


def test_touching_intervals_count_as_concurrent() -> None:
    assert_ok([put(0, 0, 1, b"a"), get(1, 1, 2, None)])


def test_stale_read_after_a_completed_write() -> None:
    result = assert_fails([put(0, 0, 1, b"a"), put(1, 2, 3, b"b"), get(2, 4, 5, b"a")])
    assert "get() -> b'a'" in result.explanation


def test_lost_write() -> None:
    # An acknowledged write that a later read does not see (e.g. lost in a failover).
    assert_fails([put(0, 0, 1, b"a"), get(1, 2, 3, None)])
    assert_fails([put(0, 0, 1, b"a"), get(1, 2, 3, b"a"), put(2, 4, 5, b"b"), get(0, 6, 7, b"a")])


def test_cas_succeeding_on_a_value_that_was_never_current() -> None:
    assert_fails([put(0, 0, 1, b"a"), cas(1, 2, 3, b"b", b"c", True)])
    # ``b`` is written only after the cas returned.
    assert_fails([put(0, 0, 1, b"a"), cas(1, 2, 3, b"b", b"c", True), put(0, 4, 5, b"b")])
    # Absent was current only before the cas was called.
    assert_fails([put(0, 0, 1, b"a"), cas(1, 2, 3, None, b"c", True)])


def test_cas_failing_although_its_expected_value_was_current() -> None:
    assert_fails([put(0, 0, 1, b"a"), cas(1, 2, 3, b"a", b"c", False)])
    assert_ok([put(0, 0, 1, b"a"), cas(1, 2, 3, b"a", b"c", False), put(2, 2.5, 2.6, b"x")])


def test_two_cases_cannot_both_win() -> None:
    history = [put(0, 0, 1, b"a"), cas(1, 2, 5, b"a", b"b", True), cas(2, 2, 5, b"a", b"c", True)]
    assert_fails(history)
    assert_ok([*history[:2], cas(2, 2, 5, b"a", b"c", False), get(0, 6, 7, b"b")])


def test_read_of_a_value_never_written() -> None:
    result = assert_fails([put(0, 0, 1, b"a"), get(1, 0.5, 3, b"ghost")])
    assert "b'ghost'" in result.explanation


@pytest.mark.parametrize("effect", [True, False])
def test_crashed_put_may_or_may_not_have_taken_effect(effect: bool) -> None:
    seen = b"a" if effect else None
    assert_ok([put(0, 0, INF, b"a"), get(1, 1, 2, seen), get(1, 3, 4, seen)])


def test_crashed_put_may_take_effect_long_after_its_call() -> None:
    assert_ok([put(0, 0, INF, b"a"), get(1, 5, 6, None), put(2, 7, 8, b"b"), get(1, 9, 10, b"a")])


def test_crashed_put_takes_effect_at_most_once() -> None:
    assert_fails([put(0, 0, INF, b"a"), get(1, 1, 2, b"a"), get(1, 3, 4, None)])
    assert_fails([put(0, 0, INF, b"a"), get(1, 1, 2, b"a"), put(2, 3, 4, b"b"), get(1, 5, 6, b"a")])


def test_crashed_put_cannot_take_effect_before_its_call() -> None:
    assert_fails([get(1, 0, 1, b"a"), put(0, 2, INF, b"a")])


@pytest.mark.parametrize("effect", [True, False])
def test_crashed_cas_may_or_may_not_have_taken_effect(effect: bool) -> None:
    seen = b"b" if effect else b"a"
    assert_ok([put(0, 0, 1, b"a"), cas(1, 2, INF, b"a", b"b", None), get(2, 3, 4, seen)])


def test_crashed_cas_takes_effect_only_where_its_expected_value_is_current() -> None:
    assert_fails([put(0, 0, 1, b"a"), cas(1, 2, INF, b"x", b"b", None), get(2, 3, 4, b"b")])
    # ... which may be later than its call.
    assert_ok(
        [
            put(0, 0, 1, b"a"),
            cas(1, 2, INF, b"x", b"b", None),
            get(2, 3, 4, b"a"),
            put(0, 5, 6, b"x"),
            get(2, 7, 8, b"b"),
        ]
    )


def test_crashed_delete_and_a_crashed_get() -> None:
    assert_ok([put(0, 0, 1, b"a"), delete(1, 2, INF), get(2, 3, INF, b"ghost"), get(0, 4, 5, None)])
    assert_ok([put(0, 0, 1, b"a"), delete(1, 2, INF), get(0, 4, 5, b"a")])


def test_many_crashed_writes_that_nobody_read() -> None:
    # Unanswered writes nobody could observe are dropped before the search; a failed cas keeps them.
    history = [put(c, 0, INF, b"w%d" % c) for c in range(60)]
    history += [put(100, 1, 2, b"a"), get(101, 3, 4, b"a"), cas(102, 5, 6, b"a", b"b", True)]
    assert check(history, timeout=5).ok
    assert_fails([*history, get(103, 7, 8, b"a")])


def test_crashed_write_explains_a_failed_cas() -> None:
    history = [put(0, 0, 1, b"a"), put(1, 0, INF, b"z"), cas(2, 2, 3, b"a", b"b", False)]
    assert_ok(history)
    assert_fails([history[0], history[2]])


def test_keys_are_independent() -> None:
    assert_ok(
        [
            put(0, 0, 1, b"a", key=b"x"),
            put(1, 0, 1, b"b", key=b"y"),
            get(2, 2, 3, b"a", key=b"x"),
            get(2, 4, 5, b"b", key=b"y"),
            get(3, 2, 5, None, key=b"z"),
        ]
    )


def test_first_failing_key_in_sorted_order_is_reported() -> None:
    history = [
        put(0, 0, 1, b"a", key=b"m"),
        get(1, 2, 3, None, key=b"m"),
        get(2, 0, 1, b"ghost", key=b"c"),
        put(3, 0, 1, b"a", key=b"a"),
        get(3, 2, 3, b"a", key=b"a"),
    ]
    assert_fails(history, key=b"c")
    assert_fails(history[:2] + history[3:], key=b"m")


def test_explanation_is_the_shortest_failing_prefix_by_call_time() -> None:
    history = [put(0, 10 * i, 10 * i + 1, b"v%d" % i) for i in range(100)]
    history.append(get(1, 400, 401, b"v10"))  # stale: v39 was written by then
    history += [get(2, 10 * i + 2, 10 * i + 3, b"v%d" % i) for i in range(100)]
    result = assert_fails(history)
    lines = result.explanation.splitlines()
    assert "get() -> b'v10'" in lines[0]
    assert "401.000000" in lines[0]
    ops = [line for line in lines if line.startswith("  client")]
    assert ops[-1].startswith("  client 1: get() -> b'v10'")  # nothing called after it is listed
    assert "earlier operations not shown" in result.explanation
    calls = [float(line.split("[")[1].split(",")[0]) for line in ops]
    assert calls == sorted(calls)


def test_explanation_marks_operations_pending_at_the_cut() -> None:
    history = [put(0, 0, 1, b"a"), put(1, 1.5, 9, b"b"), get(2, 2, 3, b"c"), delete(3, 2.5, INF)]
    result = assert_fails(history)
    assert "put(b'b') [1.500000, 9.000000] still pending at the cut" in result.explanation
    assert "delete() [2.500000, no answer]" in result.explanation


@pytest.mark.parametrize(
    "bad",
    [
        Operation(0, 0, 1, "incr", K),
        Operation(0, 2, 1, "get", K),
        Operation(0, INF, INF, "get", K),
        Operation(0, 0, 1, "put", K),
        Operation(0, 0, 1, "cas", K, value=b"a"),
        Operation(0, 0, 1, "get", "k"),  # type: ignore[arg-type]
    ],
)
def test_malformed_operations_are_refused(bad: Operation) -> None:
    with pytest.raises(ValueError):
        check([bad])


def test_timeout_reports_ok_and_timed_out() -> None:
    # Twenty concurrent distinct writes, then a read nobody wrote: the search must try every subset.
    history = [put(c, 0, 100, b"v%d" % c) for c in range(20)]
    history.append(get(20, 200, 201, b"ghost"))
    assert check(history, timeout=0.05) == CheckResult(ok=True, key=None, explanation="", timed_out=True)


def test_interchangeable_crashed_operations() -> None:
    # Ten identical crashed puts, of which exactly two must have taken effect, at different times.
    history = [put(c, 0, INF, b"a") for c in range(10)]
    history += [get(20, 1, 2, b"a"), delete(21, 3, 4), get(20, 5, 6, b"a"), delete(21, 7, 8)]
    assert_ok([*history, get(20, 9, 10, b"a")])
    assert_ok([*history, get(20, 9, 10, None)])
    # Identical crashed cases differing only in what they expected are not interchangeable.
    assert_ok(
        [
            cas(0, 0, INF, b"x", b"y", None),
            cas(1, 0, INF, None, b"y", None),
            get(2, 1, 2, b"y"),
            put(2, 3, 4, b"x"),
            get(2, 5, 6, b"y"),
        ]
    )


def test_a_key_given_up_on_does_not_hide_a_failing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(linearizability, "MAX_CONFIGURATIONS", 100)
    hard = [put(c, 0, 100, b"v%d" % c, key=b"a") for c in range(20)]
    hard.append(get(20, 200, 201, b"ghost", key=b"a"))
    easy = [put(0, 0, 1, b"x", key=b"b"), get(1, 2, 3, b"x", key=b"b")]
    assert check(hard + easy) == CheckResult(ok=True, key=None, explanation="", timed_out=True)
    broken = [put(0, 0, 1, b"x", key=b"b"), get(1, 2, 3, None, key=b"b")]
    assert_fails(hard + broken, key=b"b")


# Random histories.


def register_history(
    rng: random.Random,
    *,
    ops: int,
    keys: int,
    clients: int,
    crash: float = 0.03,
    window: float = 1.0,
    rate: float = 10.0,
    reuse: float = 0.5,
) -> list[Operation]:
    """A linearizable history: a real register applies each operation inside its client's window.

    A client whose request goes unanswered is replaced by a fresh one; its
    request took effect or not at random.
    """
    store: dict[bytes, bytes] = {}
    names = [b"key%d" % i for i in range(keys)]
    pool = [b"a", b"b", b"c"]
    free: dict[int, float] = dict.fromkeys(range(clients), 0.0)  # client -> when its last request returned
    fresh = clients
    unique = 0
    t = 1000.0
    history: list[Operation] = []
    while len(history) < ops:
        t += rng.expovariate(rate)  # the next operation takes effect at t
        ready = [c for c, at in free.items() if at < t]
        if not ready:
            continue
        client = rng.choice(ready)
        call = rng.uniform(max(free[client], t - window), t)
        key = rng.choice(names)
        kind = rng.choices(["put", "get", "cas", "delete"], weights=[4, 4, 3, 1])[0]
        crashed = rng.random() < crash
        applies = not crashed or rng.random() < 0.5
        current = store.get(key)
        unique += 1
        new = rng.choice(pool) if rng.random() < reuse else b"u%d" % unique
        value: bytes | None = None
        expected: bytes | None = None
        output: object = None
        if kind == "put":
            value = new
            if applies:
                store[key] = new
        elif kind == "delete":
            if applies:
                store.pop(key, None)
        elif kind == "get":
            output = current
        else:
            value = new
            expected = current if rng.random() < 0.6 else rng.choice([None, *pool])
            output = expected == current
            if applies and output:
                store[key] = new
        if crashed:
            history.append(Operation(client, call, INF, kind, key, value, expected))
            del free[client]
            free[fresh] = t
            fresh += 1
        else:
            ret = t + rng.uniform(0, window)
            history.append(Operation(client, call, ret, kind, key, value, expected, output))
            free[client] = ret
    return history


def random_register_history(rng: random.Random, *, min_ops: int, crashes: Sequence[float]) -> list[Operation]:
    return register_history(
        rng,
        ops=rng.randint(min_ops, 150),
        keys=rng.randint(1, 3),
        clients=rng.randint(1, 8),
        crash=rng.choice(crashes),
        reuse=rng.choice([0.0, 0.5, 1.0]),
    )


@pytest.mark.parametrize("seed", range(0, 300, 50))
def test_random_register_histories_are_linearizable(seed: int) -> None:
    for s in range(seed, seed + 50):
        rng = random.Random(s)
        history = random_register_history(rng, min_ops=1, crashes=[0.0, 0.03, 0.2])
        result = check(history, timeout=30)
        assert result.ok and not result.timed_out, f"seed {s}: {result}"


@pytest.mark.parametrize("seed", range(0, 300, 50))
def test_random_histories_with_a_read_of_a_value_never_written_fail(seed: int) -> None:
    for s in range(seed, seed + 50):
        rng = random.Random(s)
        # (Fewer crashes: proving a failure means exhausting the search, which crashed writes of
        # reused values make expensive.)
        history = random_register_history(rng, min_ops=2, crashes=[0.0, 0.03, 0.1])
        reads = [i for i, op in enumerate(history) if op.kind == "get" and op.ret != INF]
        if not reads:
            continue
        i = rng.choice(reads)
        old = history[i]
        history[i] = Operation(old.client, old.call, old.ret, "get", old.key, output=b"never written")
        result = check(history, timeout=30)
        assert not result.ok and not result.timed_out, f"seed {s}: mutated op {i} {old}: {result}"
        assert result.key == old.key, f"seed {s}: {result}"
        assert "b'never written'" in result.explanation, f"seed {s}: {result}"


def brute_force(history: Sequence[Operation]) -> bool:
    """Linearizability by trying every order of the answered ops plus any subset of the unanswered ones."""
    for key in {op.key for op in history}:
        ops = [op for op in history if op.key == key]
        answered = [op for op in ops if op.ret != INF]
        unanswered = [op for op in ops if op.ret == INF]
        subsets = itertools.chain.from_iterable(
            itertools.combinations(unanswered, r) for r in range(len(unanswered) + 1)
        )
        if not any(
            valid_order(order)
            for subset in subsets
            for order in itertools.permutations(answered + list(subset))
        ):
            return False
    return True


def valid_order(order: Sequence[Operation]) -> bool:
    for i, earlier in enumerate(order):
        if any(later.ret < earlier.call for later in order[i + 1 :]):
            return False
    value: bytes | None = None
    for op in order:
        known = op.ret != INF
        if op.kind == "put":
            value = op.value
        elif op.kind == "delete":
            value = None
        elif op.kind == "get":
            if known and op.output != value:
                return False
        else:
            if known and op.output != (value == op.expected):
                return False
            if value == op.expected:
                value = op.value
    return True


def arbitrary_history(rng: random.Random) -> list[Operation]:
    """A small history with random outputs and coarse times (so ties are common); often not linearizable."""
    pool: list[bytes | None] = [None, b"a", b"b"]
    keys = [b"x", b"y"] if rng.random() < 0.15 else [K]
    history = []
    for _ in range(rng.randint(1, 7)):
        call = rng.randint(0, 8)
        ret = INF if rng.random() < 0.35 else call + rng.randint(0, 4)
        kind = rng.choice(["put", "get", "cas", "cas", "delete"])
        key = rng.choice(keys)
        client = rng.randint(0, 3)
        if kind == "put":
            history.append(put(client, call, ret, rng.choice([b"a", b"b"]), key))
        elif kind == "get":
            history.append(get(client, call, ret, rng.choice(pool), key))
        elif kind == "delete":
            history.append(delete(client, call, ret, key))
        else:
            ok = None if ret == INF else rng.random() < 0.5
            history.append(cas(client, call, ret, rng.choice(pool), rng.choice([b"a", b"b"]), ok, key))
    return history


@pytest.mark.parametrize("seed", range(0, 4000, 1000))
def test_agrees_with_brute_force_on_small_arbitrary_histories(seed: int) -> None:
    verdicts = {True: 0, False: 0}
    for s in range(seed, seed + 1000):
        history = arbitrary_history(random.Random(s))
        expected = brute_force(history)
        result = check(history)
        assert result.ok == expected and not result.timed_out, f"seed {s}: {history} -> {result}"
        if not result.ok:
            assert not brute_force([op for op in history if op.key == result.key]), f"seed {s}: {result}"
        verdicts[expected] += 1
    assert min(verdicts.values()) > 300, verdicts  # both outcomes well represented


def test_two_thousand_operations_check_within_the_timeout() -> None:
    seed = 2000
    history = register_history(random.Random(seed), ops=2000, keys=5, clients=10, crash=0.01)
    result = check(history, timeout=60)
    assert not result.timed_out, f"seed {seed}"
    assert result.ok, f"seed {seed}: {result}"
