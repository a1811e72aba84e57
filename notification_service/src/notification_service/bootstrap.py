"""The composition root: routes, handlers, the dispatcher and its retry job."""

from __future__ import annotations

from mart_common.inbox import ignoring_context
from mart_common.service import PeriodicJob, ServiceDefinition, ServiceRuntime

from notification_service.channels import build_senders
from notification_service.deliveries import Dispatcher
from notification_service.handlers import HANDLERS
from notification_service.routes import deliveries, notifications, preferences
from notification_service.settings import NotificationSettings

DESCRIPTION = """Tells customers what happens to their account, orders and payments.

Consumes user, order and payment events; every notification is kept in-app (`GET /notifications`) and,
as the user's preferences say (`GET/PUT /preferences`), sent by email (SMTP, Gmail API or `.eml` files)
and SMS (Twilio or the console). Each (event, channel) is delivered once, retried with backoff, and
recorded when it fails for good.
"""


def dispatcher_of(runtime: ServiceRuntime) -> Dispatcher:
    return runtime.extras["dispatcher"]


def definition(settings: NotificationSettings) -> ServiceDefinition:
    async def start_dispatcher(runtime: ServiceRuntime) -> None:
        dispatcher = runtime.extras.get("dispatcher")
        if dispatcher is None:
            senders = {**build_senders(settings), **runtime.extras.get("senders", {})}
            dispatcher = Dispatcher.from_settings(runtime.db, senders, settings)
            runtime.extras["dispatcher"] = dispatcher
        dispatcher.start()

    async def stop_dispatcher(runtime: ServiceRuntime) -> None:
        dispatcher = runtime.extras.get("dispatcher")
        if dispatcher is not None:
            await dispatcher.stop()

    async def retry_due_deliveries(runtime: ServiceRuntime) -> None:
        await dispatcher_of(runtime).dispatch_due()

    return ServiceDefinition(
        name=settings.service_name,
        title="Notification service",
        description=DESCRIPTION,
        routers=[notifications.router, preferences.router, deliveries.router],
        migrations_package="notification_service.migrations",
        handlers=ignoring_context(HANDLERS),
        periodic=[PeriodicJob("retry-deliveries", settings.delivery_retry_interval_s, retry_due_deliveries)],
        on_startup=[start_dispatcher],
        on_shutdown=[stop_dispatcher],
        openapi_tags=[
            {"name": "notifications", "description": "Your in-app notifications."},
            {"name": "preferences", "description": "Which channels reach you besides in-app."},
            {"name": "deliveries", "description": "Email and SMS deliveries, for operators (admin)."},
        ],
    )
