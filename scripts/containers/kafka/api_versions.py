"""Send a Kafka ApiVersions (v0) request to HOST:PORT; exit 0 when the broker answers with error_code 0."""

import socket
import struct
import sys

host, _, port = sys.argv[1].rpartition(":")
client_id = b"healthcheck"
body = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id
with socket.create_connection((host or "localhost", int(port)), timeout=5) as sock:
    sock.sendall(struct.pack(">i", len(body)) + body)
    header = b""
    while len(header) < 10:
        chunk = sock.recv(10 - len(header))
        if not chunk:
            sys.exit("connection closed")
        header += chunk
_size, correlation, error = struct.unpack(">iih", header)
sys.exit(0 if correlation == 1 and error == 0 else f"ApiVersions error {error}")
