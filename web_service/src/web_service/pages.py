"""Rendering pages: the Jinja2 templates (autoescaped: whatever users typed renders as text) and the
filters and words they share."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import HTMLResponse

from web_service.clients import ApiError, ServiceDown, SignInRequired
from web_service.settings import WebSettings

TEMPLATES = Path(__file__).parent / "templates"

CURRENCY_SIGNS = {"EUR": "€", "USD": "$", "GBP": "£"}

#: Order statuses in words (docs/saga.md).
ORDER_STATUS_WORDS = {
    "PENDING": "Checking stock",
    "AWAITING_PAYMENT": "Awaiting payment",
    "PAID": "Paid",
    "SHIPPED": "Shipped",
    "DELIVERED": "Delivered",
    "REJECTED": "Rejected",
    "CANCELLED": "Cancelled",
}
PAYMENT_STATUS_WORDS = {
    "CREATING": "Being set up",
    "REQUIRES_PAYMENT": "Waiting for payment",
    "SUCCEEDED": "Paid",
    "FAILED": "Declined",
    "REFUND_PENDING": "Being refunded",
    "REFUNDED": "Refunded",
}
FINAL_ORDER_STATUSES = {"REJECTED", "CANCELLED", "DELIVERED"}
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def money(cents: int | None, currency: str | None = "EUR") -> str:
    if cents is None:
        return ""
    amount = (Decimal(int(cents)) / 100).quantize(Decimal("0.01"))
    code = (currency or "").upper()
    sign = CURRENCY_SIGNS.get(code)
    return f"{sign}{amount:,}" if sign else f"{amount:,} {code}".strip()


def when(value: str | None) -> str:
    """An ISO timestamp as people read it (UTC)."""
    if not value:
        return ""
    try:
        at = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


def reason_in_words(reason: str | None, names: dict[str, str]) -> str:
    """An order history reason with the product ids it names replaced by the products' names."""
    if not reason:
        return ""
    return _UUID.sub(lambda m: names.get(m.group(0), m.group(0)), reason)


def query(params: dict[str, Any], **changes: Any) -> str:
    """The query string of ``params`` with ``changes`` (a value of None removes a parameter)."""
    merged = {**params, **changes}
    return urlencode({k: v for k, v in merged.items() if v not in (None, "")})


async def unread_count(api: Any) -> int | None:
    """The header's unread badge; None when notifications cannot be read now (the page still renders)."""
    try:
        return await api.notifications.unread_count()
    except (ServiceDown, ApiError, SignInRequired):
        return None


class Pages:
    """The templates and what every page shows (the visitor, the cart count, flash messages)."""

    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self.templates = Jinja2Templates(directory=str(TEMPLATES))
        env = self.templates.env
        env.autoescape = True
        env.trim_blocks = True
        env.lstrip_blocks = True
        env.filters.update(money=money, when=when)
        env.globals.update(
            ORDER_STATUS_WORDS=ORDER_STATUS_WORDS,
            PAYMENT_STATUS_WORDS=PAYMENT_STATUS_WORDS,
            FINAL_ORDER_STATUSES=FINAL_ORDER_STATUSES,
            query=query,
            reason_in_words=reason_in_words,
        )

    async def render(
        self,
        request: Request,
        template: str,
        context: dict[str, Any] | None = None,
        *,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
    ) -> HTMLResponse:
        visitor = getattr(request.state, "visitor", None)
        api = getattr(request.state, "api", None)
        unread = None
        if api is not None and visitor is not None and visitor.signed_in:
            unread = await unread_count(api)
        data = {
            "request": request,
            "visitor": visitor,
            "csrf_token": visitor.csrf_token if visitor else "",
            "flashes": visitor.pop_flashes() if visitor else [],
            "unread": unread,
            "settings": self.settings,
            **(context or {}),
        }
        return self.templates.TemplateResponse(
            request, template, data, status_code=status_code, headers=headers
        )

    def fragment(self, template: str, **context: Any) -> str:
        """A partial rendered on its own (the live order status)."""
        return self.templates.env.get_template(template).render(**context)
