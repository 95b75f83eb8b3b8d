"""Code run in a Python process of its own, for tests that start a Ray of their own: a
process joins one Ray at a time, and the rest of the session shares one local Ray."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.e2e.live import ROOT, clean_env


def run_python(code: str, *argv: str, env: dict[str, str] | None = None) -> Any:
    """Run ``code`` with ``argv`` in a new interpreter at the project's root, without
    this process's RAY_ and RESERVATION_ settings (``clean_env``; ``env`` is added);
    answer the JSON it printed last on a line that starts with ``RESULT ``."""
    done = subprocess.run(
        [sys.executable, "-c", code, *argv],
        cwd=ROOT,
        env={**clean_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-6000:]
    return json.loads(lines[-1].removeprefix("RESULT "))
