"""Rows written as a response model's JSON without validating them again (mart_common.responses.RowJson):
the bytes a client gets are those the model would write, on both databases."""

from __future__ import annotations

import uuid
import warnings
from datetime import UTC, datetime

import pytest
from mart_common.clock import UtcDatetime
from mart_common.db import Database
from mart_common.deps import Page, Paginated, paged
from mart_common.responses import RowJson
from pydantic import BaseModel, Field, TypeAdapter, computed_field
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Uuid, insert, select

metadata = MetaData()
things = Table(
    "things",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("name", String(50), nullable=False),
    Column("count", Integer, nullable=False),
    Column("note", String(50), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


class ThingPublic(BaseModel):
    id: uuid.UUID
    name: str
    count: int
    note: str | None
    created_at: UtcDatetime


async def test_a_page_of_rows_reads_as_the_validated_model_would_write_it(database_url: str) -> None:
    db = Database(database_url)
    try:
        await db.create_all([metadata])
        async with db.transaction() as session:
            for n in range(3):
                await session.execute(
                    insert(things).values(
                        id=uuid.uuid4(),
                        name=f"thing {n}",
                        count=n,
                        note=None if n else "first",
                        created_at=datetime(2026, 1, 2, 3, 4, 5, 600 + n, tzinfo=UTC),
                    )
                )
        query = paged(select(things).order_by(things.c.count))
        async with db.read() as session:
            rows, total = await Page(limit=2).rows(session, query)
            one = (await session.execute(select(things).where(things.c.count == 1))).one()
        page = Page(limit=2).wrap(rows, total)
        validated = TypeAdapter(Paginated[ThingPublic])
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a value the model would not write as it is fails here
            written = RowJson(ThingPublic, page=True).dump_json(page)
            assert written == validated.dump_json(validated.validate_python(page, from_attributes=True))
            assert (
                RowJson(ThingPublic).dump_json(one)
                == ThingPublic.model_validate(one, from_attributes=True).model_dump_json().encode()
            )
        # the window column that carries the total is not a field of the model: left out
        assert b"_total" not in written
        assert b'"created_at":"2026-01-02T03:04:05.000600Z"' in written
    finally:
        await db.dispose()


def test_a_model_that_renames_or_computes_fields_is_refused() -> None:
    class Renamed(BaseModel):
        name: str = Field(serialization_alias="title")

    class Computed(BaseModel):
        name: str

        @computed_field
        def shout(self) -> str:
            return self.name.upper()

    for model in (Renamed, Computed):
        with pytest.raises(TypeError, match="plain fields only"):
            RowJson(model)
