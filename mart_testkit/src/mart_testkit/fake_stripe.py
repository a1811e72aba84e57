"""A local HTTP server that answers like Stripe's API, for tests of the real ``stripe`` SDK (pointed at it
with ``StripeProvider(api_base=server.url)``), with scripted failures.

It speaks the parts of the API the payment service uses — ``POST /v1/payment_intents``,
``POST /v1/payment_intents/{id}/cancel``, ``POST /v1/refunds`` — as form-encoded requests answered with
JSON objects and Stripe's error envelope, honours ``Idempotency-Key`` (a retried request gets the first
answer), and records every request. Failures are scripted per operation:

- ``server.script("create", "drop", 500, "hang", 402)``: the next answers, in order, then success;
- ``server.fail("refund", 500)``: every answer fails until ``server.heal("refund")``.

What it holds afterwards, for checks on the money: ``created_intents()`` and ``created_refunds()`` (every
object a successful request created; an idempotent replay creates nothing), and the charges a test made
with ``charge(intent_id)`` (a customer paying an intent, which Stripe would then report by webhook).

Answers: ``"ok"``; an HTTP status (``500`` api_error, ``402`` card_declined, ``429`` rate limit, ``400``
invalid request); ``"drop"`` (the connection closes without an answer); ``"lost"`` (the request succeeds —
the object is created, a replay with its idempotency key gets it — but the connection closes before the
answer: a network cut, or the caller's process dying, after Stripe acted); ``"hang"`` (no answer until the
client gives up; the server lets go when the test ends). Loopback only.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

Answer = str | int

_ERRORS: dict[int, dict[str, Any]] = {
    400: {"type": "invalid_request_error", "message": "Invalid request (scripted)."},
    402: {
        "type": "card_error",
        "code": "card_declined",
        "decline_code": "generic_decline",
        "message": "Your card was declined.",
    },
    429: {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many requests (scripted)."},
    500: {"type": "api_error", "message": "An unknown error occurred (scripted)."},
    503: {"type": "api_error", "message": "Service unavailable (scripted)."},
}


@dataclass(frozen=True)
class Request:
    operation: str  # create | cancel | refund | other
    path: str
    idempotency_key: str | None
    form: dict[str, str]
    answer: Answer


def refused_url() -> str:
    """An ``http://127.0.0.1:<port>`` where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class FakeStripeAPI:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._scripts: dict[str, deque[Answer]] = {}
        self._failing: dict[str, Answer] = {}
        self._idempotent: dict[str, tuple[int, dict[str, Any]]] = {}
        self._created: list[dict[str, Any]] = []  # intents and refunds, in creation order
        self._charges: list[str] = []  # intent ids, once per charge(...)
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeStripeAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    # --- scripting -----------------------------------------------------------------------------

    def script(self, operation: str, *answers: Answer) -> None:
        with self._lock:
            self._scripts.setdefault(operation, deque()).extend(answers)

    def fail(self, operation: str, answer: Answer) -> None:
        with self._lock:
            self._failing[operation] = answer

    def heal(self, operation: str) -> None:
        with self._lock:
            self._failing.pop(operation, None)

    def sent(self, operation: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.operation == operation]

    def charge(self, intent_id: str) -> None:
        """A customer pays ``intent_id`` (the money moves to the merchant)."""
        with self._lock:
            self._charges.append(intent_id)

    def charges(self) -> list[str]:
        with self._lock:
            return list(self._charges)

    def created_intents(self) -> list[dict[str, Any]]:
        with self._lock:
            return [o for o in self._created if o["object"] == "payment_intent"]

    def created_refunds(self) -> list[dict[str, Any]]:
        with self._lock:
            return [o for o in self._created if o["object"] == "refund"]

    def _next_answer(self, operation: str) -> Answer:
        with self._lock:
            if operation in self._failing:
                return self._failing[operation]
            queue = self._scripts.get(operation)
            return queue.popleft() if queue else "ok"

    # --- HTTP ----------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(parse_qsl(self.rfile.read(length).decode()))
                path = self.path.split("?", 1)[0]
                if path == "/v1/payment_intents":
                    operation = "create"
                elif path.startswith("/v1/payment_intents/") and path.endswith("/cancel"):
                    operation = "cancel"
                elif path == "/v1/refunds":
                    operation = "refund"
                else:
                    operation = "other"
                key = self.headers.get("Idempotency-Key")
                answer: Answer = "ok" if operation == "other" else api._next_answer(operation)
                with api._lock:
                    api.requests.append(Request(operation, path, key, form, answer))
                if answer == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if answer == "hang":
                    api._release.wait(30)
                    self.close_connection = True
                    return
                if isinstance(answer, int):
                    self._send(answer, {"error": _ERRORS.get(answer, _ERRORS[500])})
                    return
                with api._lock:  # one key, one object, however many requests race with it
                    cached = api._idempotent.get(f"{operation}:{key}") if key else None
                    if cached is None:
                        cached = api._success(operation, path, form)
                        if key is not None:
                            api._idempotent[f"{operation}:{key}"] = cached
                        if operation in ("create", "refund") and cached[0] == 200:
                            api._created.append(cached[1])
                if answer == "lost":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                # like Stripe: a retried request gets the first answer
                self._send(*cached)

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", "req_" + secrets.token_hex(8))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def _success(self, operation: str, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        metadata = {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")}
        if operation == "create":
            pi = "pi_local" + secrets.token_hex(8)
            return 200, {
                "id": pi,
                "object": "payment_intent",
                "amount": int(form.get("amount", "0")),
                "currency": form.get("currency", "usd"),
                "client_secret": f"{pi}_secret_{secrets.token_hex(6)}",
                "metadata": metadata,
                "status": "requires_payment_method",
            }
        if operation == "cancel":
            return 200, {"id": path.split("/")[3], "object": "payment_intent", "status": "canceled"}
        if operation == "refund":
            return 200, {
                "id": "re_local" + secrets.token_hex(8),
                "object": "refund",
                "payment_intent": form.get("payment_intent"),
                "metadata": metadata,
                "status": "succeeded",
            }
        return 404, {
            "error": {"type": "invalid_request_error", "message": f"Unrecognized request URL {path}"}
        }
