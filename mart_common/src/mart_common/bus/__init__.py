"""The event bus: one interface, two adapters (Kafka and in-process), one contract test suite."""

from mart_common.bus.base import EventBus, PermanentError, RetryPolicy, dead_letter_topic
from mart_common.settings import ServiceSettings


def create_bus(settings: ServiceSettings, *, retry: RetryPolicy | None = None) -> EventBus:
    """The adapter the settings choose: the one way to build a bus, for the services, the embedded mart,
    the ``mart`` CLI and the tests. Kafka: ``kafka_bootstrap_servers``, ``kafka_namespace``,
    ``kafka_partitions`` (of the topics it creates), ``service_name`` as the client id; in-process: the log
    at ``resolved_bus_url()``. ``retry`` overrides the consumer retry policy of the settings."""
    retry = retry or RetryPolicy(
        max_attempts=settings.consumer_max_attempts,
        initial_backoff_s=settings.consumer_backoff_initial_s,
        max_backoff_s=settings.consumer_backoff_max_s,
    )
    if settings.event_bus == "kafka":
        from mart_common.bus.kafka import KafkaBus

        return KafkaBus(
            settings.kafka_bootstrap_servers,
            partitions=settings.kafka_partitions,
            retry=retry,
            client_id=settings.service_name,
            namespace=settings.kafka_namespace,
        )
    from mart_common.bus.inprocess import InProcessBus

    return InProcessBus(settings.resolved_bus_url(), partitions=settings.inprocess_partitions, retry=retry)


__all__ = ["EventBus", "PermanentError", "RetryPolicy", "create_bus", "dead_letter_topic"]
