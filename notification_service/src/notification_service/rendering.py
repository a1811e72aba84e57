"""Messages from templates: each kind has ``templates/<kind>/{subject.txt, body.txt, body.html, sms.txt}``,
rendered with Jinja2 (HTML autoescaped, so a product named ``<script>`` stays text); :data:`NOTICES` says
which kind each order or payment event becomes and what its template is given."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from google.protobuf.message import Message
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from mart.orders.v1 import orders_pb2
from mart.payments.v1 import payments_pb2

from notification_service.domain import Kind, format_money, short_ref

TEMPLATES_DIR = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    text: str
    html: str
    sms: str


@lru_cache(maxsize=4)
def _environment(directory: Path) -> Environment:
    env = Environment(
        loader=FileSystemLoader(directory),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["money"] = lambda cents, currency: format_money(int(cents), currency)
    return env


def render(kind: Kind | str, context: Mapping[str, Any], directory: Path = TEMPLATES_DIR) -> RenderedMessage:
    """Render the four parts of a ``kind`` of message with ``context``."""
    env = _environment(directory)
    ctx = {"shop_name": "Online Mart", **context}

    def part(name: str) -> str:
        return env.get_template(f"{kind}/{name}").render(ctx)

    return RenderedMessage(
        subject=" ".join(part("subject.txt").split()),  # one line, whatever the template's whitespace
        text=part("body.txt"),
        html=part("body.html"),
        sms=part("sms.txt").strip(),
    )


def order_context(order_id: str, lines: Iterable[Any], total_cents: int, currency: str) -> dict[str, Any]:
    """What every order message shows: the reference, the lines and the total, money formatted."""
    rows = [
        {
            "name": line.product_name or line.product_id,
            "quantity": line.quantity,
            "unit_price": format_money(line.unit_price_cents, currency),
            "line_total": format_money(line.unit_price_cents * line.quantity, currency),
        }
        for line in lines
    ]
    return {
        "order_id": order_id,
        "order_ref": short_ref(order_id),
        "lines": rows,
        "total": format_money(total_cents, currency),
        "currency": currency,
    }


@dataclass(frozen=True)
class Notice:
    """What a customer is told about an order or payment event: the kind of message, and its template's
    context built from the event."""

    kind: Kind
    context: Callable[[Any], dict[str, Any]]


def _order(event: Any) -> dict[str, Any]:
    return order_context(event.order_id, event.lines, event.total_cents, event.currency)


def _reference(event: Any) -> dict[str, Any]:
    return {"order_id": event.order_id, "order_ref": short_ref(event.order_id)}


#: The order and payment events a customer hears about: the kind of message each becomes, and what its
#: template shows. (PaymentFailed is not among them: it leads to OrderCancelled, which is.)
NOTICES: Mapping[type[Message], Notice] = {
    orders_pb2.OrderPlaced: Notice(Kind.ORDER_RECEIVED, _order),
    orders_pb2.OrderPaid: Notice(Kind.PAYMENT_RECEIPT, lambda e: {**_order(e), "payment_id": e.payment_id}),
    orders_pb2.OrderRejected: Notice(
        Kind.ORDER_REJECTED, lambda e: {**_order(e), "reason": e.reason or "some items are out of stock"}
    ),
    orders_pb2.OrderCancelled: Notice(
        Kind.ORDER_CANCELLED,
        lambda e: {**_order(e), "reason": e.reason or "cancelled", "was_paid": e.was_paid},
    ),
    payments_pb2.PaymentRefunded: Notice(
        Kind.PAYMENT_REFUNDED,
        lambda e: {
            **_reference(e),
            "payment_id": e.payment_id,
            "amount": format_money(e.amount_cents, e.currency),
        },
    ),
    orders_pb2.OrderShipped: Notice(Kind.ORDER_SHIPPED, _reference),
    orders_pb2.OrderDelivered: Notice(Kind.ORDER_DELIVERED, _reference),
}
