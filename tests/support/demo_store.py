"""One `trainlight demo --quick --no-serve`, ingested, shared by every test that needs its store.

The demo is the slowest fixture of the suite (about a minute of real training on two cores), so
it runs once per session: the store assertions (tests/demo) and the README screenshots
(tests/browser) read the same runs.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

DEMO_TIMEOUT_S = 480  # `--quick` takes about a minute on an idle 2-core machine
CLI = (sys.executable, "-m", "trainlight.app.cli")


@dataclass(frozen=True)
class QuickDemo:
    store: Path  # the store directory, ingested (trainlight.duckdb inside)
    output: str  # what `trainlight demo` printed


def run_quick_demo(store: Path) -> QuickDemo:
    """Train the quick demo into `store` without serving, then ingest it like a late ingest."""
    done = subprocess.run(
        [*CLI, "demo", "--quick", "--no-serve", "--dir", str(store)],
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (store / "trainlight.duckdb").exists(), "--no-serve must not ingest"
    ingest = subprocess.run(
        [*CLI, "ingest", "--dir", str(store)], capture_output=True, text=True, timeout=120
    )
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    return QuickDemo(store, done.stdout)
