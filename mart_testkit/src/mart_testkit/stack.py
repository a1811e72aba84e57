"""A distributed mart for a test: the code behind ``mart dist up`` (``mart_cli.dist``), one process per
service (or several replicas), on fresh databases, a Kafka namespace of its own and free ports, removed
afterwards. The end-to-end, tracing, fault, replica and distributed fuzzing suites all start theirs here.

``mart_cli`` is the workspace's root project, installed wherever this development-only package is.

    with distributed_stack(tmp / "data", namespace="e2e", gateway=True) as stack:
        httpx.get(stack.ep.order("/orders"))

- Databases: one per service, created through the ``mart_test`` role and dropped on exit
  (``mart_testkit.fixtures.create_postgres_database``), so runs never see each other's data.
- Kafka: a fresh namespace (``mart_testkit.kafka.new_namespace``), its topics deleted on exit.
- ``keep=True`` leaves both for a look afterwards; the processes are always stopped.
- A start that fails raises ``AssertionError`` with the tail of every process's log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mart_cli import dist
from mart_cli.services import PROCESSES, SERVICES, Endpoints, Service

from .fixtures import create_postgres_database, drop_postgres_database
from .kafka import KAFKA_BOOTSTRAP, delete_namespace, new_namespace
from .ports import free_port


def _quiet(_message: str) -> None:
    """The launcher's progress lines: a test's output has no use for them."""


@dataclass
class DistributedStack:
    """A running distributed mart: its configuration (ports, databases, namespace, logs) and helpers."""

    cfg: dist.DistConfig
    ready_s: float = 0.0  # from the first process started to every one ready (and the gateway up)

    @property
    def ep(self) -> Endpoints:
        """Through the gateway when there is one, else each service on its own port."""
        return self.cfg.endpoints()

    @property
    def direct(self) -> Endpoints:
        return self.cfg.direct_endpoints()

    @property
    def gateway_url(self) -> str:
        assert self.cfg.gateway_port, "this stack has no gateway"
        return f"http://{self.cfg.host}:{self.cfg.gateway_port}"

    def db_dsn(self, package: str) -> str:
        """The service's database as asyncpg connects to it (no SQLAlchemy dialect)."""
        return self.cfg.database_urls[package].replace("postgresql+asyncpg://", "postgresql://")

    def log_lines(self, svc: Service) -> list[str]:
        """Every line every replica of ``svc`` logged."""
        out: list[str] = []
        for k in range(1, self.cfg.replica_count(svc) + 1):
            path = dist.log_path(self.cfg, dist.instance(self.cfg, svc, k))
            if path.exists():
                out += path.read_text(errors="replace").splitlines()
        return out

    def logs(self, lines: int = 20) -> str:
        """The last ``lines`` of every process's log, for a failure's message."""
        out = []
        for inst in self.cfg.instances():
            path = dist.log_path(self.cfg, inst)
            if path.exists():
                tail = "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
                out.append(f"--- {inst.label} ---\n{tail}")
        return "\n".join(out)

    def restart_missing(self, timeout: float = 90) -> None:
        """Start the processes that are not running (after a ``kill -9``) and wait until they are ready."""
        dist.start_services(self.cfg, say=_quiet)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float, only: list[dist.Instance] | None = None) -> None:
        try:
            dist.wait_ready(self.cfg, timeout=timeout, say=_quiet, only=only)
        except RuntimeError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from exc


@contextmanager
def distributed_stack(
    data_dir: Path,
    *,
    namespace: str,
    kafka_bootstrap: str = KAFKA_BOOTSTRAP,
    replicas: int = 1,
    gateway: bool = False,
    web: bool = False,
    mail: bool = False,
    mail_env: Mapping[str, str] | None = None,
    infra: bool = False,
    extra_env: Mapping[str, str] | None = None,
    ready_timeout: float = 180.0,
    keep: bool = False,
    own_broker: bool = False,
    **config: Any,
) -> Iterator[DistributedStack]:
    """Start the six services (and the web front with ``web``) as ``mart dist up`` does, yield the running
    stack, stop and remove it on exit.

    ``namespace``: the Kafka namespace's prefix (a fresh one is drawn). ``replicas``: processes per service,
    each on a free port. ``gateway``: the built-in gateway in front, on a free port. ``mail``: a Mailpit of
    the stack's own on free ports (``mail_env``: its settings), stopped on exit. ``infra``: start PostgreSQL
    and Kafka from scripts/infra when they are not running (left running: other suites share them).
    ``own_broker``: the broker is the test's own and its topics go with it (they are not deleted).
    ``config``: any other ``DistConfig`` field (``trace``, ``zipkin_port``, ``infra_data_dir``, ...).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    processes = PROCESSES if web else SERVICES
    replica_ports = {s.package: [free_port() for _ in range(replicas)] for s in processes}
    cfg = dist.DistConfig(
        data_dir=data_dir,
        ports={package: ports[0] for package, ports in replica_ports.items()},
        replica_ports=replica_ports if replicas > 1 else {},
        kafka_bootstrap=kafka_bootstrap,
        kafka_namespace=new_namespace(namespace),
        gateway_port=free_port() if gateway else None,
        web=web,
        mail=mail,
        mailpit_smtp_port=free_port() if mail else 1025,
        mailpit_http_port=free_port() if mail else 8025,
        extra_env=dict(extra_env or {}),
        **config,
    )
    if infra:
        cfg.infra_data_dir = cfg.infra_data_dir or dist.default_data_dir()  # the development infrastructure
        said: list[str] = []
        try:
            dist.infra_up(replace(cfg, mail=False), say=said.append)  # PostgreSQL, Kafka; Mailpit below
        except RuntimeError as exc:
            raise AssertionError("\n".join([str(exc), *said])) from exc

    async def _create() -> dict[str, str]:
        return {s.package: await create_postgres_database() for s in SERVICES}

    cfg.database_urls = asyncio.run(_create())
    stack = DistributedStack(cfg)
    try:
        dist.mail_up(cfg, say=_quiet, env=dict(mail_env or {}))
        begun = time.monotonic()
        dist.start_services(cfg, say=_quiet)
        stack.wait_ready(ready_timeout)
        if gateway:
            try:
                dist.start_gateway(cfg, say=_quiet)
            except RuntimeError as exc:
                raise AssertionError(f"{exc}\n{stack.logs()}") from exc
        stack.ready_s = time.monotonic() - begun
        yield stack
    finally:
        dist.stop_services(cfg, say=_quiet)
        dist.mail_down(cfg, say=_quiet)

        async def _drop() -> None:
            for url in cfg.database_urls.values():
                await drop_postgres_database(url)
            if not own_broker:
                await delete_namespace(cfg.kafka_namespace, cfg.kafka_bootstrap)

        if not keep:
            asyncio.run(_drop())


class OnStack:
    """A suite's cluster around a running :class:`DistributedStack` (its ``stack`` field): the stack's
    configuration, endpoints and databases, read from it."""

    stack: DistributedStack

    @property
    def cfg(self) -> dist.DistConfig:
        return self.stack.cfg

    @property
    def ep(self) -> Endpoints:
        return self.stack.ep

    def db_dsn(self, package: str) -> str:
        return self.stack.db_dsn(package)
