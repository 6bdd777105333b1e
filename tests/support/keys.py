"""Key files for JWT tests: a private key and its public key written as PEM."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def write_pem_pair(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, directory: Path, name: str
) -> tuple[Path, Path]:
    """``<name>.key`` (PKCS#8) and ``<name>.pub`` (SubjectPublicKeyInfo) in ``directory``."""
    priv, pub = directory / f"{name}.key", directory / f"{name}.pub"
    priv.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return priv, pub


def rsa_pem_pair(directory: Path, name: str) -> tuple[Path, Path, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    priv, pub = write_pem_pair(key, directory, name)
    return priv, pub, key
