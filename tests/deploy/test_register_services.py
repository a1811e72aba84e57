"""register_services.sh against a fake Kong Admin API (http.server in a thread).

Covers: DB-less (POST /config, 201 then 304 on the second run), the real JWT key replacing the placeholder,
Kong unreachable / rejecting / not Kong, the JWKS missing, and DB-backed Kong through Admin API PUTs.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from mart_testkit.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "register_services.sh"


def b64u(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def keypair():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = key.public_key()
    pem = pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    nums = pub.public_numbers()
    jwks = {
        "keys": [
            {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": "k1", "n": b64u(nums.n), "e": b64u(nums.e)}
        ]
    }
    return pem, jwks


class FakeKong:
    """Just enough of Kong's Admin API (and the user-service JWKS) for the script."""

    def __init__(
        self, database: str = "off", jwks: dict | None = None, reject: bool = False, not_kong: bool = False
    ):
        self.database, self.jwks, self.reject, self.not_kong = database, jwks, reject, not_kong
        self.config_hash: str | None = None
        self.config_text: str | None = None
        self.posts = 0
        self.entities: dict[str, dict] = {}
        self.puts: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, body=None):
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                path = urlsplit(self.path).path
                if path == "/":
                    if fake.not_kong:
                        return self.reply(200, {"hello": "world"})
                    return self.reply(200, {"version": "3.9.1", "configuration": {"database": fake.database}})
                if path == "/.well-known/jwks.json" and fake.jwks is not None:
                    return self.reply(200, fake.jwks)
                if path in fake.entities:
                    return self.reply(200, fake.entities[path])
                return self.reply(404, {"message": "Not found"})

            def do_POST(self):
                url = urlsplit(self.path)
                if url.path != "/config" or fake.database != "off":
                    return self.reply(404, {"message": "Not found"})
                body = self.rfile.read(int(self.headers["Content-Length"]))
                head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
                msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
                parts = {
                    p.get_param("name", header="content-disposition"): p.get_content()
                    for p in msg.iter_parts()
                }
                config = parts["config"]
                config = config.decode() if isinstance(config, bytes) else config
                fake.posts += 1
                if fake.reject:
                    return self.reply(400, {"message": "declarative config is invalid", "code": 14})
                parsed = yaml.safe_load(config)
                if parsed.get("_format_version") != "3.0":
                    return self.reply(400, {"message": "bad _format_version"})
                digest = hashlib.md5(config.encode(), usedforsecurity=False).hexdigest()
                if "check_hash=1" in url.query and digest == fake.config_hash:
                    return self.reply(304)
                fake.config_hash, fake.config_text = digest, config
                return self.reply(201, parsed)

            def do_PUT(self):
                path = urlsplit(self.path).path
                if fake.database == "off":
                    return self.reply(405, {"message": "cannot PUT in DB-less mode"})
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                existed = path in fake.entities
                entity = dict(body)
                entity["id"] = (
                    fake.entities[path]["id"]
                    if existed
                    else (path.rsplit("/", 1)[1] if path.startswith("/plugins/") else str(uuid.uuid4()))
                )
                fake.entities[path] = entity
                fake.puts.append(path)
                return self.reply(200 if existed else 201, entity)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def run_script(env_extra: dict[str, str], path_without_deck: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MART_", "KONG_"))}
    env.update(env_extra)
    if path_without_deck:
        bindir = Path(env_extra["TMP_BIN"])
        env["PATH"] = str(bindir)  # no deck: the Admin API fallback
    bash = shutil.which("bash")
    assert bash
    return subprocess.run(  # noqa: S603 - our own script
        [bash, str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_db_less_applies_then_reports_unchanged(keypair):
    pem, jwks = keypair
    with FakeKong(jwks=jwks) as kong:
        env = {"KONG_ADMIN_URL": kong.url, "MART_JWKS_URL": f"{kong.url}/.well-known/jwks.json"}
        first = run_script(env)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "changed: declarative configuration loaded" in first.stdout
        applied = yaml.safe_load(kong.config_text)
        original = yaml.safe_load((ROOT / "kong" / "kong.yaml").read_text())
        key = applied["consumers"][0]["jwt_secrets"][0]["rsa_public_key"]
        assert key.strip() == pem.strip(), "the JWKS key must replace the placeholder"
        assert key != original["consumers"][0]["jwt_secrets"][0]["rsa_public_key"]
        applied["consumers"][0]["jwt_secrets"][0]["rsa_public_key"] = "x"
        original["consumers"][0]["jwt_secrets"][0]["rsa_public_key"] = "x"
        assert applied == original, "everything but the key is kong/kong.yaml as committed"

        second = run_script(env)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "unchanged" in second.stdout
        assert kong.posts == 2


def test_public_key_file_wins_over_jwks(tmp_path, keypair):
    pem, _ = keypair
    (tmp_path / "pub.pem").write_text(pem)
    with FakeKong(jwks=None) as kong:
        proc = run_script(
            {
                "KONG_ADMIN_URL": kong.url,
                "MART_JWT_PUBLIC_KEY_FILE": str(tmp_path / "pub.pem"),
                "MART_JWKS_URL": f"http://127.0.0.1:{free_port()}/jwks.json",
            }
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert pem.strip() in "\n".join(ln.strip() for ln in kong.config_text.splitlines())


def test_unreachable_kong_fails_loudly():
    proc = run_script({"KONG_ADMIN_URL": f"http://127.0.0.1:{free_port()}", "CURL_TIMEOUT": "3"})
    assert proc.returncode != 0
    assert "Kong Admin API unreachable" in proc.stderr


def test_not_a_kong_admin_api_fails():
    with FakeKong(not_kong=True) as kong:
        proc = run_script({"KONG_ADMIN_URL": kong.url})
    assert proc.returncode != 0
    assert "not a Kong Admin API" in proc.stderr


def test_rejected_config_is_not_a_success(keypair):
    _, jwks = keypair
    with FakeKong(jwks=jwks, reject=True) as kong:
        proc = run_script({"KONG_ADMIN_URL": kong.url, "MART_JWKS_URL": f"{kong.url}/.well-known/jwks.json"})
    assert proc.returncode != 0
    assert "HTTP 400" in proc.stderr and "declarative config is invalid" in proc.stderr


def test_missing_jwks_fails_unless_placeholder_allowed():
    with FakeKong(jwks=None) as kong:
        env = {"KONG_ADMIN_URL": kong.url, "MART_JWKS_URL": f"{kong.url}/.well-known/jwks.json"}
        proc = run_script(env)
        assert proc.returncode != 0 and "cannot get the JWT public key" in proc.stderr
        assert kong.posts == 0
        proc = run_script({**env, "MART_ALLOW_PLACEHOLDER_KEY": "1"})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "WARNING" in proc.stdout and kong.posts == 1


def test_db_backed_without_deck_puts_entities_idempotently(tmp_path, keypair):
    _, jwks = keypair
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("curl", "mktemp", "dirname", "tr", "grep", "cp", "rm", "cat", "head"):
        found = shutil.which(tool)
        assert found, tool
        (bindir / tool).symlink_to(found)
    with FakeKong(database="postgres", jwks=jwks) as kong:
        env = {
            "KONG_ADMIN_URL": kong.url,
            "MART_JWKS_URL": f"{kong.url}/.well-known/jwks.json",
            "TMP_BIN": str(bindir),
        }
        first = run_script(env, path_without_deck=True)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "Admin API PUTs" in first.stdout
        summary = re.search(r"summary: created=(\d+), updated=(\d+), unchanged=(\d+)", first.stdout)
        assert summary and int(summary[1]) > 0 and summary[2] == "0", first.stdout
        conf = yaml.safe_load((ROOT / "kong" / "kong.yaml").read_text())
        for svc in conf["services"]:
            assert kong.entities[f"/services/{svc['name']}"]["host"] == urlsplit(svc["url"]).hostname
            for route in svc["routes"]:
                assert f"/routes/{route['name']}" in kong.entities
        assert "/consumers/mart-user-service-tokens/jwt/mart-user-service" in kong.entities
        n_puts = len(kong.puts)

        second = run_script(env, path_without_deck=True)
        assert second.returncode == 0, second.stdout + second.stderr
        assert re.search(r"summary: created=0, updated=0, unchanged=\d+", second.stdout), second.stdout
        assert len(kong.puts) == n_puts, "the second run must not write anything"
