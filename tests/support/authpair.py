"""The same requests, as the same users, to a real etcd 3.4 and to another server, answers compared.

A ``Pair`` holds two sides: a real etcd (the reference) and the other one (synod,
or a second etcd, the harness's own check). Every call is made on both, over raw
gRPC stubs, so what is compared is the wire answer: the gRPC status code and
message of an error, or the response message field by field.

Each side authenticates for itself; a call made "as" a user carries the token
that side issued to that user (gRPC metadata ``token``, or ``authorization`` as
grpc-gateway sends it). A request may be built per side (a function of the
``Side``) when it must name something of that side's own.

What must differ between two servers is named before comparing, nothing else:

- headers: the cluster and member IDs are cleared (revision and raft term are compared);
- simple tokens (``<16 letters>.<raft index>``): the letters are random; the index
  is compared relative to the first token the side issued in the test (both
  servers log the same requests after start-up, but their start-up entries differ);
- JWTs: the signature; the header and the claims are compared, ``exp`` as its
  distance from the moment of the call (within a few seconds of the TTL);
- Status: version, sizes, leader, indexes; Hash/HashKV: the hash; members: IDs
  and each server's own URLs; TTLs that run down with time: within 1 s of the
  other side's.

Answers are not asserted one by one: every divergence is recorded (request, the
etcd's answer, the other's) and ``check()`` fails with all of them, so one run
shows every difference of a script, not only the first.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import jwt
from google.protobuf import text_format
from google.protobuf.message import Message

from synod.api.etcdserverpb import rpc_pb2 as pb
from synod.api.etcdserverpb import rpc_pb2_grpc
from tests.support.servers import ServerProcess

RPC_TIMEOUT = 10.0
TRACE = bool(os.environ.get("SYNOD_AUTHPAIR_TRACE"))  # print every step's answers (pytest -s)
SIMPLE_TOKEN = re.compile(r"^([A-Za-z]{16})\.([0-9]+)$")
Metadata = tuple[tuple[str, str], ...]
Request = Message | Callable[["Side"], Message]

_STUBS: dict[str, Callable[[grpc.Channel], Any]] = {
    "Auth": rpc_pb2_grpc.AuthStub,
    "KV": rpc_pb2_grpc.KVStub,
    "Lease": rpc_pb2_grpc.LeaseStub,
    "Maintenance": rpc_pb2_grpc.MaintenanceStub,
    "Cluster": rpc_pb2_grpc.ClusterStub,
    "Watch": rpc_pb2_grpc.WatchStub,
}


@dataclass(frozen=True)
class As:
    """Who a call presents itself as: a user by name (this side's token for them), a literal
    token, or nobody; under the metadata key ``token`` or ``authorization``."""

    user: str | None = None
    token: str | None = None
    key: str = "token"
    also: Metadata = ()  # extra metadata, sent after the token (to test which of two keys wins)

    def show(self) -> str:
        if self.user is not None:
            who = f"as {self.user}"
        elif self.token is not None:
            who = f"with token {self.token!r}"
        else:
            who = "with no token"
        if self.key != "token":
            who += f" (metadata {self.key!r})"
        if self.also:
            who += f" (and metadata {self.also!r})"
        return who


NOBODY = As()


def as_(who: str | As | None) -> As:
    if who is None:
        return NOBODY
    return who if isinstance(who, As) else As(user=who)


@dataclass
class Side:
    label: str
    server: ServerProcess
    channel: grpc.Channel = field(init=False)
    stubs: dict[str, Any] = field(init=False)
    tokens: dict[str, str] = field(default_factory=dict)
    first_index: int | None = None  # the index of the first simple token issued in the test

    def __post_init__(self) -> None:
        self.channel = grpc.insecure_channel(self.server.endpoint)
        self.stubs = {name: make(self.channel) for name, make in _STUBS.items()}

    def close(self) -> None:
        self.channel.close()

    def metadata(self, who: As) -> Metadata | None:
        md: list[tuple[str, str]] = []
        if who.user is not None:
            # A user this side failed to authenticate: a token it can't know (the login diverged).
            md.append((who.key, self.tokens.get(who.user, f"<{who.user} has no token>")))
        elif who.token is not None:
            md.append((who.key, who.token))
        md.extend(who.also)
        return tuple(md) if md else None

    def request(self, request: Request) -> Message:
        return request(self) if callable(request) else request

    def member_id(self) -> int:
        resp = self.stubs["Cluster"].MemberList(pb.MemberListRequest(), timeout=RPC_TIMEOUT)
        member_id: int = resp.header.member_id
        return member_id


# -- answers ----------------------------------------------------------------------------------------------


def error_text(e: grpc.RpcError) -> str:
    return f"error {e.code().name}: {e.details()!r}"  # type: ignore[attr-defined]


def token_shape(side: Side, token: str, now: float) -> str:
    """A token as compared: a simple token's index relative to the side's first, a JWT's header and claims."""
    m = SIMPLE_TOKEN.match(token)
    if m:
        index = int(m.group(2))
        if side.first_index is None:
            side.first_index = index
        return f"<simple token: 16 letters>.<first index + {index - side.first_index}>"
    if token.count(".") == 2:
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False, "verify_exp": False})
        except jwt.PyJWTError as e:
            return f"<not a JWT: {e}: {token!r}>"
        if isinstance(claims.get("exp"), int):
            claims["exp"] = f"<now + {round((claims['exp'] - now) / 5) * 5} s>"
        return f"<JWT header={sorted(header.items())} claims={sorted(claims.items())}>"
    return f"<unrecognised token {token!r}>"


def normalise(side: Side, resp: Message, now: float) -> str:
    """A response as compared (see the module's docstring), as text."""
    resp = type(resp).FromString(resp.SerializeToString())
    header = getattr(resp, "header", None)
    if header is not None and resp.HasField("header"):
        header.ClearField("cluster_id")
        header.ClearField("member_id")
    extra = ""
    if isinstance(resp, pb.AuthenticateResponse):
        extra = f"token: {token_shape(side, resp.token, now)}\n"
        resp.ClearField("token")
    elif isinstance(resp, pb.StatusResponse):
        for f in ("version", "dbSize", "leader", "raftIndex", "raftAppliedIndex", "dbSizeInUse"):
            resp.ClearField(f)
    elif isinstance(resp, pb.HashResponse | pb.HashKVResponse):
        resp.ClearField("hash")
    elif isinstance(resp, pb.LeaseLeasesResponse):  # etcd lists its leases in map order
        leases = sorted(resp.leases, key=lambda lease: lease.ID)
        resp.ClearField("leases")
        resp.leases.extend(leases)
    elif isinstance(resp, pb.LeaseTimeToLiveResponse):  # and a lease's keys too
        keys = sorted(resp.keys)
        resp.ClearField("keys")
        resp.keys.extend(keys)
    elif isinstance(resp, pb.MemberListResponse | pb.MemberAddResponse | pb.MemberRemoveResponse):
        for m in resp.members:
            m.ClearField("ID")
            urls = [u.replace(side.server.peer_url, "<peer>") for u in m.peerURLs]
            curls = [u.replace(side.server.client_url, "<client>") for u in m.clientURLs]
            m.ClearField("peerURLs")
            m.ClearField("clientURLs")
            m.peerURLs.extend(urls)
            m.clientURLs.extend(curls)
    text = text_format.MessageToString(resp, as_utf8=False).strip()
    return f"{type(resp).__name__} {{ {extra}{text} }}".replace("\n", " ")


def ttls_close(a: str, b: str) -> bool:
    """Equal but for TTL values (time runs between the two calls) within one second of each other."""
    pattern = re.compile(r"\bTTL: (-?[0-9]+)")
    if pattern.sub("TTL: _", a) != pattern.sub("TTL: _", b):
        return False
    ta = [int(x) for x in pattern.findall(a)]
    tb = [int(x) for x in pattern.findall(b)]
    return all(x == y or (x >= 0 and y >= 0 and abs(x - y) <= 1) for x, y in zip(ta, tb, strict=True))


def show(request: Message) -> str:
    text = text_format.MessageToString(request, as_utf8=False).strip().replace("\n", " ")
    return f"{type(request).__name__} {{ {text} }}"


def _open(requests: list[Message], done: threading.Event) -> Iterator[Message]:
    yield from requests
    done.wait(RPC_TIMEOUT)


# -- watches ----------------------------------------------------------------------------------------------


class WatchStream:
    """One Watch stream of one side: requests sent as they are given, answers read by a thread."""

    def __init__(self, side: Side, metadata: Metadata | None) -> None:
        self.side = side
        self._requests: queue.Queue[pb.WatchRequest | None] = queue.Queue()
        self.answers: queue.Queue[pb.WatchResponse | grpc.RpcError | None] = queue.Queue()
        self._call = side.stubs["Watch"].Watch(self._iter(), metadata=metadata)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _iter(self) -> Iterator[pb.WatchRequest]:
        while True:
            r = self._requests.get()
            if r is None:
                return
            yield r

    def _read(self) -> None:
        try:
            for resp in self._call:
                self.answers.put(resp)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:  # type: ignore[attr-defined]
                self.answers.put(e)
        self.answers.put(None)

    def send(self, request: pb.WatchRequest) -> None:
        self._requests.put(request)

    def next(self, timeout: float) -> str:
        try:
            got = self.answers.get(timeout=timeout)
        except queue.Empty:
            return f"<no answer within {timeout} s>"
        if got is None:
            self.answers.put(None)
            return "<stream ended>"
        if isinstance(got, grpc.RpcError):
            return error_text(got)
        return normalise(self.side, got, time.time())

    def close(self) -> None:
        self._requests.put(None)
        self._call.cancel()
        self._reader.join(5)


class WatchPair:
    """The same watch stream on both sides of a pair."""

    def __init__(self, pair: Pair, who: As, what: str) -> None:
        self.pair, self.who, self.what = pair, who, what
        self.streams = [WatchStream(s, s.metadata(who)) for s in pair.sides]

    def create(self, create: pb.WatchCreateRequest, timeout: float = 5.0) -> str:
        """Send a create request on both; compare the first answer to it."""
        for s in self.streams:
            s.send(pb.WatchRequest(create_request=create))
        return self.next(f"Watch create {show(create)}", timeout)

    def next(self, what: str, timeout: float = 5.0, count: int = 1) -> str:
        """The next ``count`` answers of each side, compared. Answers for different watchers of a
        stream come in no fixed order (etcd sends each watcher's on its own), so several are
        compared as a set."""
        answers = [" | ".join(sorted(s.next(timeout) for _ in range(count))) for s in self.streams]
        self.pair.record(f"{self.what}: {what} {self.who.show()}", answers[0], answers[1])
        return answers[0]

    def close(self) -> None:
        for s in self.streams:
            s.close()


def call_one(
    side: Side, method: str, request: Request, who: str | As | None = None, *, timeout: float = RPC_TIMEOUT
) -> str:
    """``method`` ("Auth.UserAdd") on one side: its answer, normalised."""
    service, name = method.split(".")
    now = time.time()
    try:
        resp = getattr(side.stubs[service], name)(
            side.request(request), metadata=side.metadata(as_(who)), timeout=timeout
        )
    except grpc.RpcError as e:
        return error_text(e)
    return normalise(side, resp, now)


# -- the pair ---------------------------------------------------------------------------------------------


@dataclass
class Divergence:
    step: int
    what: str
    reference: str
    other: str


class Pair:
    def __init__(self, ref: Side, other: Side) -> None:
        self.ref, self.other = ref, other
        self.sides = (ref, other)
        self.steps = 0
        self.divergences: list[Divergence] = []
        self._watches: list[WatchPair] = []

    def close(self) -> None:
        for w in self._watches:
            w.close()
        for s in self.sides:
            s.close()

    def record(
        self, what: str, ref: str, other: str, close: Callable[[str, str], bool] | None = None
    ) -> None:
        self.steps += 1
        if TRACE:
            print(
                f"[step {self.steps} at {time.monotonic():.2f}] {what}\n"
                f"    {self.ref.label}: {ref}\n    {self.other.label}: {other}"
            )
        if ref != other and not (close is not None and close(ref, other)):
            self.divergences.append(Divergence(self.steps, what, ref, other))

    def call(
        self,
        method: str,
        request: Request,
        who: str | As | None = None,
        *,
        timeout: float = RPC_TIMEOUT,
        ttl: bool = False,
    ) -> str:
        """``method`` ("Auth.UserAdd") on both sides; returns the reference's answer, normalised."""
        w = as_(who)
        answers = [call_one(side, method, request, w, timeout=timeout) for side in self.sides]
        shown = show(self.ref.request(request))
        self.record(f"{method} {shown} {w.show()}", answers[0], answers[1], ttls_close if ttl else None)
        return answers[0]

    def stream(self, method: str, requests: list[Message], who: str | As | None = None) -> str:
        """A streaming call: the requests sent, the first answer (or error) compared."""
        service, name = method.split(".")
        w = as_(who)
        answers = []
        for side in self.sides:
            call = getattr(side.stubs[service], name)
            done = threading.Event()
            # A bidirectional stream stays open until its first answer is read: a server may end
            # the call without answering once the client has half-closed.
            arg: Any = _open(requests, done) if name == "LeaseKeepAlive" else requests[0]
            it = call(arg, metadata=side.metadata(w), timeout=RPC_TIMEOUT)
            try:
                first = next(iter(it))
            except StopIteration:
                answers.append("<stream ended with no answer>")
            except grpc.RpcError as e:
                answers.append(error_text(e))
            else:
                if isinstance(first, pb.SnapshotResponse):
                    answers.append("SnapshotResponse <first chunk>")
                else:
                    answers.append(normalise(side, first, time.time()))
            finally:
                done.set()
                it.cancel()
        what = f"{method} {' '.join(show(r) for r in requests)} {w.show()}"
        self.record(what, answers[0], answers[1], ttls_close)
        return answers[0]

    def watch(self, who: str | As | None = None, what: str = "watch") -> WatchPair:
        w = WatchPair(self, as_(who), what)
        self._watches.append(w)
        return w

    def login(self, user: str, password: str) -> str:
        """Authenticate on both sides (answers compared); each side keeps the token it issued."""
        answers = []
        for side in self.sides:
            now = time.time()
            try:
                resp = side.stubs["Auth"].Authenticate(
                    pb.AuthenticateRequest(name=user, password=password), timeout=RPC_TIMEOUT
                )
            except grpc.RpcError as e:  # the user's earlier token, if any, is kept
                answers.append(error_text(e))
            else:
                side.tokens[user] = resp.token
                answers.append(normalise(side, resp, now))
        self.record(f"login {user!r}", answers[0], answers[1])
        return answers[0]

    def token(self, side: Side, user: str) -> str:
        return side.tokens[user]

    def check(self) -> None:
        if not self.divergences:
            return
        lines = [f"{self.other.label} differs from {self.ref.label} in {len(self.divergences)} of "]
        lines[0] += f"{self.steps} steps:"
        for d in self.divergences:
            lines.append(f"[step {d.step}] {d.what}")
            lines.append(f"    {self.ref.label}: {d.reference}")
            lines.append(f"    {self.other.label}: {d.other}")
        raise AssertionError("\n".join(lines))


@contextlib.contextmanager
def started_pair(ref: ServerProcess, other: ServerProcess, other_label: str) -> Iterator[Pair]:
    """Start both servers (at once), yield their pair, then stop them."""
    servers = (ref, other)
    errors: list[BaseException] = []

    def start(s: ServerProcess) -> None:
        try:
            s.start()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pair: Pair | None = None
    try:
        if errors:
            raise errors[0]
        pair = Pair(Side("etcd", ref), Side(other_label, other))
        yield pair
    finally:
        if pair is not None:
            pair.close()
        for s in servers:
            s.kill()
