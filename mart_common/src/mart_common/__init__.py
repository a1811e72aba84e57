"""Cross-cutting mechanisms shared by every Online Mart service.

Only mechanisms live here (settings, database, outbox/inbox, event bus adapters, auth verification,
problem details, health, logging, metrics). Domain rules live in the services.
"""
