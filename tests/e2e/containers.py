"""The compose stack in real containers, for the ``containers`` target of the end-to-end suite.

compose.yaml + compose.local.yaml (docs/docker.md, "Without a registry") under podman-compose, in a compose
project of its own (its own containers, network and volumes) with free host ports and fresh database
passwords, so runs never see each other. The images are built first by scripts/containers/build.sh (layer
cache: seconds when nothing changed).

podman < 4.6 cannot wait for ``condition: service_healthy`` (podman-compose skips that condition with a
warning), and without systemd nothing schedules health checks; so the stack is started the way
``depends_on`` says: infrastructure first, then user_service, then the other five, each step waiting until
the containers' own health checks (run with ``podman healthcheck run``) pass.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = REPO_ROOT / "scripts" / "containers" / "containers.conf"
BUILD = REPO_ROOT / "scripts" / "containers" / "build.sh"
COMPOSE_FILES = [REPO_ROOT / "compose.yaml", REPO_ROOT / "compose.local.yaml"]
INFRA = [
    "user_db",
    "product_db",
    "inventory_db",
    "order_db",
    "notification_db",
    "payment_db",
    "kafka",
    "mailpit",
]
APPS = [
    "user_service",
    "product_service",
    "inventory_service",
    "order_service",
    "notification_service",
    "payment_service",
]
PASSWORD_VARS = [f"{s.removesuffix('_service').upper()}_DB_PASSWORD" for s in APPS]
WEB = "web_service"  # the web front (docs/web.md): no database, started once the services are healthy


class ContainerStack:
    def __init__(self, ports: dict[str, int], kafka_port: int, smtp_port: int, mail_ui_port: int,
                 admin_email: str, admin_password: str) -> None:  # fmt: skip
        self.project = f"marte2e{uuid.uuid4().hex[:8]}"
        self.ports = ports
        self.kafka_port = kafka_port
        self.env = {
            **os.environ,
            "CONTAINERS_CONF": str(CONTAINERS_CONF),
            "MART_KAFKA_HOST_PORT": str(kafka_port),
            "MART_SMTP_HOST_PORT": str(smtp_port),
            "MART_MAILPIT_HOST_PORT": str(mail_ui_port),
            "MART_ADMIN_EMAIL": admin_email,
            "MART_ADMIN_PASSWORD": admin_password,
            "MART_PAYMENT_PROVIDER": "fake",
            "MART_EMAIL_BACKEND": "smtp",
            **{var: secrets.token_urlsafe(18) for var in PASSWORD_VARS},
            **{f"MART_{svc.upper()}_HOST_PORT": str(port) for svc, port in ports.items()},
        }
        self.podman = shutil.which("podman") or "podman"
        self.podman_compose = str(REPO_ROOT / ".venv" / "bin" / "podman-compose")

    # --- commands ---------------------------------------------------------------------------------

    def compose(
        self, *args: str, timeout: float = 600, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        files = [a for f in COMPOSE_FILES for a in ("-f", str(f))]
        cmd = [self.podman_compose, "-p", self.project, *files, *args]
        proc = subprocess.run(  # noqa: S603
            cmd, cwd=REPO_ROOT, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd[3:])} -> {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
        return proc

    def podman_run(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(  # noqa: S603
            [self.podman, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def container(self, service: str) -> str:
        """podman-compose's container name for the service's (only) replica."""
        return f"{self.project}_{service}_1"

    def exec(self, service: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.podman_run("exec", self.container(service), *cmd, check=check)

    def inspect(self, service: str) -> dict:
        return json.loads(self.podman_run("inspect", self.container(service)).stdout)[0]

    def logs(self, service: str, tail: int = 40) -> str:
        proc = self.podman_run("logs", "--tail", str(tail), self.container(service), check=False)
        return proc.stdout + proc.stderr

    # --- life cycle -------------------------------------------------------------------------------

    def build(self) -> float:
        begun = time.monotonic()
        proc = subprocess.run(  # noqa: S603
            [str(BUILD)],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
        if proc.returncode != 0:
            raise AssertionError(
                f"scripts/containers/build.sh failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            )
        return time.monotonic() - begun

    def up(self, timeout: float = 300) -> None:
        """Infrastructure, then user_service (the JWKS the others fetch), then the other five and the web
        front."""
        self.compose("up", "-d", "--no-build", *INFRA)
        self.wait_healthy([s for s in INFRA if s != "mailpit"], timeout)
        self.compose("up", "-d", "--no-build", "--no-deps", "user_service")
        self.wait_healthy(["user_service"], timeout)
        self.compose("up", "-d", "--no-build", "--no-deps", *APPS[1:], WEB)
        self.wait_healthy([*APPS, WEB], timeout)

    def healthcheck(self, service: str) -> str:
        """Run the container's health check once (what a scheduler would do) and return the new status."""
        self.podman_run("healthcheck", "run", self.container(service), check=False)
        state = self.inspect(service)["State"]
        return (state.get("Health") or state.get("Healthcheck") or {}).get("Status", "")

    def wait_healthy(self, services: Iterable[str], timeout: float = 300) -> None:
        pending = list(services)
        deadline = time.monotonic() + timeout
        while pending:
            pending = [s for s in pending if self.healthcheck(s) != "healthy"]
            if not pending:
                return
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {s} ---\n{self.logs(s)}" for s in pending)
                raise AssertionError(f"not healthy after {timeout}s: {pending}\n{logs}")
            time.sleep(1)

    def restart(self, service: str, timeout: float = 180) -> None:
        self.podman_run("restart", "--time", "20", self.container(service), timeout=120)
        self.wait_healthy([service], timeout)

    def down(self) -> None:
        self.compose("down", "-v", "-t", "10", timeout=300, check=False)
