"""Embedded mode: the six services in ONE process under the gateway's path prefixes.

One :class:`InProcessBus` (``<data dir>/bus.sqlite``) carries every service's outbox to the others'
inboxes; each service keeps its own SQLite file; the user service's key store verifies tokens for all
six without HTTP. Starlette does not run mounted apps' lifespans, so the parent lifespan does: bus first,
then each service; on the way out the bus consumers stop FIRST (no handler runs against a closing
service), then the services (relays, jobs, databases).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import uvicorn
from mart_common.auth import TokenVerifier
from mart_common.bus import create_bus
from mart_common.bus.inprocess import InProcessBus
from mart_common.heap import freeze_startup_heap
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route

from mart_cli.credentials import Credentials, load_or_create
from mart_cli.services import SERVICES, WEB, Endpoints

SEED_MARKER = "demo-seeded"


@dataclass
class Embedded:
    app: Starlette
    data_dir: Path
    creds: Credentials
    bus: InProcessBus
    service_apps: dict[str, Any] = field(default_factory=dict)
    web_app: Any = None


def build(
    data_dir: Path,
    *,
    seed: bool = True,
    public_url: str = "http://localhost:8000",
    say: Callable[[str], None] = print,
) -> Embedded:
    """The parent ASGI app (not started: its lifespan starts everything)."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    creds = load_or_create(data_dir)
    common = _common_settings(data_dir, creds)
    user_svc = SERVICES[0]
    user_settings = user_svc.settings(**common, database_url=_sqlite(data_dir, user_svc.package))
    # every service shares the user service's bus settings (in-process: the common settings say so)
    bus = cast(InProcessBus, create_bus(user_settings))
    apps = _service_apps(data_dir, common, user_settings, bus)
    holder: dict[str, Any] = {}

    async def gateway(scope: Any, receive: Any, send: Any) -> None:
        """The embedded gateway itself (the parent app), for the web front's API clients: in-process, no
        socket, and the same prefixes as through Kong."""
        await holder["app"](scope, receive, send)

    web = _web_app(common, public_url, bus, httpx.ASGITransport(app=gateway, raise_app_exceptions=False))

    async def on_started(started: float) -> None:
        if seed:
            await _seed_once(holder["app"], data_dir, creds, say)
        holder["ready_in"] = time.monotonic() - started
        _banner(public_url, creds, data_dir, holder["ready_in"], say)

    app = Starlette(routes=_routes(apps, web), lifespan=_lifespan(bus, apps, web, on_started, say))
    holder["app"] = app
    app.state.embedded = holder
    return Embedded(app=app, data_dir=data_dir, creds=creds, bus=bus, service_apps=apps, web_app=web)


def _common_settings(data_dir: Path, creds: Credentials) -> dict[str, Any]:
    """The settings every embedded service shares: one bus log, file mail, the fake provider, the admin."""
    return {
        "data_dir": data_dir,
        "event_bus": "inprocess",
        "inprocess_bus_url": f"sqlite+aiosqlite:///{data_dir / 'bus.sqlite'}",
        "root_path": "",  # the Mount sets the prefix
        "email_backend": "file",
        "mail_dir": data_dir / "mail",
        "payment_provider": "fake",
        "admin_email": creds.admin.email,
        "admin_password": creds.admin.password,
        "log_json": _env_bool("MART_LOG_JSON", False),
        "log_level": os.environ.get("MART_LOG_LEVEL", "WARNING"),
    }


def _service_apps(
    data_dir: Path, common: dict[str, Any], user_settings: Any, bus: InProcessBus
) -> dict[str, Any]:
    """Service package -> its app on the shared bus; the user service's key store verifies every token."""
    user_svc = SERVICES[0]
    keys = user_svc.main_module().load_or_create_keys(user_settings)
    verifier = TokenVerifier(user_settings.jwt_issuer, jwks_provider=keys.jwks_provider)
    apps: dict[str, Any] = {}
    for svc in SERVICES:
        main = svc.main_module()
        if svc is user_svc:
            apps[svc.package] = main.create_app(user_settings, bus=bus, token_verifier=verifier, keys=keys)
        else:
            settings = svc.settings(**common, database_url=_sqlite(data_dir, svc.package))
            apps[svc.package] = main.create_app(settings, bus=bus, token_verifier=verifier)
    return apps


def _web_app(
    common: dict[str, Any], public_url: str, bus: InProcessBus, transport: httpx.AsyncBaseTransport
) -> Any:
    """The web front at ``/``: its API calls go into the parent app, its console reads the shared bus."""
    settings = WEB.settings(**common, gateway_url=public_url)
    return WEB.main_module().create_app(settings, bus=bus, transport=transport)


def _lifespan(
    bus: InProcessBus,
    apps: dict[str, Any],
    web: Any,
    on_started: Callable[[float], Awaitable[None]],
    say: Callable[[str], None],
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """Bus first, then each service; on the way out the consumers stop before the services do."""

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        started = time.monotonic()
        async with AsyncExitStack() as stack:
            await bus.start()
            stack.push_async_callback(bus.db.dispose)
            for svc in SERVICES:
                child = apps[svc.package]
                await stack.enter_async_context(child.router.lifespan_context(child))
            await stack.enter_async_context(web.router.lifespan_context(web))
            # Registered last so it runs first on exit: consumers stop before the services do.
            stack.push_async_callback(bus.stop)
            freeze_startup_heap()  # all six started: their long-lived objects out of the collector's way
            await on_started(started)
            yield
            say("stopping: event consumers first, then the services")

    return lifespan


def _routes(apps: dict[str, Any], web: Any) -> list[BaseRoute]:
    """``/health``, each service mounted under its gateway prefix, and the web front at ``/``."""

    async def health(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "mode": "embedded", "services": [s.name for s in SERVICES]})

    routes: list[BaseRoute] = [Route("/health", health)]
    routes += [Mount(svc.prefix, app=apps[svc.package]) for svc in SERVICES]
    routes.append(Mount("/", app=web))
    return routes


def _sqlite(data_dir: Path, package: str) -> str:
    return f"sqlite+aiosqlite:///{data_dir / (package + '.sqlite')}"


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in {"1", "true", "yes", "on"}


async def _seed_once(app: Starlette, data_dir: Path, creds: Credentials, say: Callable[[str], None]) -> None:
    from mart_cli.seed import seed

    marker = data_dir / SEED_MARKER
    if marker.exists():
        return
    say("seeding demo data (first start) ...")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://embedded", timeout=60) as client:
        report = await seed(client, Endpoints.gateway("http://embedded"), creds, say=say)
    marker.write_text(json.dumps(report.__dict__) + "\n")
    say(
        f"demo data: {report.products_total} products ({report.products_created} new), "
        f"{report.stock_adjusted} stocked, customer {'created' if report.customer_created else 'present'}"
    )


def _banner(
    url: str, creds: Credentials, data_dir: Path, ready_in: float, say: Callable[[str], None]
) -> None:
    admin_pw = "(from MART_ADMIN_PASSWORD)" if creds.admin.from_env else creds.admin.password
    lines = [
        "",
        f"Online Mart is running (embedded mode, ready in {ready_in:.1f}s)",
        "",
        f"  shop                   {url}/",
        f"  admin and console      {url}/admin  {url}/console  (sign in as the admin)",
        "",
        *(f"  {svc.name:<22} {url}{svc.prefix}/docs" for svc in SERVICES),
        "",
        f"  catalog API            {url}/product-service/products",
        f"  admin                  {creds.admin.email} / {admin_pw}",
        f"  customer               {creds.customer.email} / {creds.customer.password}",
        f"  credentials file       {creds.path}",
        f"  data                   {data_dir} (SQLite per service, bus.sqlite, mail/)",
        "",
        "Press Ctrl-C to stop.",
        "",
    ]
    say("\n".join(lines))


class _Server(uvicorn.Server):
    """uvicorn's server with loop signal handlers that do not re-raise the signal after shutdown (which
    would turn a clean Ctrl-C into a KeyboardInterrupt traceback). A repeated signal within a second
    (the terminal and ``uv run`` both deliver Ctrl-C) counts once; a later one forces the exit."""

    _first_signal_at: float | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: int) -> None:
        now = time.monotonic()
        if self._first_signal_at is None:
            self._first_signal_at = now
            self.should_exit = True
        elif now - self._first_signal_at > 1.0:
            self.force_exit = True


def run(data_dir: Path, *, host: str = "127.0.0.1", port: int = 8000, seed: bool = True) -> int:
    """Serve the embedded mart until Ctrl-C / SIGTERM; returns the exit code."""
    shown_host = "localhost" if host in {"127.0.0.1", "0.0.0.0", "::"} else host  # noqa: S104

    def say(message: str) -> None:
        print(message, flush=True)

    embedded = build(data_dir, seed=seed, public_url=f"http://{shown_host}:{port}", say=say)
    config = uvicorn.Config(
        embedded.app,
        host=host,
        port=port,
        log_level=os.environ.get("MART_UVICORN_LOG_LEVEL", "warning"),
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    server = _Server(config)
    (embedded.data_dir / "run").mkdir(exist_ok=True)
    pid_file = embedded.data_dir / "run" / "embedded.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    try:
        asyncio.run(server.serve())
    except KeyboardInterrupt:
        pass
    finally:
        with contextlib.suppress(FileNotFoundError):
            pid_file.unlink()
    if not server.started:
        print("the mart did not start (see the errors above)", file=sys.stderr)
        return 1
    print("stopped", flush=True)
    return 0


__all__ = ["Embedded", "build", "run"]
