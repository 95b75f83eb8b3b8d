"""Stopping a live server with SIGTERM: what its front ends are answering is answered."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson

from tests.e2e.live import ROOT, clean_env, run_server


def _token(client: httpx.Client, role: str) -> str:
    email = f"{role}-{secrets.token_hex(6)}@example.com"
    password = "correct horse battery"
    r = client.post("/api/users", json={"name": role, "email": email, "password": password, "role": role})
    assert r.status_code == 201, r.text
    t = client.post("/api/tokens", json={"email": email, "password": password})
    assert t.status_code == 201, t.text
    token: str = t.json()["access_token"]
    return token


def _response(sock: socket.socket) -> bytes:
    """Everything the server sends on this connection until it closes it."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_sigterm_lets_a_booking_in_flight_finish(tmp_path: Path) -> None:
    """A booking whose request a front end is reading when the server gets SIGTERM is
    still booked and answered, and the server then stops cleanly.

    ``ray.init`` makes SIGTERM exit the process at once; a front end that kept that
    handler answered this request 500 (the exit raised inside it) and logged a
    traceback. The test below shows that the front ends no longer keep it.
    """
    with run_server(tmp_path) as server:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            host, customer = _token(client, "host"), _token(client, "customer")
            event = client.post(
                "/api/events",
                headers={"Authorization": f"Bearer {host}"},
                json={
                    "title": "Last call", "description": "Booked while the server stops", "venue": "Hall",
                    "starts_at": "2030-06-01T20:00:00Z", "ends_at": "2030-06-01T23:00:00Z",
                    "capacity": 10, "oversell_capacity": 0, "price": {"amount": 1000, "currency": "EUR"},
                },
            )
            assert event.status_code == 201, event.text
        body = orjson.dumps({"items": [{"event_id": event.json()["id"], "attendees": [{"name": "Late"}]}]})
        head = (
            "POST /api/orders HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {customer}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", urlsplit(server.base_url).port or 80), timeout=30) as sock:
            # A first request on the connection: a front end has taken it and reads it.
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            healthz = b""
            while not healthz.endswith(b'{"status":"ok"}'):
                chunk = sock.recv(65536)
                assert chunk, healthz
                healthz += chunk
            sock.sendall(head + body[:8])
            time.sleep(0.5)  # a front end has the request and waits for the rest of its body
            os.kill(server.process.pid, signal.SIGTERM)
            time.sleep(1.0)  # the front ends have the signal
            sock.sendall(body[8:])
            answer = _response(sock)
        assert answer.startswith(b"HTTP/1.1 201 "), answer[:500]
        assert orjson.loads(answer.split(b"\r\n\r\n", 1)[1])["status"] == "confirmed"
        assert server.process.wait(30) == 0
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log and "SIGTERM received" not in log, log[-3000:]


# In a process of its own (this one may have joined Ray already): install a SIGTERM
# handler, join a new local Ray as a front end does, or with a plain ray.init, and
# print whether the handler is still the one installed.
_JOIN_RAY = """
import signal, sys

def mine(signum, frame):
    pass

signal.signal(signal.SIGTERM, mine)
if sys.argv[1] == "front-end":
    from reservation.api.app import _connect_ray
    from reservation.config import Settings
    _connect_ray(Settings(data_dir=sys.argv[2]))
else:
    import ray
    ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False)
print("kept" if signal.getsignal(signal.SIGTERM) is mine else "replaced")
"""


def test_joining_ray_keeps_the_front_ends_sigterm_handler(tmp_path: Path) -> None:
    """A front end joins Ray and keeps its SIGTERM handler (uvicorn's, in a server).

    Negative control: a plain ``ray.init`` replaces it.
    """

    def join(how: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", _JOIN_RAY, how, str(tmp_path)],
            cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=180,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout.strip().splitlines()[-1]

    assert join("front-end") == "kept"
    assert join("plain ray.init") == "replaced"
