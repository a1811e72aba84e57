"""Notification channels behind one interface (:class:`Sender`); settings choose the providers."""

from __future__ import annotations

from notification_service.channels.base import (
    DeliveryError,
    EmailSender,
    OutgoingMessage,
    Sender,
    SmsSender,
)
from notification_service.domain import Channel
from notification_service.settings import NotificationSettings

__all__ = ["DeliveryError", "EmailSender", "OutgoingMessage", "Sender", "SmsSender", "build_senders"]


def build_senders(settings: NotificationSettings) -> dict[Channel, Sender]:
    """The email and SMS providers the settings name."""
    return {Channel.EMAIL: _email_sender(settings), Channel.SMS: _sms_sender(settings)}


def _secret(value: object) -> str | None:
    return value.get_secret_value() if value is not None else None  # type: ignore[attr-defined]


def _email_sender(settings: NotificationSettings) -> EmailSender:
    if settings.email_backend == "smtp":
        from notification_service.channels.smtp import SmtpEmailSender

        return SmtpEmailSender(
            host=settings.smtp_host,
            port=settings.smtp_port,
            from_address=settings.email_from,
            username=settings.smtp_username,
            password=_secret(settings.smtp_password),
            starttls=settings.smtp_starttls,
            use_tls=settings.smtp_use_tls,
            timeout_s=settings.smtp_timeout_s,
        )
    if settings.email_backend == "gmail":
        from notification_service.channels.gmail import GmailEmailSender

        return GmailEmailSender(
            credentials_file=settings.resolved_gmail_credentials_file(),
            token_file=settings.resolved_gmail_token_file(),
            from_address=settings.email_from,
        )
    from notification_service.channels.file import FileEmailSender

    return FileEmailSender(settings.resolved_mail_dir(), settings.email_from)


def _sms_sender(settings: NotificationSettings) -> SmsSender:
    if settings.sms_backend == "twilio":
        from notification_service.channels.sms import TwilioSmsSender

        if not (settings.twilio_account_sid and settings.twilio_auth_token and settings.twilio_from_number):
            raise ValueError(
                "MART_SMS_BACKEND=twilio needs MART_TWILIO_ACCOUNT_SID, MART_TWILIO_AUTH_TOKEN "
                "and MART_TWILIO_FROM_NUMBER"
            )
        return TwilioSmsSender(
            account_sid=settings.twilio_account_sid,
            auth_token=_secret(settings.twilio_auth_token) or "",
            from_number=settings.twilio_from_number,
        )
    from notification_service.channels.sms import ConsoleSmsSender

    return ConsoleSmsSender()
