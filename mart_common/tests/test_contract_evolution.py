"""Contract evolution: the released contracts (protos/baseline/v1.binpb) and the rules that keep them valid.

- ``scripts/buf-breaking.sh`` compares protos/ with the committed baseline image, not only with the previous
  commit: a change that breaks the baseline fails even where git has no history to compare with.
- Adding a field is the compatible change the rules allow, and it works both ways at runtime: a consumer
  built from the released contract (the code in this repository, through the real ``Subscriber``) reads a
  message that carries a new field, and a consumer built from the evolved contract (a descriptor made here
  with ``descriptor_pb2`` / ``message_factory``) reads a message published from the released one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

_stand_in = sys.modules.get("mart_common")  # see test_contracts.py: the workspace folder hides the package
if _stand_in is not None and getattr(_stand_in, "__file__", None) is None:
    del sys.modules["mart_common"]

import pytest  # noqa: E402
from google.protobuf import descriptor_pb2  # noqa: E402
from google.protobuf.json_format import MessageToDict  # noqa: E402
from google.protobuf.message import Message  # noqa: E402
from mart.orders.v1 import orders_pb2  # noqa: E402
from mart_common.db import Database  # noqa: E402
from mart_common.inbox import Subscriber  # noqa: E402
from mart_common.messaging import MESSAGING_METADATA, Envelope  # noqa: E402
from mart_testkit.contracts import baseline_class, evolved_class, populated  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession  # noqa: E402

from mart_common import contracts  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
BASELINE = REPO_ROOT / "protos" / "baseline" / "v1.binpb"
BUF = REPO_ROOT / "node_modules" / ".bin" / "buf"
ORDERS_PROTO = Path("mart") / "orders" / "v1" / "orders.proto"
NEW_FIELD = "  // A coupon the customer applied (added after v1 was released).\n  string coupon_code = 7;\n"
PLACED_AT = "  google.protobuf.Timestamp placed_at = 6;\n"


# --- the baseline and the script ------------------------------------------------------------------


def test_the_baseline_image_holds_every_released_event() -> None:
    # A buf image is wire-compatible with a FileDescriptorSet (field 1: files, FileDescriptorProto-like).
    image = descriptor_pb2.FileDescriptorSet.FromString(BASELINE.read_bytes())
    released = {
        f"{f.package}.{m.name}" for f in image.file if f.package.startswith("mart.") for m in f.message_type
    }
    assert set(contracts.all_event_types()) <= released
    assert {f.package for f in image.file if f.package.startswith("mart.")} == set(contracts.TOPICS)


def _script_copy(tmp_path: Path) -> Path:
    """The script and protos/ (with the baseline) in a directory without git history."""
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "scripts" / "buf-breaking.sh", root / "scripts")
    shutil.copytree(REPO_ROOT / "protos", root / "protos")
    return root


def _run_script(root: Path) -> subprocess.CompletedProcess[str]:
    if not BUF.is_file():
        pytest.fail(f"buf is missing at {BUF}: run `npm install` at the repo root (@bufbuild/buf)")
    env = {**os.environ, "BUF": str(BUF), "GIT_CEILING_DIRECTORIES": str(root.parent)}
    return subprocess.run(  # noqa: S603
        ["bash", str(root / "scripts" / "buf-breaking.sh")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_script_accepts_a_new_field(tmp_path: Path) -> None:
    root = _script_copy(tmp_path)
    proto = root / "protos" / ORDERS_PROTO
    text = proto.read_text()
    assert PLACED_AT in text
    proto.write_text(text.replace(PLACED_AT, PLACED_AT + NEW_FIELD, 1))
    result = _run_script(root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "released contracts" in result.stderr


def test_the_script_fails_a_change_that_breaks_the_released_contracts_without_git_history(
    tmp_path: Path,
) -> None:
    root = _script_copy(tmp_path)
    proto = root / "protos" / ORDERS_PROTO
    text = proto.read_text()
    proto.write_text(text.replace("  int64 total_cents = 4;\n", "  string total_cents = 4;\n", 1))
    result = _run_script(root)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "no previous commit to compare with" in output  # git could not have caught it
    assert "total_cents" in output and "OrderPlaced" in output


def test_the_script_refuses_to_run_without_the_baseline(tmp_path: Path) -> None:
    root = _script_copy(tmp_path)
    (root / "protos" / "baseline" / "v1.binpb").unlink()
    result = _run_script(root)
    assert result.returncode == 2
    assert "released contracts" in result.stderr


# --- runtime compatibility both ways -------------------------------------------------------------


def _add_coupon_code(proto: descriptor_pb2.FileDescriptorProto) -> None:
    placed = next(m for m in proto.message_type if m.name == "OrderPlaced")
    assert 7 not in {f.number for f in placed.field}
    placed.field.add(
        name="coupon_code",
        number=7,
        json_name="couponCode",
        type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )


def _evolved_order_placed() -> type[Message]:
    """OrderPlaced of the next contract version: field 7 ``coupon_code`` added (built at runtime)."""
    return evolved_class(orders_pb2, "mart.orders.v1.OrderPlaced", _add_coupon_code)


def _fields(order_id: str) -> dict[str, object]:
    return {"order_id": order_id, "user_id": str(uuid.uuid4()), "total_cents": 1234, "currency": "EUR"}


def _line(cls_owner: Message) -> None:
    line = cls_owner.lines.add()
    line.product_id, line.product_name, line.quantity, line.unit_price_cents = "p-1", "Mug", 2, 617


async def test_a_consumer_of_the_released_contract_reads_a_message_with_a_new_field(new_database) -> None:
    new_cls = _evolved_order_placed()
    order_id = str(uuid.uuid4())
    newer = new_cls(**_fields(order_id), coupon_code="WELCOME10")
    _line(newer)
    payload = newer.SerializeToString()

    received: list[orders_pb2.OrderPlaced] = []

    async def handler(
        _context: object, session: AsyncSession, event: orders_pb2.OrderPlaced, envelope: Envelope
    ) -> None:
        received.append(event)

    db = Database(await new_database("sqlite"))
    await db.create_all([MESSAGING_METADATA])
    try:
        subscriber = Subscriber("evolution-consumer", db, {orders_pb2.OrderPlaced: handler})
        envelope = Envelope.new(
            type="mart.orders.v1.OrderPlaced",
            source="order-service-v2",
            topic="mart.orders.v1",
            key=order_id,
            payload=payload,
        )
        await subscriber(envelope.to_bus())
    finally:
        await db.dispose()
    [event] = received  # handled, not dead-lettered
    assert isinstance(event, orders_pb2.OrderPlaced)
    assert (event.order_id, event.total_cents, event.currency) == (order_id, 1234, "EUR")
    assert [(ln.product_id, ln.quantity, ln.unit_price_cents) for ln in event.lines] == [("p-1", 2, 617)]
    # The field it does not know is kept, not dropped: re-publishing the event loses nothing.
    assert new_cls.FromString(event.SerializeToString()).coupon_code == "WELCOME10"


def test_a_consumer_of_the_new_contract_reads_a_message_of_the_released_one() -> None:
    new_cls = _evolved_order_placed()
    order_id = str(uuid.uuid4())
    released = orders_pb2.OrderPlaced(**_fields(order_id))
    _line(released)
    released.placed_at.FromSeconds(1_800_000_000)
    event = new_cls.FromString(released.SerializeToString())
    assert (event.order_id, event.total_cents, event.currency) == (order_id, 1234, "EUR")
    assert event.placed_at.seconds == 1_800_000_000
    assert [(ln.product_name, ln.quantity) for ln in event.lines] == [("Mug", 2)]
    assert event.coupon_code == ""  # absent in the old message: the field's default


# --- every current event, read by a consumer of the released contracts ---------------------------------


def _known_part(value: object, descriptor: object) -> object:
    """``value`` (MessageToDict form) restricted to the fields ``descriptor`` (a released message) has."""
    if isinstance(value, list):
        return [_known_part(v, descriptor) for v in value]
    if not isinstance(value, dict) or descriptor.full_name == "google.protobuf.Timestamp":  # type: ignore[attr-defined]
        return value
    out = {}
    for name, v in value.items():
        field = descriptor.fields_by_name.get(name)  # type: ignore[attr-defined]
        if field is not None:
            out[name] = _known_part(v, field.message_type) if field.message_type else v
    return out


def _read_by_released(current: Message, released_cls: type[Message]) -> list[str]:
    """What a consumer of the released contract gets wrong in ``current`` (empty: nothing)."""
    released = released_cls.FromString(current.SerializeToString())
    sent = _known_part(MessageToDict(current, preserving_proto_field_name=True), released.DESCRIPTOR)
    read = MessageToDict(released, preserving_proto_field_name=True)
    wrong = [
        f"{k}: sent {sent.get(k)!r}, read {read.get(k)!r}"
        for k in sent.keys() | read.keys()
        if sent.get(k) != read.get(k)
    ]
    # What it does not know travels on: re-publishing the event loses nothing.
    if type(current).FromString(released.SerializeToString()) != current:
        wrong.append("fields lost when the released consumer re-serialises the event")
    return wrong


@pytest.mark.parametrize("ce_type", contracts.all_event_types())
def test_every_current_event_is_read_by_a_consumer_of_the_released_contracts(ce_type: str) -> None:
    """Every event this build publishes, with every field set, decoded by a class built from the released
    image (``protos/baseline/v1.binpb``): each field the released contract has reads back as sent."""
    current = populated(contracts.message_class(ce_type))
    assert current.ListFields() and len(current.ListFields()) == len(current.DESCRIPTOR.fields)
    assert _read_by_released(current, baseline_class(ce_type)) == []


def test_the_released_reader_check_sees_a_retyped_field() -> None:
    """The check above fails for a change the rules forbid: ``total_cents`` retyped to a string."""

    def retype(proto: descriptor_pb2.FileDescriptorProto) -> None:
        placed = next(m for m in proto.message_type if m.name == "OrderPlaced")
        field = next(f for f in placed.field if f.name == "total_cents")
        field.type = descriptor_pb2.FieldDescriptorProto.TYPE_STRING

    retyped = populated(evolved_class(orders_pb2, "mart.orders.v1.OrderPlaced", retype))
    wrong = _read_by_released(retyped, baseline_class("mart.orders.v1.OrderPlaced"))
    assert any(w.startswith("total_cents:") for w in wrong), wrong
