"""Token providers on injected clocks: simple tokens expire a TTL after their last use and die with
their user; JWTs carry etcd's claims, and a member holding only the public key verifies but can't sign."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from synod.auth.store import AuthInfo
from synod.auth.tokens import (
    InvalidAuthOptions,
    SimpleTokens,
    simple_token_index,
    token_provider,
)
from synod.rpctypes import RPCError
from tests.support.keys import write_pem_pair


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_simple_tokens_live_a_ttl_after_their_last_use() -> None:
    clock = Clock()
    tokens = SimpleTokens(10, clock, random.Random(7))
    tokens.enable()
    prefix = tokens.prefix()
    assert len(prefix) == 16 and prefix.isalpha()
    token = tokens.assign("alice", 3, prefix, 42)
    assert token == f"{prefix}.42" and simple_token_index(token) == 42
    clock.now += 9
    assert tokens.info(token, 5) == AuthInfo("alice", 5)  # the store's revision, and one more TTL
    clock.now += 9
    assert tokens.info(token, 5) is not None
    clock.now += 11
    assert tokens.info(token, 5) is None


def test_simple_tokens_die_with_their_user_and_with_auth() -> None:
    tokens = SimpleTokens(300, Clock(), random.Random(1))
    tokens.enable()
    a = tokens.assign("alice", 1, tokens.prefix(), 1)
    b = tokens.assign("bob", 1, tokens.prefix(), 2)
    tokens.invalidate_user("alice")
    assert tokens.info(a, 1) is None and tokens.info(b, 1) is not None
    tokens.disable()
    assert tokens.info(b, 1) is None
    assert simple_token_index("no-dot") is None and simple_token_index("a.b") is None


def test_jwt_claims_expiry_and_verify_only_members(tmp_path: Path) -> None:
    priv, pub = write_pem_pair(ec.generate_private_key(ec.SECP256R1()), tmp_path, "k")
    wall = Clock()
    signer = token_provider(f"jwt,priv-key={priv},sign-method=ES256,ttl=1m", ttl=0, clock=Clock(), now=wall)
    verifier = token_provider(f"jwt,pub-key={pub},sign-method=ES256", ttl=0, clock=Clock(), now=wall)
    token = signer.assign("root", 9, signer.prefix(), 0)
    assert verifier.info(token, 12) == AuthInfo("root", 9)  # the revision it was issued at
    wall.now += 61
    assert verifier.info(token, 12) is None
    with pytest.raises(RPCError, match="verify-only key"):
        verifier.assign("root", 1, "", 0)
    assert verifier.info("not.a.jwt", 1) is None


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("bogus", "invalid auth options"),
        ("jwt,sign-method", "invalid auth options"),
        ("jwt,ttl=1m,ttl=2m", "invalid auth options"),
        ("jwt,sign-method=XX1", "invalid auth signature method"),
        ("jwt,sign-method=RS256", "missing key data"),
        ("jwt,sign-method=HS256", "missing key data"),
    ],
)
def test_bad_token_options(spec: str, words: str) -> None:
    with pytest.raises(InvalidAuthOptions, match=words):
        token_provider(spec, ttl=0, clock=Clock(), now=Clock())
