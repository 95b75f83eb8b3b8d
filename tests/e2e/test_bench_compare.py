"""``python -m bench.compare --tiny`` end to end: every target measured, the checks pass, a chart is drawn."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.e2e.live import ROOT, clean_env

TARGETS = (
    "floor_healthz",
    "ours_bookings_mariadb",
    "ours_bookings_sqlite",
    "ours_reads_list",
    "ours_reads_detail",
    "baseline_bookings_mariadb",
    "engine_batched",
    "engine_unbatched",
    "store_ceiling",
)


def skip_without_wrk() -> None:
    if shutil.which("wrk") is None and os.geteuid() != 0:
        pytest.skip("bench.compare needs wrk (apt-get install -y wrk), and only installs it itself as root")


@pytest.mark.slow
@pytest.mark.mysql
def test_compare_tiny_run(mysql_url: str, tmp_path: Path) -> None:
    skip_without_wrk()
    server = make_url(mysql_url).set(database=None).render_as_string(hide_password=False)
    result = subprocess.run(
        [sys.executable, "-m", "bench.compare", "--tiny", "--out", str(tmp_path), "--mysql-url", server],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]

    (report,) = tmp_path.glob("compare-*.json")
    data = json.loads(report.read_text())
    for key in TARGETS:
        row = data["targets"][key]
        assert row is not None, f"{key} missing: {data['missing'].get(key)}"
        assert row["requests_per_s"] > 0, row
        assert row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"], row
        # The hypervisor's share of the machine's time while the target was measured.
        assert 0 <= row["stolen_pct"] <= 100, row
    for key in ("ours_bookings_mariadb", "ours_bookings_sqlite", "baseline_bookings_mariadb"):
        row = data["targets"][key]
        assert row["status_counts"].get("201", 0) == row["ok"] > 0, row
        assert 0 <= row["load_generator"]["pct_of_core"] <= 100 * (os.cpu_count() or 1)
    assert data["correctness"]["pass"] is True, data["correctness"]
    checked = {(c["target"], c["phase"]) for c in data["correctness"]["checks"]}
    for key in ("ours_bookings_mariadb", "ours_bookings_sqlite", "baseline_bookings_mariadb", *TARGETS[-3:]):
        assert (key, "run") in checked
    assert data["ratios"]["ours_bookings_mariadb"]["vs_baseline"] > 0
    assert data["ratios"]["ours_reads_list"]["vs_floor"] > 0
    # The floor and the reads took turns in two rounds, each reported as the sum of both.
    assert data["config"]["rounds"] == 2
    for key in ("floor_healthz", "ours_reads_list", "ours_reads_detail"):
        row = data["targets"][key]
        assert row["rounds"] == 2 and row["seconds"] == data["config"]["seconds"], row
        assert sum(row["status_counts"].values()) == row["requests"], row
    assert data["targets"]["ours_bookings_mariadb"]["rounds"] == 1
    # The server's /metrics counted every booking of the run in its group commits, once.
    for key in ("ours_bookings_mariadb", "ours_bookings_sqlite"):
        row = data["targets"][key]
        commits = row["group_commits"]
        assert commits["commands"] == row["requests"] == row["ok"], (commits, row)
        assert 1 <= commits["mean_batch"] and 1 <= commits["mean_call"] and commits["commits"] <= row["requests"]
        assert f"{row['label']}: {commits['commits']:,.0f} group commits" in result.stdout
    assert "group_commits" not in data["targets"]["baseline_bookings_mariadb"]
    assert "took turns in 2 rounds" in result.stdout
    # The floor and the reads asked as browsers and locust do; each row counts the bytes read.
    assert data["config"]["accept_encoding"] == "gzip, deflate, br"
    assert "sent Accept-Encoding: gzip, deflate, br; bytes per answer" in result.stdout
    assert all(row["bytes"] > row["requests"] > 0 for row in data["targets"].values() if row and "bytes" in row)
    # The engine warmed up as long as every other target did.
    for key in ("engine_batched", "engine_unbatched"):
        assert data["targets"][key]["engine"]["warmup"] == data["config"]["warmup"] == 1.0
    # The ceiling ran at the batch size the batched engine produced, and the report relates the two.
    batched = data["targets"]["engine_batched"]["mean_batch"]
    assert data["targets"]["store_ceiling"]["mean_batch"] == max(1, round(batched))
    assert data["ratios"]["engine_batched"]["vs_store_ceiling"] > 0
    assert "of the store ceiling" in result.stdout

    (chart,) = tmp_path.glob("compare-*.png")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| target |" in result.stdout
    assert "| measured | stolen |" in result.stdout


@pytest.mark.slow
def test_compare_sqlite_alone_runs_without_mariadb(tmp_path: Path) -> None:
    """The server's zero-setup store can be benchmarked on a machine with no MariaDB;
    a group that needs MariaDB still refuses to start without it."""
    skip_without_wrk()
    nowhere = "mysql+aiomysql://root@127.0.0.1:1"  # nothing listens on port 1

    def compare(only: str, out: Path) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "bench.compare", "--tiny", "--only", only]
        return subprocess.run(
            [*command, "--out", str(out), "--mysql-url", nowhere],
            cwd=ROOT,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )

    refused = compare("sqlite,baseline", tmp_path / "refused")
    assert refused.returncode != 0
    assert "is not reachable" in refused.stderr + refused.stdout
    assert not list((tmp_path / "refused").glob("compare-*.json"))

    result = compare("sqlite", tmp_path / "ran")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]
    (report,) = (tmp_path / "ran").glob("compare-*.json")
    data = json.loads(report.read_text())
    row = data["targets"]["ours_bookings_sqlite"]
    assert row["status_counts"].get("201", 0) == row["ok"] > 0, row
    assert {key for key, value in data["targets"].items() if value} == {"ours_bookings_sqlite"}
    assert data["machine"]["mariadb"] is None and data["machine"]["innodb_buffer_pool_bytes"] is None
    assert data["correctness"]["pass"] is True, data["correctness"]
    assert ("ours_bookings_sqlite", "run") in {(c["target"], c["phase"]) for c in data["correctness"]["checks"]}
    assert "innodb_buffer_pool_size" not in result.stdout
