"""The bus interface and the delivery rules both adapters share.

Semantics (identical for Kafka and in-process, proven by one contract suite):

- ``publish_many`` returns only when every record is durably stored (Kafka: acks=all).
- Records with the same key keep their order (same partition, delivered one after another).
- A subscriber group sees each record at least once; its position advances only after the handler
  returned. A failing handler is retried with exponential backoff; after ``max_attempts`` (or at once for
  a :class:`PermanentError`) the record goes to the group's dead-letter topic and later records flow on.
- ``redrive(group)`` moves the group's dead letters back onto their original topics.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from prometheus_client import Counter

from mart_common.clock import utcnow
from mart_common.messaging import BusMessage

if TYPE_CHECKING:
    from mart_common.bus.browse import EventTail, TopicInfo

log = structlog.get_logger(__name__)

Handler = Callable[[BusMessage], Awaitable[None]]


DLQ_PREFIX = "dlq_"

DELIVERIES = Counter("mart_bus_deliveries_total", "Records handled by subscribers", ["group", "outcome"])


class PermanentError(Exception):
    """Retrying cannot help (no CloudEvents headers, a payload that does not decode): dead-letter it now."""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 2.0

    def backoff(self, attempt: int) -> float:
        return min(self.max_backoff_s, self.initial_backoff_s * (2 ** (attempt - 1)))


def collect_window_s(handler: Handler) -> float:
    """How long the bus may hold a new record for ``handler`` to deliver it together with the records that
    arrive meanwhile (its ``collect_ms``; 0: deliver at once)."""
    return max(0, getattr(handler, "collect_ms", 0)) / 1000


def dead_letter_topic(group: str) -> str:
    """The dead-letter topic of a consumer group."""
    return f"{group}.dlq"


class EventBus(ABC):
    """Publish records and run subscriber groups over topics."""

    def __init__(self, retry: RetryPolicy | None = None) -> None:
        self.retry = retry or RetryPolicy()

    @abstractmethod
    async def start(self) -> None:
        """Connect; subscriptions made before or after start are run."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop all subscriber groups (finishing the record in hand) and disconnect."""

    @abstractmethod
    async def publish_many(self, messages: Sequence[BusMessage]) -> None:
        """Store records durably, in order; raises on broker failure (the caller retries)."""

    async def publish(self, message: BusMessage) -> None:
        await self.publish_many([message])

    @abstractmethod
    def subscribe(self, group: str, topics: Sequence[str], handler: Handler) -> None:
        """Run ``handler`` for each record of ``topics`` as consumer group ``group``."""

    @abstractmethod
    async def ping(self) -> bool:
        """True when the broker is reachable."""

    @abstractmethod
    async def read_topic(self, topic: str) -> list[BusMessage]:
        """Every record currently on ``topic`` from the start, partition by partition (no group)."""

    @abstractmethod
    async def _drain(self, topic: str, group: str, fn: Handler) -> int:
        """Feed ``fn`` the records of ``topic`` not yet consumed by ``group``, up to the current end."""

    async def topics_overview(self) -> list[TopicInfo]:
        """Every topic with its record count and each consumer group's lag (``mart events topics``)."""
        raise NotImplementedError

    def tail(
        self, topics: Sequence[str] | None = None, *, from_beginning: bool = False, follow: bool = True
    ) -> EventTail:
        """Read ``topics`` (default: all) without a consumer group (``mart events tail``); see
        :class:`mart_common.bus.browse.EventTail`."""
        raise NotImplementedError

    async def redrive(self, group: str) -> int:
        """Re-publish the group's dead letters onto their original topics; returns how many.

        Other groups already applied those events, and their inbox ignores the second copy.
        """

        async def _back(msg: BusMessage) -> None:
            original = msg.header(f"{DLQ_PREFIX}original_topic")
            if not original:
                log.warning("dead_letter_without_origin", group=group, key=msg.key)
                return
            await self.publish(msg.with_headers(topic=original, drop_prefix=DLQ_PREFIX))

        return await self._drain(dead_letter_topic(group), f"{group}.redrive", _back)

    async def dead_letters(self, group: str) -> list[BusMessage]:
        """The group's dead letters (all of them, re-driven ones included)."""
        return await self.read_topic(dead_letter_topic(group))

    async def _deliver_many(self, group: str, handler: Handler, msgs: Sequence[BusMessage]) -> None:
        """Deliver records of one partition in order: in one batch when the handler says ``batches`` and
        has an async ``handle_batch(msgs)`` that applies them all or raises having applied none (the inbox
        :class:`~mart_common.inbox.Subscriber`: one transaction for them all); else, or when the batch
        fails, one by one with retries."""
        if len(msgs) > 1 and await self._deliver_batch(group, handler, msgs):
            return
        for msg in msgs:
            await self._deliver(group, handler, msg)

    async def _deliver_batch(self, group: str, handler: Handler, msgs: Sequence[BusMessage]) -> bool:
        """Apply ``msgs`` in one batch if the handler ``batches``; False when it does not or when the batch
        failed (then nothing of it was applied)."""
        if not getattr(handler, "batches", False):
            return False
        try:
            await handler.handle_batch(msgs)  # type: ignore[attr-defined]
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # nothing was applied: the caller delivers the records on their own
            log.info("batch_failed_delivering_one_by_one", group=group, records=len(msgs), error=str(exc))
            return False
        DELIVERIES.labels(group, "ok").inc(len(msgs))
        return True

    async def _deliver(self, group: str, handler: Handler, msg: BusMessage) -> None:
        """Call ``handler`` with bounded retries; dead-letter the record when they run out."""
        attempt = 0
        while True:
            attempt += 1
            try:
                await handler(msg)
                DELIVERIES.labels(group, "ok").inc()
                return
            except asyncio.CancelledError:
                raise
            except PermanentError as exc:
                reason = f"permanent: {exc}"
                break
            except Exception as exc:
                if attempt >= self.retry.max_attempts:
                    reason = f"{type(exc).__name__}: {exc}"
                    break
                DELIVERIES.labels(group, "retry").inc()
                log.warning(
                    "handler_failed_retrying", group=group, topic=msg.topic, attempt=attempt, error=str(exc)
                )
                await asyncio.sleep(self.retry.backoff(attempt))
        DELIVERIES.labels(group, "dead_lettered").inc()
        log.error("dead_lettered", group=group, topic=msg.topic, key=msg.key, reason=reason[:500])
        dead = msg.with_headers(
            topic=dead_letter_topic(group),
            **{
                f"{DLQ_PREFIX}original_topic": msg.topic,
                f"{DLQ_PREFIX}group": group,
                f"{DLQ_PREFIX}reason": reason[:2000],
                f"{DLQ_PREFIX}attempts": str(attempt),
                f"{DLQ_PREFIX}original_partition": str(msg.partition),
                f"{DLQ_PREFIX}original_offset": str(msg.offset),
                f"{DLQ_PREFIX}at": utcnow().isoformat(),
            },
        )
        # Until the dead letter is stored the record is not done: keep trying (broker outage).
        while True:
            try:
                await self.publish(dead)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("dead_letter_publish_failed", group=group, error=str(exc))
                await asyncio.sleep(self.retry.max_backoff_s)
