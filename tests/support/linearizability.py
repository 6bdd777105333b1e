"""A linearizability checker for key-value histories recorded by concurrent clients.

A history is a list of ``Operation``: what one client asked of one key, when
it sent the request (``call``) and when the answer arrived (``ret``), and
what the answer said (``output``). ``check`` decides whether some sequential
order of the operations, each placed at a single point between its call and
its return, explains every answer with a register per key that starts absent.

Keys are independent registers, so the history is split by key and every
key is checked on its own (P-compositionality): a history is linearizable iff
each key's is, and small searches are exponentially cheaper than one big one.

Operations whose answer never came (``ret == math.inf``: the client timed out
or the member crashed) may have taken effect at any point after their call,
or never; their output is unknown. A get without an answer constrains
nothing and is ignored; an unanswered cas is placed only where its expected
value is current (elsewhere it would change nothing, the same as never
happening).

The search per key is Wing & Gong's with Lowe's memoization, driven as in
porcupine's "just-in-time" linearization. The call and return events are
sorted by time into a doubly linked list (at equal times calls come first, so
touching intervals count as concurrent). The search walks that list from its
head: at a call it tries to make the operation take effect now, which is
possible if the register allows it and the resulting configuration (which
operations have taken effect, as bitsets, and the register's value) has not
been reached before; if so the operation's call and return are unlinked and
the walk restarts from the head. Reaching a return means that operation's
latest point has passed without it taking effect, so the last choice is
undone (its events relinked from an explicit stack; no recursion) and the
walk resumes after it. The key is linearizable once every answered operation
has taken effect, and not linearizable once the stack is empty at a return.
Every configuration is explored at most once, which bounds the search.

On top of that, reductions that keep the answer exact:

- Observers first. An operation that never changes the value (a get, a
  failed cas) and can take effect now is taken at once, without trying
  alternatives: any completion stays valid with it moved to the front. So
  undoing it undoes the choice before it too, and a configuration whose
  observer step leads somewhere known to fail fails itself.
- Unobservable values. The register's value matters only through equality
  with what some get returned or some cas expected; all other values are one
  value to the search, so orders of writes nobody could read merge.
- Horizons for crashed writes. An unanswered write of ``w`` matters only to
  an answered get that returned ``w``, a cas that expected ``w`` and a
  failed cas that expected a value the register could still hold; past the
  last return among those (its horizon, see ``_horizons``) whatever follows
  it is an unconditional write, so it may as well never happen. A write
  whose horizon precedes its call is dropped before the search; the others
  get a horizon entry in the list, and the walk passing it gives the write
  up for good.
- Interchangeable crashed operations (the same effect on the register as
  the search sees it, and the same horizon) are taken in call order only, so
  k of them add k + 1, not 2**k, ways.

These make crashed writes cheap when values are unique (write a fresh value
each time: reused values can keep many crashed writes ambiguous for the whole
history). The cost that remains grows exponentially with the number of
operations concurrently in flight on one key: checking 2,000 operations on one
key takes milliseconds with 10 clients, seconds with 20.

A configuration packs the answered operations taken as "all before number
``base`` and these bits after it" (numbered in call order), the unanswered
ones as a bitset and the value, into one int that stays small however long
the history is.

When a key fails, ``check`` looks for the shortest failing prefix of its
history (by binary search: a prefix of events is cut after some return, and
operations still pending at the cut become unanswered; prefixes of a
linearizable history are linearizable) and reports its operations. The whole
check, explanation included, shares one wall-clock budget; when it runs out
(or a key's search reaches ``MAX_CONFIGURATIONS``), the result is
``ok=True, timed_out=True``.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["KINDS", "CheckResult", "Operation", "check"]

KINDS = frozenset({"put", "get", "cas", "delete"})

# How many operations an explanation lists at most (the latest by call time are kept).
MAX_EXPLAINED_OPS = 40

# How many search steps run between two looks at the clock.
_CLOCK_EVERY = 2048

# How many configurations the search of one key may remember before it gives up (as on a timeout),
# to bound its memory (roughly 100 bytes each).
MAX_CONFIGURATIONS = 10_000_000


@dataclass(frozen=True, slots=True)
class Operation:
    """One client request on one key, as the client saw it.

    ``ret`` is ``math.inf`` if no answer came (the operation may or may not
    have taken effect; ``output`` is then ignored). ``output`` is the value a
    get read (``None``: absent) and whether a cas succeeded; None otherwise.
    A cas compares the key's value with ``expected`` (``None``: the key must
    not exist) and, if equal, puts ``value``.
    """

    client: int
    call: float
    ret: float
    kind: str
    key: bytes
    value: bytes | None = None
    expected: bytes | None = None
    output: object = None


@dataclass
class CheckResult:
    ok: bool
    key: bytes | None
    explanation: str
    timed_out: bool = False


def check(history: Sequence[Operation], *, timeout: float = 60.0) -> CheckResult:
    """Whether ``history`` is linearizable, key by key in sorted key order.

    Raises ValueError for a malformed operation. On a failure, ``key`` is the
    first key (in sorted order) whose history is not linearizable and
    ``explanation`` lists the operations of its shortest failing prefix. A key
    whose search gives up does not stop the keys after it from being checked
    (while the budget lasts); if none of them fails, the result is ok with
    ``timed_out`` set.
    """
    deadline = time.monotonic() + timeout
    by_key: dict[bytes, list[Operation]] = {}
    for op in history:
        _validate(op)
        by_key.setdefault(op.key, []).append(op)
    timed_out = False
    for key in sorted(by_key):
        if time.monotonic() > deadline:
            timed_out = True
            break
        ops = by_key[key]
        verdict = _check_key(ops, deadline)
        if verdict is None:
            timed_out = True  # the keys after it may still fail
        elif not verdict:
            return CheckResult(ok=False, key=key, explanation=_explain(key, ops, deadline))
    return CheckResult(ok=True, key=None, explanation="", timed_out=timed_out)


def _validate(op: Operation) -> None:
    if op.kind not in KINDS:
        raise ValueError(f"unknown operation kind {op.kind!r} in {op}")
    if not isinstance(op.key, bytes):
        raise ValueError(f"key must be bytes in {op}")
    if not math.isfinite(op.call):
        raise ValueError(f"call time must be finite in {op}")
    if math.isnan(op.ret) or op.ret < op.call:
        raise ValueError(f"return time must not precede the call in {op}")
    if op.kind in ("put", "cas") and not isinstance(op.value, bytes):
        raise ValueError(f"a {op.kind} needs a bytes value in {op}")
    if op.ret != math.inf:
        if op.kind == "cas" and not isinstance(op.output, bool):
            raise ValueError(f"an answered cas needs a bool output in {op}")
        if op.kind == "get" and op.output is not None and not isinstance(op.output, bytes):
            raise ValueError(f"a get's output must be bytes or None in {op}")


# The register's steps, by what each operation requires and does.
_WRITE = 0  # put / delete, answered or not: the value becomes ``arg``
_READ = 1  # answered get: the value must be ``arg``
_SWAP = 2  # successful or unanswered cas: the value must be ``expected``, becomes ``arg``
_MISS = 3  # failed cas: the value must not be ``expected``


def _written(op: Operation) -> bytes | None:
    """The value a write leaves (put and cas: their value; delete: absent)."""
    return None if op.kind == "delete" else op.value


def _read(op: Operation) -> bytes | None:
    """What a get returned (validated to be bytes or None)."""
    assert op.output is None or isinstance(op.output, bytes)
    return op.output


def _horizons(ops: Sequence[Operation]) -> list[float]:
    """Per operation, for an unanswered write: by when it must take effect if it ever does; -inf if it
    never needs to, math.inf for the other operations.

    An unanswered write of ``w`` matters only to an answered get that returned
    ``w``, a cas that expected ``w`` and a failed cas that expected another
    value the register may still hold after the write's call (see ``_gone``);
    its horizon is the latest return among those, counting for an unanswered
    cas its own horizon. Wherever the write takes effect after its
    horizon, whatever follows it is an unconditional write (or nothing), so it
    may as well not happen at all. (The horizons are the least solution of
    these constraints; take a linearization, drop the last operation in it
    placed after its horizon, and repeat.)
    """
    # The latest return of an answered operation that could tell ``w`` apart, per value.
    observed: dict[bytes | None, float] = {}
    # The latest return of a failed cas, per expected value.
    failed: dict[bytes | None, float] = {}
    for op in ops:
        value: bytes | None
        if op.ret == math.inf:
            continue
        if op.kind == "get":
            value, book = _read(op), observed
        elif op.kind != "cas":
            continue
        elif op.output is False:
            value, book = op.expected, failed
        else:
            value, book = op.expected, observed
        book[value] = max(book.get(value, -math.inf), op.ret)
    gone = _gone(ops)
    horizons = [math.inf] * len(ops)
    writes = [i for i, op in enumerate(ops) if op.ret == math.inf and op.kind != "get"]
    for i in writes:
        op = ops[i]
        w = _written(op)
        horizon = observed.get(w, -math.inf)
        for value, ret in failed.items():
            # A failed cas that expected a value gone for good before the write's call fails anyway.
            if value != w and ret > horizon and gone.get(value, -math.inf) >= op.call:
                horizon = ret
        horizons[i] = horizon
    swaps = [i for i in writes if ops[i].kind == "cas"]
    while True:
        # The latest horizon of an unanswered cas, per expected value.
        latest: dict[bytes | None, float] = {}
        for i in swaps:
            expected = ops[i].expected
            latest[expected] = max(latest.get(expected, -math.inf), horizons[i])
        changed = False
        for i in writes:
            later = latest.get(_written(ops[i]), -math.inf)
            if later > horizons[i]:
                horizons[i] = later
                changed = True
        if not changed:
            return horizons


def _gone(ops: Sequence[Operation]) -> dict[bytes | None, float]:
    """Per value, a time after which the register cannot hold it (math.inf: none; absent: never held).

    That is once every write of the value has been followed by an answered
    write called after it returned (and absent, the initial value, once any
    answered write returned). A value with an unanswered writer never goes.
    """
    writes = sorted(
        (op.call, op.ret)
        for op in ops
        if op.ret != math.inf and (op.kind in ("put", "delete") or (op.kind == "cas" and op.output is True))
    )
    calls = [call for call, _ in writes]
    earliest_ret = [math.inf] * (len(writes) + 1)  # earliest_ret[k]: of the writes called from k on
    for k in range(len(writes) - 1, -1, -1):
        earliest_ret[k] = min(earliest_ret[k + 1], writes[k][1])

    def overwritten(ret: float) -> float:
        return earliest_ret[bisect.bisect_right(calls, ret)]

    gone: dict[bytes | None, float] = {None: overwritten(-math.inf)}
    for op in ops:
        if op.kind == "get" or (op.kind == "cas" and op.output is False and op.ret != math.inf):
            continue
        value = _written(op)
        by = overwritten(op.ret) if op.ret != math.inf else math.inf
        gone[value] = max(gone.get(value, -math.inf), by)
    return gone


def _relevant(ops: Sequence[Operation]) -> list[Operation]:
    """The operations the search needs: all but unanswered gets and unanswered writes whose horizon
    (see ``_horizons``) precedes their call."""
    kept = [op for op in ops if not (op.kind == "get" and op.ret == math.inf)]
    while True:
        pruned = [op for op, horizon in zip(kept, _horizons(kept), strict=True) if horizon >= op.call]
        if len(pruned) == len(kept):
            return kept
        kept = pruned


def _check_key(ops: Sequence[Operation], deadline: float) -> bool | None:
    """Whether one key's history is linearizable; None if the search gave up (deadline, memory)."""
    ops = sorted(_relevant(ops), key=lambda op: op.call)
    n = len(ops)
    answered = [op.ret != math.inf for op in ops]
    remaining = sum(answered)  # answered operations yet to take effect
    if remaining == 0:
        return True

    # Register values as small ints. Only equality with what some get returned or some cas expected
    # can matter, so every other value is the same "unobservable" value 0: which of them the register
    # holds makes no difference, and configurations that differ only in that are one.
    ids: dict[object, int] = {}
    for op in ops:
        if op.kind in ("get", "cas"):
            ids.setdefault(op.output if op.kind == "get" else op.expected, len(ids) + 1)

    def intern(value: object) -> int:
        return ids.get(value, 0)

    step = [0] * n
    arg = [0] * n
    expected = [0] * n
    for i, op in enumerate(ops):
        if op.kind == "put":
            step[i], arg[i] = _WRITE, intern(op.value)
        elif op.kind == "delete":
            step[i], arg[i] = _WRITE, intern(None)
        elif op.kind == "get":
            step[i], arg[i] = _READ, intern(op.output)
        elif not answered[i] or op.output is True:
            step[i], arg[i], expected[i] = _SWAP, intern(op.value), intern(op.expected)
        else:
            step[i], expected[i] = _MISS, intern(op.expected)
    # Operations that never change the value.
    observer = [k in (_READ, _MISS) or (k == _SWAP and arg[i] == expected[i]) for i, k in enumerate(step)]

    # Which operations have taken effect, in two bitsets: the answered ones, numbered in call order
    # and stored as ``base`` (all before it have taken effect) and ``done`` (bit j: number base + j);
    # the unanswered ones, numbered in call order, in ``maybe``. A configuration is that and the
    # register's value, packed into one int; it stays small however long the history is.
    slot = [0] * n
    counts = [0, 0]
    for i in range(n):
        slot[i] = counts[answered[i]]
        counts[answered[i]] += 1
    maybe_bits = counts[0]
    base_bits = counts[1].bit_length()
    state_bits = len(ids).bit_length()

    # Unanswered operations that do the same thing to the register (values as numbered above) with
    # the same horizon (see _horizons) are interchangeable: the search takes each only after the one
    # called before it (``twin``: its slot), which keeps k of them from making 2**k configurations.
    horizons = _horizons(ops)
    twin = [-1] * n
    last_twin: dict[tuple[int, int, int, float], int] = {}
    for i in range(n):
        if not answered[i]:
            what = (step[i], arg[i], expected[i], horizons[i])
            twin[i] = last_twin.get(what, -1)
            last_twin[what] = slot[i]

    # Entries 1..m in time order; 0 is the head and m + 1 the tail. Entry e is op_of[e]'s call if
    # is_call[e], else its return, or for an unanswered operation its horizon (see _horizons): the
    # search may not pass it with the operation pending, so passing it drops the operation. A call's
    # return or horizon entry is ret_of[e] (0 for none).
    events = [(op.call, 0, i) for i, op in enumerate(ops)]
    events += [(op.ret if answered[i] else horizons[i], 1, i) for i, op in enumerate(ops)]
    events = [event for event in events if event[0] != math.inf]
    events.sort()
    m = len(events)
    op_of = [0] * (m + 2)
    is_call = [False] * (m + 2)
    ret_of = [0] * (m + 2)
    call_entry = [0] * n
    for e, (_, is_ret, i) in enumerate(events, start=1):
        op_of[e] = i
        if is_ret:
            ret_of[call_entry[i]] = e
        else:
            is_call[e] = True
            call_entry[i] = e
    nxt = list(range(1, m + 3))
    prv = list(range(-1, m + 1))
    tail = m + 1

    seen: set[int] = set()  # configurations reached
    # The choices made: (call entry taken, whether it was an observer taken first, and the
    # configuration before it: base, done, maybe, state).
    stack: list[tuple[int, bool, int, int, int, int]] = []
    base = done = maybe = 0
    state = intern(None)
    fresh = True  # the configuration was just reached: nothing tried in it yet
    entry = nxt[0]
    countdown = _CLOCK_EVERY

    def after(i: int, drop: bool = False) -> tuple[int, int, int, int, int]:
        """The configuration (packed, base, done, maybe, state) after ops[i] takes effect, or with
        ``drop`` after it is given up (unanswered ones only); packed -1 if impossible."""
        if drop:
            new_maybe = maybe | (1 << slot[i])
            packed = ((((done << maybe_bits) | new_maybe) << base_bits | base) << state_bits) | state
            return packed, base, done, new_maybe, state
        if answered[i]:
            new_base, new_done, new_maybe = base, done | (1 << (slot[i] - base)), maybe
            if new_done & 1:
                ones = (new_done ^ (new_done + 1)).bit_length() - 1  # trailing ones
                new_base, new_done = base + ones, new_done >> ones
        elif twin[i] >= 0 and not (maybe >> twin[i]) & 1:
            return -1, 0, 0, 0, 0
        else:
            new_base, new_done, new_maybe = base, done, maybe | (1 << slot[i])
        kind = step[i]
        if kind == _WRITE:
            new_state = arg[i]
        elif kind == _READ:
            new_state = state if state == arg[i] else -1
        elif kind == _SWAP:
            new_state = arg[i] if state == expected[i] else -1
        else:
            new_state = state if state != expected[i] else -1
        if new_state < 0:
            return -1, 0, 0, 0, 0
        packed = ((((new_done << maybe_bits) | new_maybe) << base_bits | new_base) << state_bits) | new_state
        return packed, new_base, new_done, new_maybe, new_state

    while True:
        countdown -= 1
        if countdown == 0:
            countdown = _CLOCK_EVERY
            if time.monotonic() > deadline or len(seen) > MAX_CONFIGURATIONS:
                return None
        take = 0
        dead = forced = False
        if fresh:
            # An operation that never changes the value (a read, a failed cas) and can take effect now
            # may as well take effect first: moving it to the front of any completion keeps the
            # completion valid. So it is taken without trying anything else, and if taking it leads
            # to a configuration that failed, this one fails too.
            fresh = False
            e = nxt[0]
            while is_call[e]:
                if observer[op_of[e]]:
                    config = after(op_of[e])
                    if config[0] >= 0:
                        if config[0] in seen:
                            dead = True
                        else:
                            take, forced = e, True
                        break
                e = nxt[e]
        if not take and not dead:
            if entry == tail:  # only unanswered calls were left
                return True
            if is_call[entry]:
                config = after(op_of[entry])
                if config[0] < 0 or config[0] in seen:
                    entry = nxt[entry]
                    continue
                take = entry
            elif answered[op_of[entry]]:
                dead = True
            else:
                # The horizon of an operation not taken: everything after it in the list requires
                # dropping it, and everything before it has been tried, so this is the only way on.
                config = after(op_of[entry], drop=True)
                if config[0] in seen:
                    dead = True
                else:
                    take, forced = call_entry[op_of[entry]], True
        if take:
            seen.add(config[0])
            stack.append((take, forced, base, done, maybe, state))
            _, base, done, maybe, state = config
            # Unlink the call and its return, then start over from the head of the list.
            nxt[prv[take]] = nxt[take]
            prv[nxt[take]] = prv[take]
            r = ret_of[take]
            if r:
                nxt[prv[r]] = nxt[r]
                prv[nxt[r]] = prv[r]
            if answered[op_of[take]]:
                remaining -= 1
                if remaining == 0:
                    return True
            fresh = True
            entry = nxt[0]
            continue
        # At an operation's return with the operation not yet taken effect, or at a configuration
        # known to fail: undo the latest choice (and the one before it if that was an observer taken
        # first: see above), then try what comes after it in the list.
        while True:
            if not stack:
                return False
            entry, forced, base, done, maybe, state = stack.pop()
            r = ret_of[entry]
            if r:
                nxt[prv[r]] = r
                prv[nxt[r]] = r
            if answered[op_of[entry]]:
                remaining += 1
            nxt[prv[entry]] = entry
            prv[nxt[entry]] = entry
            if not forced:
                break
        entry = nxt[entry]


def _explain(key: bytes, ops: Sequence[Operation], deadline: float) -> str:
    """The operations of the shortest failing prefix of a non-linearizable key history."""
    events = sorted(
        [(op.call, 0, i) for i, op in enumerate(ops)]
        + [(op.ret, 1, i) for i, op in enumerate(ops) if op.ret != math.inf]
    )
    position = {(is_ret, i): p for p, (_, is_ret, i) in enumerate(events)}
    returns = [p for p, (_, is_ret, _) in enumerate(events) if is_ret]

    def prefix(cut: int) -> tuple[list[Operation], set[int]]:
        """The operations called up to event ``cut``; the indexes of those still pending there."""
        kept: list[Operation] = []
        pending: set[int] = set()
        for i, op in enumerate(ops):
            if position[(0, i)] > cut:
                continue
            if op.ret != math.inf and position[(1, i)] > cut:
                pending.add(i)
                kept.append(Operation(op.client, op.call, math.inf, op.kind, op.key, op.value, op.expected))
            else:
                kept.append(op)
        return kept, pending

    lo, hi = 0, len(returns) - 1  # the prefix cut after returns[hi] fails (it is the whole history)
    shortest = True
    while lo < hi:
        mid = (lo + hi) // 2
        verdict = _check_key(prefix(returns[mid])[0], deadline)
        if verdict is None:
            shortest = False
            break
        if verdict:
            lo = mid + 1
        else:
            hi = mid
    cut = returns[hi]
    culprit = ops[events[cut][2]]
    pending = prefix(cut)[1]
    chosen = sorted(
        (i for i, op in enumerate(ops) if position[(0, i)] <= cut), key=lambda i: (ops[i].call, i)
    )
    lines = [
        f"key {key!r} is not linearizable: no order of its first {len(chosen)} operations explains "
        f"client {culprit.client}'s {_describe(culprit, False)} returning at "
        f"{culprit.ret:.6f}" + ("" if shortest else " (the search for a shorter prefix timed out)"),
        "operations by call time (times in monotonic seconds):",
    ]
    if len(chosen) > MAX_EXPLAINED_OPS:
        lines.append(f"  ... {len(chosen) - MAX_EXPLAINED_OPS} earlier operations not shown")
        chosen = chosen[-MAX_EXPLAINED_OPS:]
    for i in chosen:
        op = ops[i]
        if op.ret == math.inf:
            when = f"[{op.call:.6f}, no answer]"
        elif i in pending:
            when = f"[{op.call:.6f}, {op.ret:.6f}] still pending at the cut"
        else:
            when = f"[{op.call:.6f}, {op.ret:.6f}]"
        lines.append(f"  client {op.client}: {_describe(op, op.ret == math.inf or i in pending)} {when}")
    return "\n".join(lines)


def _show(value: object) -> str:
    return "absent" if value is None else repr(value)


def _describe(op: Operation, unknown: bool) -> str:
    if op.kind == "put":
        call = f"put({op.value!r})"
    elif op.kind == "delete":
        call = "delete()"
    elif op.kind == "cas":
        call = f"cas({_show(op.expected)} -> {op.value!r})"
    else:
        call = "get()"
    if unknown:
        return f"{call} -> ?" if op.kind in ("get", "cas") else call
    if op.kind == "get":
        return f"{call} -> {_show(op.output)}"
    if op.kind == "cas":
        return f"{call} -> {'succeeded' if op.output else 'failed'}"
    return call
