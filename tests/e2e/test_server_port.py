"""A server whose port is taken says so and stops before it starts anything else."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.e2e.live import ROOT, clean_env


def test_a_taken_port_stops_the_server_with_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, str(ROOT / "server.py"), "--port", str(port), "--data-dir", str(tmp_path),
             "--workers", "1"],
            cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=120,
        )
    assert done.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr, done.stderr[-2000:]
    # It stopped before starting Ray: no Ray session was made for it.
    assert "Ray at" not in done.stdout, done.stdout
