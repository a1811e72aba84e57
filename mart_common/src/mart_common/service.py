"""The composition root every service uses: one FastAPI app with its database, bus, outbox relay,
inbox subscriber, periodic jobs, problem handlers, health, readiness and metrics.

A service describes itself with a :class:`ServiceDefinition`; :func:`create_service_app` wires the rest.
Tests and the embedded mode swap the bus or the token verifier here, in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import structlog
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response
from google.protobuf.message import Message
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from mart_common.auth import TokenVerifier
from mart_common.body_limit import BodySizeLimitMiddleware
from mart_common.bus import EventBus, create_bus
from mart_common.db import Database
from mart_common.docs import install_docs
from mart_common.heap import freeze_startup_heap
from mart_common.inbox import EventHandler, Subscriber
from mart_common.observability.logs import configure_logging
from mart_common.observability.metrics import HttpMetrics
from mart_common.observability.middleware import RequestContextMiddleware
from mart_common.observability.tracing import tracing_for
from mart_common.outbox import OutboxRelay
from mart_common.problems import document_problems, install_problem_handlers, problem_response
from mart_common.settings import ServiceSettings
from mart_common.work import WorkLoop

log = structlog.get_logger(__name__)

Hook = Callable[["ServiceRuntime"], Awaitable[None]]
# Builds the service's own typed context (what its use-cases need beyond the database and the bus), entered
# when the service starts and exited when it stops: ``runtime.context``, the first argument of every event
# handler, and a route dependency in the service's ``context.py`` (docs/conventions.md).
ContextFactory = Callable[["ServiceRuntime"], AbstractAsyncContextManager[Any]]


@dataclass(frozen=True)
class PeriodicJob:
    """``run(runtime)`` every ``interval_s`` seconds while the service is up (errors are logged)."""

    name: str
    interval_s: float
    run: Hook


@dataclass
class ServiceDefinition:
    """What a service is: its routes, its migrations, the events it handles, its jobs."""

    name: str
    title: str
    description: str
    routers: Sequence[APIRouter]
    migrations_package: str
    handlers: Mapping[type[Message], EventHandler] = field(default_factory=dict)
    context: ContextFactory | None = None
    periodic: Sequence[PeriodicJob] = ()
    on_startup: Sequence[Hook] = ()
    on_shutdown: Sequence[Hook] = ()
    openapi_tags: list[dict[str, Any]] = field(default_factory=list)
    # Apply several records of a partition in one transaction
    # (docs/adr/0032-consumers-apply-a-poll-in-one-transaction.md); False where handlers lock rows shared
    # across partitions.
    batch_events: bool = True
    # For a service off the saga's path (notifications): how long its consumer may hold a new event to
    # apply it together with the ones arriving meanwhile, in one transaction (
    # docs/adr/0034-consumers-off-the-saga-path-collect-events.md). 0: each event at once.
    collect_events_ms: int = 0
    version: str = "1.0.0"


@dataclass
class ServiceRuntime:
    """Everything a running service holds; routes reach it as ``request.app.state.runtime``."""

    definition: ServiceDefinition
    settings: ServiceSettings
    db: Database
    bus: EventBus
    relay: OutboxRelay
    subscriber: Subscriber
    token_verifier: TokenVerifier
    owns_bus: bool
    context: Any = None
    _context_stack: AsyncExitStack = field(default_factory=AsyncExitStack)
    _jobs: list[WorkLoop] = field(default_factory=list)

    async def start(self) -> None:
        await self.db.migrate(self.definition.migrations_package)
        if self.definition.context is not None:
            self.context = await self._context_stack.enter_async_context(self.definition.context(self))
        self.subscriber.context = self.context
        await self.relay.join()
        if self.owns_bus:
            await self.bus.start()
        self.subscriber.attach(self.bus)
        self.relay.start()
        for hook in self.definition.on_startup:
            await hook(self)
        for job in self.definition.periodic:
            loop = self._job_loop(job)
            self._jobs.append(loop)
            loop.start()

    async def stop(self) -> None:
        await asyncio.gather(*(loop.stop() for loop in self._jobs))
        self._jobs.clear()
        for hook in self.definition.on_shutdown:
            with contextlib.suppress(Exception):
                await hook(self)
        await self.relay.stop()
        if self.owns_bus:
            await self.bus.stop()
        try:
            await self._context_stack.aclose()
        except Exception:
            log.exception("service_context_close_failed", service=self.definition.name)
        await self.db.dispose()

    def _job_loop(self, job: PeriodicJob) -> WorkLoop:
        """``job`` every ``interval_s``, the first time one interval after the start; a failure is logged and
        the job runs again one interval later."""
        first = True

        async def round() -> float:
            nonlocal first
            if not first:
                await job.run(self)
            first = False
            return job.interval_s

        def failed(exc: Exception, _retry_in: float) -> None:
            log.error("periodic_job_failed", service=self.definition.name, job=job.name, exc_info=exc)

        return WorkLoop(
            f"{self.definition.name}:{job.name}",
            round,
            backoff_initial_s=job.interval_s,
            backoff_max_s=job.interval_s,
            on_failure=failed,
        )


def create_service_app(
    definition: ServiceDefinition,
    settings: ServiceSettings,
    *,
    bus: EventBus | None = None,
    token_verifier: TokenVerifier | None = None,
) -> FastAPI:
    """Build the FastAPI app of one service.

    ``bus``: share an already-running bus (embedded mode, tests); by default the settings choose one and
    the app owns it. ``token_verifier``: how access tokens are checked; by default the JWKS URL or the
    public key from settings.
    """
    configure_logging(settings.log_level, settings.log_json)
    tracing = tracing_for(definition.name, "kafka" if settings.event_bus == "kafka" else "inprocess")
    db = Database(
        settings.resolved_database_url(),
        event_source=settings.service_name,
        pool_size=settings.db_pool_size,
        pool_timeout_s=settings.db_pool_timeout_s,
    )
    owns_bus = bus is None
    bus = bus or create_bus(settings)
    verifier = token_verifier or TokenVerifier(
        settings.jwt_issuer, jwks_url=settings.jwks_url, public_key_pem=settings.jwt_public_key_pem
    )
    runtime = ServiceRuntime(
        definition=definition,
        settings=settings,
        db=db,
        bus=bus,
        relay=OutboxRelay(
            db,
            bus,
            service=definition.name,
            batch_size=settings.outbox_batch_size,
            poll_interval_s=settings.outbox_poll_interval_s,
        ),
        subscriber=Subscriber(
            definition.name,
            db,
            definition.handlers,
            batches=definition.batch_events,
            collect_ms=definition.collect_events_ms,
        ),
        token_verifier=verifier,
        owns_bus=owns_bus,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        if owns_bus:  # a process of its own (a host of several services freezes once all have started)
            freeze_startup_heap()
        log.info("service_started", service=definition.name, database=db.engine.dialect.name)
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        telemetry=tracing.fastapi_telemetry(),  # SERVER spans only when recorded (docs/tracing.md)
        title=definition.title,
        description=definition.description,
        version=definition.version,
        root_path=settings.root_path,
        lifespan=lifespan,
        openapi_tags=[*definition.openapi_tags, {"name": "operations", "description": "Health and metrics."}],
        # /docs and /redoc with their assets served by the service (mart_common.docs), not from a CDN
        docs_url=None,
        redoc_url=None,
        swagger_ui_parameters={"persistAuthorization": True},
    )
    install_docs(app)
    app.state.runtime = runtime
    install_problem_handlers(app)
    _document_problems_in_openapi(app)
    for router in definition.routers:
        # FastAPI >= 0.16x wraps an included router in a lazy `_IncludedRouter` route that
        # prometheus-fastapi-instrumentator cannot name (AttributeError: no `path`, every request a 500):
        # add the router's own routes (their paths already carry the router's prefix, tags, dependencies).
        app.router.routes.extend(router.routes)
    getattr(app.router, "_mark_routes_changed", lambda: None)()
    metrics = install_operations(
        app, definition.name, {"database": runtime.db.ping, "broker": runtime.bus.ping}
    )
    # Pure ASGI layers, outermost last.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware, service=definition.name, tracing=tracing, metrics=metrics)
    return app


def _document_problems_in_openapi(app: FastAPI) -> None:
    """Every operation's error responses documented as problem+json (mart_common.problems)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_operations(
    app: FastAPI, service: str, checks: Mapping[str, Callable[[], Awaitable[bool]]]
) -> HttpMetrics:
    """``/health``, ``/ready`` (200 when every check passes, else 503 naming the failing ones) and
    ``/metrics``; returns the HTTP metrics the request middleware records."""
    registry = CollectorRegistry(auto_describe=True)
    http_metrics = HttpMetrics(registry)

    @app.get("/health", tags=["operations"], summary="Liveness: the process answers.")
    async def health() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get(
        "/ready",
        tags=["operations"],
        summary="Readiness: the database and the broker are reachable.",
        responses={503: {"description": "A dependency is unreachable (problem+json)."}},
    )
    async def ready() -> Response:
        results = await asyncio.gather(*(check() for check in checks.values()))
        states = {name: "ok" if ok else "unreachable" for name, ok in zip(checks, results, strict=True)}
        if all(results):
            return JSONResponse({"status": "ready", **states})
        return problem_response(503, "Not ready.", slug="not-ready", **states)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics.", include_in_schema=True)
    async def metrics() -> Response:
        body = generate_latest(registry) + generate_latest(REGISTRY)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return http_metrics
