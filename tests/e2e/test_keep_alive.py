"""Idle client connections stay open for ``RESERVATION_KEEP_ALIVE_S``, and no longer."""

from __future__ import annotations

import http.client
import time
from pathlib import Path

from reservation.config import Settings
from tests.e2e.live import run_server


def _alive_after(conn: http.client.HTTPConnection, idle_s: float) -> bool:
    """Whether a request on ``conn`` is answered after ``idle_s`` without traffic."""
    time.sleep(idle_s)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().read() == b'{"status":"ok"}'
    except (ConnectionError, http.client.HTTPException):
        return False


def test_idle_connections_are_kept_for_the_setting_and_closed_after(tmp_path: Path) -> None:
    with run_server(tmp_path, workers=1, env={"RESERVATION_KEEP_ALIVE_S": "3"}) as server:
        host, port = server.base_url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            conn.request("GET", "/healthz")
            assert conn.getresponse().read() == b'{"status":"ok"}'
            # Within the setting the same connection answers again ...
            assert _alive_after(conn, 1.5)
            # ... past it the server has closed it (the client sees the close).
            assert not _alive_after(conn, 4.5)
        finally:
            conn.close()


def test_the_default_outlasts_a_load_balancer_s_idle_timeout() -> None:
    # uvicorn's own default is 5 s; common balancers keep idle connections for 60 s.
    assert Settings().keep_alive_s > 60
