"""``mart events``: the CLI side of the event browser (formatting only; reading the bus is
``mart_common.bus.browse`` and the adapters' ``tail`` / ``topics_overview``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from mart_common.bus import EventBus
from mart_common.bus.browse import CE_HEADERS, DecodedEvent, EventFilter, TopicInfo, decode_event


async def topics(bus: EventBus) -> list[TopicInfo]:
    try:
        return await bus.topics_overview()
    finally:
        await bus.stop()


def format_topics(infos: Sequence[TopicInfo]) -> str:
    if not infos:
        return "no topics yet"
    lines = [f"{'topic':<36} {'partitions':>10} {'messages':>9}   consumer groups (committed / lag)"]
    for info in infos:
        groups = ", ".join(f"{g.group} {g.committed}/{g.lag}" for g in info.groups) or "-"
        lines.append(f"{info.topic:<36} {info.partitions:>10} {info.messages:>9}   {groups}")
    return "\n".join(lines)


async def tail(
    bus: EventBus,
    out: Callable[[str], None],
    *,
    topics: Sequence[str] = (),
    where: EventFilter = EventFilter(),  # noqa: B008 - frozen dataclass
    from_beginning: bool = False,
    follow: bool = True,
    as_json: bool = False,
) -> int:
    """Print the matching events; returns how many (when not following, or when interrupted)."""
    count = 0
    try:
        async with bus.tail(topics or None, from_beginning=from_beginning, follow=follow) as records:
            async for msg in records:
                event = decode_event(msg)
                if not where.matches(msg, event.as_dict()):
                    continue
                count += 1
                out(json.dumps(event.as_dict()) if as_json else format_event(event))
    finally:
        await bus.stop()
    return count


def format_event(event: DecodedEvent) -> str:
    lines = [f"── {event.topic}[{event.partition}]@{event.offset}  key={event.key}  {event.type or '?'}"]
    shown = [h for h in CE_HEADERS if h in event.headers]
    shown += sorted(h for h in event.headers if h not in CE_HEADERS)
    for name in shown:
        lines.append(f"   {name}: {event.headers[name]}")
    if event.error:
        lines.append(f"   (not decoded: {event.error}; payload base64 {event.raw})")
    else:
        lines.extend("   " + line for line in json.dumps(event.payload, indent=2).splitlines())
    return "\n".join(lines)
