"""``mart dist up --replicas`` (docs/scaling.md): the replica plan, and the built-in gateway's round robin and
failover over real HTTP servers on loopback (no services, no databases: the gateway alone)."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from mart_testkit.ports import free_port
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mart_cli import dist, gateway
from mart_cli.services import SERVICES, service

# --- the replica plan -----------------------------------------------------------------------------------


def test_default_is_one_replica_on_the_conventional_ports():
    cfg = dist.DistConfig()
    assert [(i.label, i.port) for i in cfg.instances()] == [(s.name, s.port) for s in SERVICES]


def test_replica_ports_and_file_names():
    cfg = dist.DistConfig(replicas=dist.parse_replicas(["order=3"]))
    order = [(i.label, i.port, i.stem) for i in cfg.instances() if i.svc.package == "order_service"]
    assert order == [
        ("order-service", 8009, "order_service"),
        ("order-service-2", 8109, "order_service-2"),
        ("order-service-3", 8209, "order_service-3"),
    ]
    assert len(cfg.instances()) == 8
    assert dist.gateway_upstreams(cfg)["/order-service"] == [
        "http://127.0.0.1:8009",
        "http://127.0.0.1:8109",
        "http://127.0.0.1:8209",
    ]


def test_parse_replicas():
    every = dist.parse_replicas(["2"])
    assert every == {s.package: 2 for s in SERVICES}
    assert dist.parse_replicas(["2", "order=3,user=1"]) == {**every, "order_service": 3, "user_service": 1}
    assert dist.parse_replicas(["payment-service=2"]) == {"payment_service": 2}
    for bad, message in (("x", "expected N or SERVICE=N"), ("shop=2", "unknown service"), ("0", "between 1")):
        with pytest.raises(ValueError, match=message):
            dist.parse_replicas([bad])


def test_the_state_file_keeps_the_replicas(tmp_path):
    cfg = dist.DistConfig(data_dir=tmp_path, replicas={"order_service": 2}, gateway_port=18000)
    cfg.save()
    loaded = dist.DistConfig.load(tmp_path)
    assert loaded is not None
    assert [i.label for i in loaded.instances()] == [i.label for i in cfg.instances()]


def test_jwks_through_the_gateway_only_with_several_user_replicas(tmp_path):
    user = service("user")
    one = dist.DistConfig(data_dir=tmp_path, gateway_port=18000)
    assert dist.service_env(one, user)["MART_JWKS_URL"] == "http://127.0.0.1:8006/.well-known/jwks.json"
    two = dist.DistConfig(data_dir=tmp_path, gateway_port=18000, replicas={"user_service": 2})
    assert (
        dist.service_env(two, user)["MART_JWKS_URL"]
        == "http://127.0.0.1:18000/user-service/.well-known/jwks.json"
    )


# --- the gateway over real sockets ----------------------------------------------------------------------


@contextmanager
def serve(app: object, port: int) -> Iterator[uvicorn.Server]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(10)


def replica_app(name: str, hits: Counter) -> Starlette:
    async def handle(request: Request) -> JSONResponse:
        hits[(name, request.method)] += 1
        return JSONResponse({"replica": name, "path": request.url.path})

    return Starlette(routes=[Route("/{path:path}", handle, methods=["GET", "POST"])])


@contextmanager
def hang_up_server(port: int) -> Iterator[Counter]:
    """Accepts a connection, reads the request, closes without answering (a replica dying mid-request)."""
    received: Counter = Counter()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen()
    sock.settimeout(0.2)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            with conn:
                data = conn.recv(65536)
                received[data.split(b" ", 1)[0].decode()] += 1

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        stop.set()
        thread.join(5)
        sock.close()


def test_round_robin_then_failover_when_a_replica_is_down():
    hits: Counter = Counter()
    a, b, gw = free_port(), free_port(), free_port()
    app = gateway.build({"/order-service": [f"http://127.0.0.1:{a}", f"http://127.0.0.1:{b}"]})
    with serve(replica_app("a", hits), a), serve(app, gw):
        with serve(replica_app("b", hits), b):
            served = [
                httpx.get(f"http://127.0.0.1:{gw}/order-service/orders").json()["replica"] for _ in range(6)
            ]
            assert Counter(served) == {"a": 3, "b": 3}
            assert served[0] != served[1], "round robin alternates"
        # b is gone (connection refused): every request, POST included, lands on a
        for _ in range(4):
            r = httpx.post(f"http://127.0.0.1:{gw}/order-service/orders", json={})
            assert r.status_code == 200 and r.json() == {"replica": "a", "path": "/orders"}
        index = httpx.get(f"http://127.0.0.1:{gw}/").json()["services"]["order-service"]["targets"]
        assert index == {f"http://127.0.0.1:{a}": 7, f"http://127.0.0.1:{b}": 3}
    assert hits[("a", "POST")] == 4


def test_a_post_that_may_have_run_is_not_sent_to_another_replica():
    hits: Counter = Counter()
    good, broken, gw = free_port(), free_port(), free_port()
    app = gateway.build({"/pay": [f"http://127.0.0.1:{broken}", f"http://127.0.0.1:{good}"]})
    with hang_up_server(broken) as received, serve(replica_app("good", hits), good), serve(app, gw):
        outcomes = [httpx.post(f"http://127.0.0.1:{gw}/pay/charge", json={}).status_code for _ in range(2)]
    # the first POST reached the replica that hung up: 502, not a second execution on the good replica
    assert outcomes == [502, 200]
    assert received["POST"] == 1 and hits[("good", "POST")] == 1


def test_a_get_that_broke_mid_way_is_retried_on_another_replica():
    hits: Counter = Counter()
    good, broken, gw = free_port(), free_port(), free_port()
    app = gateway.build({"/pay": [f"http://127.0.0.1:{broken}", f"http://127.0.0.1:{good}"]})
    with hang_up_server(broken) as received, serve(replica_app("good", hits), good), serve(app, gw):
        r = httpx.get(f"http://127.0.0.1:{gw}/pay/status")
    assert r.status_code == 200 and r.json()["replica"] == "good"
    assert received["GET"] == 1 and hits[("good", "GET")] == 1


def test_the_gateway_learns_new_replicas_when_started_again(tmp_path):
    a, b = free_port(), free_port()
    cfg = dist.DistConfig(data_dir=tmp_path, gateway_port=free_port())
    cfg.replica_ports = {s.package: [free_port()] for s in SERVICES}
    cfg.replica_ports["order_service"] = [a]
    cfg.run_dir.mkdir(parents=True)
    cfg.log_dir.mkdir(parents=True)
    index = f"http://127.0.0.1:{cfg.gateway_port}/"
    try:
        dist.start_gateway(cfg, say=lambda _m: None)
        first = dist.gateway_pid(cfg)
        assert httpx.get(index).json()["services"]["order-service"]["targets"] == {f"http://127.0.0.1:{a}": 0}
        dist.start_gateway(cfg, say=lambda _m: None)  # nothing changed: the same process
        assert dist.gateway_pid(cfg) == first
        cfg.replica_ports["order_service"] = [a, b]  # `mart dist up --replicas order=2` on a running mart
        dist.start_gateway(cfg, say=lambda _m: None)
        assert dist.gateway_pid(cfg) not in (None, first)
        targets = httpx.get(index).json()["services"]["order-service"]["targets"]
        assert set(targets) == {f"http://127.0.0.1:{a}", f"http://127.0.0.1:{b}"}
    finally:
        dist.stop_services(cfg, say=lambda _m: None)
    assert dist.gateway_pid(cfg) is None
