"""The event bus: one interface, two adapters (Kafka and in-process), one contract test suite."""

from mart_common.bus.base import EventBus, PermanentError, RetryPolicy, dead_letter_topic
from mart_common.settings import ServiceSettings


def create_bus(settings: ServiceSettings) -> EventBus:
    """The adapter the settings choose."""
    retry = RetryPolicy(
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
