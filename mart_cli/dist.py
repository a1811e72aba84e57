"""Local distributed mode without Docker: PostgreSQL + Apache Kafka (scripts/infra) and the six services
as separate ``uvicorn`` processes on their SPEC ports.

State: ``<data dir>/run/<service>.pid`` and ``<data dir>/run/dist.json`` (ports, namespace, databases);
logs: ``<data dir>/logs/<service>.log``. The same code serves ``mart dist up|down|status`` and the
distributed end-to-end tests (which pass fresh databases, a fresh Kafka namespace and free ports).
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

from mart_cli.credentials import load_or_create
from mart_cli.services import SERVICES, Endpoints, Service

REPO_ROOT = Path(__file__).resolve().parents[1]
INFRA = REPO_ROOT / "scripts" / "infra"
STATE_FILE = "dist.json"


def default_data_dir() -> Path:
    env = os.environ.get("MART_DATA_DIR")
    return Path(env).resolve() if env else REPO_ROOT / ".data"


@dataclass
class DistConfig:
    data_dir: Path = field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=lambda: {s.package: s.port for s in SERVICES})
    # service package -> SQLAlchemy URL; default: the service's own database in the local cluster
    database_urls: dict[str, str] = field(default_factory=dict)
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_namespace: str = ""
    # where scripts/infra keep PostgreSQL and Kafka (MART_DATA_DIR for them); default: the data dir
    infra_data_dir: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    # the built-in gateway (mart_cli.gateway) on this port, services behind their Kong prefixes; None: off
    gateway_port: int | None = None
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
    env = {**os.environ, "MART_DATA_DIR": str(cfg.infra_data_dir or cfg.data_dir), **(env or {})}
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


def infra_down(cfg: DistConfig, say: Callable[[str], None] = print) -> None:
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
    user_port = cfg.ports[SERVICES[0].package]
    env = {k: v for k, v in os.environ.items() if k not in {"MART_ROOT_PATH", "MART_INPROCESS_BUS_URL"}}
    env.update(
        {
            "MART_DATABASE_URL": cfg.database_url(svc),
            "MART_EVENT_BUS": "kafka",
            "MART_KAFKA_BOOTSTRAP_SERVERS": cfg.kafka_bootstrap,
            "MART_KAFKA_NAMESPACE": cfg.kafka_namespace,
            "MART_JWKS_URL": f"http://{cfg.host}:{user_port}/.well-known/jwks.json",
            "MART_DATA_DIR": str(cfg.data_dir),
            "MART_ADMIN_EMAIL": creds.admin.email,
            "MART_ADMIN_PASSWORD": creds.admin.password,
            "MART_PAYMENT_PROVIDER": os.environ.get("MART_PAYMENT_PROVIDER", "fake"),
            "MART_EMAIL_BACKEND": os.environ.get("MART_EMAIL_BACKEND", "file"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    if cfg.gateway_port:
        env["MART_ROOT_PATH"] = svc.prefix  # /docs load the spec through the gateway prefix
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


GATEWAY = "gateway"


def _gateway_pid_file(cfg: DistConfig) -> Path:
    return cfg.run_dir / f"{GATEWAY}.pid"


def gateway_pid(cfg: DistConfig) -> int | None:
    return _pid_if(_gateway_pid_file(cfg), "mart_cli.gateway:app")


def start_gateway(cfg: DistConfig, say: Callable[[str], None] = print) -> None:
    if not cfg.gateway_port:
        return
    if (pid := gateway_pid(cfg)) is not None:
        say(f"  {GATEWAY:<22} already running (pid {pid})")
        return
    if _port_taken(cfg.host, cfg.gateway_port):
        raise RuntimeError(f"port {cfg.gateway_port} (gateway) is taken by another process; stop it first")
    upstreams = {s.prefix: f"http://{cfg.host}:{cfg.ports[s.package]}" for s in SERVICES}
    env = {**os.environ, "MART_GATEWAY_UPSTREAMS": json.dumps(upstreams), "PYTHONUNBUFFERED": "1"}
    log_path = cfg.log_dir / f"{GATEWAY}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(  # noqa: S603
            [
                sys.executable, "-m", "uvicorn", "--factory", "mart_cli.gateway:app",
                "--host", cfg.host, "--port", str(cfg.gateway_port), "--no-access-log",
            ],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=REPO_ROOT, start_new_session=True,
        )  # fmt: skip
    _gateway_pid_file(cfg).write_text(f"{proc.pid}\n")
    say(f"  {GATEWAY:<22} starting on :{cfg.gateway_port} (pid {proc.pid}, log {log_path})")
    deadline = time.monotonic() + 60
    with httpx.Client(timeout=3) as client:
        while True:
            try:
                if client.get(f"http://{cfg.host}:{cfg.gateway_port}/").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if gateway_pid(cfg) is None or time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not start; last log lines:\n{_tail(log_path)}")
            time.sleep(0.2)
    say(f"  {GATEWAY:<22} ready: http://localhost:{cfg.gateway_port}/<name>-service/docs")


def _pid_file(cfg: DistConfig, svc: Service) -> Path:
    return cfg.run_dir / f"{svc.package}.pid"


def running_pid(cfg: DistConfig, svc: Service) -> int | None:
    """The pid of this service's process if it runs (a stale pid file is ignored)."""
    return _pid_if(_pid_file(cfg, svc), f"{svc.package}.main:app")


def _pid_if(path: Path, marker: str) -> int | None:
    try:
        pid = int(path.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid if marker in cmdline and _alive(pid) else None


def start_services(cfg: DistConfig, say: Callable[[str], None] = print) -> dict[str, int]:
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    cfg.log_dir.mkdir(parents=True, exist_ok=True)
    pids: dict[str, int] = {}
    for svc in SERVICES:
        pid = running_pid(cfg, svc)
        if pid is not None:
            say(f"  {svc.name:<22} already running (pid {pid})")
            pids[svc.package] = pid
            continue
        port = cfg.ports[svc.package]
        if _port_taken(cfg.host, port):
            raise RuntimeError(f"port {port} ({svc.name}) is taken by another process; stop it first")
        log_path = cfg.log_dir / f"{svc.package}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(  # noqa: S603
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    f"{svc.package}.main:app",
                    "--host",
                    cfg.host,
                    "--port",
                    str(port),
                    "--no-access-log",
                ],
                env=service_env(cfg, svc),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO_ROOT,
                start_new_session=True,
            )
        _pid_file(cfg, svc).write_text(f"{proc.pid}\n")
        pids[svc.package] = proc.pid
        say(f"  {svc.name:<22} starting on :{port} (pid {proc.pid}, log {log_path})")
    cfg.save()
    return pids


def wait_ready(cfg: DistConfig, timeout: float = 120.0, say: Callable[[str], None] = print) -> None:
    deadline = time.monotonic() + timeout
    pending = list(SERVICES)
    with httpx.Client(timeout=5.0) as client:
        while pending:
            for svc in list(pending):
                if running_pid(cfg, svc) is None:
                    tail = _tail(cfg.log_dir / f"{svc.package}.log")
                    raise RuntimeError(f"{svc.name} exited during start-up; last log lines:\n{tail}")
                try:
                    ok = client.get(f"http://{cfg.host}:{cfg.ports[svc.package]}/ready").status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    pending.remove(svc)
                    say(f"  {svc.name:<22} ready")
            if pending and time.monotonic() > deadline:
                names = ", ".join(s.name for s in pending)
                raise RuntimeError(f"not ready after {timeout:.0f}s: {names} (logs in {cfg.log_dir})")
            if pending:
                time.sleep(0.3)


def stop_services(cfg: DistConfig, say: Callable[[str], None] = print, timeout: float = 20.0) -> None:
    if (gw := gateway_pid(cfg)) is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(gw, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _alive(gw) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(gw):
            with contextlib.suppress(ProcessLookupError):
                os.kill(gw, signal.SIGKILL)
        say(f"  {GATEWAY:<22} stopped")
    _gateway_pid_file(cfg).unlink(missing_ok=True)
    pids = {}
    for svc in SERVICES:
        pid = running_pid(cfg, svc)
        if pid is None:
            _pid_file(cfg, svc).unlink(missing_ok=True)
            continue
        pids[svc] = pid
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + timeout
    for svc, pid in pids.items():
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            say(f"  {svc.name:<22} did not stop in {timeout:.0f}s: SIGKILL")
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(pid, signal.SIGKILL)
        _pid_file(cfg, svc).unlink(missing_ok=True)
        say(f"  {svc.name:<22} stopped")


def status(cfg: DistConfig) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    with httpx.Client(timeout=3.0) as client:
        for svc in SERVICES:
            pid = running_pid(cfg, svc)
            ready: object = False
            if pid is not None:
                try:
                    r = client.get(f"http://{cfg.host}:{cfg.ports[svc.package]}/ready")
                    ready = r.status_code == 200 or r.json()
                except (httpx.HTTPError, ValueError):
                    ready = False
            out[svc.name] = {"pid": pid, "port": cfg.ports[svc.package], "ready": ready}
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
    # a zombie child of ours counts as gone
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    if state == "Z":
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def _port_taken(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
