"""The Helm chart (deploy/helm/online-mart, docs/scaling.md): ``helm lint`` and ``helm template`` run, and the
rendered manifests match the same topology as compose.yaml, kong/kong.yaml and docs/conventions.md, and the
services' own settings (environment variable names, ports, probe paths).

A missing ``helm`` FAILS the test on purpose: CI builds it (scripts/infra/tools.sh, Helm from the Go module
proxy, cached under ~/.cache/online-mart/helm-<version>/).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from mart_cli.services import PROCESSES, SERVICES, WEB, Service


def _topology() -> ModuleType:
    """tests/deploy/test_topology.py's helpers (Kong's router, compose loading), shared, not copied."""
    name = "_mart_topology_for_helm"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("test_topology.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_t = _topology()
COMPOSE, CONVENTIONS, KONG, ROOT = _t.COMPOSE, _t.CONVENTIONS, _t.KONG, _t.ROOT
app_services, kong_match, load = _t.app_services, _t.kong_match, _t.load
require_binary, service_local_path = _t.require_binary, _t.service_local_path

CHART = ROOT / "deploy" / "helm" / "online-mart"
HELM_VERSION = "v3.22.0"
HELM_CACHE = Path(os.environ.get("MART_CACHE_DIR", Path.home() / ".cache" / "online-mart"))
REQUIRED = [
    "--set",
    "kafka.bootstrapServers=mart-kafka-bootstrap.kafka.svc:9092",
    "--set",
    "postgresql.host=mart-pg",
]
RELEASE = "mart"
# compose.yaml variables the chart sets differently on purpose: the Gmail API files are mounted from
# ./secrets in compose (development); on Kubernetes, mount them yourself and set these in services.*.config.
COMPOSE_ONLY = {"MART_GMAIL_CREDENTIALS_FILE", "MART_GMAIL_TOKEN_FILE"}
# Set by the chart, read by nothing but the chart itself ($(DATABASE_PASSWORD) in MART_DATABASE_URL).
CHART_INTERNAL = {"DATABASE_PASSWORD"}
# Read by the OpenTelemetry SDK (mart_common.observability), not by the settings classes (docs/tracing.md).
OTEL_STANDARD = {"OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_ZIPKIN_ENDPOINT", "OTEL_SERVICE_NAME"}
SECRET_WORDS = ("password", "secret", "token", "private_key", "api_key")


def helm() -> str:
    return require_binary("helm", HELM_CACHE / f"helm-{HELM_VERSION}" / "helm")


def run_helm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603
        [helm(), *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def render(*extra: str) -> list[dict]:
    proc = run_helm("template", RELEASE, str(CHART), *REQUIRED, *extra)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@pytest.fixture(scope="module")
def manifests() -> list[dict]:
    return render()


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def env_names(svc: Service) -> set[str]:
    """The environment variables the service's settings read (prefix MART_, plus explicit aliases)."""
    cls = svc.settings_class()
    prefix = cls.model_config.get("env_prefix", "")
    names = set()
    for name, field in cls.model_fields.items():
        names.add((prefix + name).upper())
        alias = field.validation_alias
        for choice in getattr(alias, "choices", None) or ([alias] if isinstance(alias, str) else []):
            names.add(str(choice).upper())
    return names


def container(deployment: dict) -> dict:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


def env_of(deployment: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container(deployment)["env"]}


# --- helm itself ---------------------------------------------------------------------------------------


def test_helm_lint_strict():
    proc = run_helm("lint", "--strict", str(CHART), *REQUIRED)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


def test_external_dependencies_are_required():
    proc = run_helm("template", RELEASE, str(CHART))
    assert proc.returncode != 0
    assert "kafka.bootstrapServers is required" in proc.stderr


def test_hpa_above_the_partitions_is_refused():
    proc = run_helm(
        "template", RELEASE, str(CHART), *REQUIRED, "--set", "services.order.autoscaling.maxReplicas=12"
    )
    assert proc.returncode != 0
    assert "exceeds kafka.partitions" in proc.stderr


# --- topology: compose <-> chart <-> kong <-> conventions <-> settings -----------------------------------


def test_one_deployment_service_hpa_and_pdb_per_compose_service(manifests):
    expected = {f"{RELEASE}-{s.name}" for s in PROCESSES}
    built = {name for name, svc in load(COMPOSE)["services"].items() if "build" in svc}
    assert {s.package for s in SERVICES} == set(app_services(load(COMPOSE)))
    assert {s.package for s in PROCESSES} == built
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        assert set(by_kind(manifests, kind)) == expected, kind
    assert not by_kind(manifests, "Secret"), "no Secret unless secrets.create=true"
    assert not by_kind(manifests, "Ingress"), "Kong's Ingress only when kong.ingress.enabled=true"


@pytest.mark.parametrize("svc", PROCESSES, ids=lambda s: s.name)
def test_ports_probes_and_selectors(manifests, svc):
    name = f"{RELEASE}-{svc.name}"
    deployment = by_kind(manifests, "Deployment")[name]
    service = by_kind(manifests, "Service")[name]
    c = container(deployment)
    assert c["ports"] == [{"name": "http", "containerPort": svc.port, "protocol": "TCP"}]
    assert service["spec"]["ports"] == [
        {"name": "http", "port": svc.port, "targetPort": "http", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert c["image"] == f"online-mart/{svc.package}:dev"  # the image compose.yaml builds
    compose_svc = load(COMPOSE)["services"][svc.package]
    assert compose_svc["image"] == c["image"]
    # Replicas: by the HPA (Deployment leaves replicas to it), never below 2, never above the partitions.
    hpa = by_kind(manifests, "HorizontalPodAutoscaler")[name]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    assert "replicas" not in deployment["spec"]
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"] <= 6
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pdb = by_kind(manifests, "PodDisruptionBudget")[name]
    assert pdb["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]


@pytest.mark.parametrize("svc", SERVICES, ids=lambda s: s.name)
def test_environment_matches_the_settings_and_compose(manifests, svc):
    deployment = by_kind(manifests, "Deployment")[f"{RELEASE}-{svc.name}"]
    env = env_of(deployment)
    readable = env_names(svc)
    unknown = set(env) - readable - CHART_INTERNAL - OTEL_STANDARD
    assert not unknown, f"{svc.name}: the settings read no {sorted(unknown)}"
    compose_env = set(load(COMPOSE)["services"][svc.package]["environment"])
    assert compose_env - COMPOSE_ONLY <= set(env), sorted(compose_env - COMPOSE_ONLY - set(env))
    assert env["MART_EVENT_BUS"]["value"] == "kafka"
    assert env["MART_KAFKA_PARTITIONS"]["value"] == "6"
    assert env["MART_ROOT_PATH"]["value"] == svc.prefix
    assert env["OTEL_SERVICE_NAME"]["value"] == svc.name
    assert env["MART_JWKS_URL"]["value"] == f"http://{RELEASE}-user-service:8006/.well-known/jwks.json"
    url = env["MART_DATABASE_URL"]["value"]
    assert url == f"postgresql+asyncpg://{svc.package}:$(DATABASE_PASSWORD)@mart-pg:5432/{svc.package}"
    names = [e["name"] for e in container(deployment)["env"]]
    assert names.index("DATABASE_PASSWORD") < names.index("MART_DATABASE_URL"), (
        "$(VAR) needs it defined first"
    )


@pytest.mark.parametrize("svc", SERVICES, ids=lambda s: s.name)
def test_secrets_come_from_the_secret_only(manifests, svc):
    env = env_of(by_kind(manifests, "Deployment")[f"{RELEASE}-{svc.name}"])
    for name, entry in env.items():
        if any(word in name.lower() for word in SECRET_WORDS):
            assert "value" not in entry, f"{name} must come from a Secret"
            assert entry["valueFrom"]["secretKeyRef"]["name"] == "online-mart"
    assert env["DATABASE_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "online-mart",
        "key": f"{svc.package}-password",
    }
    if svc.package == "user_service":
        # Every replica must sign with the same key: required, not generated per pod.
        ref = env["MART_JWT_PRIVATE_KEY_PEM"]["valueFrom"]["secretKeyRef"]
        assert ref["key"] == "jwt-private-key-pem" and not ref.get("optional")


def test_web_front_environment(manifests):
    """The web front: no database, at the root (no root path), the services through Kong's proxy when
    kong.proxyUrl is set, else each service's Kubernetes Service; its cookie secret from the Secret,
    required (every replica must sign with the same one)."""
    env = env_of(by_kind(manifests, "Deployment")[f"{RELEASE}-{WEB.name}"])
    unknown = set(env) - env_names(WEB) - OTEL_STANDARD
    assert not unknown, f"the web front's settings read no {sorted(unknown)}"
    assert "MART_DATABASE_URL" not in env and "DATABASE_PASSWORD" not in env and "MART_ROOT_PATH" not in env
    urls = json.loads(env["MART_SERVICE_URLS"]["value"])
    assert urls == {s.name: f"http://{RELEASE}-{s.name}:{s.port}" for s in SERVICES}
    assert "MART_GATEWAY_URL" not in env
    ref = env["MART_COOKIE_SECRET"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "online-mart", "key": "web-cookie-secret"}
    through_kong = env_of(
        by_kind(render("--set", "kong.proxyUrl=http://kong-proxy.kong.svc"), "Deployment")[
            f"{RELEASE}-{WEB.name}"
        ]
    )
    assert through_kong["MART_GATEWAY_URL"]["value"] == "http://kong-proxy.kong.svc"
    assert "MART_SERVICE_URLS" not in through_kong


def test_values_file_carries_no_secret():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["secrets"]["values"] == {} and values["secrets"]["create"] is False
    flat = yaml.safe_dump(values).lower()
    assert "begin rsa private key" not in flat and "begin private key" not in flat


def test_secret_rendered_from_install_time_values():
    docs = render("--set", "secrets.create=true", "--set", "secrets.values.order_service-password=s3cret")
    (secret,) = by_kind(docs, "Secret").values()
    assert secret["metadata"]["name"] == "online-mart"
    assert secret["stringData"] == {"order_service-password": "s3cret"}


def test_kong_ingress_strips_the_same_prefixes_as_kong_yaml():
    docs = render("--set", "kong.ingress.enabled=true")
    ingresses = by_kind(docs, "Ingress")
    kong = load(KONG)
    compose = load(COMPOSE)
    assert len(ingresses) == len(PROCESSES)
    web = ingresses[f"{RELEASE}-{WEB.name}"]
    assert web["metadata"]["annotations"]["konghq.com/strip-path"] == "false"
    (rule,) = web["spec"]["rules"]
    assert [p["path"] for p in rule["http"]["paths"]] == ["/"]
    assert kong_match(kong, "GET", "/products").service["name"] == WEB.name
    for svc in SERVICES:
        ing = ingresses[f"{RELEASE}-{svc.name}"]
        assert ing["spec"]["ingressClassName"] == "kong"
        assert ing["metadata"]["annotations"]["konghq.com/strip-path"] == "true"
        (rule,) = ing["spec"]["rules"]
        (path,) = rule["http"]["paths"]
        assert path["path"] == svc.prefix and path["pathType"] == "Prefix"
        assert path["backend"]["service"] == {"name": f"{RELEASE}-{svc.name}", "port": {"name": "http"}}
        # The same prefix routes to the same service in kong/kong.yaml, and the service sees the same path.
        match = kong_match(kong, "GET", f"{svc.prefix}/health")
        assert match is not None and match.service["name"] == svc.name
        root = compose["services"][svc.package]["environment"]["MART_ROOT_PATH"]
        assert service_local_path(match, f"{svc.prefix}/health", root) == "/health"


def test_conventions_table_lists_the_chart_ports():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    text = CONVENTIONS.read_text()
    for svc in SERVICES:
        v = values["services"][svc.short]
        assert (v["package"], v["port"], v["prefix"]) == (svc.package, svc.port, svc.prefix)
        assert f"`{svc.package}` | {svc.port} | `{svc.prefix}`" in text
    web = values["services"][WEB.short]
    assert (web["package"], web["port"], web["prefix"], web["database"]) == (
        WEB.package,
        WEB.port,
        "/",
        False,
    )
    assert f"`{WEB.package}` | {WEB.port} | `/`" in text
