"""Pure builders of the events order-service publishes (topic ``mart.orders.v1``, docs/events.md);
``services.py`` records them in the outbox."""

from __future__ import annotations

from google.protobuf.message import Message
from mart.orders.v1 import orders_pb2
from mart_common.clock import as_utc

from order_service.domain import OrderStatus, Transition
from order_service.models import Order

_STATUS = {
    OrderStatus.PENDING: orders_pb2.ORDER_STATUS_PENDING,
    OrderStatus.AWAITING_PAYMENT: orders_pb2.ORDER_STATUS_AWAITING_PAYMENT,
    OrderStatus.PAID: orders_pb2.ORDER_STATUS_PAID,
    OrderStatus.SHIPPED: orders_pb2.ORDER_STATUS_SHIPPED,
    OrderStatus.DELIVERED: orders_pb2.ORDER_STATUS_DELIVERED,
    OrderStatus.REJECTED: orders_pb2.ORDER_STATUS_REJECTED,
    OrderStatus.CANCELLED: orders_pb2.ORDER_STATUS_CANCELLED,
}


def _lines(order: Order) -> list[orders_pb2.OrderLine]:
    return [
        orders_pb2.OrderLine(
            product_id=i["product_id"],
            product_name=i.get("product_name", ""),
            quantity=i["quantity"],
            unit_price_cents=i["unit_price_cents"],
        )
        for i in order.items
    ]


def order_placed(order: Order) -> orders_pb2.OrderPlaced:
    return orders_pb2.OrderPlaced(
        order_id=str(order.id),
        user_id=str(order.user_id),
        lines=_lines(order),
        total_cents=order.total_cents,
        currency=order.currency,
        placed_at=as_utc(order.created_at),
    )


def for_transition(order: Order, move: Transition) -> Message | None:
    """The event announcing ``move`` of ``order`` (already applied to it)."""
    new, reason, at = move.status, move.reason, move.at
    common = {"order_id": str(order.id), "user_id": str(order.user_id)}
    if new == OrderStatus.AWAITING_PAYMENT:
        assert order.payment_deadline is not None
        return orders_pb2.OrderAwaitingPayment(
            **common,
            total_cents=order.total_cents,
            currency=order.currency,
            payment_deadline=as_utc(order.payment_deadline),
        )
    if new == OrderStatus.PAID:
        return orders_pb2.OrderPaid(
            **common,
            lines=_lines(order),
            total_cents=order.total_cents,
            currency=order.currency,
            payment_id=order.payment_id or "",
            paid_at=at,
        )
    if new == OrderStatus.REJECTED:
        return orders_pb2.OrderRejected(
            **common,
            lines=_lines(order),
            total_cents=order.total_cents,
            currency=order.currency,
            reason=reason,
            rejected_at=at,
        )
    if new == OrderStatus.CANCELLED:
        return orders_pb2.OrderCancelled(
            **common,
            lines=_lines(order),
            total_cents=order.total_cents,
            currency=order.currency,
            reason=reason,
            previous_status=_STATUS[move.previous],
            was_paid=move.was_paid,
            payment_id=order.payment_id or "",
            cancelled_at=at,
        )
    if new == OrderStatus.SHIPPED:
        return orders_pb2.OrderShipped(**common, shipped_at=at)
    if new == OrderStatus.DELIVERED:
        return orders_pb2.OrderDelivered(**common, delivered_at=at)
    return None
