"""The RSA key pair that signs access and refresh tokens, and its public JWKS.

The private key comes from settings (``MART_JWT_PRIVATE_KEY_PEM``) or from
``<data_dir>/keys/user-service-jwt.pem``, generated once on first start (mode 0600) and kept, so tokens
survive restarts. The ``kid`` is the key's RFC 7638 thumbprint.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import jwt
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from mart_common.auth import ALGORITHM, TokenVerifier
from mart_common.settings import ServiceSettings

log = structlog.get_logger(__name__)

KEY_FILE = Path("keys") / "user-service-jwt.pem"
MIN_KEY_BITS = 2048


class KeyStore:
    """One RSA private key, its ``kid`` and the JWKS that publishes its public half."""

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        if not isinstance(private_key, rsa.RSAPrivateKey) or private_key.key_size < MIN_KEY_BITS:
            raise ValueError(f"the JWT signing key must be an RSA key of at least {MIN_KEY_BITS} bits")
        self.private_key = private_key
        self.public_key = private_key.public_key()
        self._jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.public_key, as_dict=True)
        self._jwk.pop("key_ops", None)  # RFC 7517: "use" below says it; the two should not be combined
        self.kid = rfc7638_thumbprint(self._jwk)

    @classmethod
    def generate(cls) -> KeyStore:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=MIN_KEY_BITS))

    @classmethod
    def from_pem(cls, pem: str | bytes) -> KeyStore:
        if isinstance(pem, str):
            # Environment variables often carry the PEM with literal "\n".
            pem = pem.replace("\\n", "\n").encode()
        key = serialization.load_pem_private_key(pem, password=None)
        return cls(key)  # type: ignore[arg-type]

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(
            claims, self.private_key, algorithm=ALGORITHM, headers={"kid": self.kid, "typ": "JWT"}
        )

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set served at ``/.well-known/jwks.json``."""
        return {"keys": [{**self._jwk, "kid": self.kid, "use": "sig", "alg": ALGORITHM}]}

    async def jwks_provider(self) -> dict[str, Any]:
        """For in-process verifiers (embedded mode, tests): the JWKS without HTTP."""
        return self.jwks()

    def verifier(self, issuer: str) -> TokenVerifier:
        """A verifier of the tokens this key signs."""
        return TokenVerifier(issuer, jwks_provider=self.jwks_provider)


def rfc7638_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint of an RSA public key (base64url SHA-256 of the canonical members)."""
    canonical = json.dumps(
        {"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"), sort_keys=True
    )
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def load_or_create_keys(settings: ServiceSettings) -> KeyStore:
    """The signing keys: from settings, else from the key file, else generated once and written to it."""
    pem = getattr(settings, "jwt_private_key_pem", None)
    if pem:
        return KeyStore.from_pem(pem)
    path = settings.data_dir / KEY_FILE
    if path.exists():
        return KeyStore.from_pem(path.read_bytes())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = KeyStore.generate()
    # Replicas starting together (docs/scaling.md) must neither overwrite each other's key nor read a
    # half-written file: write a private temporary file, then link it into place (atomic; the first wins).
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(store.private_pem())
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        return KeyStore.from_pem(path.read_bytes())
    finally:
        tmp.unlink(missing_ok=True)
    log.info("jwt_key_generated", path=str(path), kid=store.kid)
    return store
