"""The errors etcd answers on the wire: a gRPC status code and an exact message.

Clients (etcd's own among them) recognise errors by their message text, so these
strings are part of the API and must stay byte-for-byte as etcd sends them.
Every error a request can get from synod is one of these (or a plain gRPC error
from the transport itself, such as a message over the size limit).
"""

from __future__ import annotations

from dataclasses import dataclass

from grpc import StatusCode


@dataclass(frozen=True, slots=True)
class ErrorCode:
    code: StatusCode
    message: str

    def go_text(self) -> str:
        """The error as grpc-go's ``status.Error`` prints it (etcd puts that in watch cancel reasons)."""
        name = (
            "Canceled"
            if self.code is StatusCode.CANCELLED
            else "".join(w.capitalize() for w in self.code.name.split("_"))
        )
        return f"rpc error: code = {name} desc = {self.message}"


class RPCError(Exception):
    """Raised anywhere below the services; answered to the client as ``error``."""

    def __init__(self, error: ErrorCode) -> None:
        super().__init__(error.message)
        self.error = error

    @property
    def code(self) -> StatusCode:
        return self.error.code

    @property
    def message(self) -> str:
        return self.error.message


_IA = StatusCode.INVALID_ARGUMENT
_FP = StatusCode.FAILED_PRECONDITION
_UN = StatusCode.UNAVAILABLE

# Key-value requests.
EMPTY_KEY = ErrorCode(_IA, "etcdserver: key is not provided")
KEY_NOT_FOUND = ErrorCode(_IA, "etcdserver: key not found")
VALUE_PROVIDED = ErrorCode(_IA, "etcdserver: value is provided")
LEASE_PROVIDED = ErrorCode(_IA, "etcdserver: lease is provided")
TOO_MANY_OPS = ErrorCode(_IA, "etcdserver: too many operations in txn request")
DUPLICATE_KEY = ErrorCode(_IA, "etcdserver: duplicate key given in txn request")
COMPACTED = ErrorCode(StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted")
FUTURE_REV = ErrorCode(StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision")
NO_SPACE = ErrorCode(StatusCode.RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded")
REQUEST_TOO_LARGE = ErrorCode(_IA, "etcdserver: request is too large")
TOO_MANY_REQUESTS = ErrorCode(StatusCode.RESOURCE_EXHAUSTED, "etcdserver: too many requests")

# Leases.
LEASE_NOT_FOUND = ErrorCode(StatusCode.NOT_FOUND, "etcdserver: requested lease not found")
LEASE_EXIST = ErrorCode(_FP, "etcdserver: lease already exists")
LEASE_TTL_TOO_LARGE = ErrorCode(StatusCode.OUT_OF_RANGE, "etcdserver: too large lease TTL")

# Watch.
WATCH_CANCELED = ErrorCode(StatusCode.CANCELLED, "etcdserver: watch canceled")

# Membership.
MEMBER_EXIST = ErrorCode(_FP, "etcdserver: member ID already exist")
PEER_URL_EXIST = ErrorCode(_FP, "etcdserver: Peer URLs already exists")
MEMBER_NOT_ENOUGH_STARTED = ErrorCode(
    _FP, "etcdserver: re-configuration failed due to not enough started members"
)
MEMBER_BAD_URLS = ErrorCode(_IA, "etcdserver: given member URLs are invalid")
MEMBER_NOT_FOUND = ErrorCode(StatusCode.NOT_FOUND, "etcdserver: member not found")
MEMBER_NOT_LEARNER = ErrorCode(_FP, "etcdserver: can only promote a learner member")
LEARNER_NOT_READY = ErrorCode(
    _FP, "etcdserver: can only promote a learner member which is in sync with leader"
)
TOO_MANY_LEARNERS = ErrorCode(_FP, "etcdserver: too many learner members in cluster")

# Auth.
ROOT_USER_NOT_EXIST = ErrorCode(_FP, "etcdserver: root user does not exist")
ROOT_ROLE_NOT_EXIST = ErrorCode(_FP, "etcdserver: root user does not have root role")
USER_ALREADY_EXIST = ErrorCode(_FP, "etcdserver: user name already exists")
USER_EMPTY = ErrorCode(_IA, "etcdserver: user name is empty")
USER_NOT_FOUND = ErrorCode(_FP, "etcdserver: user name not found")
ROLE_ALREADY_EXIST = ErrorCode(_FP, "etcdserver: role name already exists")
ROLE_NOT_FOUND = ErrorCode(_FP, "etcdserver: role name not found")
ROLE_EMPTY = ErrorCode(_IA, "etcdserver: role name is empty")
AUTH_FAILED = ErrorCode(_IA, "etcdserver: authentication failed, invalid user ID or password")
PERMISSION_DENIED = ErrorCode(StatusCode.PERMISSION_DENIED, "etcdserver: permission denied")
ROLE_NOT_GRANTED = ErrorCode(_FP, "etcdserver: role is not granted to the user")
PERMISSION_NOT_GRANTED = ErrorCode(_FP, "etcdserver: permission is not granted to the role")
PERMISSION_NOT_GIVEN = ErrorCode(_IA, "etcdserver: permission not given")  # etcd 3.5's; 3.4 crashes
AUTH_NOT_ENABLED = ErrorCode(_FP, "etcdserver: authentication is not enabled")
INVALID_AUTH_TOKEN = ErrorCode(StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token")
INVALID_AUTH_MGMT = ErrorCode(_IA, "etcdserver: invalid auth management")
AUTH_OLD_REVISION = ErrorCode(_IA, "etcdserver: revision of auth store is old")

# Cluster state.
NO_LEADER = ErrorCode(_UN, "etcdserver: no leader")
NOT_LEADER = ErrorCode(_FP, "etcdserver: not leader")
LEADER_CHANGED = ErrorCode(_UN, "etcdserver: leader changed")
NOT_CAPABLE = ErrorCode(_UN, "etcdserver: not capable")
STOPPED = ErrorCode(_UN, "etcdserver: server stopped")
TIMEOUT = ErrorCode(_UN, "etcdserver: request timed out")
TIMEOUT_DUE_TO_LEADER_FAIL = ErrorCode(
    _UN, "etcdserver: request timed out, possibly due to previous leader failure"
)
TIMEOUT_DUE_TO_CONNECTION_LOST = ErrorCode(
    _UN, "etcdserver: request timed out, possibly due to connection lost"
)
TIMEOUT_WAIT_APPLIED_INDEX = ErrorCode(
    _UN, "etcdserver: request timed out, waiting for the applied index took too long"
)
TIMEOUT_LEADER_TRANSFER = ErrorCode(_UN, "etcdserver: request timed out, leader transfer took too long")
UNHEALTHY = ErrorCode(_UN, "etcdserver: unhealthy cluster")
CORRUPT = ErrorCode(StatusCode.DATA_LOSS, "etcdserver: corrupt cluster")
NOT_SUPPORTED_FOR_LEARNER = ErrorCode(_UN, "etcdserver: rpc not supported for learner")
BAD_LEADER_TRANSFEREE = ErrorCode(_FP, "etcdserver: bad leader transferee")
