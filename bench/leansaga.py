"""The lean saga: the checkout's path (docs/saga.md) with nothing but the work the path itself must do, run
by the same load generator at the same arrival rate as ours — the machine's own floor for the checkout
latency, measured end to end instead of summed from probes.

Three processes, one per role on the path, each a minimal FastAPI app (no middleware) with an asyncpg pool
and an aiokafka consumer group and producer, speaking the HTTP calls and events the load generator uses:

- order: ``POST /orders`` (the order row and its ``OrderPlaced``), ``StockReserved`` →
  ``OrderAwaitingPayment``, ``PaymentSucceeded`` → ``OrderPaid``;
- inventory: ``OrderPlaced`` → ``StockReserved``;
- payment: ``OrderAwaitingPayment`` → ``PaymentRequested``, ``POST /payments/{id}/simulate`` →
  ``PaymentSucceeded``.

Every step is one transaction doing what each step of ours must do (the lean saga step of the probes): the
inbox row for an event, the aggregate row locked and changed (inserted when the step creates it), the next
event's outbox row; then the event is handed to the producer (``acks=all``, idempotent, no linger: our
settings) without waiting for the acknowledgement, as our relay does. Each consumer reads every record of its
topics and skips the types it does not handle, as ours do; offsets are committed on an interval. Left out on
purpose, because the checkout's path does not wait for them: notification-service, inventory's
``OrderPaid`` → ``StockCommitted``, the relay's marking of published rows. So this is a floor: what any
implementation of this saga pays on this machine at this rate.

The same steps run on one of three database layers (``BENCH_SAGA_DB``), to tell what each layer of the
services' stack costs on the saga's path:

- ``asyncpg``: the driver alone (the floor);
- ``core``: the same statements through SQLAlchemy Core, a connection from the services' engine
  (``mart_common.db.Database``: its pool and connection settings) in one transaction;
- ``session``: the same statements through the services' unit of work, an ORM ``AsyncSession`` in one
  transaction (``Database.transaction()``), without ORM objects;
- ``orm``: as the services change an aggregate: the session, the aggregate a SQLModel object (added, or
  loaded ``FOR UPDATE`` and its attributes set, flushed by the commit).

``uvicorn bench.leansaga:app`` with ``BENCH_SAGA_ROLE`` (order | inventory | payment), ``BENCH_SAGA_DSN`` (a
plain ``postgresql://`` DSN), ``BENCH_SAGA_KAFKA``, ``BENCH_SAGA_NAMESPACE`` (the topics' prefix) and
``BENCH_SAGA_DB`` (``asyncpg``, the default, ``core``, ``session`` or ``orm``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import types
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Protocol

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fastapi import FastAPI, Request, Response
from google.protobuf.message import Message
from mart.orders.v1 import orders_pb2
from mart.payments.v1 import payments_pb2
from mart.stock.v1 import stock_pb2
from mart_common.bus.kafka import PRODUCER_SETTINGS
from mart_common.clock import utcnow
from mart_common.db import Database
from mart_common.heap import freeze_startup_heap
from sqlalchemy import Column, DateTime, bindparam, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field, SQLModel

from mart_common import contracts

ROLES = ("order", "inventory", "payment")
LAYERS = ("asyncpg", "core", "session", "orm")  # BENCH_SAGA_DB: the database layer the steps run on
STOCK_ROWS = 50  # inventory's aggregate: one of this many stock rows, locked and changed per reservation


def schema(role: str) -> str:
    """The role's tables (created fresh for each run)."""
    return f"""
    DROP TABLE IF EXISTS lean_{role}_inbox, lean_{role}_agg, lean_{role}_outbox;
    CREATE TABLE lean_{role}_inbox (event_id text PRIMARY KEY, processed_at timestamptz NOT NULL);
    CREATE TABLE lean_{role}_agg (
        id text PRIMARY KEY, status text NOT NULL, ref text NOT NULL, history jsonb NOT NULL,
        updated_at timestamptz NOT NULL);
    CREATE TABLE lean_{role}_outbox (
        seq bigserial PRIMARY KEY, event_id text NOT NULL, topic text NOT NULL, key text NOT NULL,
        payload bytea NOT NULL, headers jsonb NOT NULL, created_at timestamptz NOT NULL);
    """ + (
        f"INSERT INTO lean_{role}_agg SELECT g::text, 'STOCK', '', '[]', now() "
        f"FROM generate_series(0, {STOCK_ROWS - 1}) g;"
        if role == "inventory"
        else ""
    )


class Role:
    """One role's process: its database steps, its producer, its consumer group."""

    def __init__(self, role: str, dsn: str, kafka: str, namespace: str, layer: str = "asyncpg") -> None:
        self.role, self.kafka, self.ns = role, kafka, namespace
        self.producer: AIOKafkaProducer | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.task: asyncio.Task[None] | None = None
        self.db = database_layer(layer, dsn, role)
        self.handlers: dict[str, Callable[[Message, str], Awaitable[None]]] = {
            "order": {
                contracts.ce_type(stock_pb2.StockReserved): self.on_stock_reserved,
                contracts.ce_type(payments_pb2.PaymentSucceeded): self.on_payment_succeeded,
            },
            "inventory": {contracts.ce_type(orders_pb2.OrderPlaced): self.on_order_placed},
            "payment": {contracts.ce_type(orders_pb2.OrderAwaitingPayment): self.on_awaiting_payment},
        }[role]
        self.topics = sorted({contracts.topic_for(contracts.message_class(t)) for t in self.handlers})

    async def start(self) -> None:
        await self.db.start()
        self.producer = AIOKafkaProducer(bootstrap_servers=self.kafka, **PRODUCER_SETTINGS)
        await self.producer.start()
        self.consumer = AIOKafkaConsumer(
            *(self.ns + t for t in self.topics),
            bootstrap_servers=self.kafka,
            group_id=f"{self.ns}lean-{self.role}",
            auto_offset_reset="earliest",
            enable_auto_commit=True,
            auto_commit_interval_ms=500,
        )
        await self.consumer.start()
        self.task = asyncio.create_task(self.consume())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        for part in (self.consumer, self.producer):
            if part is not None:
                await part.stop()
        await self.db.close()

    @property
    def ready(self) -> bool:
        return bool(self.consumer and self.consumer.assignment())

    async def consume(self) -> None:
        assert self.consumer is not None
        while True:
            batches = await self.consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for rec in records:
                    headers = dict(rec.headers or ())
                    handler = self.handlers.get((headers.get("ce_type") or b"").decode())
                    if handler is not None:  # other types on the same topic: skipped, as ours do
                        event = contracts.decode(headers["ce_type"].decode(), rec.value)
                        await handler(event, headers["ce_id"].decode())

    # --- one transaction per step, then the event to the producer ------------------------------------

    async def step(
        self,
        *,
        event_id: str | None,
        aggregate: str,
        status: str,
        emit: Callable[[str], Message],
        create: str | None = None,
    ) -> None:
        """``create``: insert the aggregate (with that reference) instead of locking and changing it;
        ``emit(reference)``: the next event, from the aggregate's reference (e.g. a payment's order)."""
        assert self.producer is not None
        new_id = uuid.uuid4().hex
        entry = {"status": status}
        async with self.db.unit() as unit:
            if event_id is not None:
                await unit.inbox(event_id)
            if create is not None:
                await unit.create(aggregate, status, create, entry)
                ref = create
            else:
                ref = await unit.change(aggregate, status, entry)
            event = emit(ref)
            topic, key = contracts.topic_for(event), ref or aggregate
            headers = {"ce_id": new_id, "ce_type": contracts.ce_type(event), "ce_source": f"lean-{self.role}"}
            payload = event.SerializeToString()
            await unit.outbox(new_id, topic, key, payload, json.dumps(headers))
        await self.producer.send(
            self.ns + topic, payload, key=key.encode(), headers=[(k, v.encode()) for k, v in headers.items()]
        )

    async def place_order(self) -> str:
        order_id = str(uuid.uuid4())
        await self.step(
            event_id=None,
            aggregate=order_id,
            status="PENDING",
            create=order_id,
            emit=lambda ref: orders_pb2.OrderPlaced(order_id=ref, total_cents=1000, currency="USD"),
        )
        return order_id

    async def on_order_placed(self, event: orders_pb2.OrderPlaced, event_id: str) -> None:
        await self.step(
            event_id=event_id,
            aggregate=str(zlib.crc32(event.order_id.encode()) % STOCK_ROWS),
            status="RESERVED",
            emit=lambda _: stock_pb2.StockReserved(order_id=event.order_id),
        )

    async def on_stock_reserved(self, event: stock_pb2.StockReserved, event_id: str) -> None:
        await self.step(
            event_id=event_id,
            aggregate=event.order_id,
            status="AWAITING_PAYMENT",
            emit=lambda ref: orders_pb2.OrderAwaitingPayment(order_id=ref, total_cents=1000, currency="USD"),
        )

    async def on_awaiting_payment(self, event: orders_pb2.OrderAwaitingPayment, event_id: str) -> None:
        payment_id = str(uuid.uuid5(uuid.NAMESPACE_URL, event.order_id))
        await self.step(
            event_id=event_id,
            aggregate=payment_id,
            status="PENDING",
            create=event.order_id,
            emit=lambda ref: payments_pb2.PaymentRequested(payment_id=payment_id, order_id=ref),
        )

    async def pay(self, payment_id: str) -> None:
        await self.step(
            event_id=None,
            aggregate=payment_id,
            status="SUCCEEDED",
            emit=lambda ref: payments_pb2.PaymentSucceeded(payment_id=payment_id, order_id=ref),
        )

    async def on_payment_succeeded(self, event: payments_pb2.PaymentSucceeded, event_id: str) -> None:
        await self.step(
            event_id=event_id,
            aggregate=event.order_id,
            status="PAID",
            emit=lambda ref: orders_pb2.OrderPaid(order_id=ref, payment_id=event.payment_id),
        )


# --- the database layers ----------------------------------------------------------------------------------

Entry = dict[str, str]  # one history entry of an aggregate


class Unit(Protocol):
    """One step's transaction: the inbox row, the aggregate created or locked and changed, the outbox row."""

    async def inbox(self, event_id: str) -> None: ...
    async def create(self, aggregate: str, status: str, ref: str, entry: Entry) -> None: ...
    async def change(self, aggregate: str, status: str, entry: Entry) -> str: ...
    async def outbox(self, event_id: str, topic: str, key: str, payload: bytes, headers: str) -> None: ...


class Layer(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    def unit(self) -> contextlib.AbstractAsyncContextManager[Unit]: ...


def _statements(role: str) -> dict[str, str]:
    """A step's statements (asyncpg's ``$1`` parameters)."""
    t = f"lean_{role}"
    return {
        "inbox": f"INSERT INTO {t}_inbox VALUES ($1, now()) ON CONFLICT DO NOTHING",
        "create": f"INSERT INTO {t}_agg VALUES ($1, $2, $3, CAST($4 AS jsonb), now())",
        "lock": f"SELECT ref FROM {t}_agg WHERE id = $1 FOR UPDATE",
        "change": (
            f"UPDATE {t}_agg SET status = $2, history = history || CAST($3 AS jsonb), updated_at = now() "
            "WHERE id = $1"
        ),
        "outbox": (
            f"INSERT INTO {t}_outbox (event_id, topic, key, payload, headers, created_at) "
            "VALUES ($1, $2, $3, $4, CAST($5 AS jsonb), now())"
        ),
    }


class StatementUnit:
    """A step as statements: ``run(name, *args)`` runs one of :func:`_statements` in the unit's transaction
    and answers the first column of its first row (or None)."""

    def __init__(self, run: Callable[..., Awaitable[Any]]) -> None:
        self.run = run

    async def inbox(self, event_id: str) -> None:
        await self.run("inbox", event_id)

    async def create(self, aggregate: str, status: str, ref: str, entry: Entry) -> None:
        await self.run("create", aggregate, status, ref, json.dumps([entry]))

    async def change(self, aggregate: str, status: str, entry: Entry) -> str:
        ref = await self.run("lock", aggregate)
        await self.run("change", aggregate, status, json.dumps([entry]))
        return str(ref)

    async def outbox(self, event_id: str, topic: str, key: str, payload: bytes, headers: str) -> None:
        await self.run("outbox", event_id, topic, key, payload, headers)


class DriverLayer:
    """The driver alone: an asyncpg pool, a transaction per unit."""

    def __init__(self, dsn: str, role: str) -> None:
        self.dsn = dsn
        self.sql = _statements(role)
        self.pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        self.pool = await asyncpg.create_pool(self.dsn, min_size=2, max_size=10)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[Unit]:
        assert self.pool is not None
        async with self.pool.acquire() as conn, conn.transaction():

            async def run(name: str, *args: Any) -> Any:
                return await conn.fetchval(self.sql[name], *args)

            yield StatementUnit(run)


_DOLLAR = re.compile(r"\$(\d+)")


class SQLAlchemyLayer:
    """The services' engine (``mart_common.db.Database``: its pool and connection settings), the statements
    built once as the services build theirs: on a Core connection (``core``) or through the services' unit of
    work, an ORM session (``session``), in one transaction per unit."""

    def __init__(self, dsn: str, role: str, *, session: bool) -> None:
        self.db = Database(dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
        self.session = session
        self.statements = {name: text(_DOLLAR.sub(r":p\1", sql)) for name, sql in _statements(role).items()}

    async def start(self) -> None:
        async with self.db.engine.connect():  # the first connection, as the driver's pool opens its own
            pass

    async def close(self) -> None:
        await self.db.dispose()

    async def run(self, executor: Any, name: str, *args: Any) -> Any:
        """Statement ``name`` of :func:`_statements` with ``args`` on ``executor`` (a connection or a
        session): the first column of its first row, or None."""
        params = {f"p{i}": arg for i, arg in enumerate(args, start=1)}
        result = await executor.execute(self.statements[name], params)
        return result.scalar() if result.returns_rows else None

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[Unit]:
        begin = self.db.transaction() if self.session else self.db.engine.begin()
        async with begin as executor:
            yield StatementUnit(functools.partial(self.run, executor))


@functools.cache
def _aggregate_model(role: str) -> type[SQLModel]:
    """The role's aggregate table as a SQLModel table, as the services declare theirs."""

    def body(ns: dict[str, Any]) -> None:
        ns["__module__"] = __name__
        ns["__tablename__"] = f"lean_{role}_agg"
        ns["__annotations__"] = {
            "id": str,
            "status": str,
            "ref": str,
            "history": list,
            "updated_at": datetime,
        }
        ns["id"] = Field(primary_key=True)
        ns["history"] = Field(sa_column=Column(JSONB, nullable=False))
        ns["updated_at"] = Field(sa_column=Column(DateTime(timezone=True), nullable=False))

    return types.new_class(f"Lean{role.title()}Aggregate", (SQLModel,), {"table": True}, body)


class OrmLayer(SQLAlchemyLayer):
    """The services' way of changing an aggregate: an ORM session in one transaction, the aggregate an ORM
    object (added, or loaded ``FOR UPDATE`` and its attributes set, flushed by the commit), the inbox and
    outbox rows as statements on the session (as ``mart_common.inbox`` and ``record_event`` write them)."""

    def __init__(self, dsn: str, role: str) -> None:
        super().__init__(dsn, role, session=True)
        self.model = model = _aggregate_model(role)
        self.lock = (
            select(model)
            .where(model.id == bindparam("aggregate"))  # type: ignore[arg-type]
            .with_for_update()
            .execution_options(populate_existing=True)
        )

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[Unit]:
        async with self.db.transaction() as session:
            yield OrmUnit(self, session)


class OrmUnit(StatementUnit):
    def __init__(self, layer: OrmLayer, session: AsyncSession) -> None:
        super().__init__(functools.partial(layer.run, session))
        self.layer, self.session = layer, session

    async def create(self, aggregate: str, status: str, ref: str, entry: Entry) -> None:
        self.session.add(
            self.layer.model(id=aggregate, status=status, ref=ref, history=[entry], updated_at=utcnow())
        )

    async def change(self, aggregate: str, status: str, entry: Entry) -> str:
        row: Any = (await self.session.execute(self.layer.lock, {"aggregate": aggregate})).scalar_one()
        row.status = status
        row.history = [*row.history, entry]  # a new list: JSON change tracking
        row.updated_at = utcnow()
        return str(row.ref)


def database_layer(layer: str, dsn: str, role: str) -> Layer:
    """One of :data:`LAYERS` for ``role``'s tables (:func:`schema`) on ``dsn`` (``postgresql://``)."""
    if layer == "asyncpg":
        return DriverLayer(dsn, role)
    if layer in ("core", "session"):
        return SQLAlchemyLayer(dsn, role, session=layer == "session")
    if layer == "orm":
        return OrmLayer(dsn, role)
    raise ValueError(f"BENCH_SAGA_DB: one of {', '.join(LAYERS)}, not {layer!r}")


_role: Role | None = None


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    global _role
    _role = Role(
        os.environ["BENCH_SAGA_ROLE"],
        os.environ["BENCH_SAGA_DSN"],
        os.environ["BENCH_SAGA_KAFKA"],
        os.environ.get("BENCH_SAGA_NAMESPACE", ""),
        os.environ.get("BENCH_SAGA_DB", "asyncpg"),
    )
    await _role.start()
    freeze_startup_heap()  # as our services do (mart_common.heap): no full collection walks the startup heap
    yield
    await _role.stop()


app = FastAPI(title="bench lean saga", lifespan=lifespan)


@app.get("/ready")
async def ready() -> Response:
    return Response(status_code=200 if _role and _role.ready else 503)


@app.post("/orders")
async def orders() -> Response:
    assert _role is not None
    order_id = await _role.place_order()
    return Response(json.dumps({"id": order_id}), status_code=201, media_type="application/json")


@app.post("/payments/{payment_id}/simulate")
async def simulate(payment_id: str, request: Request) -> Response:
    assert _role is not None
    await request.body()
    await _role.pay(payment_id)
    return Response(status_code=202)
