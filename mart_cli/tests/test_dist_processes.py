"""How ``mart dist`` sees a replica go (``mart_cli.dist``): a stopped process counts as gone only once its
port is released, so a restart right after a ``kill -9`` finds the port free."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from mart_testkit.ports import free_port

from mart_cli import dist

# A server like a replica: a listening socket, threads of its own, and memory for its last thread to release.
SERVER = textwrap.dedent(
    """
    import socket, sys, threading, time
    ballast = bytearray(512 * 1024 * 1024)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    for _ in range(8):
        threading.Thread(target=lambda: [time.sleep(0.001) for _ in iter(int, 1)], daemon=True).start()
    server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
    print("listening", flush=True)
    time.sleep(600)
    """
)


def test_a_killed_replica_is_gone_only_once_its_port_is_free() -> None:
    for _ in range(5):
        port = free_port()
        proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-c", SERVER, str(port)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "listening"
        assert dist._port_taken("127.0.0.1", port)
        os.kill(proc.pid, signal.SIGKILL)
        begun = time.monotonic()
        assert dist._wait_gone(proc.pid, timeout=30, interval=0.001)
        assert not dist._port_taken("127.0.0.1", port), f"port still taken {time.monotonic() - begun:.3f}s on"
        proc.wait(timeout=10)
