"""Password hashes: bcrypt, as etcd stores them (Go's ``$2a$`` form).

Hashing costs tens of milliseconds at etcd's default cost, so callers run these
in a thread (the bcrypt library releases the GIL). bcrypt reads at most 72
bytes of a password; longer ones are cut there, as bcrypt always did.
"""

from __future__ import annotations

import bcrypt

DEFAULT_COST = 10  # etcd's --bcrypt-cost default (Go's bcrypt.DefaultCost)
MIN_COST, MAX_COST = 4, 31
_MAX_PASSWORD = 72


def valid_cost(cost: int) -> int:
    """etcd falls back to the default for a cost bcrypt does not accept."""
    return cost if MIN_COST <= cost <= MAX_COST else DEFAULT_COST


def hash_password(password: str, cost: int) -> bytes:
    salt = bcrypt.gensalt(rounds=valid_cost(cost), prefix=b"2a")
    return bcrypt.hashpw(password.encode()[:_MAX_PASSWORD], salt)


def matches(hashed: bytes, password: str) -> bool:
    try:
        return bcrypt.checkpw(password.encode()[:_MAX_PASSWORD], hashed)
    except ValueError:  # not a bcrypt hash (e.g. a user with no password)
        return False
