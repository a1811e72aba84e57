"""The settings base every service extends (pydantic-settings, prefix ``MART_``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    """Where local state lives: ``$MART_DATA_DIR`` if set, else ``<repo>/.data`` when running from a
    checkout, else ``./.data``. The one definition for the services, the CLI, the bench and the tests."""
    if env := os.environ.get("MART_DATA_DIR"):
        return Path(env).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "uv.lock").exists() and (parent / "mart_common").is_dir():
            return parent / ".data"
    return Path.cwd() / ".data"


class ServiceSettings(BaseSettings):
    """Settings shared by all services; each service subclasses it and sets ``service_name``."""

    model_config = SettingsConfigDict(env_prefix="MART_", env_file=".env", extra="ignore")

    service_name: str = "service"
    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None
    # PostgreSQL connections one process keeps and never exceeds, and how long a unit of work waits for one
    # when all are busy before it fails (a request answers 503): docs/scaling.md, "Connections".
    db_pool_size: int = Field(default=10, ge=2, le=100)
    db_pool_timeout_s: float = Field(default=10.0, gt=0, le=300)
    event_bus: Literal["kafka", "inprocess"] = "inprocess"
    kafka_bootstrap_servers: str = "localhost:9092"
    # Partitions of the Kafka topics the services create (existing topics keep theirs): 6 lets 1, 2, 3 or 6
    # replicas of a consumer share a topic evenly (docs/scaling.md).
    kafka_partitions: int = 6
    kafka_namespace: str = ""  # prefix for topics and groups: isolates test runs sharing one broker
    inprocess_bus_url: str | None = None
    inprocess_partitions: int = 3  # fixed once the log exists: keys map to partitions by this count

    jwt_issuer: str = "mart-user-service"
    jwks_url: str = "http://localhost:8006/.well-known/jwks.json"
    jwt_public_key_pem: str | None = None

    root_path: str = ""
    log_level: str = "INFO"
    log_json: bool = True
    max_body_bytes: int = 1_000_000

    outbox_poll_interval_s: float = 0.5
    outbox_batch_size: int = 200
    consumer_max_attempts: int = 5
    consumer_backoff_initial_s: float = 0.05
    consumer_backoff_max_s: float = 2.0

    def resolved_database_url(self) -> str:
        """The configured URL, or a SQLite file named after the service under ``data_dir``."""
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{self.data_dir / (self.service_name.replace('-', '_') + '.sqlite')}"

    def resolved_bus_url(self) -> str:
        """Where the in-process bus keeps its log (a SQLite file shared by the embedded services)."""
        if self.inprocess_bus_url:
            return self.inprocess_bus_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{self.data_dir / 'bus.sqlite'}"
