"""``mart``: run the mart (embedded or local distributed) and everyday operations.

The CLI composes: it starts processes, calls the services' HTTP APIs and the bus; it holds no domain
logic.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Online Mart: run it and operate it.", no_args_is_help=True, add_completion=False)
dist_app = typer.Typer(help="Local distributed mode: PostgreSQL + Kafka + six service processes (no Docker).")
order_app = typer.Typer(help="Orders.")
dlq_app = typer.Typer(help="Dead letters of a consumer group (e.g. inventory-service).")
app.add_typer(dist_app, name="dist")
app.add_typer(order_app, name="order")
events_app = typer.Typer(
    help="Watch the events on the bus (Kafka in the local distributed mode, the in-process log embedded)."
)
app.add_typer(dlq_app, name="dlq")
app.add_typer(events_app, name="events")
keys_app = typer.Typer(help="The user service's signing keys under the data dir (docs/api.md, Signing keys).")
app.add_typer(keys_app, name="keys")

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Local state (SQLite files, keys, mail, logs). Default: $MART_DATA_DIR or <repo>/.data",
    ),
]
Url = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="Gateway URL (embedded mode or Kong). Default: the running local distributed "
        "mode's ports if it runs, else http://localhost:8000",
    ),
]


def _data_dir(value: Path | None) -> Path:
    from mart_common.settings import default_data_dir

    return (value or default_data_dir()).resolve()


def _endpoints(url: str | None, data_dir: Path):  # noqa: ANN202
    from mart_cli.dist import DistConfig
    from mart_cli.services import Endpoints

    if url:
        return Endpoints.gateway(url)
    dist = DistConfig.load(data_dir)
    if dist is not None:
        return dist.endpoints()
    return Endpoints.gateway("http://localhost:8000")


def _admin_pw(creds) -> str:  # noqa: ANN001
    return "(MART_ADMIN_PASSWORD)" if creds.admin.from_env else creds.admin.password


def _fail(message: str) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@app.command()
def run(
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8000,
    host: Annotated[str, typer.Option(help="Interface to bind (0.0.0.0 inside a container).")] = "127.0.0.1",
    data_dir: DataDir = None,
    no_seed: Annotated[bool, typer.Option("--no-seed", help="Do not create the demo data.")] = False,
) -> None:
    """Embedded mode: all six services in one process on http://localhost:PORT (SQLite + in-process bus)."""
    from mart_cli.embedded import run as run_embedded

    raise typer.Exit(run_embedded(_data_dir(data_dir), host=host, port=port, seed=not no_seed))


@app.command()
def seed(url: Url = None, data_dir: DataDir = None) -> None:
    """Create the demo data (admin-made categories, products, stock; a customer) through the HTTP APIs."""
    import httpx

    from mart_cli.credentials import load_or_create
    from mart_cli.seed import AdminLoginRefused
    from mart_cli.seed import seed as do_seed

    directory = _data_dir(data_dir)
    creds = load_or_create(directory)
    ep = _endpoints(url, directory)

    async def _go():  # noqa: ANN202
        async with httpx.AsyncClient(timeout=60) as client:
            return await do_seed(client, ep, creds, say=typer.echo)

    try:
        report = asyncio.run(_go())
    except (AdminLoginRefused, TimeoutError) as exc:
        _fail(str(exc))
    typer.echo(
        f"{report.products_total} products ({report.products_created} new, {report.stock_adjusted} stocked), "
        f"{report.categories_created} new categories, "
        f"customer {'created' if report.customer_created else 'present'}"
    )
    typer.echo(f"admin    {creds.admin.email} / {_admin_pw(creds)}")
    typer.echo(f"customer {creds.customer.email} / {creds.customer.password}")


@dist_app.command("up")
def dist_up(
    data_dir: DataDir = None,
    no_infra: Annotated[bool, typer.Option("--no-infra", help="PostgreSQL and Kafka already run.")] = False,
    no_seed: Annotated[bool, typer.Option("--no-seed")] = False,
    gateway: Annotated[
        bool,
        typer.Option(
            "--gateway",
            help="Also start the built-in gateway on --gateway-port (Kong prefixes: /user-service/docs ...) "
            "when Kong is not around. Without it, call the services on their own ports.",
        ),
    ] = False,
    gateway_port: Annotated[int, typer.Option(help="Port of the built-in gateway.")] = 8000,
    mail: Annotated[
        bool,
        typer.Option(
            "--mail/--no-mail",
            help="Start Mailpit (SMTP :1025, API http://localhost:8025/api/v1/messages) and send mail "
            "there; --no-mail writes .eml files under <data dir>/mail instead.",
        ),
    ] = True,
    replicas: Annotated[
        list[str] | None,
        typer.Option(
            "--replicas",
            help="Processes per service: N for every service, or SERVICE=N (repeatable, e.g. "
            "--replicas order=3 --replicas inventory=2). Replica k listens on port + 100*(k-1); "
            "--gateway spreads requests over them (docs/scaling.md).",
        ),
    ] = None,
    trace: Annotated[
        bool,
        typer.Option(
            "--trace",
            help="Also start Zipkin on --zipkin-port and export every service's spans to it "
            "(docs/tracing.md).",
        ),
    ] = False,
    zipkin_port: Annotated[int, typer.Option(help="Port of Zipkin (with --trace).")] = 9411,
) -> None:
    """Start PostgreSQL, Kafka and the six services on their ports 8006-8011; wait until all are ready."""
    import httpx

    from mart_cli.credentials import load_or_create
    from mart_cli.dist import DistConfig, parse_replicas, up
    from mart_cli.seed import seed as do_seed
    from mart_cli.services import SERVICES

    try:
        counts = parse_replicas(replicas or [])
    except ValueError as exc:
        _fail(str(exc))
    cfg = DistConfig(
        data_dir=_data_dir(data_dir),
        gateway_port=gateway_port if gateway else None,
        replicas=counts,
        mail=mail,
        trace=trace,
        zipkin_port=zipkin_port,
    )
    try:
        took = up(cfg, infra=not no_infra, say=typer.echo)
    except RuntimeError as exc:
        _fail(str(exc))
    typer.echo(f"up in {took:.1f}s")
    if any(n > 1 for n in counts.values()) and not gateway:
        typer.echo("  several replicas without --gateway: each service's port reaches its replica 1 only")
    creds = load_or_create(cfg.data_dir)
    if not no_seed:

        async def _go():  # noqa: ANN202
            async with httpx.AsyncClient(timeout=60) as client:
                return await do_seed(client, cfg.endpoints(), creds, say=typer.echo)

        report = asyncio.run(_go())
        typer.echo(f"demo data: {report.products_total} products ({report.products_created} new)")
    for svc in SERVICES:
        typer.echo(f"  {svc.name:<22} {cfg.endpoints().url(svc.package, '/docs')}")
    typer.echo(f"  admin    {creds.admin.email} / {_admin_pw(creds)}")
    typer.echo(f"  customer {creds.customer.email} / {creds.customer.password}")
    if cfg.mail:
        typer.echo(f"  mail     {cfg.mail_api}/api/v1/messages (Mailpit)")
    typer.echo("  events   mart events tail --from-beginning    mart events topics")
    typer.echo(f"  logs     {cfg.log_dir}/<service>.log        stop with: mart dist down")
    if cfg.trace:
        url = f"http://localhost:{cfg.zipkin_port}/zipkin/"
        typer.echo(f"  traces   {url}  (trace id: the traceresponse header, or trace_id in the logs)")


@dist_app.command("down")
def dist_down(
    data_dir: DataDir = None,
    keep_infra: Annotated[
        bool, typer.Option("--keep-infra", help="Leave PostgreSQL and Kafka running.")
    ] = False,
) -> None:
    """Stop the six services, then Kafka and PostgreSQL."""
    from mart_cli.dist import DistConfig, down

    directory = _data_dir(data_dir)
    cfg = DistConfig.load(directory) or DistConfig(data_dir=directory)
    down(cfg, infra=not keep_infra, say=typer.echo)


@dist_app.command("status")
def dist_status(data_dir: DataDir = None) -> None:
    """Which service processes (every replica) run and answer /ready (exit 1 unless all do)."""
    from mart_cli.dist import DistConfig, status

    directory = _data_dir(data_dir)
    cfg = DistConfig.load(directory) or DistConfig(data_dir=directory)
    result = status(cfg)
    for name, row in result.items():
        state = "ready" if row["ready"] is True else ("running, not ready" if row["pid"] else "stopped")
        replica = f"  replica {row['replica']}" if not str(row.get("replica", "1/1")).endswith("/1") else ""
        pid = f"  pid {row['pid']}" if row["pid"] else ""
        typer.echo(f"{name:<24} :{row['port']:<5}  {state}{pid}{replica}")
    raise typer.Exit(0 if all(r["ready"] is True for r in result.values()) else 1)


@order_app.command("timeline")
def order_timeline(
    order_id: str,
    url: Url = None,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """An order's saga: its status history and its payments (as the admin)."""
    from mart_cli.client import ApiError
    from mart_cli.ops import format_timeline
    from mart_cli.ops import order_timeline as fetch

    directory = _data_dir(data_dir)
    try:
        data = asyncio.run(fetch(_endpoints(url, directory), directory, order_id))
    except ApiError as exc:
        _fail(str(exc))
    typer.echo(json.dumps(data, indent=2) if as_json else format_timeline(data))


def _bus(bus_kind: str | None, directory: Path):  # noqa: ANN202
    from mart_cli.dist import DistConfig
    from mart_cli.ops import build_bus

    dist = DistConfig.load(directory)
    kind = bus_kind or ("kafka" if dist is not None else "inprocess")
    return build_bus(kind, directory, dist)


BusKind = Annotated[
    str | None,
    typer.Option(
        "--bus",
        help="kafka | inprocess. Default: kafka when the local distributed mode runs, "
        "else the embedded mode's in-process log under the data dir.",
    ),
]


@dlq_app.command("list")
def dlq_list(group: str, bus: BusKind = None, data_dir: DataDir = None) -> None:
    """The dead letters of GROUP (all of them, re-driven ones included)."""
    from mart_cli.ops import dead_letters, format_dead_letter

    try:
        messages = asyncio.run(dead_letters(_bus(bus, _data_dir(data_dir)), group))
    except FileNotFoundError as exc:
        _fail(str(exc))
    for msg in messages:
        typer.echo(format_dead_letter(msg))
    typer.echo(f"{len(messages)} dead letter(s)")


@dlq_app.command("redrive")
def dlq_redrive(group: str, bus: BusKind = None, data_dir: DataDir = None) -> None:
    """Move GROUP's dead letters not yet re-driven back onto their original topics."""
    from mart_cli.ops import redrive

    try:
        count = asyncio.run(redrive(_bus(bus, _data_dir(data_dir)), group))
    except FileNotFoundError as exc:
        _fail(str(exc))
    typer.echo(f"re-drove {count} dead letter(s)")


@events_app.command("tail")
def events_tail(
    topic: Annotated[
        list[str] | None, typer.Option("--topic", "-t", help="Only this topic (repeatable). Default: all.")
    ] = None,
    event_type: Annotated[
        list[str] | None,
        typer.Option("--type", help="Only this type: OrderPaid or mart.orders.v1.OrderPaid (repeatable)."),
    ] = None,
    key: Annotated[str | None, typer.Option("--key", help="Only records with this key.")] = None,
    order: Annotated[
        str | None,
        typer.Option("--order", help="Only events of this order (its key, or the payload's order_id)."),
    ] = None,
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at the oldest record (default: only new ones).")
    ] = False,
    follow: Annotated[
        bool, typer.Option("--follow/--no-follow", help="Keep waiting for new events (Ctrl-C stops).")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per event.")] = False,
    bus: BusKind = None,
    data_dir: DataDir = None,
) -> None:
    """Print events as they arrive: CloudEvents headers and the Protobuf payload decoded to JSON."""
    from mart_common.bus.browse import EventFilter

    from mart_cli.events import tail

    where = EventFilter(types=tuple(event_type or ()), key=key, order=order)
    try:
        count = asyncio.run(
            tail(
                _bus(bus, _data_dir(data_dir)),
                typer.echo,
                topics=topic or (),
                where=where,
                from_beginning=from_beginning,
                follow=follow,
                as_json=as_json,
            )
        )
    except FileNotFoundError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    if not as_json:
        typer.echo(f"{count} event(s)", err=True)


@events_app.command("topics")
def events_topics(
    bus: BusKind = None,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Topics (streams) with their message counts and each consumer group's committed records and lag."""
    from dataclasses import asdict

    from mart_cli.events import format_topics, topics

    try:
        infos = asyncio.run(topics(_bus(bus, _data_dir(data_dir))))
    except FileNotFoundError as exc:
        _fail(str(exc))
    typer.echo(json.dumps([asdict(i) for i in infos], indent=2) if as_json else format_topics(infos))


@app.command()
def migrate(
    target: Annotated[
        str, typer.Option(help="embedded (SQLite files under the data dir) | dist (PostgreSQL)")
    ] = "embedded",
    data_dir: DataDir = None,
) -> None:
    """Upgrade every service's database to the newest migration (services also do it at start)."""
    from mart_cli.dist import DistConfig
    from mart_cli.ops import migrate as do_migrate
    from mart_cli.services import SERVICES

    directory = _data_dir(data_dir)
    if target == "embedded":
        directory.mkdir(parents=True, exist_ok=True)
        urls = {s.package: f"sqlite+aiosqlite:///{directory / (s.package + '.sqlite')}" for s in SERVICES}
    elif target == "dist":
        cfg = DistConfig.load(directory) or DistConfig(data_dir=directory)
        urls = {s.package: cfg.database_url(s) for s in SERVICES}
    else:
        _fail("--target is embedded or dist")
    asyncio.run(do_migrate(urls, say=typer.echo))


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def bench(ctx: typer.Context) -> None:
    """Measure throughput and latency next to the machine's own limits (docs/performance.md); its options:
    ./mart bench --help."""
    from bench.run import main as run_bench

    raise typer.Exit(run_bench(ctx.args, prog="mart bench"))


@keys_app.command("rotate")
def keys_rotate(data_dir: DataDir = None) -> None:
    """Make a new signing key; the current one becomes the previous key, still published (restart every
    user-service replica afterwards)."""
    from user_service.keys import rotate_key_files

    try:
        store = rotate_key_files(_data_dir(data_dir))
    except FileNotFoundError as exc:
        _fail(f"{exc} (the user service makes it at its first start)")
    typer.echo(f"new signing key {store.kid}; restart every user-service replica")


@keys_app.command("retire")
def keys_retire(data_dir: DataDir = None) -> None:
    """Stop publishing the previous key, once the longest token lifetime has passed since the rotation
    (restart every user-service replica afterwards)."""
    from user_service.keys import retire_previous_key_file

    retired = retire_previous_key_file(_data_dir(data_dir))
    typer.echo("previous key removed; restart every user-service replica" if retired else "no previous key")


@keys_app.command("show")
def keys_show(data_dir: DataDir = None) -> None:
    """The public keys the user service publishes (its JWKS), from the key files or the settings."""
    from user_service.keys import KEY_FILE, existing_keys
    from user_service.settings import UserSettings

    settings = UserSettings(data_dir=_data_dir(data_dir))
    keys = existing_keys(settings)
    if keys is None:
        where = settings.data_dir / KEY_FILE
        _fail(f"no signing key at {where} (the user service makes it at its first start)")
    typer.echo(json.dumps(keys.jwks(), indent=2))


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
