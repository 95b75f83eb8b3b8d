"""The README's curl walk-through, run as written against a live ``server.py``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.e2e.live import ROOT, run_server


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


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python server.py`` on its defaults (local Ray, SQLite), in a scratch data dir."""
    with run_server(tmp_path_factory.mktemp("live")) as server:
        yield server.base_url


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
