"""The notification rules, free of any framework: which channels a user gets, how money reads in a
message, how long to wait before retrying a delivery."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


class Channel(StrEnum):
    """Where a notification goes besides the in-app list (which every notification is part of)."""

    EMAIL = "email"
    SMS = "sms"


class DeliveryStatus(StrEnum):
    PENDING = "PENDING"  # waiting for its (next) attempt
    SENT = "SENT"  # the provider accepted it
    FAILED = "FAILED"  # given up: permanent error or attempts exhausted
    SKIPPED = "SKIPPED"  # nothing to send to (no phone number, inactive account); reason in last_error


class Kind(StrEnum):
    """What a notification is about; also the name of its templates."""

    WELCOME = "welcome"
    ORDER_RECEIVED = "order_received"
    PAYMENT_RECEIPT = "payment_receipt"
    ORDER_REJECTED = "order_rejected"
    ORDER_CANCELLED = "order_cancelled"
    PAYMENT_REFUNDED = "payment_refunded"
    ORDER_SHIPPED = "order_shipped"
    ORDER_DELIVERED = "order_delivered"


@dataclass(frozen=True)
class Preferences:
    email: bool = True
    sms: bool = False


DEFAULT_PREFERENCES = Preferences()


def channels_for(preferences: Preferences) -> list[Channel]:
    """The outside channels a user wants; in-app is always on and needs no delivery."""
    wanted = []
    if preferences.email:
        wanted.append(Channel.EMAIL)
    if preferences.sms:
        wanted.append(Channel.SMS)
    return wanted


# ISO 4217 minor units that differ from the usual two decimals.
_ZERO_DECIMALS = frozenset("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split())
_THREE_DECIMALS = frozenset("BHD IQD JOD KWD LYD OMR TND".split())
_SYMBOLS = {
    "USD": "$",
    "EUR": "€",
    "GBP": "£",
    "JPY": "¥",
    "INR": "₹",
    "KRW": "₩",
    "CNY": "CN¥",
    "PKR": "Rs ",
}


def currency_decimals(currency: str) -> int:
    """How many decimals an amount of ``currency`` has (2 unless ISO 4217 says otherwise)."""
    code = currency.upper()
    if code in _ZERO_DECIMALS:
        return 0
    if code in _THREE_DECIMALS:
        return 3
    return 2


def format_money(amount_minor: int, currency: str) -> str:
    """``1999, "USD"`` → ``"$19.99"``; ``1500, "JPY"`` → ``"¥1,500"``; unknown codes → ``"CHF 19.99"``."""
    code = (currency or "").upper()
    decimals = currency_decimals(code)
    value = Decimal(amount_minor).scaleb(-decimals)
    sign = "-" if value < 0 else ""
    number = f"{abs(value):,.{decimals}f}"
    symbol = _SYMBOLS.get(code)
    if symbol is None:
        return f"{sign}{code} {number}".strip() if code else f"{sign}{number}"
    return f"{sign}{symbol}{number}"


def short_ref(order_id: str) -> str:
    """The part of an order id people read in a subject line."""
    return order_id.split("-")[0].upper() if order_id else ""
