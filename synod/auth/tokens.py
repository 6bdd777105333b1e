"""Auth tokens, as etcd issues them (``--auth-token``).

- ``simple`` (the default): ``<16 random letters>.<log index>``. The letters are
  chosen by the member that takes the Authenticate request; every member learns
  the token when the entry is applied (so the index tells a member whether it
  has seen it yet). Tokens live in memory only, for ``--auth-token-ttl`` seconds
  after their last use; a restart forgets them, and clients authenticate again.
- ``jwt,pub-key=…,priv-key=…,sign-method=…,ttl=…``: a signed JWT with the
  claims ``username``, ``revision`` and ``exp``; any member holding the key
  checks it without state.

Time and randomness are injected: ``clock`` is monotonic seconds (simple
token expiry), ``now`` wall seconds (JWT ``exp``).
"""

from __future__ import annotations

import random
import secrets
import string
from collections.abc import Callable
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from grpc import StatusCode

from synod.auth.store import AuthInfo
from synod.duration import parse_duration, to_seconds
from synod.rpctypes import ErrorCode, RPCError

SIMPLE_TOKEN_LENGTH = 16
DEFAULT_TTL = 300.0  # seconds: etcd's --auth-token-ttl and JWT ttl default
_LETTERS = string.ascii_letters
_PURGE_INTERVAL = 1.0  # etcd's simpleTokenTTLResolution
_JWT_METHODS = {
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512", "HS256", "HS384", "HS512",
}  # fmt: skip
VERIFY_ONLY = ErrorCode(StatusCode.UNKNOWN, "auth: token signing attempted with verify-only key")


class InvalidAuthOptions(ValueError):
    """``--auth-token`` cannot be used; the message says why (etcd's words where it has them)."""


class TokenProvider(Protocol):
    simple: bool

    def prefix(self) -> str:
        """What the Authenticate entry carries (simple tokens: the random letters)."""

    def assign(self, username: str, revision: int, prefix: str, index: int) -> str: ...

    def info(self, token: str, revision: int) -> AuthInfo | None:
        """Who the token is for, or None if it is not (or no longer) valid."""

    def invalidate_user(self, username: str) -> None: ...

    def enable(self) -> None: ...

    def disable(self) -> None: ...


def simple_token_index(token: str) -> int | None:
    """The log index in a simple token, or None if it is not shaped as one."""
    parts = token.split(".")
    if len(parts) != 2:
        return None
    try:
        return int(parts[1])
    except ValueError:
        return None


class SimpleTokens:
    simple = True

    def __init__(self, ttl: float, clock: Callable[[], float], rng: random.Random | None = None) -> None:
        self._ttl = ttl if ttl > 0 else DEFAULT_TTL
        self._clock = clock
        self._rng = rng if rng is not None else secrets.SystemRandom()
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (user, expiry)
        self._enabled = False
        self._purged = clock()

    def prefix(self) -> str:
        return "".join(self._rng.choice(_LETTERS) for _ in range(SIMPLE_TOKEN_LENGTH))

    def assign(self, username: str, revision: int, prefix: str, index: int) -> str:
        token = f"{prefix}.{index}"
        if self._enabled:
            now = self._clock()
            self._purge(now)
            self._tokens[token] = (username, now + self._ttl)
        return token

    def info(self, token: str, revision: int) -> AuthInfo | None:
        found = self._tokens.get(token)
        if found is None:
            return None
        now = self._clock()
        username, expiry = found
        if now > expiry:
            del self._tokens[token]
            return None
        self._tokens[token] = (username, now + self._ttl)  # each use extends it
        return AuthInfo(username, revision)

    def _purge(self, now: float) -> None:
        if now - self._purged < _PURGE_INTERVAL:
            return
        self._purged = now
        for token in [t for t, (_, expiry) in self._tokens.items() if now > expiry]:
            del self._tokens[token]

    def invalidate_user(self, username: str) -> None:
        for token in [t for t, (user, _) in self._tokens.items() if user == username]:
            del self._tokens[token]

    def enable(self) -> None:
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False
        self._tokens.clear()


class JWTTokens:
    simple = False

    def __init__(self, method: str, signing_key: Any, verify_key: Any, ttl: float, now: Callable[[], float]):
        self._method = method
        self._signing_key = signing_key  # None: this member only verifies
        self._verify_key = verify_key
        self._ttl = ttl
        self._now = now

    def prefix(self) -> str:
        return ""

    def assign(self, username: str, revision: int, prefix: str, index: int) -> str:
        if self._signing_key is None:
            raise RPCError(VERIFY_ONLY)
        claims = {"username": username, "revision": revision, "exp": int(self._now() + self._ttl)}
        return jwt.encode(claims, self._signing_key, algorithm=self._method)

    def info(self, token: str, revision: int) -> AuthInfo | None:
        try:
            claims = jwt.decode(
                token, self._verify_key, algorithms=[self._method], options={"verify_exp": False}
            )
        except jwt.InvalidTokenError:
            return None
        username, rev, exp = claims.get("username"), claims.get("revision"), claims.get("exp")
        if not isinstance(username, str) or not isinstance(rev, int | float):
            return None
        if isinstance(exp, int | float) and self._now() > exp:
            return None
        return AuthInfo(username, int(rev))

    def invalidate_user(self, username: str) -> None:
        pass  # a JWT stays valid until it expires, as in etcd

    def enable(self) -> None:
        pass

    def disable(self) -> None:
        pass


def _options(spec: str) -> tuple[str, dict[str, str]]:
    kind, *rest = spec.split(",")
    opts: dict[str, str] = {}
    for item in rest:
        pair = item.split("=")
        if len(pair) != 2 or pair[0] in opts:
            raise InvalidAuthOptions("auth: invalid auth options")
        opts[pair[0]] = pair[1]
    return kind, opts


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise InvalidAuthOptions(f"auth: cannot read {path}: {e.strerror}") from None


def _jwt(opts: dict[str, str], now: Callable[[], float]) -> JWTTokens:
    method = opts.get("sign-method", "")
    if method not in _JWT_METHODS:
        raise InvalidAuthOptions("auth: invalid auth signature method")
    ttl = DEFAULT_TTL
    if opts.get("ttl"):
        try:
            ttl = to_seconds(parse_duration(opts["ttl"]))
        except ValueError as e:
            raise InvalidAuthOptions(f"auth: invalid auth options: {e}") from None
    private = _read(opts["priv-key"]) if opts.get("priv-key") else b""
    public = _read(opts["pub-key"]) if opts.get("pub-key") else b""
    if method.startswith("HS"):
        if not private:
            raise InvalidAuthOptions("auth: missing key data")
        return JWTTokens(method, private, private, ttl, now)
    want = ec.EllipticCurvePrivateKey if method.startswith("ES") else rsa.RSAPrivateKey
    try:
        priv = serialization.load_pem_private_key(private, None) if private else None
        pub = serialization.load_pem_public_key(public) if public else None
    except (ValueError, TypeError) as e:
        raise InvalidAuthOptions(f"auth: invalid key: {e}") from None
    if priv is not None and not isinstance(priv, want):
        raise InvalidAuthOptions("auth: invalid key: the private key does not fit the sign method")
    if priv is None:
        if pub is None:
            raise InvalidAuthOptions("auth: missing key data")
        return JWTTokens(method, None, pub, ttl, now)
    derived = priv.public_key()
    if pub is not None and pub.public_numbers() != derived.public_numbers():  # type: ignore[union-attr]
        raise InvalidAuthOptions("auth: public and private keys don't match")
    return JWTTokens(method, priv, derived, ttl, now)


def token_provider(
    spec: str, *, ttl: float, clock: Callable[[], float], now: Callable[[], float]
) -> TokenProvider:
    """The provider ``--auth-token`` names (``simple``, or ``jwt,…``)."""
    kind, opts = _options(spec)
    if kind == "simple":
        return SimpleTokens(ttl, clock)
    if kind == "jwt":
        return _jwt(opts, now)
    raise InvalidAuthOptions("auth: invalid auth options")
