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

``uvicorn bench.leansaga:app`` with ``BENCH_SAGA_ROLE`` (order | inventory | payment), ``BENCH_SAGA_DSN`` (a
plain ``postgresql://`` DSN), ``BENCH_SAGA_KAFKA`` and ``BENCH_SAGA_NAMESPACE`` (the topics' prefix).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fastapi import FastAPI, Request, Response
from google.protobuf.message import Message
from mart.orders.v1 import orders_pb2
from mart.payments.v1 import payments_pb2
from mart.stock.v1 import stock_pb2
from mart_common.bus.kafka import PRODUCER_SETTINGS
from mart_common.heap import freeze_startup_heap

from mart_common import contracts

ROLES = ("order", "inventory", "payment")
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

    def __init__(self, role: str, dsn: str, kafka: str, namespace: str) -> None:
        self.role, self.dsn, self.kafka, self.ns = role, dsn, kafka, namespace
        self.pool: asyncpg.Pool | None = None
        self.producer: AIOKafkaProducer | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.task: asyncio.Task[None] | None = None
        t = f"lean_{role}"
        self.sql_inbox = f"INSERT INTO {t}_inbox VALUES ($1, now()) ON CONFLICT DO NOTHING"
        self.sql_create = f"INSERT INTO {t}_agg VALUES ($1, $2, $3, $4::jsonb, now())"
        self.sql_lock = f"SELECT status, ref, history FROM {t}_agg WHERE id = $1 FOR UPDATE"
        self.sql_change = (
            f"UPDATE {t}_agg SET status = $2, history = history || $3::jsonb, updated_at = now() "
            "WHERE id = $1"
        )
        self.sql_outbox = (
            f"INSERT INTO {t}_outbox (event_id, topic, key, payload, headers, created_at) "
            "VALUES ($1, $2, $3, $4, $5::jsonb, now())"
        )
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
        self.pool = await asyncpg.create_pool(self.dsn, min_size=2, max_size=10)
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
        if self.pool is not None:
            await self.pool.close()

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
        assert self.pool is not None and self.producer is not None
        new_id = uuid.uuid4().hex
        entry = json.dumps([{"status": status}])
        async with self.pool.acquire() as conn, conn.transaction():
            if event_id is not None:
                await conn.execute(self.sql_inbox, event_id)
            if create is not None:
                await conn.execute(self.sql_create, aggregate, status, create, entry)
                ref = create
            else:
                ref = (await conn.fetchrow(self.sql_lock, aggregate))["ref"]
                await conn.execute(self.sql_change, aggregate, status, entry)
            event = emit(ref)
            topic, key = contracts.topic_for(event), ref or aggregate
            headers = {"ce_id": new_id, "ce_type": contracts.ce_type(event), "ce_source": f"lean-{self.role}"}
            payload = event.SerializeToString()
            await conn.execute(self.sql_outbox, new_id, topic, key, payload, json.dumps(headers))
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


_role: Role | None = None


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    global _role
    _role = Role(
        os.environ["BENCH_SAGA_ROLE"],
        os.environ["BENCH_SAGA_DSN"],
        os.environ["BENCH_SAGA_KAFKA"],
        os.environ.get("BENCH_SAGA_NAMESPACE", ""),
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
