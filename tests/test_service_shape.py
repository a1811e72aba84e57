"""Every service has the same modules with the same meanings (docs/conventions.md, "Where things go";
docs/architecture.md, "The one service shape"): a newcomer who has read one service knows where everything
is in the other five. A missing module, a stray one, a route that holds a transaction or reaches into
``app.state``, an events module that writes to the outbox, a domain module that imports a framework, a
bootstrap that names its service itself, a handler that is more than a call, or a per-service object
passed around untyped fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("user", "product", "inventory", "order", "payment", "notification")
EXCLUDED_DIRS = {".venv", "node_modules", ".data", ".git", ".pytest_cache", ".ruff_cache", ".hypothesis"}

#: Modules every service has (a trailing slash: a package). Their meanings: docs/conventions.md.
REQUIRED = {
    "__init__": "the package",
    "main": "create_app for uvicorn",
    "settings": "the service's settings class (service_name is also the events' source)",
    "bootstrap": "wiring only: definition(settings, ...) -> ServiceDefinition",
    "context": "the typed per-service context, open_context(runtime) and the route dependency",
    "routes/": "HTTP only: parse, authorise, call one use-case, map the result",
    "services": "the use-cases, one function per thing a user or an event does",
    "domain": "rules and state machines as tables; no framework, no database",
    "models": "SQLModel tables only",
    "schemas": "HTTP request and response models",
    "events": "pure builders of the Protobuf messages the service publishes",
    "handlers": "HANDLERS: the module-level table event type -> thin function -> use-case",
}

#: The only other modules a service may have: a mechanism of its own, with its meaning.
EXTRAS: dict[str, dict[str, str]] = {
    "payment": {
        "providers": "the payment providers (fake, Stripe) behind one interface",
        "provider_calls": "provider calls made after the transaction commits, retried durably",
    },
    "notification": {
        "channels/": "the delivery channels (email backends, SMS, in-app) behind one interface",
        "rendering": "the messages of each kind rendered from templates/",
        "dispatcher": "hands committed deliveries to the channels, with retries and backoff",
    },
    "user": {
        "keys": "the key pair that signs tokens, its rotation and the JWKS",
        "tokens": "issuing access and refresh tokens, rotation and reuse detection",
        "passwords": "password hashing (Argon2), off the event loop",
        "throttle": "login throttling per account and per address, in the database",
    },
    "order": {},
    "inventory": {},
    "product": {
        "search": "the text search: words, prefixes and corrections over the full-text index, relevance",
    },
}


def package_dir(svc: str) -> Path:
    return ROOT / f"{svc}_service" / "src" / f"{svc}_service"


def modules_of(svc: str) -> set[str]:
    """The package's modules: ``name`` for a ``.py`` file, ``name/`` for a sub-package (a directory with
    Python files); ``migrations/``, ``__pycache__`` and directories without Python (templates) left out."""
    found: set[str] = set()
    for entry in package_dir(svc).iterdir():
        if entry.name in {"migrations", "__pycache__"}:
            continue
        if entry.is_file() and entry.suffix == ".py":
            found.add(entry.stem)
        elif entry.is_dir() and any(entry.rglob("*.py")):
            found.add(entry.name + "/")
    return found


def python_files(*roots: Path) -> list[Path]:
    files: list[Path] = []
    for root in roots:
        files += [
            p
            for p in root.rglob("*.py")
            if not EXCLUDED_DIRS.intersection(p.relative_to(ROOT).parts) and "__pycache__" not in p.parts
        ]
    return sorted(files)


@pytest.mark.parametrize("svc", SERVICES)
def test_the_service_has_every_required_module(svc: str) -> None:
    missing = sorted(set(REQUIRED) - modules_of(svc))
    assert not missing, f"{svc}_service lacks {missing} (docs/conventions.md, 'Where things go')"
    assert (package_dir(svc) / "migrations").is_dir(), f"{svc}_service has no migrations/"


@pytest.mark.parametrize("svc", SERVICES)
def test_the_service_has_no_stray_module(svc: str) -> None:
    stray = sorted(modules_of(svc) - set(REQUIRED) - set(EXTRAS[svc]))
    assert not stray, (
        f"{svc}_service has modules outside the shape: {stray}; move them into the modules of "
        "docs/conventions.md, 'Where things go', or list a mechanism of the service's own in EXTRAS, "
        "with its meaning"
    )


@pytest.mark.parametrize("svc", [s for s in SERVICES if EXTRAS[s]])
def test_extra_modules_say_what_they_are(svc: str) -> None:
    for name in set(EXTRAS[svc]) & modules_of(svc):
        path = package_dir(svc) / (name + "__init__.py" if name.endswith("/") else name + ".py")
        assert ast.get_docstring(ast.parse(path.read_text())), f"{path.relative_to(ROOT)} has no docstring"


@pytest.mark.parametrize("svc", SERVICES)
def test_routes_hold_no_transaction(svc: str) -> None:
    """Writes take TransactionDep (committed when the route returns); routes never commit or roll back."""
    calls = re.compile(r"\.(commit|rollback)\(")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in python_files(package_dir(svc) / "routes")
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if calls.search(line)
    ]
    assert not offenders, f"routes that commit or roll back: {offenders}"


@pytest.mark.parametrize("svc", SERVICES)
def test_events_only_build_messages(svc: str) -> None:
    """events.py: pure builders; the use-case records the event, and the source comes from the settings."""
    path = package_dir(svc) / "events.py"
    assert path.is_file(), f"{svc}_service has no events.py"
    tree = ast.parse(path.read_text())
    sources = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name) and target.id == "SOURCE"
    ]
    where = path.relative_to(ROOT)
    assert not sources, f"{where} defines SOURCE (line {sources}): the source is settings.service_name"
    imports = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and any(alias.name == "record_event" for alias in node.names)
    ]
    assert not imports, f"{where} imports record_event (line {imports}): services.py records"


def test_no_untyped_per_service_extras_anywhere() -> None:
    """The typed context (runtime.context) replaced the untyped extras, in the services and their tests."""
    needle = "runtime." + "extras"  # spelled so that this file does not find itself
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in python_files(ROOT)
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), start=1)
        if needle in line
    ]
    assert not offenders, f"{needle} is still used: {offenders}"


@pytest.mark.parametrize("svc", SERVICES)
def test_every_route_dependency_runs_on_the_event_loop(svc: str) -> None:
    """No ``def`` dependency (a function or a class) of ours: FastAPI runs those in the thread pool, a
    thread hop per request. FastAPI's own form classes (login) are left to it."""
    import importlib
    import inspect

    from fastapi.routing import APIRoute

    package = f"{svc}_service"
    app = importlib.import_module(f"{package}.main").create_app()
    ours = ("mart_common", package)
    sync = set()

    def walk(dependant) -> None:
        for dep in dependant.dependencies:
            call = dep.call
            fn = call if inspect.isfunction(call) or inspect.isclass(call) else type(call).__call__
            is_async = inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
            if not is_async and (getattr(call, "__module__", "") or "").startswith(ours):
                sync.add(f"{call.__module__}.{getattr(call, '__qualname__', call)}")
            walk(dep)

    for route in app.routes:
        if isinstance(route, APIRoute):
            walk(route.dependant)
    assert not sync, f"dependencies run in the thread pool: {sorted(sync)}"


#: What domain.py may not import: frameworks, the database, the bus, the HTTP layer (docs/conventions.md).
FRAMEWORKS = ("fastapi", "starlette", "sqlalchemy", "sqlmodel", "pydantic", "aiokafka", "asyncpg", "httpx")
FRAMEWORK_MODULES = ("mart_common.db", "mart_common.bus", "mart_common.deps", "mart_common.service")


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("svc", SERVICES)
def test_domain_imports_no_framework(svc: str) -> None:
    """domain.py holds rules a unit test runs without a database, a bus or an app."""
    path = package_dir(svc) / "domain.py"
    offenders = [
        f"line {n}: {module}"
        for n, module in _imported_modules(ast.parse(path.read_text()))
        if module.split(".")[0] in FRAMEWORKS or module.startswith(FRAMEWORK_MODULES)
    ]
    assert not offenders, f"{path.relative_to(ROOT)} imports frameworks: {offenders}"


@pytest.mark.parametrize("svc", SERVICES)
def test_routes_do_not_reach_into_app_state(svc: str) -> None:
    """Routes get the runtime and the context through mart_common.deps (RuntimeDep, runtime_of) and their
    service's ContextDep, never from ``request.app.state``."""
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in python_files(package_dir(svc) / "routes")
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if re.search(r"\bapp\.state\b", line)
    ]
    assert not offenders, f"routes that reach into app.state: {offenders}"


@pytest.mark.parametrize("svc", SERVICES)
def test_the_bootstrap_takes_the_service_name_from_its_settings(svc: str) -> None:
    """One name per service, in its settings (``service_name``, also the events' source): the
    ServiceDefinition's ``name`` is ``settings.service_name``, never a literal."""
    path = package_dir(svc) / "bootstrap.py"
    names = [
        keyword.value
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ServiceDefinition"
        for keyword in node.keywords
        if keyword.arg == "name"
    ]
    assert len(names) == 1, f"{path.relative_to(ROOT)}: one ServiceDefinition(name=...) expected"
    assert ast.unparse(names[0]) == "settings.service_name", (
        f"{path.relative_to(ROOT)} names the service {ast.unparse(names[0])}; use settings.service_name"
    )


#: At most this many statements in a handler (its docstring aside): decode, then one use-case call.
HANDLER_STATEMENTS = 3


@pytest.mark.parametrize("svc", SERVICES)
def test_handlers_are_thin(svc: str) -> None:
    """Every handler of HANDLERS decodes the event and calls ONE use-case of services.py: no loops, no
    structures built (a template context, a list of lines), a few statements at most. Formatting, tables
    and rules belong in domain.py, the rendering or the use-case."""
    path = package_dir(svc) / "handlers.py"
    tree = ast.parse(path.read_text())
    handlers = [
        node for node in tree.body if isinstance(node, ast.AsyncFunctionDef) and node.name.startswith("on_")
    ]
    problems = []
    for fn in handlers:
        body = fn.body[1:] if ast.get_docstring(fn) else fn.body
        calls = [
            node
            for node in ast.walk(fn)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "services"
        ]
        loops = [node.lineno for node in ast.walk(fn) if isinstance(node, ast.For | ast.While | ast.AsyncFor)]
        built = [
            node.lineno for node in ast.walk(fn) if isinstance(node, ast.Dict | ast.DictComp | ast.ListComp)
        ]
        if len(calls) != 1:
            problems.append(f"{fn.name} calls {len(calls)} use-cases (one expected)")
        if loops:
            problems.append(f"{fn.name} loops (line {loops[0]})")
        if built:
            problems.append(f"{fn.name} builds a dict or list (line {built[0]}): a table or a use-case's job")
        if len(body) > HANDLER_STATEMENTS:
            problems.append(f"{fn.name} has {len(body)} statements (at most {HANDLER_STATEMENTS})")
    assert not problems, f"{path.relative_to(ROOT)}: handlers that are not thin: {problems}"
