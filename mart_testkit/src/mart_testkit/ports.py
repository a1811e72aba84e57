"""Free TCP ports for the stacks tests start."""

from __future__ import annotations

import socket

_handed_out: set[int] = set()


def free_port() -> int:
    """A port free on 127.0.0.1 now that this process has not handed out before.

    ``bind(0)`` may return the same port again once the socket that had it is closed: a test stack once got
    one port for its gateway and for notification-service, and the gateway could not start. Every port
    handed out is remembered, so the ports of one stack are distinct.
    """
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
