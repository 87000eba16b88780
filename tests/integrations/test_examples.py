"""The README's integration examples stay true: each script runs as a user runs it (a shortened
training) and leaves one finished run in the store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.store_rows import last_header, logged

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("script", "short", "module"),
    [
        ("lightning_digits.py", ["--epochs", "1"], "lightning"),
        ("hf_char_lm.py", ["--steps", "20"], "transformers"),
    ],
)
def test_an_example_script_records_one_finished_run(
    tmp_path: Path, script: str, short: list[str], module: str
) -> None:
    pytest.importorskip(module)
    store = tmp_path / "store"
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), "--store", str(store), *short],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    header = last_header(store)
    assert (header.project, header.status) == ("examples", "finished")
    assert len(logged(store, "loss")) >= 20
