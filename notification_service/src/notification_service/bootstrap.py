"""The composition root: routes, handlers, the context (providers and dispatcher) and the retry job."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

from mart_common.service import PeriodicJob, ServiceDefinition, ServiceRuntime

from notification_service.channels import Sender
from notification_service.context import NotificationContext, open_context
from notification_service.domain import Channel
from notification_service.handlers import HANDLERS
from notification_service.routes import deliveries, notifications, preferences
from notification_service.settings import NotificationSettings

DESCRIPTION = """Tells customers what happens to their account, orders and payments.

Consumes user, order and payment events; every notification is kept in-app (`GET /notifications`) and,
as the user's preferences say (`GET/PUT /preferences`), sent by email (SMTP, Gmail API or `.eml` files)
and SMS (Twilio or the console). Each (event, channel) is delivered once, retried with backoff, and
recorded when it fails for good.
"""


async def retry_due_deliveries(runtime: ServiceRuntime) -> None:
    """The retry job: the dispatcher looks for due deliveries (retries, whatever a restart left)."""
    context: NotificationContext = runtime.context
    await context.dispatcher.dispatch_due()


def definition(
    settings: NotificationSettings, *, senders: Mapping[Channel, Sender] | None = None
) -> ServiceDefinition:
    """``senders`` replaces the providers the settings choose (tests)."""
    return ServiceDefinition(
        name=settings.service_name,
        title="Notification service",
        description=DESCRIPTION,
        routers=[notifications.router, preferences.router, deliveries.router],
        migrations_package="notification_service.migrations",
        handlers=HANDLERS,
        # Off the saga's path: a customer does not see an email 0.2 s later, the machine sees several
        # events per transaction instead of one
        # (docs/adr/0034-consumers-off-the-saga-path-collect-events.md).
        collect_events_ms=200,
        context=partial(open_context, senders=senders),
        periodic=[PeriodicJob("retry-deliveries", settings.delivery_retry_interval_s, retry_due_deliveries)],
        openapi_tags=[
            {"name": "notifications", "description": "Your in-app notifications."},
            {"name": "preferences", "description": "Which channels reach you besides in-app."},
            {"name": "deliveries", "description": "Email and SMS deliveries, for operators (admin)."},
        ],
    )
