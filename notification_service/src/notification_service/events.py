"""The events the notification service publishes: none.

It only consumes user, order and payment events (``handlers.py``); notifications and deliveries stay inside
the service (docs/events.md). The module is here because every service has the same files.
"""
