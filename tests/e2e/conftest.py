"""End-to-end fixtures: the mart started for real, in both modes, reached over real HTTP only.

- ``embedded``: ``./mart run --port <free> --data-dir <tmp>`` as a subprocess (its own process group, so a
  test can ``kill -9`` it whole), demo data seeded by the mart itself.
- ``distributed``: the code behind ``mart dist up`` (PostgreSQL + Kafka from scripts/infra, six uvicorn
  processes, the web front, the gateway, a Mailpit) on fresh databases, a fresh Kafka namespace and free
  ports (``mart_testkit.stack``), so runs never see each other's data; seeded with ``mart seed``'s code
  over HTTP. PostgreSQL and Kafka are started if needed and left running (other suites share them).
- ``containers``: the images built by scripts/containers/build.sh, run by podman-compose from compose.yaml +
  compose.local.yaml in a compose project of its own (tests/e2e/containers.py), the built-in gateway in
  front of the containers' host ports (Kong cannot be had here: docs/docker.md); seeded like ``distributed``.

Nothing skips: when something is missing the fixture fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from mart_testkit.ports import free_port
from mart_testkit.stack import distributed_stack

from mart_cli import dist
from mart_cli.credentials import Credentials, load_or_create
from mart_cli.seed import seed
from mart_cli.services import PROCESSES, Endpoints

from .containers import ContainerStack
from .mail import Mailbox, debugging_server_log, eml_files, mailpit

REPO_ROOT = Path(__file__).resolve().parents[2]
MART = REPO_ROOT / "mart"
START_TIMEOUT = 180.0  # generous: CI machines may be busy


@dataclass
class Mart:
    """A running mart as the tests see it."""

    kind: str  # "embedded" | "distributed"
    ep: Endpoints
    data_dir: Path
    creds: Credentials
    cli_args: list[str] = field(default_factory=list)  # how `mart <cmd>` reaches this mart
    startup_s: float = 0.0
    gateway_url: str = ""  # one port with the Kong prefixes (embedded: the mart itself)
    mail_api: str = ""  # Mailpit's HTTP API when mail goes there (distributed), else mail is .eml files
    mailbox: Mailbox | None = None  # the mails sent to an address, wherever this mode delivers them


class EmbeddedProcess:
    """``./mart run`` in its own process group; restartable on the same data dir."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-embedded.log"
        self.starts: list[float] = []

    def start(self, timeout: float = START_TIMEOUT) -> float:
        begun = time.monotonic()
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        log.write(f"\n=== start {time.strftime('%H:%M:%S')} ===\n".encode())
        log.flush()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for var in ("MART_DATABASE_URL", "MART_EVENT_BUS", "MART_DATA_DIR", "MART_ROOT_PATH"):
            env.pop(var, None)
        self.proc = subprocess.Popen(  # noqa: S603
            [str(MART), "run", "--port", str(self.port), "--data-dir", str(self.data_dir)],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = begun + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"./mart run exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"./mart run not up after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.2)
        took = time.monotonic() - begun
        self.starts.append(took)
        return took

    def kill(self) -> None:
        """SIGKILL the whole process group (the wrapper, uv and the server): a crash."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self.proc = None

    def stop(self, timeout: float = 30.0) -> int:
        """Ctrl-C: SIGINT to the process group, as a terminal does."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"./mart run did not stop within {timeout}s on SIGINT:\n{self.log_tail()}"
            ) from None
        self.proc = None
        return code

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


@pytest.fixture(scope="session")
def embedded_mart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mart]:
    data_dir = tmp_path_factory.mktemp("embedded") / "data"
    process = EmbeddedProcess(data_dir, free_port())
    took = process.start()
    try:
        yield Mart(
            kind="embedded",
            ep=Endpoints.gateway(process.url),
            data_dir=data_dir,
            creds=load_or_create(data_dir),
            cli_args=["--url", process.url, "--data-dir", str(data_dir)],
            startup_s=took,
            gateway_url=process.url,
            mailbox=eml_files(data_dir / "mail"),
        )
        code = process.stop()
        assert code == 0, f"Ctrl-C exit code {code}:\n{process.log_tail()}"
    finally:
        process.kill()


@pytest.fixture(scope="session")
def distributed_mart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mart]:
    data_dir = tmp_path_factory.mktemp("distributed") / "data"
    # a Mailpit of its own (state under data_dir/mailpit), stopped at the end
    with distributed_stack(
        data_dir, namespace="e2e", infra=True, web=True, gateway=True, mail=True, ready_timeout=START_TIMEOUT
    ) as stack:
        creds = load_or_create(data_dir)

        async def _seed() -> None:
            async with httpx.AsyncClient(timeout=60) as client:
                await seed(client, stack.direct, creds)

        asyncio.run(_seed())
        print(f"\n[e2e] distributed: six services and the web front ready in {stack.ready_s:.1f}s")  # noqa: T201
        yield Mart(
            kind="distributed",
            ep=stack.direct,  # the journeys call each service on its own port
            gateway_url=stack.gateway_url,
            data_dir=data_dir,
            creds=creds,
            cli_args=["--data-dir", str(data_dir)],
            startup_s=stack.ready_s,
            mail_api=stack.cfg.mail_api,
            mailbox=mailpit(stack.cfg.mail_api),
        )


@pytest.fixture(scope="session")
def container_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContainerStack]:
    """The compose stack in containers (built, started, healthy); removed with its volumes afterwards."""
    data_dir = tmp_path_factory.mktemp("containers") / "data"
    data_dir.mkdir(parents=True)
    creds = load_or_create(data_dir)
    stack = ContainerStack(
        ports={s.package: free_port() for s in PROCESSES},
        kafka_port=free_port(),
        smtp_port=free_port(),
        mail_ui_port=free_port(),
        admin_email=creds.admin.email,
        admin_password=creds.admin.password,
    )
    stack.data_dir = data_dir
    build_s = stack.build()
    try:
        begun = time.monotonic()
        stack.up(timeout=START_TIMEOUT * 2)
        up_s = time.monotonic() - begun
        print(f"\n[e2e] containers: images built in {build_s:.1f}s, stack healthy in {up_s:.1f}s")  # noqa: T201
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="session")
def containers_mart(container_stack: ContainerStack) -> Iterator[Mart]:
    stack = container_stack
    cfg = dist.DistConfig(
        data_dir=stack.data_dir,
        ports=dict(stack.ports),
        web=True,  # the gateway's "/" goes to the web front's container
        kafka_bootstrap=f"127.0.0.1:{stack.kafka_port}",
        gateway_port=free_port(),
    )
    cfg.log_dir.mkdir(parents=True, exist_ok=True)
    cfg.save()  # `mart --data-dir <dir> ...` (order timeline, dlq) finds the containers through it
    creds = load_or_create(stack.data_dir)
    try:
        dist.start_gateway(cfg, say=lambda _m: None)

        async def _seed() -> None:
            async with httpx.AsyncClient(timeout=60) as client:
                await seed(client, cfg.direct_endpoints(), creds)

        asyncio.run(_seed())
        yield Mart(
            kind="containers",
            ep=cfg.direct_endpoints(),
            gateway_url=f"http://127.0.0.1:{cfg.gateway_port}",
            data_dir=stack.data_dir,
            creds=creds,
            cli_args=["--data-dir", str(stack.data_dir)],
            mailbox=debugging_server_log(lambda: stack.logs("mailpit", tail=1_000_000)),
        )
    finally:
        dist.stop_services(cfg, say=lambda _m: None)


@pytest.fixture(
    params=[
        "embedded",
        pytest.param("distributed", marks=[pytest.mark.distributed, pytest.mark.postgres, pytest.mark.kafka]),
        # the first test on the stack also waits for the image build (cold: a Debian rootfs + eight images)
        pytest.param("containers", marks=[pytest.mark.containers, pytest.mark.timeout(2400)]),
    ]
)
def mart(request: pytest.FixtureRequest) -> Mart:
    return request.getfixturevalue(f"{request.param}_mart")


@pytest.fixture
def embedded_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedProcess]:
    """A not yet started embedded mart of its own (for tests that crash and restart it)."""
    process = EmbeddedProcess(tmp_path_factory.mktemp("crash") / "data", free_port())
    yield process
    process.kill()


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_cli


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``./mart <args>`` (the same wrapper the README uses)."""
    env = {**os.environ, "MART_SKIP_SYNC": "1"}
    return subprocess.run(  # noqa: S603
        [str(MART), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # noqa: ANN201
    """Each phase's report on the test item (``item.rep_call``): fixtures can tell a failed test."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
