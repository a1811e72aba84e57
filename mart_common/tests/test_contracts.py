"""The event contracts: protos/ (buf lint, buf breaking), the generated code and mart_common.contracts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

# pytest's importlib mode imports this file as `mart_common.tests.test_contracts` and, unless the real
# `mart_common` is already imported, first makes the folder <repo>/mart_common (the workspace member, not
# the package) a namespace module named `mart_common` that hides the package. Drop that stand-in so the
# imports below find mart_common/src/mart_common. (A root conftest.py importing mart_common does the same
# for every test folder.)
_stand_in = sys.modules.get("mart_common")
if _stand_in is not None and getattr(_stand_in, "__file__", None) is None:
    del sys.modules["mart_common"]

import pytest  # noqa: E402
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor, FileDescriptor  # noqa: E402
from google.protobuf.message import Message  # noqa: E402
from google.protobuf.timestamp_pb2 import Timestamp  # noqa: E402
from mart.orders.v1 import orders_pb2  # noqa: E402
from mart.stock.v1 import stock_pb2  # noqa: E402

from mart_common import contracts  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTOS = REPO_ROOT / "protos"
BUF = REPO_ROOT / "node_modules" / ".bin" / "buf"
GEN_PROTOS = REPO_ROOT / "scripts" / "gen-protos.sh"

TOPICS = ("mart.users.v1", "mart.products.v1", "mart.stock.v1", "mart.orders.v1", "mart.payments.v1")

# The events docs/events.md documents, with their topic.
DOCUMENTED_EVENTS = {
    "UserRegistered": "mart.users.v1",
    "UserUpdated": "mart.users.v1",
    "ProductCreated": "mart.products.v1",
    "ProductUpdated": "mart.products.v1",
    "ProductArchived": "mart.products.v1",
    "StockReserved": "mart.stock.v1",
    "StockRejected": "mart.stock.v1",
    "StockReleased": "mart.stock.v1",
    "StockCommitted": "mart.stock.v1",
    "StockLow": "mart.stock.v1",
    "OrderPlaced": "mart.orders.v1",
    "OrderAwaitingPayment": "mart.orders.v1",
    "OrderPaid": "mart.orders.v1",
    "OrderRejected": "mart.orders.v1",
    "OrderCancelled": "mart.orders.v1",
    "OrderShipped": "mart.orders.v1",
    "OrderDelivered": "mart.orders.v1",
    "PaymentRequested": "mart.payments.v1",
    "PaymentSucceeded": "mart.payments.v1",
    "PaymentFailed": "mart.payments.v1",
    "PaymentRefunded": "mart.payments.v1",
}
DOCUMENTED_CE_TYPES = sorted(f"{topic}.{name}" for name, topic in DOCUMENTED_EVENTS.items())
HELPERS = [
    "mart.stock.v1.StockLine",
    "mart.stock.v1.RejectedLine",
    "mart.products.v1.Product",
    "mart.orders.v1.OrderLine",
]


def _files() -> list[FileDescriptor]:
    return [module.DESCRIPTOR for module in contracts.CONTRACT_MODULES]


def _messages(descriptors) -> list[Descriptor]:
    found = []
    for descriptor in descriptors:
        found.append(descriptor)
        found.extend(_messages(descriptor.nested_types))
    return found


ALL_MESSAGES = [m for f in _files() for m in _messages(f.message_types_by_name.values())]


def _enums() -> list[EnumDescriptor]:
    enums = [e for f in _files() for e in f.enum_types_by_name.values()]
    enums += [e for m in ALL_MESSAGES for e in m.enum_types]
    return enums


def _fill(message: Message, depth: int = 0) -> Message:
    """Set every field of ``message`` to a non-default value (repeated fields get two elements)."""
    for field in message.DESCRIPTOR.fields:
        repeated = field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED
        for index in range(2 if repeated else 1):
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                target = getattr(message, field.name).add() if repeated else getattr(message, field.name)
                if field.message_type.full_name == "google.protobuf.Timestamp":
                    target.CopyFrom(Timestamp(seconds=1_760_000_000 + index, nanos=123_000))
                else:
                    _fill(target, depth + 1)
                continue
            if field.type == FieldDescriptor.TYPE_ENUM:
                value = field.enum_type.values[-1].number
            elif field.type == FieldDescriptor.TYPE_BOOL:
                value = True
            elif field.type == FieldDescriptor.TYPE_STRING:
                value = f"{field.name}-{depth}-{index}-é"
            elif field.type == FieldDescriptor.TYPE_INT64:
                value = 2**40 + index
            else:
                value = 7 + index
            if repeated:
                getattr(message, field.name).append(value)
            else:
                setattr(message, field.name, value)
    return message


# --- the registry ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "topic"), sorted(DOCUMENTED_EVENTS.items()))
def test_every_spec_event_is_registered_on_its_topic(name: str, topic: str) -> None:
    cls = contracts.message_class(f"{topic}.{name}")
    assert cls.DESCRIPTOR.name == name
    assert contracts.ce_type(cls) == f"{topic}.{name}"
    assert contracts.ce_type(cls()) == f"{topic}.{name}"
    assert contracts.topic_for(cls) == topic
    assert contracts.topic_for(cls()) == topic


def test_registered_events_are_exactly_the_spec_events() -> None:
    assert contracts.all_event_types() == DOCUMENTED_CE_TYPES


def test_topics() -> None:
    assert contracts.TOPICS == TOPICS
    assert sorted(f.package for f in _files()) == sorted(TOPICS)


def test_every_contract_message_is_an_event_or_a_declared_helper() -> None:
    events = set(contracts.all_event_types())
    assert sorted(contracts.HELPER_MESSAGES) == sorted(HELPERS)
    assert not events & contracts.HELPER_MESSAGES
    assert sorted(m.full_name for m in ALL_MESSAGES) == sorted(events | contracts.HELPER_MESSAGES)


@pytest.mark.parametrize("helper", HELPERS)
def test_helper_messages_are_not_events(helper: str) -> None:
    with pytest.raises(contracts.UnknownEventType):
        contracts.message_class(helper)
    cls = next(m for m in ALL_MESSAGES if m.full_name == helper)._concrete_class
    with pytest.raises(contracts.UnknownEventType):
        contracts.ce_type(cls)
    with pytest.raises(contracts.UnknownEventType):
        contracts.topic_for(cls())


@pytest.mark.parametrize(
    "ce_type", ["mart.orders.v1.OrderExploded", "", "OrderPlaced", "mart.orders.v2.OrderPlaced"]
)
def test_unknown_type_raises_unknown_event_type(ce_type: str) -> None:
    with pytest.raises(contracts.UnknownEventType):
        contracts.message_class(ce_type)
    with pytest.raises(KeyError):
        contracts.decode(ce_type, b"")


def test_ce_type_of_a_foreign_message_is_unknown() -> None:
    with pytest.raises(contracts.UnknownEventType):
        contracts.ce_type(Timestamp())
    with pytest.raises(contracts.UnknownEventType):
        contracts.topic_for(object())  # type: ignore[arg-type]


@pytest.mark.parametrize("ce_type", DOCUMENTED_CE_TYPES)
def test_round_trip(ce_type: str) -> None:
    original = _fill(contracts.message_class(ce_type)())
    payload = original.SerializeToString()
    decoded = contracts.decode(ce_type, payload)
    assert type(decoded) is type(original)
    assert decoded == original
    assert decoded.SerializeToString() == payload
    assert all(
        decoded.HasField(f.name) for f in decoded.DESCRIPTOR.fields if f.message_type and not f.is_repeated
    )


def test_round_trip_order_placed_by_hand() -> None:
    placed_at = Timestamp()
    placed_at.FromJsonString("2025-11-25T15:30:00Z")
    event = orders_pb2.OrderPlaced(
        order_id="0b7f7f43-9d8e-4e43-9a8b-2d1b8f0b4c11",
        user_id="6c0a2f7e-3e43-41a5-a3c2-4a8d5b1c2e33",
        lines=[orders_pb2.OrderLine(product_id="p-1", product_name="Tea", quantity=3, unit_price_cents=450)],
        total_cents=1350,
        currency="USD",
        placed_at=placed_at,
    )
    decoded = contracts.decode(contracts.ce_type(event), event.SerializeToString())
    assert decoded == event
    assert decoded.lines[0].unit_price_cents * decoded.lines[0].quantity == decoded.total_cents
    assert decoded.placed_at.ToJsonString() == "2025-11-25T15:30:00Z"


def test_empty_payload_decodes_to_defaults() -> None:
    decoded = contracts.decode("mart.stock.v1.StockReserved", b"")
    assert decoded == stock_pb2.StockReserved()


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\xff\xff\xff",  # a tag with an unterminated varint
        b"garbage bytes!!",
        b"\x0a\x05ab",  # field 1 (order_id) claims 5 bytes, has 2
        b"\x0a\x02\xff\xfe",  # field 1 (a proto3 string) is not UTF-8
        b"\x22\x03\x0a\x01",  # field 4 (lines) holds a truncated StockLine
    ],
)
def test_garbage_raises_malformed_event(payload: bytes) -> None:
    with pytest.raises(contracts.MalformedEvent):
        contracts.decode("mart.stock.v1.StockReserved", payload)
    with pytest.raises(ValueError):
        contracts.decode("mart.orders.v1.OrderPlaced", payload)


# --- the shape of the contracts -------------------------------------------------------------------


@pytest.mark.parametrize("enum", _enums(), ids=lambda e: e.full_name)
def test_every_enum_zero_value_is_unspecified(enum: EnumDescriptor) -> None:
    zero = enum.values_by_number[0]
    assert enum.values[0] is zero
    assert zero.name.endswith("_UNSPECIFIED")


def test_money_fields_are_int64_cents_with_a_currency() -> None:
    money = [(m, f) for m in ALL_MESSAGES for f in m.fields if f.name.endswith("_cents")]
    assert len(money) >= 10
    for message, field in money:
        assert field.type == FieldDescriptor.TYPE_INT64, f"{message.full_name}.{field.name}"
        # OrderLine's unit price is in its order's currency.
        if message.full_name != "mart.orders.v1.OrderLine":
            assert message.fields_by_name["currency"].type == FieldDescriptor.TYPE_STRING, message.full_name
    for message in ALL_MESSAGES:
        for field in message.fields:
            assert field.type != FieldDescriptor.TYPE_DOUBLE and field.type != FieldDescriptor.TYPE_FLOAT


def test_times_are_timestamps_and_ids_are_strings() -> None:
    for message in ALL_MESSAGES:
        for field in message.fields:
            where = f"{message.full_name}.{field.name}"
            if field.name.endswith("_at") or field.name.endswith("_deadline"):
                assert field.message_type is not None, where
                assert field.message_type.full_name == "google.protobuf.Timestamp", where
            if field.name.endswith("_id"):
                assert field.type == FieldDescriptor.TYPE_STRING, where


def test_every_event_has_a_timestamp() -> None:
    for ce_type in DOCUMENTED_CE_TYPES:
        descriptor = contracts.message_class(ce_type).DESCRIPTOR
        assert any(
            f.message_type is not None and f.message_type.full_name == "google.protobuf.Timestamp"
            for f in descriptor.fields
        ), ce_type


@pytest.mark.parametrize("file", _files(), ids=lambda f: f.package)
def test_files_are_self_contained_and_named_after_their_package(file: FileDescriptor) -> None:
    domain = file.package.split(".")[1]
    assert file.name == f"mart/{domain}/v1/{domain}.proto"
    assert [d.name for d in file.dependencies] == ["google/protobuf/timestamp.proto"]
    text = (PROTOS / file.name).read_text()
    assert 'syntax = "proto3";' in text.splitlines()
    imports = [line for line in text.splitlines() if line.startswith("import ")]
    assert imports == ['import "google/protobuf/timestamp.proto";']


def test_every_message_and_field_is_commented() -> None:
    for proto in sorted(PROTOS.glob("mart/*/v1/*.proto")):
        lines = proto.read_text().splitlines()
        for number, line in enumerate(lines):
            stripped = line.strip()
            declares = stripped.startswith(("message ", "enum ")) or (
                stripped.endswith(";") and "=" in stripped and not stripped.startswith(("syntax", "option"))
            )
            if declares:
                assert lines[number - 1].strip().startswith("//"), f"{proto.name}:{number + 1}: {stripped}"


# --- buf and the generated code -------------------------------------------------------------------


def _buf(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    if not BUF.is_file():
        pytest.fail(f"buf is missing at {BUF}: run `npm install` at the repo root (@bufbuild/buf)")
    return subprocess.run([str(BUF), *args], cwd=cwd, capture_output=True, text=True, timeout=120)  # noqa: S603


def test_buf_lint_passes() -> None:
    result = _buf("lint", "protos", cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def _copy_protos(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(PROTOS, target)
    return target


def test_buf_breaking_passes_for_an_unchanged_copy(tmp_path: Path) -> None:
    original = _copy_protos(tmp_path, "original")
    copy = _copy_protos(tmp_path, "copy")
    result = _buf("breaking", copy.name, "--against", original.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_breaking_fails_when_a_field_changes_type(tmp_path: Path) -> None:
    original = _copy_protos(tmp_path, "original")
    changed = _copy_protos(tmp_path, "changed")
    orders = changed / "mart" / "orders" / "v1" / "orders.proto"
    text = orders.read_text()
    assert "int64 total_cents = 4;" in text
    orders.write_text(text.replace("int64 total_cents = 4;", "string total_cents = 4;"))
    result = _buf("breaking", changed.name, "--against", original.name, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "total_cents" in output
    assert "OrderPlaced" in output
    assert 'changed type from "int64" to "string"' in output


def test_buf_breaking_fails_when_a_field_is_removed(tmp_path: Path) -> None:
    original = _copy_protos(tmp_path, "original")
    changed = _copy_protos(tmp_path, "changed")
    payments = changed / "mart" / "payments" / "v1" / "payments.proto"
    payments.write_text(payments.read_text().replace("  string provider_payment_id = 6;\n", ""))
    result = _buf("breaking", changed.name, "--against", original.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "PaymentSucceeded" in result.stdout + result.stderr


def test_generated_code_is_up_to_date() -> None:
    result = subprocess.run(  # noqa: S603
        [str(GEN_PROTOS), "--check"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
