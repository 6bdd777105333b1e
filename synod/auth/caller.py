"""The token of the call being served.

gRPC metadata travels with a call in Go's context; here the transport that
receives a call (``token`` metadata, or the gateway's ``Authorization``
header) sets ``CALLER_TOKEN`` in the call's own task, and ``EtcdServer`` reads
it where etcd reads the context. Tasks started while serving the call inherit
it (the member's in-process client, serving Lock and Election, acts as the
caller); the member's background tasks start with no token.
"""

from __future__ import annotations

from contextvars import ContextVar

CALLER_TOKEN: ContextVar[str | None] = ContextVar("synod_caller_token", default=None)

# The gRPC metadata keys etcd reads a token from, in its order: clientv3's, then the gateway's.
TOKEN_KEYS = (b"token", b"authorization")
