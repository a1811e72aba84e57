"""Time in the mart is UTC, always timezone-aware.

SQLite hands back naive datetimes for ``DateTime(timezone=True)`` columns; :func:`as_utc` and the
:data:`UtcDatetime` schema type put the zone back, so responses and events read the same on both databases.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, overload

from pydantic import AfterValidator


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """``value`` as an aware UTC datetime (naive values are taken to be UTC, as everything stored is)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]
"""A datetime field of a response schema: always serialised with its UTC offset."""
