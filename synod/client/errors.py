"""The client's exceptions: one class per error etcd answers, named after etcd's ``rpctypes.Err*``.

etcd identifies its errors by message text (the gRPC status code alone is
shared by many), so a failed call is mapped by its message to the class
registered for it here; an error nobody registered is an ``EtcdError`` that
keeps the status code and message. Errors of the transport (no connection,
deadline) get their own classes, because callers react to them differently:
they are the ones a retry or another endpoint may cure.
"""

from __future__ import annotations

import grpc

from synod import rpctypes
from synod.rpctypes import ErrorCode


class EtcdError(Exception):
    """A call failed: the gRPC status code and etcd's message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.name}, {self.message!r})"


class ConnectionFailedError(EtcdError):
    """No endpoint could be reached (or the connection broke before an answer)."""


class RequestTimeoutError(EtcdError):
    """The call's deadline passed before an answer (the request may or may not have been applied)."""


class ClientClosedError(EtcdError):
    """The client was closed."""

    def __init__(self) -> None:
        super().__init__(grpc.StatusCode.CANCELLED, "synod: the client is closed")


class WatchCanceledError(EtcdError):
    """The server ended a watch (its reason, if it gave one, is the message)."""


class LeaseExpiredError(EtcdError):
    """A lease kept alive by the client is gone: expired or revoked on the server."""


# Key-value.
class EmptyKeyError(EtcdError): ...


class KeyNotFoundError(EtcdError): ...


class ValueProvidedError(EtcdError): ...


class LeaseProvidedError(EtcdError): ...


class TooManyOpsError(EtcdError): ...


class DuplicateKeyError(EtcdError): ...


class CompactedError(EtcdError):
    """The revision asked for has been compacted away."""

    compact_revision = 0  # for a watch: the revision it was compacted at, as etcd tells it


class FutureRevisionError(EtcdError): ...


class NoSpaceError(EtcdError): ...


class RequestTooLargeError(EtcdError): ...


class TooManyRequestsError(EtcdError): ...


# Leases.
class LeaseNotFoundError(EtcdError): ...


class LeaseExistError(EtcdError): ...


class LeaseTTLTooLargeError(EtcdError): ...


# Membership.
class MemberExistError(EtcdError): ...


class PeerURLExistError(EtcdError): ...


class MemberNotEnoughStartedError(EtcdError): ...


class MemberBadURLsError(EtcdError): ...


class MemberNotFoundError(EtcdError): ...


class MemberNotLearnerError(EtcdError): ...


class LearnerNotReadyError(EtcdError): ...


class TooManyLearnersError(EtcdError): ...


# Auth.
class RootUserNotExistError(EtcdError): ...


class RootRoleNotExistError(EtcdError): ...


class UserAlreadyExistError(EtcdError): ...


class UserEmptyError(EtcdError): ...


class UserNotFoundError(EtcdError): ...


class RoleAlreadyExistError(EtcdError): ...


class RoleNotFoundError(EtcdError): ...


class RoleEmptyError(EtcdError): ...


class AuthFailedError(EtcdError): ...


class PermissionDeniedError(EtcdError): ...


class RoleNotGrantedError(EtcdError): ...


class PermissionNotGivenError(EtcdError): ...


class PermissionNotGrantedError(EtcdError): ...


class AuthNotEnabledError(EtcdError): ...


class InvalidAuthTokenError(EtcdError): ...


class InvalidAuthMgmtError(EtcdError): ...


class AuthOldRevisionError(EtcdError): ...


# Cluster state.
class NoLeaderError(EtcdError): ...


class NotLeaderError(EtcdError): ...


class LeaderChangedError(EtcdError): ...


class NotCapableError(EtcdError): ...


class StoppedError(EtcdError): ...


class ServerTimeoutError(EtcdError):
    """The server gave up waiting (``etcdserver: request timed out`` and its variants)."""


class UnhealthyError(EtcdError): ...


class CorruptError(EtcdError): ...


class NotSupportedForLearnerError(EtcdError): ...


class BadLeaderTransfereeError(EtcdError): ...


_BY_ERROR: dict[ErrorCode, type[EtcdError]] = {
    rpctypes.EMPTY_KEY: EmptyKeyError,
    rpctypes.KEY_NOT_FOUND: KeyNotFoundError,
    rpctypes.VALUE_PROVIDED: ValueProvidedError,
    rpctypes.LEASE_PROVIDED: LeaseProvidedError,
    rpctypes.TOO_MANY_OPS: TooManyOpsError,
    rpctypes.DUPLICATE_KEY: DuplicateKeyError,
    rpctypes.COMPACTED: CompactedError,
    rpctypes.FUTURE_REV: FutureRevisionError,
    rpctypes.NO_SPACE: NoSpaceError,
    rpctypes.REQUEST_TOO_LARGE: RequestTooLargeError,
    rpctypes.TOO_MANY_REQUESTS: TooManyRequestsError,
    rpctypes.LEASE_NOT_FOUND: LeaseNotFoundError,
    rpctypes.LEASE_EXIST: LeaseExistError,
    rpctypes.LEASE_TTL_TOO_LARGE: LeaseTTLTooLargeError,
    rpctypes.WATCH_CANCELED: WatchCanceledError,
    rpctypes.MEMBER_EXIST: MemberExistError,
    rpctypes.PEER_URL_EXIST: PeerURLExistError,
    rpctypes.MEMBER_NOT_ENOUGH_STARTED: MemberNotEnoughStartedError,
    rpctypes.MEMBER_BAD_URLS: MemberBadURLsError,
    rpctypes.MEMBER_NOT_FOUND: MemberNotFoundError,
    rpctypes.MEMBER_NOT_LEARNER: MemberNotLearnerError,
    rpctypes.LEARNER_NOT_READY: LearnerNotReadyError,
    rpctypes.TOO_MANY_LEARNERS: TooManyLearnersError,
    rpctypes.ROOT_USER_NOT_EXIST: RootUserNotExistError,
    rpctypes.ROOT_ROLE_NOT_EXIST: RootRoleNotExistError,
    rpctypes.USER_ALREADY_EXIST: UserAlreadyExistError,
    rpctypes.USER_EMPTY: UserEmptyError,
    rpctypes.USER_NOT_FOUND: UserNotFoundError,
    rpctypes.ROLE_ALREADY_EXIST: RoleAlreadyExistError,
    rpctypes.ROLE_NOT_FOUND: RoleNotFoundError,
    rpctypes.ROLE_EMPTY: RoleEmptyError,
    rpctypes.AUTH_FAILED: AuthFailedError,
    rpctypes.PERMISSION_DENIED: PermissionDeniedError,
    rpctypes.ROLE_NOT_GRANTED: RoleNotGrantedError,
    rpctypes.PERMISSION_NOT_GRANTED: PermissionNotGrantedError,
    rpctypes.PERMISSION_NOT_GIVEN: PermissionNotGivenError,
    rpctypes.AUTH_NOT_ENABLED: AuthNotEnabledError,
    rpctypes.INVALID_AUTH_TOKEN: InvalidAuthTokenError,
    rpctypes.INVALID_AUTH_MGMT: InvalidAuthMgmtError,
    rpctypes.AUTH_OLD_REVISION: AuthOldRevisionError,
    rpctypes.NO_LEADER: NoLeaderError,
    rpctypes.NOT_LEADER: NotLeaderError,
    rpctypes.LEADER_CHANGED: LeaderChangedError,
    rpctypes.NOT_CAPABLE: NotCapableError,
    rpctypes.STOPPED: StoppedError,
    rpctypes.TIMEOUT: ServerTimeoutError,
    rpctypes.TIMEOUT_DUE_TO_LEADER_FAIL: ServerTimeoutError,
    rpctypes.TIMEOUT_DUE_TO_CONNECTION_LOST: ServerTimeoutError,
    rpctypes.TIMEOUT_WAIT_APPLIED_INDEX: ServerTimeoutError,
    rpctypes.TIMEOUT_LEADER_TRANSFER: ServerTimeoutError,
    rpctypes.UNHEALTHY: UnhealthyError,
    rpctypes.CORRUPT: CorruptError,
    rpctypes.NOT_SUPPORTED_FOR_LEARNER: NotSupportedForLearnerError,
    rpctypes.BAD_LEADER_TRANSFEREE: BadLeaderTransfereeError,
}
_BY_MESSAGE: dict[str, type[EtcdError]] = {e.message: cls for e, cls in _BY_ERROR.items()}


def error_for(code: grpc.StatusCode, message: str) -> EtcdError:
    """The exception for an error status: by etcd's message, else by the transport's code."""
    cls = _BY_MESSAGE.get(message)
    if cls is None:
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            cls = RequestTimeoutError
        elif code == grpc.StatusCode.UNAVAILABLE:
            cls = ConnectionFailedError
        else:
            cls = EtcdError
    return cls(code, message)


def from_rpc_error(e: grpc.RpcError) -> EtcdError:
    """The exception for a failed grpcio call (sync or asyncio)."""
    code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
    details = e.details() if hasattr(e, "details") else str(e)
    return error_for(code or grpc.StatusCode.UNKNOWN, details or "")
