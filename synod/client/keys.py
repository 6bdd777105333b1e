"""Keys as the client takes them (``str`` is UTF-8, ``bytes`` as is) and etcd's range ends."""

from __future__ import annotations

Key = str | bytes

# The range end meaning "every key from the start key on" (and, with the key "\0", every key).
FROM_KEY = b"\0"


def to_bytes(key: Key) -> bytes:
    return key.encode() if isinstance(key, str) else key


def prefix_end(key: bytes) -> bytes:
    """The end of the range of keys starting with ``key`` (``\\0``, all keys after, if there is none)."""
    end = bytearray(key)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return FROM_KEY


def key_range(
    key: Key, range_end: Key | None = None, prefix: bool = False, from_key: bool = False
) -> tuple[bytes, bytes]:
    """(key, range_end) of a request, as clientv3's options build them.

    An empty key with ``prefix`` (or ``from_key``) means every key: ``("\\0", "\\0")``.
    """
    if prefix + from_key + (range_end is not None) > 1:
        raise ValueError("give one of range_end, prefix and from_key")
    k = to_bytes(key)
    if from_key:
        return k or FROM_KEY, FROM_KEY
    if prefix:
        return (k, prefix_end(k)) if k else (FROM_KEY, FROM_KEY)
    return k, to_bytes(range_end) if range_end is not None else b""
