"""The README's commands as written, on a fresh machine: a copy of the repository's tracked files (a fresh
clone of the working tree) with a fake HOME, a PATH without any uv, and the system's Python (Debian's
/usr/bin/python3 has no uv module).

- The two first commands in order: ``./mart`` first (it installs uv with ``pip --user`` into
  ``~/.local/bin``, off PATH), then ``scripts/test.sh`` must find that uv too (``--check-setup`` runs only
  its setup: uv and the locked environment, not the suite).
- Every other ``./mart …`` command the README shows names a real command with real options, and the
  everyday ones run for real against the mart ``./mart run`` started (its own port and data dir).

Both scripts source ``scripts/lib/uv.sh``. uv's download cache is shared, so nothing but uv itself is fetched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from mart_common.polling import wait_until_sync
from mart_testkit.ports import free_port
from mart_testkit.repo import repository_files

REPO_ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PASSED_ON = ("SSL_", "PIP_", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
#: README placeholders and what stands for them
PLACEHOLDERS = {"ORDER_ID": "00000000-0000-0000-0000-000000000000", "GROUP": "order-service"}


@dataclass
class Clone:
    root: Path
    home: Path
    env: dict[str, str]
    first: subprocess.CompletedProcess[str]

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603
            list(args), cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout
        )


def _fresh_copy(dest: Path) -> None:
    for rel in repository_files(REPO_ROOT):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, target)


def _uv_cache_dir() -> str:
    found = subprocess.run(  # noqa: S603
        ["uv", "cache", "dir"],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    )
    return found.stdout.strip()


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Clone:
    """The fresh copy, after the README's first command (``./mart``, here with ``--help``)."""
    base = tmp_path_factory.mktemp("fresh")
    root, home = base / "online-mart", base / "home"
    home.mkdir()
    _fresh_copy(root)
    assert shutil.which("uv", path=SYSTEM_PATH) is None, "the system PATH must not have uv for this test"
    # the machine's network settings (CA bundle, proxy, pip options) stay; everything about uv goes
    env = {k: v for k, v in os.environ.items() if k.upper().startswith(PASSED_ON) and not k.startswith("UV_")}
    env |= {
        "HOME": str(home),
        "PATH": SYSTEM_PATH,
        "LANG": "C.UTF-8",
        "UV_CACHE_DIR": _uv_cache_dir(),  # packages come from the shared cache, not the network
        "UV_LINK_MODE": "symlink",  # a throwaway venv: link into the cache instead of copying (fast)
        "PIP_CACHE_DIR": str(Path.home() / ".cache" / "pip"),
        "UV_PYTHON_PREFERENCE": "only-system",
        "UV_PYTHON": "/usr/bin/python3",
    }
    first = subprocess.run(  # noqa: S603
        [str(root / "mart"), "--help"], cwd=root, env=env, capture_output=True, text=True, timeout=600
    )
    return Clone(root, home, env, first)


def readme_commands() -> list[str]:
    """Every ``./mart …`` command of the README (inline code and command blocks), comments dropped."""
    text = (REPO_ROOT / "README.md").read_text()
    found = re.findall(r"`(\./mart(?: [^`]*)?)`", text)
    found += re.findall(r"^(\./mart\b[^#\n]*)", text, re.M)
    commands = []
    for command in found:
        command = " ".join(command.split())
        if command not in commands:
            commands.append(command)
    return commands


def test_mart_first_then_test_script_find_the_same_uv(clone: Clone) -> None:
    assert clone.first.returncode == 0, clone.first.stdout + clone.first.stderr
    assert "Online Mart" in clone.first.stdout
    installed = clone.home / ".local" / "bin" / "uv"
    assert installed.exists(), f"./mart should have installed uv with pip --user:\n{clone.first.stderr}"

    second = clone.run("scripts/test.sh", "--check-setup", timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"at {installed}" in second.stdout, second.stdout


def test_every_mart_command_of_the_readme_exists_with_its_options(clone: Clone) -> None:
    commands = readme_commands()
    everyday = {"./mart run", "./mart bench", "./mart keys rotate", "./mart keys retire", "./mart seed"}
    assert everyday <= set(commands), commands
    unknown = []
    for command in commands:
        args = command.split()[1:]
        args = [PLACEHOLDERS.get(a, a) for a in args]
        result = clone.run("./mart", *args, "--help", timeout=120)
        if result.returncode != 0 or "usage" not in result.stdout.lower():
            unknown.append(f"{command}: {result.stdout[-300:]}{result.stderr[-300:]}")
    assert not unknown, "README commands the CLI refuses:\n" + "\n".join(unknown)


@pytest.fixture(scope="module")
def running_mart(clone: Clone) -> Iterator[tuple[str, Path]]:
    """``./mart run`` in the fresh copy, on a free port and a data dir of its own (not 8000 and .data:
    this machine is shared)."""
    port, data = free_port(), clone.root.parent / "data"
    log = (clone.root.parent / "mart-run.log").open("w")
    proc = subprocess.Popen(  # noqa: S603
        ["./mart", "run", "--port", str(port), "--data-dir", str(data)],
        cwd=clone.root,
        env=clone.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            log_text = (clone.root.parent / "mart-run.log").read_text()
            raise AssertionError(f"./mart run exited: {log_text[-2000:]}")
        return httpx.get(f"{url}/product-service/products", timeout=5).status_code == 200

    try:
        wait_until_sync(up, timeout=180, interval=0.5, retry_on=(httpx.HTTPError,))
        yield url, data
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def _an_order(url: str, data: Path) -> str:
    """An order placed by the demo customer ``./mart run`` created."""
    creds = json.loads((data / "demo-credentials.json").read_text())["customer"]
    with httpx.Client(base_url=url, timeout=30) as http:
        token = http.post(
            "/user-service/auth/login", data={"username": creds["email"], "password": creds["password"]}
        ).json()["access_token"]
        product = http.get("/product-service/products", params={"limit": 1}).json()["items"][0]
        address = {"line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "us"}
        body = {"items": [{"product_id": product["id"], "quantity": 1}], "shipping_address": address}
        headers = {"Authorization": f"Bearer {token}"}

        def placed() -> str | None:
            r = http.post("/order-service/orders", json=body, headers=headers)
            return r.json()["id"] if r.status_code == 201 else None  # the order service learns products

        return wait_until_sync(placed, timeout=60, interval=0.5)


def test_the_everyday_commands_work_against_a_running_mart(
    clone: Clone, running_mart: tuple[str, Path]
) -> None:
    url, data = running_mart
    order_id = _an_order(url, data)
    where = ["--data-dir", str(data)]
    expectations = {
        f"./mart seed --url {url}": "customer",
        "./mart events topics": "mart.orders.v1",
        "./mart events tail --no-follow --from-beginning --type OrderPlaced": order_id,
        f"./mart order timeline {order_id} --url {url}": "PENDING",
        "./mart dlq list GROUP": "dead letter(s)",
        "./mart dlq redrive GROUP": "re-drove 0",
        "./mart migrate": "",
        "./mart keys show": '"kid"',
        "./mart keys rotate": "new signing key",
        "./mart keys retire": "previous key removed",
    }
    readme = set(readme_commands())
    failed = []
    for command, expected in expectations.items():
        words = command.split()
        assert any(r.split()[:3] == words[:3] or r.split()[:2] == words[:2] for r in readme), command
        args = [PLACEHOLDERS["GROUP"] if w == "GROUP" else w for w in words[1:]]
        result = clone.run("./mart", *args, *where, timeout=300)
        out = result.stdout + result.stderr
        if result.returncode != 0 or expected not in out:
            failed.append(f"{command} (exit {result.returncode}): {out[-600:]}")
    assert not failed, "README commands that do not work as written:\n" + "\n".join(failed)
