"""The RSA key pair that signs access and refresh tokens, and its public JWKS.

The private key comes from settings (``MART_JWT_PRIVATE_KEY_PEM``) or from
``<data_dir>/keys/user-service-jwt.pem``, generated once on first start (mode 0600) and kept, so tokens
survive restarts. The ``kid`` is the key's RFC 7638 thumbprint.

Rotation (docs/adr/0019-signing-key-rotation.md): the previous key (``MART_JWT_PREVIOUS_KEY_PEM``, or
``<data_dir>/keys/user-service-jwt.previous.pem``) is published next to the current one, so tokens signed
before the rotation keep verifying everywhere until they expire; new tokens are signed with the current
key only. ``./mart keys rotate`` (or ``python -m user_service.keys rotate``) moves the current key file to
the previous one and generates a new current key; ``./mart keys retire`` removes the previous key (once the
longest token lifetime has passed). Each takes effect when the service (every replica) restarts.
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
PREVIOUS_KEY_FILE = Path("keys") / "user-service-jwt.previous.pem"
MIN_KEY_BITS = 2048


def _public_jwk(public_key: rsa.RSAPublicKey) -> dict[str, Any]:
    if not isinstance(public_key, rsa.RSAPublicKey) or public_key.key_size < MIN_KEY_BITS:
        raise ValueError(f"a JWT signing key must be an RSA key of at least {MIN_KEY_BITS} bits")
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(public_key, as_dict=True)
    jwk.pop("key_ops", None)  # RFC 7517: "use" says it; the two should not be combined
    kid = rfc7638_thumbprint(jwk)
    return {**jwk, "kid": kid, "use": "sig", "alg": ALGORITHM}


def load_public_key(pem: str | bytes) -> rsa.RSAPublicKey:
    """The public half of a PEM key, private or public (literal ``\\n`` accepted)."""
    if isinstance(pem, str):
        pem = pem.replace("\\n", "\n").encode()
    if b"PRIVATE KEY" in pem:
        return serialization.load_pem_private_key(pem, password=None).public_key()  # type: ignore[return-value]
    return serialization.load_pem_public_key(pem)  # type: ignore[return-value]


class KeyStore:
    """The RSA private key that signs, its ``kid``, and the JWKS: its public half, then the previous
    key's (during a rotation) so tokens signed before the rotation still verify."""

    def __init__(self, private_key: rsa.RSAPrivateKey, *, previous: rsa.RSAPublicKey | None = None) -> None:
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise ValueError(f"the JWT signing key must be an RSA key of at least {MIN_KEY_BITS} bits")
        self.private_key = private_key
        self.public_key = private_key.public_key()
        self._jwk = _public_jwk(self.public_key)
        self.kid = self._jwk["kid"]
        self._previous_jwk = _public_jwk(previous) if previous is not None else None
        if self._previous_jwk is not None and self._previous_jwk["kid"] == self.kid:
            self._previous_jwk = None  # "rotated" to the same key: publish it once

    @property
    def previous_kid(self) -> str | None:
        return self._previous_jwk["kid"] if self._previous_jwk else None

    def with_previous(self, previous: rsa.RSAPublicKey | None) -> KeyStore:
        return KeyStore(self.private_key, previous=previous)

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
        """The public JWK Set served at ``/.well-known/jwks.json``: the current key first."""
        return {"keys": [dict(k) for k in (self._jwk, self._previous_jwk) if k is not None]}

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
    """The signing keys: from settings, else from the key file, else generated once and written to it;
    with the previous key (settings, else the previous key file) when a rotation is in progress."""
    store = _with_previous(settings, existing_key(settings) or _create_key(settings))
    if store.previous_kid:
        log.info("jwt_previous_key_published", kid=store.kid, previous_kid=store.previous_kid)
    return store


def existing_keys(settings: ServiceSettings) -> KeyStore | None:
    """The signing keys as :func:`load_or_create_keys` finds them, without creating one: ``None`` before the
    user service's first start (``./mart keys show``)."""
    store = existing_key(settings)
    return _with_previous(settings, store) if store is not None else None


def existing_key(settings: ServiceSettings) -> KeyStore | None:
    pem = getattr(settings, "jwt_private_key_pem", None)
    if pem:
        return KeyStore.from_pem(pem)
    path = settings.data_dir / KEY_FILE
    return KeyStore.from_pem(path.read_bytes()) if path.exists() else None


def _with_previous(settings: ServiceSettings, store: KeyStore) -> KeyStore:
    previous_pem = getattr(settings, "jwt_previous_key_pem", None)
    previous_path = settings.data_dir / PREVIOUS_KEY_FILE
    if not previous_pem and previous_path.exists():
        previous_pem = previous_path.read_bytes()
    return store.with_previous(load_public_key(previous_pem)) if previous_pem else store


def _create_key(settings: ServiceSettings) -> KeyStore:
    path = settings.data_dir / KEY_FILE
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


def rotate_key_files(data_dir: Path) -> KeyStore:
    """Rotation with key files: the current key becomes the previous one, a new current key is generated.
    Restart every replica afterwards; ``retire_previous_key_file`` once the old tokens have expired."""
    current, previous = data_dir / KEY_FILE, data_dir / PREVIOUS_KEY_FILE
    if not current.exists():
        raise FileNotFoundError(f"no signing key to rotate at {current}")
    store = KeyStore.generate()
    staged = current.with_suffix(".new")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(store.private_pem())
    os.replace(current, previous)
    os.replace(staged, current)
    log.info("jwt_key_rotated", kid=store.kid)
    return store


def retire_previous_key_file(data_dir: Path) -> bool:
    """Stop publishing the previous key (after the next restart); True if there was one."""
    path = data_dir / PREVIOUS_KEY_FILE
    if not path.exists():
        return False
    path.unlink()
    return True


def main(argv: list[str] | None = None) -> int:
    """``python -m user_service.keys rotate|retire|show`` on ``MART_DATA_DIR``'s key files."""
    import argparse

    from user_service.settings import UserSettings

    parser = argparse.ArgumentParser(prog="python -m user_service.keys", description=main.__doc__)
    parser.add_argument("command", choices=["rotate", "retire", "show"])
    args = parser.parse_args(argv)
    settings = UserSettings()
    if args.command == "rotate":
        print(
            f"new signing key {rotate_key_files(settings.data_dir).kid}; restart every user-service replica"
        )
    elif args.command == "retire":
        print("previous key removed" if retire_previous_key_file(settings.data_dir) else "no previous key")
    else:
        print(json.dumps(load_or_create_keys(settings).jwks(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
