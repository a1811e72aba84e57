"""Demo credentials: the admin (``MART_ADMIN_EMAIL``/``MART_ADMIN_PASSWORD`` or generated) and the demo
customer, kept in ``<data dir>/demo-credentials.json`` (mode 0600; ``.data`` is never committed)."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

FILE_NAME = "demo-credentials.json"
DEFAULT_ADMIN_EMAIL = "admin@example.com"
CUSTOMER_EMAIL = "customer@example.com"


@dataclass(frozen=True)
class Account:
    email: str
    password: str
    from_env: bool = False


@dataclass(frozen=True)
class Credentials:
    admin: Account
    customer: Account
    path: Path


def _generate() -> str:
    return secrets.token_urlsafe(12)


def load_or_create(data_dir: Path) -> Credentials:
    """The credentials of this data dir, generating (and saving) what is missing.

    ``MART_ADMIN_EMAIL``/``MART_ADMIN_PASSWORD`` win for the admin when set; an env password is never
    written to the file.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / FILE_NAME
    stored: dict[str, dict[str, str]] = json.loads(path.read_text()) if path.exists() else {}
    admin_stored = stored.get("admin", {})
    customer_stored = stored.get("customer", {})
    env_email = os.environ.get("MART_ADMIN_EMAIL") or None
    env_password = os.environ.get("MART_ADMIN_PASSWORD") or None

    email = env_email or admin_stored.get("email") or DEFAULT_ADMIN_EMAIL
    if env_password:
        admin = Account(email, env_password, from_env=True)
        admin_file = {"email": email, "password_from": "MART_ADMIN_PASSWORD"}
    elif admin_stored.get("password") and admin_stored.get("email") == email:
        admin = Account(email, admin_stored["password"])
        admin_file = admin_stored
    else:
        admin = Account(email, _generate())
        admin_file = {"email": email, "password": admin.password}
    if not customer_stored.get("password"):
        customer_stored = {"email": CUSTOMER_EMAIL, "password": _generate()}
    wanted = {"admin": admin_file, "customer": customer_stored}
    if wanted != stored:
        _write_private(path, wanted)
    return Credentials(
        admin=admin, customer=Account(customer_stored["email"], customer_stored["password"]), path=path
    )


def _write_private(path: Path, data: dict[str, object]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
