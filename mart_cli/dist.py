"""Local distributed mode without Docker: PostgreSQL + Apache Kafka (scripts/infra) and the six services
as separate ``uvicorn`` processes on their ports (docs/conventions.md).

Replicas (docs/scaling.md): ``replicas`` runs N processes of a service; replica 1 keeps the service's
port, replica ``k`` listens on ``port + 100 * (k - 1)`` (order-service: 8009, 8109, 8209) unless
``replica_ports`` names the ports. The replicas of a service share its database and its Kafka consumer group.

State: ``<data dir>/run/<service>.pid`` (replica ``k`` > 1: ``<service>-<k>.pid``) and
``<data dir>/run/dist.json`` (ports, replicas, namespace, databases);
logs: ``<data dir>/logs/<service>.log`` (replica ``k`` > 1: ``<service>-<k>.log``). The same code serves
``mart dist up|down|status`` and the distributed end-to-end tests (which pass fresh databases, a fresh
Kafka namespace and free ports).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
from mart_common.polling import PollTimeout, wait_until_sync
from mart_common.settings import default_data_dir

from mart_cli.credentials import load_or_create
from mart_cli.gateway import GATEWAY_STATUS
from mart_cli.services import PROCESSES, SERVICES, WEB, Endpoints, Service, service

REPO_ROOT = Path(__file__).resolve().parents[1]
INFRA = REPO_ROOT / "scripts" / "infra"
STATE_FILE = "dist.json"
REPLICA_PORT_STEP = 100  # replica k of a service listens on its port + 100 * (k - 1)
PORT_RELEASE_S = 5.0  # how long a replica's start waits for its port to be released before it gives up


@dataclass(frozen=True)
class Instance:
    """One process of a service: replica ``k`` (1-based) on ``port``."""

    svc: Service
    replica: int
    port: int

    @property
    def label(self) -> str:
        """``order-service`` for replica 1, ``order-service-2`` for the others (pid and log file stems)."""
        return self.svc.name if self.replica == 1 else f"{self.svc.name}-{self.replica}"

    @property
    def stem(self) -> str:
        return self.svc.package if self.replica == 1 else f"{self.svc.package}-{self.replica}"


def parse_replicas(specs: list[str]) -> dict[str, int]:
    """``["2"]`` -> 2 of every service; ``["order=3", "inventory=2"]`` -> per service; mixed: the plain
    number is the default, ``name=N`` overrides it. Raises ``ValueError`` on bad input."""
    out: dict[str, int] = {}
    default: int | None = None
    for spec in specs:
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, sep, count = part.rpartition("=")
            try:
                n = int(count)
            except ValueError:
                raise ValueError(f"--replicas {part!r}: expected N or SERVICE=N") from None
            if not 1 <= n <= 16:
                raise ValueError(f"--replicas {part!r}: between 1 and 16 replicas")
            if not sep:
                default = n
                continue
            try:
                out[service(name).package] = n
            except KeyError as exc:
                raise ValueError(str(exc.args[0])) from None
    if default is not None:
        out = {s.package: out.get(s.package, default) for s in PROCESSES}
    return out


@dataclass
class DistConfig:
    data_dir: Path = field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=lambda: {s.package: s.port for s in PROCESSES})
    # service package -> SQLAlchemy URL; default: the service's own database in the local cluster
    database_urls: dict[str, str] = field(default_factory=dict)
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_namespace: str = ""
    # where scripts/infra keep PostgreSQL and Kafka (MART_DATA_DIR for them); default: the data dir
    infra_data_dir: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    # the built-in gateway (mart_cli.gateway) on this port, services behind their Kong prefixes; None: off
    gateway_port: int | None = None
    # Mailpit (scripts/infra/mailpit.sh) as the notification service's SMTP server; False: .eml files.
    # `mart dist up` turns it on unless --no-mail; code that builds a DistConfig itself opts in.
    mail: bool = False
    mailpit_smtp_port: int = 1025
    mailpit_http_port: int = 8025
    # the web front (docs/web.md) as one more process; `mart dist up` runs it, code that builds a
    # DistConfig itself opts in
    web: bool = False

    @property
    def mail_api(self) -> str:
        """Mailpit's HTTP API (``/api/v1/messages``), when mail goes there."""
        return f"http://{self.host}:{self.mailpit_http_port}" if self.mail else ""

    # service package -> number of processes (default 1); replica_ports: explicit ports per replica
    replicas: dict[str, int] = field(default_factory=dict)
    replica_ports: dict[str, list[int]] = field(default_factory=dict)

    def replica_count(self, svc: Service) -> int:
        if svc.package in self.replica_ports:
            return len(self.replica_ports[svc.package])
        return max(1, int(self.replicas.get(svc.package, 1)))

    def ports_of(self, svc: Service) -> list[int]:
        """The ports of the service's replicas, replica 1 first."""
        if svc.package in self.replica_ports:
            return list(self.replica_ports[svc.package])
        base = self.ports.get(svc.package, svc.port)
        return [base + REPLICA_PORT_STEP * k for k in range(self.replica_count(svc))]

    @property
    def processes(self) -> tuple[Service, ...]:
        """The services this configuration runs: the six, and the web front when it is on."""
        return PROCESSES if self.web else SERVICES

    def instances(self) -> list[Instance]:
        """Every process this configuration runs, service by service."""
        return [
            Instance(svc, k, port)
            for svc in self.processes
            for k, port in enumerate(self.ports_of(svc), start=1)
        ]

    # traces: start Zipkin (scripts/infra/zipkin.sh) and let the services export to it (docs/tracing.md)
    trace: bool = False
    zipkin_port: int = 9411

    @property
    def zipkin_url(self) -> str:
        return f"http://{self.host}:{self.zipkin_port}"

    def database_url(self, svc: Service) -> str:
        return self.database_urls.get(svc.package) or (
            f"postgresql+asyncpg://{svc.package}@127.0.0.1:5432/{svc.package}"
        )

    def endpoints(self) -> Endpoints:
        if self.gateway_port:
            return Endpoints.gateway(f"http://{self.host}:{self.gateway_port}")
        return Endpoints.direct(self.host, self.ports)

    def direct_endpoints(self) -> Endpoints:
        return Endpoints.direct(self.host, self.ports)

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def save(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        data = asdict(self)
        data["data_dir"] = str(self.data_dir)
        data["infra_data_dir"] = str(self.infra_data_dir) if self.infra_data_dir else None
        data["extra_env"] = {}  # may hold secrets; not needed to stop or inspect
        (self.run_dir / STATE_FILE).write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, data_dir: Path | None = None) -> DistConfig | None:
        data_dir = (data_dir or default_data_dir()).resolve()
        path = data_dir / "run" / STATE_FILE
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        data["data_dir"] = Path(data["data_dir"])
        data["infra_data_dir"] = Path(data["infra_data_dir"]) if data.get("infra_data_dir") else None
        return cls(**data)


# --- infrastructure ----------------------------------------------------------------------------


def _infra(
    cfg: DistConfig, script: str, *args: str, say: Callable[[str], None], env: dict[str, str] | None = None
) -> None:
    env = {
        **os.environ,
        "MART_DATA_DIR": str(cfg.infra_data_dir or cfg.data_dir),
        # Mailpit's messages belong to this mart's data dir (PostgreSQL and Kafka may be shared)
        "MART_MAILPIT_DIR": str(cfg.data_dir / "mailpit"),
        "MART_MAILPIT_SMTP_PORT": str(cfg.mailpit_smtp_port),
        "MART_MAILPIT_HTTP_PORT": str(cfg.mailpit_http_port),
        **(env or {}),
    }
    cmd = [str(INFRA / script), *args]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    for line in (result.stdout + result.stderr).splitlines():
        say(f"  {line}")
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {result.returncode}")


def infra_up(cfg: DistConfig, say: Callable[[str], None] = print) -> None:
    _infra(cfg, "postgres.sh", "start", say=say)
    _infra(cfg, "kafka.sh", "install", say=say)
    _infra(cfg, "kafka.sh", "start", say=say)
    mail_up(cfg, say)


def mail_up(cfg: DistConfig, say: Callable[[str], None] = print, env: dict[str, str] | None = None) -> None:
    """Start this mart's Mailpit when mail goes there (installed with ``go install`` the first time);
    ``env``: Mailpit's settings for scripts/infra/mailpit.sh (e.g. ``MART_MAILPIT_MAX``)."""
    if cfg.mail:
        _infra(cfg, "mailpit.sh", "start", say=say, env=env)


def mail_down(cfg: DistConfig, say: Callable[[str], None] = print) -> None:
    """Stop this mart's Mailpit (its messages stay under <data dir>/mailpit)."""
    if cfg.mail:
        _infra(cfg, "mailpit.sh", "stop", say=say)


def infra_down(cfg: DistConfig, say: Callable[[str], None] = print) -> None:
    mail_down(cfg, say)
    _infra(cfg, "kafka.sh", "stop", say=say)
    _infra(cfg, "postgres.sh", "stop", say=say)


def _zipkin(cfg: DistConfig, command: str, say: Callable[[str], None]) -> None:
    _infra(cfg, "zipkin.sh", command, say=say, env={"MART_ZIPKIN_PORT": str(cfg.zipkin_port)})


def zipkin_up(cfg: DistConfig, say: Callable[[str], None] = print) -> None:
    """Zipkin on ``cfg.zipkin_port`` (installed and started by scripts/infra/zipkin.sh; idempotent)."""
    _zipkin(cfg, "install", say)
    _zipkin(cfg, "start", say)


def zipkin_down(cfg: DistConfig, say: Callable[[str], None] = print) -> None:
    _zipkin(cfg, "stop", say)


# --- service processes ---------------------------------------------------------------------------


def service_env(cfg: DistConfig, svc: Service) -> dict[str, str]:
    creds = load_or_create(cfg.data_dir)
    user = SERVICES[0]
    jwks = f"http://{cfg.host}:{cfg.ports[user.package]}/.well-known/jwks.json"
    if cfg.gateway_port and cfg.replica_count(user) > 1:
        # Any user-service replica serves the keys: fetch them through the gateway, which fails over.
        jwks = f"http://{cfg.host}:{cfg.gateway_port}{user.prefix}/.well-known/jwks.json"
    env = {k: v for k, v in os.environ.items() if k not in {"MART_ROOT_PATH", "MART_INPROCESS_BUS_URL"}}
    env.update(
        {
            "MART_DATABASE_URL": cfg.database_url(svc),
            "MART_EVENT_BUS": "kafka",
            "MART_KAFKA_BOOTSTRAP_SERVERS": cfg.kafka_bootstrap,
            "MART_KAFKA_NAMESPACE": cfg.kafka_namespace,
            "MART_JWKS_URL": jwks,
            "MART_DATA_DIR": str(cfg.data_dir),
            "MART_ADMIN_EMAIL": creds.admin.email,
            "MART_ADMIN_PASSWORD": creds.admin.password,
            "MART_PAYMENT_PROVIDER": os.environ.get("MART_PAYMENT_PROVIDER", "fake"),
            "MART_EMAIL_BACKEND": os.environ.get("MART_EMAIL_BACKEND", "file"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    if cfg.mail and "MART_EMAIL_BACKEND" not in os.environ:
        env["MART_EMAIL_BACKEND"] = "smtp"  # to Mailpit (docs/looking-around.md)
        env["MART_SMTP_HOST"] = cfg.host
        env["MART_SMTP_PORT"] = str(cfg.mailpit_smtp_port)
    if cfg.gateway_port and svc is not WEB:
        env["MART_ROOT_PATH"] = svc.prefix  # /docs load the spec through the gateway prefix
    if svc is WEB:
        env.update(web_env(cfg))
    if cfg.trace:
        # the standard OpenTelemetry variables (docs/tracing.md); the batch processor exports every second
        env.update(
            {
                "OTEL_TRACES_EXPORTER": "zipkin",
                "OTEL_EXPORTER_ZIPKIN_ENDPOINT": f"{cfg.zipkin_url}/api/v2/spans",
                "OTEL_SERVICE_NAME": svc.name,
                "OTEL_BSP_SCHEDULE_DELAY": env.get("OTEL_BSP_SCHEDULE_DELAY", "1000"),
            }
        )
    env.update(cfg.extra_env)
    return env


def web_env(cfg: DistConfig) -> dict[str, str]:
    """The web front's settings (docs/web.md): the services' APIs through the gateway (or, without one,
    on their own ports), every replica's address for the console's health page, Zipkin's UI."""
    env: dict[str, str] = {"MART_HEALTH_TARGETS": json.dumps(health_targets(cfg))}
    if cfg.gateway_port:
        env["MART_GATEWAY_URL"] = f"http://{cfg.host}:{cfg.gateway_port}"
    else:
        env["MART_SERVICE_URLS"] = json.dumps(
            {s.name: f"http://{cfg.host}:{cfg.ports_of(s)[0]}" for s in SERVICES}
        )
    if cfg.trace:
        env["MART_ZIPKIN_UI_URL"] = f"http://localhost:{cfg.zipkin_port}/zipkin/"
    return env


def health_targets(cfg: DistConfig) -> dict[str, list[str]]:
    """Service name -> the base URLs of its replicas."""
    return {s.name: [f"http://{cfg.host}:{port}" for port in cfg.ports_of(s)] for s in SERVICES}


GATEWAY = "gateway"


def _gateway_pid_file(cfg: DistConfig) -> Path:
    return cfg.run_dir / f"{GATEWAY}.pid"


def gateway_pid(cfg: DistConfig) -> int | None:
    return _pid_if(_gateway_pid_file(cfg), "mart_cli.gateway:app")


def gateway_upstreams(cfg: DistConfig) -> dict[str, list[str]]:
    """Kong prefix -> the base URLs of the service's replicas (the gateway spreads requests over them);
    ``/`` -> the web front's replicas when it runs."""
    upstreams = health_targets(cfg)
    out = {s.prefix: upstreams[s.name] for s in SERVICES}
    if cfg.web:
        out["/"] = [f"http://{cfg.host}:{port}" for port in cfg.ports_of(WEB)]
    return out


def start_gateway(cfg: DistConfig, say: Callable[[str], None] = print) -> None:
    if not cfg.gateway_port:
        return
    upstreams = json.dumps(gateway_upstreams(cfg))
    known = cfg.run_dir / f"{GATEWAY}.upstreams.json"
    if (pid := gateway_pid(cfg)) is not None:
        if known.exists() and known.read_text() == upstreams:
            say(f"  {GATEWAY:<22} already running (pid {pid})")
            return
        # The replicas changed (another --replicas): restart the gateway so that it knows them all.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        _wait_gone(pid, timeout=10, interval=0.05)
        say(f"  {GATEWAY:<22} restarted for the new replicas")
    if _port_taken(cfg.host, cfg.gateway_port):
        raise RuntimeError(f"port {cfg.gateway_port} (gateway) is taken by another process; stop it first")
    env = {**os.environ, "MART_GATEWAY_UPSTREAMS": upstreams, "PYTHONUNBUFFERED": "1"}
    log_path = cfg.log_dir / f"{GATEWAY}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(  # noqa: S603
            [
                sys.executable, "-m", "uvicorn", "--factory", "mart_cli.gateway:app",
                "--host", cfg.host, "--port", str(cfg.gateway_port), "--no-access-log",
                # the upstream's Server and Date headers pass through once, as through Kong
                "--no-server-header", "--no-date-header",
            ],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=REPO_ROOT, start_new_session=True,
        )  # fmt: skip
    _gateway_pid_file(cfg).write_text(f"{proc.pid}\n")
    known.write_text(upstreams)
    say(f"  {GATEWAY:<22} starting on :{cfg.gateway_port} (pid {proc.pid}, log {log_path})")
    with httpx.Client(timeout=3) as client:

        def answers() -> bool:
            try:
                if client.get(f"http://{cfg.host}:{cfg.gateway_port}{GATEWAY_STATUS}").status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            if gateway_pid(cfg) is None:
                raise RuntimeError(f"the gateway did not start; last log lines:\n{_tail(log_path)}")
            return False

        try:
            wait_until_sync(answers, timeout=60, interval=0.2)
        except PollTimeout:
            raise RuntimeError(f"the gateway did not start; last log lines:\n{_tail(log_path)}") from None
    say(f"  {GATEWAY:<22} ready: http://localhost:{cfg.gateway_port}/ (the shop), /<name>-service/docs")


def _pid_file(cfg: DistConfig, inst: Instance) -> Path:
    return cfg.run_dir / f"{inst.stem}.pid"


def log_path(cfg: DistConfig, inst: Instance) -> Path:
    return cfg.log_dir / f"{inst.stem}.log"


def instance(cfg: DistConfig, svc: Service, replica: int = 1) -> Instance:
    return Instance(svc, replica, cfg.ports_of(svc)[replica - 1])


def running_pid(cfg: DistConfig, svc: Service | Instance, replica: int = 1) -> int | None:
    """The pid of this service's process (replica 1 by default) if it runs (a stale pid file is ignored)."""
    inst = svc if isinstance(svc, Instance) else instance(cfg, svc, replica)
    return _pid_if(_pid_file(cfg, inst), f"{inst.svc.package}.main:app")


def _pid_if(path: Path, marker: str) -> int | None:
    try:
        pid = int(path.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid if marker in cmdline and _alive(pid) else None


def start_instance(cfg: DistConfig, inst: Instance, say: Callable[[str], None] = print) -> int:
    """Start one replica unless it runs; returns its pid (does not wait for readiness)."""
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    cfg.log_dir.mkdir(parents=True, exist_ok=True)
    pid = running_pid(cfg, inst)
    if pid is not None:
        say(f"  {inst.label:<22} already running (pid {pid})")
        return pid
    if not _port_released(cfg.host, inst.port, timeout=PORT_RELEASE_S):
        raise RuntimeError(f"port {inst.port} ({inst.label}) is taken by another process; stop it first")
    path = log_path(cfg, inst)
    with open(path, "ab") as log:
        proc = subprocess.Popen(  # noqa: S603
            [
                sys.executable, "-m", "uvicorn", f"{inst.svc.package}.main:app",
                "--host", cfg.host, "--port", str(inst.port), "--no-access-log",
            ],
            env={**service_env(cfg, inst.svc), "MART_REPLICA": str(inst.replica)},
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=REPO_ROOT, start_new_session=True,
        )  # fmt: skip
    _pid_file(cfg, inst).write_text(f"{proc.pid}\n")
    say(f"  {inst.label:<22} starting on :{inst.port} (pid {proc.pid}, log {path})")
    return proc.pid


def start_services(cfg: DistConfig, say: Callable[[str], None] = print) -> dict[str, int]:
    """Start every replica that does not run; returns instance label -> pid."""
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save()
    return {inst.label: start_instance(cfg, inst, say) for inst in cfg.instances()}


def wait_ready(
    cfg: DistConfig,
    timeout: float = 120.0,
    say: Callable[[str], None] = print,
    only: list[Instance] | None = None,
) -> None:
    """Wait until every replica (or those in ``only``) answers ``/ready`` with 200."""
    pending = list(only if only is not None else cfg.instances())
    with httpx.Client(timeout=5.0) as client:

        def all_ready() -> bool:
            for inst in list(pending):
                if running_pid(cfg, inst) is None:
                    tail = _tail(log_path(cfg, inst))
                    raise RuntimeError(f"{inst.label} exited during start-up; last log lines:\n{tail}")
                try:
                    ok = client.get(f"http://{cfg.host}:{inst.port}/ready").status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    pending.remove(inst)
                    say(f"  {inst.label:<22} ready")
            return not pending

        try:
            wait_until_sync(all_ready, timeout=timeout, interval=0.3)
        except PollTimeout:
            names = ", ".join(i.label for i in pending)
            raise RuntimeError(f"not ready after {timeout:.0f}s: {names} (logs in {cfg.log_dir})") from None


def stop_instance(
    cfg: DistConfig, inst: Instance, *, graceful: bool = True, timeout: float = 20.0
) -> int | None:
    """SIGTERM (graceful: uvicorn drains requests, the service stops its relay and consumers) or SIGKILL
    one replica and wait until it is gone; returns the pid it had (None: it was not running)."""
    pid = running_pid(cfg, inst)
    if pid is None:
        _pid_file(cfg, inst).unlink(missing_ok=True)
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM if graceful else signal.SIGKILL)
    if not _wait_gone(pid, timeout=timeout, interval=0.05):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, timeout=None, interval=0.05)
    _pid_file(cfg, inst).unlink(missing_ok=True)
    return pid


def _known_instances(cfg: DistConfig) -> list[Instance]:
    """The configured replicas plus any other replica pid file left in the run dir (a smaller restart)."""
    known = cfg.instances()
    seen = {i.stem for i in known}
    for svc in PROCESSES:
        for path in sorted(cfg.run_dir.glob(f"{svc.package}-*.pid")):
            suffix = path.stem.removeprefix(f"{svc.package}-")
            if suffix.isdigit() and path.stem not in seen:
                known.append(Instance(svc, int(suffix), 0))
    return known


def stop_services(cfg: DistConfig, say: Callable[[str], None] = print, timeout: float = 20.0) -> None:
    if (gw := gateway_pid(cfg)) is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(gw, signal.SIGTERM)
        if not _wait_gone(gw, timeout=10, interval=0.1):
            with contextlib.suppress(ProcessLookupError):
                os.kill(gw, signal.SIGKILL)
        say(f"  {GATEWAY:<22} stopped")
    _gateway_pid_file(cfg).unlink(missing_ok=True)
    (cfg.run_dir / f"{GATEWAY}.upstreams.json").unlink(missing_ok=True)
    pids: dict[Instance, int] = {}
    for inst in _known_instances(cfg):
        pid = running_pid(cfg, inst)
        if pid is None:
            _pid_file(cfg, inst).unlink(missing_ok=True)
            continue
        pids[inst] = pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for inst, pid in pids.items():
        if not _wait_gone(pid, timeout=max(0.0, deadline - time.monotonic()), interval=0.1):
            say(f"  {inst.label:<22} did not stop in {timeout:.0f}s: SIGKILL")
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(pid, signal.SIGKILL)
        _pid_file(cfg, inst).unlink(missing_ok=True)
        say(f"  {inst.label:<22} stopped")


def status(cfg: DistConfig) -> dict[str, dict[str, object]]:
    """Instance label (``order-service``, ``order-service-2``, ...) -> pid, port, replica, readiness."""
    out: dict[str, dict[str, object]] = {}
    # longer than the readiness checks' own bound (3 s each): a slow check answers 503 naming itself
    with httpx.Client(timeout=5.0) as client:
        for inst in cfg.instances():
            pid = running_pid(cfg, inst)
            ready: object = False
            if pid is not None:
                try:
                    r = client.get(f"http://{cfg.host}:{inst.port}/ready")
                    ready = r.status_code == 200 or r.json()
                except (httpx.HTTPError, ValueError):
                    ready = False
            out[inst.label] = {
                "pid": pid,
                "port": inst.port,
                "ready": ready,
                "service": inst.svc.name,
                "replica": f"{inst.replica}/{cfg.replica_count(inst.svc)}",
            }
    if cfg.gateway_port:
        gw = gateway_pid(cfg)
        out[GATEWAY] = {"pid": gw, "port": cfg.gateway_port, "ready": gw is not None}
    if cfg.trace:
        try:
            with httpx.Client(timeout=3.0) as client:
                zipkin_ok = client.get(f"{cfg.zipkin_url}/health").status_code == 200
        except httpx.HTTPError:
            zipkin_ok = False
        out["zipkin"] = {"pid": None, "port": cfg.zipkin_port, "ready": zipkin_ok}
    return out


def up(cfg: DistConfig, *, infra: bool = True, say: Callable[[str], None] = print) -> float:
    """Start infra (optional) and the six services, wait until all are ready; returns seconds taken."""
    started = time.monotonic()
    if infra:
        say("infrastructure:")
        infra_up(cfg, say)
    if cfg.trace:
        say("traces:")
        zipkin_up(cfg, say)
    say("services:")
    start_services(cfg, say)
    wait_ready(cfg, say=say)
    start_gateway(cfg, say)
    return time.monotonic() - started


def down(cfg: DistConfig, *, infra: bool = True, say: Callable[[str], None] = print) -> None:
    say("services:")
    stop_services(cfg, say)
    (cfg.run_dir / STATE_FILE).unlink(missing_ok=True)
    if infra:
        say("infrastructure:")
        if cfg.trace:
            zipkin_down(cfg, say)
        infra_down(cfg, say)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie counts as gone once all its threads have exited: the leader of a killed multi-threaded
    # process shows as a zombie while its other threads still exit, and the process's sockets (its port)
    # are closed only when the last of them has.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        threads = len(os.listdir(f"/proc/{pid}/task"))
    except (FileNotFoundError, IndexError):
        return False
    if state == "Z" and threads <= 1:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def _wait_gone(pid: int, *, timeout: float | None, interval: float) -> bool:
    """Wait until process ``pid`` has exited; False if it still runs after ``timeout`` seconds."""
    try:
        wait_until_sync(lambda: not _alive(pid), timeout=timeout, interval=interval)
    except PollTimeout:
        return False
    return True


def _port_taken(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def _port_released(host: str, port: int, *, timeout: float) -> bool:
    """Wait until nothing listens on ``port``; False if something still does after ``timeout`` seconds.

    A process stopped by another ``mart`` command may still be exiting (``_alive`` waits only for this
    process's own view of it), so a start gives it a moment instead of failing at once."""
    try:
        wait_until_sync(lambda: not _port_taken(host, port), timeout=timeout, interval=0.1)
    except PollTimeout:
        return False
    return True


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
