"""Event contracts as other builds see them, for compatibility tests (docs/events.md, "Versioning").

- :func:`evolved_class`: a message class of the NEXT contract version, built at run time from this build's
  contract file changed by an edit (a new field, a new enum value), as a newer producer would have it.
- :func:`baseline_class`: a message class of the RELEASED contracts (the buf image
  ``protos/baseline/v1.binpb``), as the oldest consumer still running has it.
- :func:`populated`: a message with every field set to a non-default value (repeated fields: one element,
  nested messages filled in turn), so a round trip that drops or changes a field shows.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

BASELINE = Path(__file__).resolve().parents[3] / "protos" / "baseline" / "v1.binpb"


def evolved_class(
    module: object, message: str, edit: Callable[[descriptor_pb2.FileDescriptorProto], None]
) -> type[Message]:
    """The class of ``message`` (full name) from ``module``'s contract file after ``edit`` changed it (a
    fresh descriptor pool: the generated classes of this build are untouched)."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_proto_of(timestamp_pb2))
    proto = _proto_of(module)
    edit(proto)
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(message))


def _proto_of(module: object) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(proto)  # type: ignore[attr-defined]
    return proto


@cache
def _baseline_pool() -> descriptor_pool.DescriptorPool:
    # A buf image is wire-compatible with a FileDescriptorSet (field 1: the files, dependencies first).
    image = descriptor_pb2.FileDescriptorSet.FromString(BASELINE.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in image.file:
        pool.Add(file)
    return pool


def baseline_class(message: str) -> type[Message]:
    """The class of ``message`` (full name) as the released contracts define it."""
    return message_factory.GetMessageClass(_baseline_pool().FindMessageTypeByName(message))


def populated(cls: type[Message]) -> Message:
    """An instance of ``cls`` with every field set to a value other than its default."""
    message = cls()
    _fill(message, cls.DESCRIPTOR, 1)
    return message


def _fill(message: Message, descriptor: Descriptor, seed: int) -> None:
    for n, field in enumerate(descriptor.fields, start=seed):
        repeated = field.is_repeated
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            target = getattr(message, field.name)
            child = target.add() if repeated else target
            if field.message_type.full_name == "google.protobuf.Timestamp":
                child.FromSeconds(1_800_000_000 + n)
            else:
                _fill(child, field.message_type, n * 10)
            continue
        value = _scalar(field, n)
        if repeated:
            getattr(message, field.name).append(value)
        else:
            setattr(message, field.name, value)


def _scalar(field: FieldDescriptor, n: int) -> object:
    if field.type == FieldDescriptor.TYPE_STRING:
        return f"{field.name}-{n}"
    if field.type == FieldDescriptor.TYPE_BYTES:
        return f"{field.name}-{n}".encode()
    if field.type == FieldDescriptor.TYPE_BOOL:
        return True
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return n + 0.5
    if field.type == FieldDescriptor.TYPE_ENUM:
        return max(v.number for v in field.enum_type.values)  # the newest value, never the default
    return n  # the integer types
