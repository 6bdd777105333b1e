"""The exceptions of ``synod.client.concurrency``: the client's own, not errors etcd answers.

Their messages are clientv3/concurrency's and contrib/recipes' (``mutex: session
is expired``, ``election: no leader``, ...).
"""

from __future__ import annotations


class ConcurrencyError(Exception):
    """The base of this package's errors."""


class SessionExpiredError(ConcurrencyError):
    """The session's lease is gone (expired, revoked, or no longer renewed): its keys are deleted.

    A locker (or a campaigner) whose session is lost while it waits, or at the moment
    it would have acquired, is told so with this instead of being handed a lock it
    does not hold.
    """

    def __init__(self, message: str = "mutex: session is expired") -> None:
        super().__init__(message)


class ElectionNotLeaderError(ConcurrencyError):
    """A proclamation by a campaigner that is not (or no longer) the leader."""

    def __init__(self) -> None:
        super().__init__("election: not leader")


class ElectionNoLeaderError(ConcurrencyError):
    """Nobody leads the election."""

    def __init__(self) -> None:
        super().__init__("election: no leader")


class KeyExistsError(ConcurrencyError):
    def __init__(self) -> None:
        super().__init__("key already exists")


class TooManyClientsError(ConcurrencyError):
    """More participants entered a double barrier than its count."""

    def __init__(self) -> None:
        super().__init__("too many clients")
