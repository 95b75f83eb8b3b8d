"""A live ``python server.py`` for end-to-end tests: its own port, data dir and local Ray."""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class LiveServer:
    base_url: str
    data_dir: Path
    # The server's main process (uvicorn's supervisor of the front ends).
    process: subprocess.Popen[bytes]

    @property
    def store_url(self) -> str:
        """The server's default store: SQLite in its data dir."""
        return f"sqlite+aiosqlite:///{self.data_dir / 'reservation.db'}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def clean_env() -> dict[str, str]:
    """This process's environment without Ray or reservation settings (the server uses its defaults)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "RESERVATION_"))}
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    return env


@contextlib.contextmanager
def run_server(
    data: Path, workers: int = 2, ready_timeout_s: float = 120, env: dict[str, str] | None = None
) -> Iterator[LiveServer]:
    """``python server.py`` on its defaults (local Ray, SQLite) in ``data``, until the block
    ends; ``env`` adds settings."""
    port = free_port()
    log_path = data / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "server.py"), "--port", str(port), "--data-dir", str(data),
             "--workers", str(workers)],
            cwd=data,
            env={**clean_env(), **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + ready_timeout_s
            while True:
                try:
                    with urllib.request.urlopen(base + "/readyz", timeout=2) as r:
                        if r.status == 200:
                            break
                except (OSError, http.client.HTTPException):  # not listening yet, or not yet HTTP
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("server.py did not become ready:\n" + log_path.read_text()[-3000:])
                time.sleep(0.5)
            yield LiveServer(base, data, proc)
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(10)
