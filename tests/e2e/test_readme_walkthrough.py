"""The README's curl walk-through, run as written against a live ``server.py``."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def walkthrough() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- walkthrough:start -->\s*```bash\n(.*?)```\s*<!-- walkthrough:end -->", text, re.S)
    assert match, "README.md lost its walk-through block"
    return match.group(1)


def json_documents(text: str) -> list[dict[str, object]]:
    """Every JSON document printed, in order (curl and jq output back to back)."""
    decoder = json.JSONDecoder()
    docs, at = [], 0
    while (start := text.find("{", at)) != -1:
        doc, at = decoder.raw_decode(text, start)
        docs.append(doc)
    return docs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python server.py`` on its defaults (local Ray, SQLite), in a scratch data dir."""
    port = free_port()
    data = tmp_path_factory.mktemp("live")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "RESERVATION_"))}
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    log = (data / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "server.py"), "--port", str(port), "--data-dir", str(data), "--workers", "2"],
        cwd=data,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("server.py did not become ready:\n" + (data / "server.log").read_text()[-3000:])
        time.sleep(0.5)
    yield base
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait(10)
    log.close()


@pytest.mark.slow
def test_readme_walkthrough_runs_against_live_server(live_server: str) -> None:
    if shutil.which("jq") is None or shutil.which("curl") is None:
        pytest.fail("the walk-through needs curl and jq on PATH")
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", walkthrough()],
        env={**os.environ, "BASE": live_server},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    docs = json_documents(out)
    orders = [d for d in docs if "total" in d and "items" in d]
    assert orders and orders[0]["status"] == "confirmed"
    assert orders[0]["total"] == {"amount": 3 * 4500 + 3 * 1500, "currency": "EUR"}
    assert sorted(i["quantity"] for i in orders[0]["items"]) == [3, 3]
    assert {"id": orders[0]["id"], "status": "cancelled"} in docs
    final = docs[-1]
    assert final["title"] == "Jazz night" and final["sold"] == 0 and final["held"] == 0
    assert final["capacity"] == 100 and final["oversell_capacity"] == 5
