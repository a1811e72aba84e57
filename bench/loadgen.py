"""The load generator: runs in its own process (``python -m bench.loadgen spec.json out.json``).

asyncio + aiohttp (HTTP/1.1 keep-alive pool; a quarter of httpx's CPU per request).
Every run reports its own CPU use (user+sys seconds of this process divided by wall-clock seconds, so
1.0 = one core busy) next to its figures, so a reader can see the generator was not the bottleneck.

Modes (``spec["mode"]``):

* ``seq``: ``n`` sequential GETs of ``url`` -> latency list (one HTTP round trip, no concurrency).
* ``checkout``: the checkout flow, closed loop (``concurrency`` customers, each places its next order when
  the previous one is PAID) or open loop (``rate`` orders/s at fixed intervals, each order its own task).
  One order: ``POST /orders`` -> find its payment -> ``POST /payments/{id}/simulate {"outcome":"succeeded"}``
  (the fake provider pays at once) -> observe the order PAID. Observation is either ``poll`` (GET every
  ``poll_s`` seconds: ``/payments?order_id=`` then ``/orders/{id}``), ``kafka`` (the generator reads the
  ``PaymentRequested`` and ``OrderPaid`` events from the broker: no polling load on the services) or ``bus``
  (the same events read from the embedded mart's bus log every ``poll_s``, from this process).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import psutil
from mart_common.polling import PollTimeout, wait_until


class CpuMeter:
    """CPU seconds (user+sys) of this process over a wall-clock window."""

    def __init__(self) -> None:
        self.proc = psutil.Process(os.getpid())

    def __enter__(self) -> CpuMeter:
        t = self.proc.cpu_times()
        self.cpu0 = t.user + t.system
        self.wall0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        t = self.proc.cpu_times()
        self.cpu_s = t.user + t.system - self.cpu0
        self.wall_s = time.perf_counter() - self.wall0
        self.cores = self.cpu_s / self.wall_s if self.wall_s else 0.0


def _client(concurrency: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max(4, concurrency * 2)),
        timeout=aiohttp.ClientTimeout(total=30.0),
    )


@dataclass(frozen=True, slots=True)
class Reply:
    status_code: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def _request(client: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> Reply:
    async with client.request(method, url, **kw) as r:
        return Reply(r.status, await r.read())


async def run_seq(spec: dict[str, Any]) -> dict[str, Any]:
    lat: list[float] = []
    errors: Counter[str] = Counter()
    async with _client(1) as client:
        for _ in range(spec.get("warmup", 20)):
            await _request(client, "GET", spec["url"], headers=spec.get("headers"))
        with CpuMeter() as cpu:
            for _ in range(spec["n"]):
                t0 = time.perf_counter()
                try:
                    r = await _request(client, "GET", spec["url"], headers=spec.get("headers"))
                    if r.status_code >= 400:
                        errors[f"http {r.status_code}"] += 1
                except aiohttp.ClientError as exc:
                    errors[type(exc).__name__] += 1
                    continue
                lat.append(time.perf_counter() - t0)
    return {"latencies_s": lat, "errors": dict(errors), "gen_cpu_cores": cpu.cores, "wall_s": cpu.wall_s}


class Observer:
    """Wakes the customer waiting for its order's PaymentRequested / OrderPaid event; subclasses feed it
    the records of a bus: no polling load on the services."""

    def __init__(self) -> None:
        self.payment_waiters: dict[str, asyncio.Future[str]] = {}
        self.paid_waiters: dict[str, asyncio.Future[float]] = {}
        self.early_payment: dict[str, str] = {}
        self.early_paid: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        raise NotImplementedError

    def seen(self, ce_type: str, value: bytes, now: float) -> None:
        from mart_common import contracts

        if ce_type.endswith("PaymentRequested"):
            ev = contracts.decode(ce_type, value)
            fut = self.payment_waiters.pop(ev.order_id, None)
            if fut and not fut.done():
                fut.set_result(ev.payment_id)
            else:
                self.early_payment[ev.order_id] = ev.payment_id
        elif ce_type.endswith("OrderPaid"):
            ev = contracts.decode(ce_type, value)
            fut2 = self.paid_waiters.pop(ev.order_id, None)
            if fut2 and not fut2.done():
                fut2.set_result(now)
            else:
                self.early_paid[ev.order_id] = now

    async def payment_for(self, order_id: str, timeout: float) -> str:
        if order_id in self.early_payment:
            return self.early_payment.pop(order_id)
        fut = asyncio.get_running_loop().create_future()
        self.payment_waiters[order_id] = fut
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self.payment_waiters.pop(order_id, None)

    async def paid(self, order_id: str, timeout: float) -> float:
        if order_id in self.early_paid:
            return self.early_paid.pop(order_id)
        fut = asyncio.get_running_loop().create_future()
        self.paid_waiters[order_id] = fut
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self.paid_waiters.pop(order_id, None)


class KafkaObserver(Observer):
    """Reads PaymentRequested / OrderPaid from the broker (the distributed mode)."""

    def __init__(self, bootstrap: str, namespace: str = "") -> None:
        super().__init__()
        self.bootstrap = bootstrap
        self.namespace = namespace

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from mart_common.bus.kafka import partitions_of

        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
            max_poll_records=500,
        )
        await self.consumer.start()
        tps = await partitions_of(
            self.consumer, [self.namespace + "mart.payments.v1", self.namespace + "mart.orders.v1"]
        )
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        for tp in tps:
            await self.consumer.position(tp)
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        await self.consumer.stop()

    async def _run(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=200)
            now = time.perf_counter()
            for recs in batches.values():
                for rec in recs:
                    headers = {k: v for k, v in (rec.headers or ())}
                    self.seen((headers.get("ce_type") or b"").decode(), rec.value, now)


class BusObserver(Observer):
    """Reads PaymentRequested / OrderPaid from the embedded mart's in-process bus log (its SQLite file,
    as ``mart events tail`` does from another process), every ``poll_s``."""

    def __init__(self, url: str, partitions: int, poll_s: float) -> None:
        super().__init__()
        from mart_common.bus.inprocess import InProcessBus

        self.bus = InProcessBus(url, partitions=partitions)
        self.poll_s = poll_s

    async def start(self) -> None:
        self.tail = self.bus.tail(["mart.payments.v1", "mart.orders.v1"], poll_s=self.poll_s)
        await self.tail.__aenter__()
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        await self.bus.db.dispose()

    async def _run(self) -> None:
        async for msg in self.tail:
            headers = dict(msg.headers)
            self.seen((headers.get("ce_type") or b"").decode(), msg.value, time.perf_counter())


class OrderFailed(Exception):
    pass


class Checkout:
    def __init__(
        self, spec: dict[str, Any], client: aiohttp.ClientSession, observer: Observer | None
    ) -> None:
        self.spec = spec
        self.client = client
        self.observer = observer
        self.headers = {"Authorization": f"Bearer {spec['token']}"}
        self.order_url = spec["order_url"].rstrip("/")
        self.payment_url = spec["payment_url"].rstrip("/")
        self.poll_s = spec.get("poll_s", 0.01)
        self.timeout = spec.get("order_timeout_s", 30.0)
        self.errors: Counter[str] = Counter()
        self.requests = Counter()

    async def _req(self, method: str, url: str, **kw: Any) -> Reply:
        self.requests[method] += 1
        return await _request(self.client, method, url, headers=self.headers, **kw)

    async def one(self) -> float:
        """Place and pay one order; return seconds from POST /orders to PAID observed."""
        body = {
            "items": [{"product_id": random.choice(self.spec["product_ids"]), "quantity": 1}],
            "shipping_address": {
                "name": "Bench",
                "line1": "1 Loop St",
                "city": "Localhost",
                "postal_code": "12345",
                "country": "DE",
            },
        }
        t0 = time.perf_counter()
        deadline = t0 + self.timeout
        r = await self._req("POST", f"{self.order_url}/orders", json=body)
        if r.status_code != 201:
            raise OrderFailed(f"POST /orders {r.status_code}")
        order_id = r.json()["id"]
        # 1. the payment the saga creates
        if self.observer is not None:
            payment_id = await self.observer.payment_for(order_id, self.timeout)
        else:
            payment_id = await self._poll(self._payable(order_id), deadline, "the payment")
        # 2. the fake provider pays
        r = await self._req(
            "POST", f"{self.payment_url}/payments/{payment_id}/simulate", json={"outcome": "succeeded"}
        )
        if r.status_code != 202:
            raise OrderFailed(f"POST simulate {r.status_code}")
        # 3. the order reaches PAID
        if self.observer is not None:
            t_paid = await self.observer.paid(order_id, max(0.1, deadline - time.perf_counter()))
            return t_paid - t0
        await self._poll(self._paid(order_id), deadline, "PAID")
        return time.perf_counter() - t0

    async def _poll(self, check: Callable[[], Awaitable[Any]], deadline: float, what: str) -> Any:
        """``check`` every ``poll_s`` until it answers, or :class:`OrderFailed` past ``deadline``."""
        try:
            return await wait_until(check, timeout=deadline - time.perf_counter(), interval=self.poll_s)
        except PollTimeout:
            raise OrderFailed(f"timeout waiting for {what}") from None

    def _payable(self, order_id: str) -> Callable[[], Awaitable[str | None]]:
        """The order's payment id once the provider's intent exists (CREATING before:
        docs/adr/0015-payment-provider-calls-after-commit.md)."""

        async def check() -> str | None:
            r = await self._req("GET", f"{self.payment_url}/payments", params={"order_id": order_id})
            if r.status_code != 200:
                raise OrderFailed(f"GET /payments {r.status_code}")
            items = r.json().get("items", [])
            return items[0]["id"] if items and items[0]["status"] == "REQUIRES_PAYMENT" else None

        return check

    def _paid(self, order_id: str) -> Callable[[], Awaitable[bool]]:
        """Whether the order is PAID; :class:`OrderFailed` once it cannot be (REJECTED, CANCELLED)."""

        async def check() -> bool:
            r = await self._req("GET", f"{self.order_url}/orders/{order_id}")
            if r.status_code != 200:
                raise OrderFailed(f"GET /orders/id {r.status_code}")
            status = r.json()["status"]
            if status in ("REJECTED", "CANCELLED"):
                raise OrderFailed(f"order {status}")
            return status == "PAID"

        return check

    async def attempt(self, done: list[tuple[float, float]]) -> None:
        try:
            lat = await self.one()
            done.append((time.perf_counter(), lat))
        except OrderFailed as exc:
            self.errors[str(exc)] += 1
        except (TimeoutError, aiohttp.ClientError) as exc:
            self.errors[type(exc).__name__] += 1
        except Exception as exc:  # noqa: BLE001 - counted and reported, never hidden
            self.errors[f"{type(exc).__name__}: {exc}"[:120]] += 1


async def run_checkout(spec: dict[str, Any]) -> dict[str, Any]:
    observer: Observer | None = None
    if spec.get("observe") == "kafka":
        observer = KafkaObserver(spec["kafka"], spec.get("namespace", ""))
    elif spec.get("observe") == "bus":
        observer = BusObserver(spec["bus_url"], spec["bus_partitions"], spec["poll_s"])
    if observer is not None:
        await observer.start()
    conc = spec.get("concurrency", 16)
    async with _client(conc if spec["loop"] == "closed" else 64) as client:
        co = Checkout(spec, client, observer)
        # warm-up (not counted)
        warm: list[tuple[float, float]] = []
        await asyncio.gather(*(co.attempt(warm) for _ in range(spec.get("warmup", 4))))
        warm_errors = dict(co.errors)
        co.errors.clear()
        co.requests.clear()
        done: list[tuple[float, float]] = []
        duration = spec["duration_s"]
        with CpuMeter() as cpu:
            t_start = time.perf_counter()
            t_end = t_start + duration
            if spec["loop"] == "closed":

                async def customer() -> None:
                    while time.perf_counter() < t_end:
                        await co.attempt(done)

                await asyncio.gather(*(customer() for _ in range(conc)))
            else:
                interval = 1.0 / spec["rate"]
                tasks = []
                n = 0
                while True:
                    t_next = t_start + n * interval
                    if t_next >= t_end:
                        break
                    delay = t_next - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    tasks.append(asyncio.create_task(co.attempt(done)))
                    n += 1
                await asyncio.gather(*tasks)
            wall = time.perf_counter() - t_start
    if observer is not None:
        await observer.stop()
    # throughput = orders that reached PAID inside the window / window length
    inside = [lat for (t, lat) in done if t <= t_end]
    return {
        "completed": len(done),
        "completed_in_window": len(inside),
        "window_s": duration,
        "wall_s": wall,
        "orders_per_s": len(inside) / duration,
        "latencies_s": [lat for (_, lat) in done],
        "errors": dict(co.errors),
        "warmup_completed": len(warm),
        "warmup_errors": warm_errors,
        "requests": dict(co.requests),
        "gen_cpu_cores": cpu.cores,
        "gen_cpu_s": cpu.cpu_s,
    }


def main() -> None:
    spec = json.loads(open(sys.argv[1]).read())
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    fn = {"seq": run_seq, "checkout": run_checkout}[spec["mode"]]
    out = asyncio.run(fn(spec))
    with open(sys.argv[2], "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
