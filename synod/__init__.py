"""synod: an etcd-compatible, strongly consistent, distributed key-value store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
# The etcd API version synod speaks (what etcd reports as its cluster version).
ETCD_API_VERSION = "3.4"

if TYPE_CHECKING:
    from synod.client import AsyncClient, Client

__all__ = ["ETCD_API_VERSION", "AsyncClient", "Client", "__version__"]


def __getattr__(name: str) -> Any:
    """``synod.Client`` and ``synod.AsyncClient``, imported on first use (the server needs neither)."""
    if name in ("Client", "AsyncClient"):
        from synod import client

        return getattr(client, name)
    raise AttributeError(f"module 'synod' has no attribute {name!r}")
