"""The six services (and the web front) as the CLI sees them: import package, port, gateway prefix
(docs/conventions.md).

Everything is imported lazily so ``mart --help`` stays fast and a half-written service breaks only the
commands that need it.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any

from mart_common.settings import ServiceSettings


@dataclass(frozen=True)
class Service:
    package: str  # import package and PostgreSQL database/role name, e.g. "user_service"
    port: int  # its port in the distributed mode (docs/conventions.md, docs/api.md)

    @property
    def name(self) -> str:
        """``user-service``: the gateway prefix, the consumer group and the service name."""
        return self.package.replace("_", "-")

    @property
    def prefix(self) -> str:
        return "/" + self.name

    @property
    def short(self) -> str:
        """``user``."""
        return self.package.removesuffix("_service")

    def settings_class(self) -> type[ServiceSettings]:
        module = importlib.import_module(f"{self.package}.settings")
        found = [
            obj
            for obj in vars(module).values()
            if inspect.isclass(obj)
            and issubclass(obj, ServiceSettings)
            and obj is not ServiceSettings
            and obj.__module__ == module.__name__
        ]
        if len(found) != 1:
            raise RuntimeError(
                f"{module.__name__} must define exactly one ServiceSettings subclass, found {found}"
            )
        return found[0]

    def settings(self, **overrides: Any) -> ServiceSettings:
        """Settings from the environment, with ``overrides`` for the fields this service has."""
        cls = self.settings_class()
        known = {k: v for k, v in overrides.items() if k in cls.model_fields}
        return cls(**known)

    def main_module(self) -> Any:
        return importlib.import_module(f"{self.package}.main")

    @property
    def migrations_package(self) -> str:
        return f"{self.package}.migrations"


SERVICES: tuple[Service, ...] = (
    Service("user_service", 8006),
    Service("product_service", 8007),
    Service("inventory_service", 8008),
    Service("order_service", 8009),
    Service("notification_service", 8010),
    Service("payment_service", 8011),
)

#: The web front (shop, admin, event console; docs/web.md): a process like the services, served at the
#: gateway's root ``/`` rather than under a prefix; it has no database and consumes no events.
WEB = Service("web_service", 8012)

#: Every process the distributed mode runs (and may replicate): the six services, then the web front.
PROCESSES: tuple[Service, ...] = (*SERVICES, WEB)

BY_NAME: dict[str, Service] = {}
for _svc in PROCESSES:
    BY_NAME[_svc.package] = BY_NAME[_svc.name] = BY_NAME[_svc.short] = _svc


def service(name: str) -> Service:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown service {name!r} (one of: {', '.join(s.short for s in SERVICES)})") from None


@dataclass(frozen=True)
class Endpoints:
    """Where each service answers: behind one gateway (``/<name>-service`` prefixes) or on its own port."""

    bases: dict[str, str]  # service package -> base URL without trailing slash

    @classmethod
    def gateway(cls, url: str = "http://localhost:8000") -> Endpoints:
        url = url.rstrip("/")
        return cls({s.package: url + s.prefix for s in SERVICES})

    @classmethod
    def direct(cls, host: str = "127.0.0.1", ports: dict[str, int] | None = None) -> Endpoints:
        ports = ports or {}
        return cls({s.package: f"http://{host}:{ports.get(s.package, s.port)}" for s in SERVICES})

    def url(self, svc: str, path: str = "") -> str:
        return self.bases[service(svc).package] + path

    # shorthands used by the seed, the CLI and the e2e suite
    def user(self, path: str = "") -> str:
        return self.url("user", path)

    def product(self, path: str = "") -> str:
        return self.url("product", path)

    def inventory(self, path: str = "") -> str:
        return self.url("inventory", path)

    def order(self, path: str = "") -> str:
        return self.url("order", path)

    def payment(self, path: str = "") -> str:
        return self.url("payment", path)

    def notification(self, path: str = "") -> str:
        return self.url("notification", path)
