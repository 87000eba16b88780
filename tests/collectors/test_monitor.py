"""Monitor against a real store directory: what lands in the inbox, and how runs end."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from trainlight.collectors import Monitor
from trainlight.collectors.http_sink import HttpSink
from trainlight.collectors.problems import PROBLEMS_KEY, Problems
from trainlight.collectors.schema import StopRequest, StoreLayout, read_header, write_atomically


def segments(store: Path, run_id: str) -> list[pa.Table]:
    files = sorted((store / "inbox" / run_id).glob("*.parquet"))
    return [pq.read_table(f) for f in files]


def all_rows(tables: list[pa.Table]) -> list[tuple[int, str, float]]:
    rows = []
    for table in tables:
        data = table.to_pydict()
        rows += list(zip(data["step"], data["key"], data["value"], strict=True))
    return rows


def metric_rows(tables: list[pa.Table]) -> list[tuple[int, str, float]]:
    """The rows the user logged (the collector's own `trainlight/...` counters left out)."""
    return [row for row in all_rows(tables) if not str(row[1]).startswith("trainlight/")]


def problem_counts(tables: list[pa.Table]) -> dict[str, float]:
    """The latest `trainlight/problems...` counts the segments carry."""
    return {k: v for _, k, v in all_rows(tables) if str(k).startswith(PROBLEMS_KEY)}


def test_logged_values_land_in_inbox_segments_once_each(tmp_path: Path) -> None:
    with Monitor(run="baseline", project="digits", store=tmp_path, config={"lr": 0.1}) as mon:
        for step in range(500):
            mon.log(step, loss=torch.tensor(1.0 / (step + 1)), acc=step / 500)
    tables = segments(tmp_path, mon.run_id)
    rows = metric_rows(tables)
    assert len(rows) == 1000
    assert {(s, k) for s, k, _ in rows} == {(s, k) for s in range(500) for k in ("loss", "acc")}
    headers = [read_header(t) for t in tables]
    assert [h.seq for h in headers] == list(range(len(tables)))
    assert headers[0].status == "running" and headers[-1].status == "finished"
    assert headers[-1].config == {"lr": 0.1} and headers[-1].project == "digits"


@pytest.mark.parametrize("device_path", [False, True], ids=["cpu-read", "device-slots"])
def test_tensor_values_survive_flushes_racing_the_training_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device_path: bool
) -> None:
    if device_path:  # treat CPU tensors as device tensors: the path a CUDA loss takes
        monkeypatch.setattr("trainlight.collectors.monitor._read_now", lambda tensor: False)
    with Monitor(run="racy", store=tmp_path, flush_interval=0.001) as mon:
        for step in range(3000):
            mon.log(
                step, a=torch.tensor(float(step)), b=float(-step), c=torch.tensor([[2.0 * step]])
            )
    rows = metric_rows(segments(tmp_path, mon.run_id))
    expected = {
        (s, k, v)
        for s in range(3000)
        for k, v in (("a", float(s)), ("b", float(-s)), ("c", 2.0 * s))
    }
    assert len(rows) == len(expected) and set(rows) == expected


def test_exception_escaping_the_with_marks_the_run_crashed(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), Monitor(run="x", store=tmp_path) as mon:
        mon.log(0, loss=1.0)
        raise RuntimeError("boom")
    assert read_header(segments(tmp_path, mon.run_id)[-1]).status == "crashed"


def test_stop_request_file_is_seen_and_run_ends_stopped(tmp_path: Path) -> None:
    with Monitor(run="x", store=tmp_path, flush_interval=0.05) as mon:
        assert not mon.should_stop()
        layout = StoreLayout.resolve(tmp_path)
        layout.control.mkdir(parents=True, exist_ok=True)
        write_atomically(layout.control_path(mon.run_id), StopRequest("runaway").to_bytes())
        mon.flush()
        assert mon.should_stop() and mon.stop_reason == "runaway"
    last = read_header(segments(tmp_path, mon.run_id)[-1])
    assert (last.status, last.stop_reason) == ("stopped", "runaway")


def test_nan_loss_is_stored_not_dropped(tmp_path: Path) -> None:
    with Monitor(run="x", store=tmp_path) as mon:
        mon.log(0, loss=float("nan"))
        mon.log(1, loss=torch.tensor(float("inf")))
    values = [v for _, _, v in metric_rows(segments(tmp_path, mon.run_id))]
    assert math.isnan(values[0]) and values[1] == math.inf


def test_bad_values_are_skipped_with_one_warning_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "trainlight"), Monitor(run="x", store=tmp_path) as mon:
        for step in range(10):
            mon.log(step, loss=1.0, label="not a number", vec=torch.ones(3))
    tables = segments(tmp_path, mon.run_id)
    assert [k for _, k, _ in metric_rows(tables)] == ["loss"] * 10
    assert mon.problems.count("skipped:label") == 10
    assert problem_counts(tables) == {
        "trainlight/problems": 20.0,
        "trainlight/problems/skipped:label": 10.0,
        "trainlight/problems/skipped:vec": 10.0,
    }
    assert sum("'label'" in r.message for r in caplog.records) == 1
    assert sum("'vec'" in r.message for r in caplog.records) == 1


def test_unwritable_store_keeps_segments_and_delivers_once_writable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = tmp_path / "store"
    store.write_text("a file where the store directory should be")
    with caplog.at_level(logging.WARNING, "trainlight"):
        mon = Monitor(run="x", store=store, flush_interval=0.05)
        for step in range(100):
            mon.log(step, loss=float(step))
        mon.flush()
        mon.flush()
        assert mon.problems.count("inbox_write") >= 2
        store.unlink()  # the disk comes back
        mon.close()
    assert sum("cannot write to the store inbox" in r.message for r in caplog.records) == 1
    assert sorted(s for s, _, _ in metric_rows(segments(store, mon.run_id))) == list(range(100))


def test_full_buffer_drops_oldest_and_reports_the_count(tmp_path: Path) -> None:
    mon = Monitor(run="x", store=tmp_path, buffer_size=10, flush_interval=60, heartbeat_interval=60)
    for step in range(25):
        mon.log(step, loss=float(step))
    mon.close()
    tables = segments(tmp_path, mon.run_id)
    assert [s for s, _, _ in metric_rows(tables)] == list(range(15, 25))
    assert read_header(tables[-1]).dropped_rows == 15 == mon.dropped_records


def test_settings_are_checked_with_the_bad_value_in_the_message(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="flush_interval must be > 0 seconds, got 0"):
        Monitor(run="x", store=tmp_path, flush_interval=0)


def test_prune_on_stops_the_run_without_any_server(tmp_path: Path) -> None:
    with Monitor(
        run="diverges", store=tmp_path, prune_on=("nonfinite",), flush_interval=0.05
    ) as mon:
        for step in range(10_000):
            loss = 1.0 / (step + 1) if step < 300 else float("nan")
            mon.log(step, loss=loss)
            if mon.should_stop():
                break
            time.sleep(0.0005)
    assert 300 <= step < 10_000
    last = read_header(segments(tmp_path, mon.run_id)[-1])
    assert last.status == "stopped"
    assert last.stop_reason == "auto-pruned: nonfinite red: loss = NaN at step 300"


def test_roles_and_health_settings_travel_in_the_header(tmp_path: Path) -> None:
    with Monitor(
        run="gan", store=tmp_path, health={"catch_window": 100}, prune_on=("catch",)
    ) as mon:
        mon.roles(adversary="d_loss", gradient_penalty="gp", content="content")
        mon.log(0, d_loss=1.0)
    last = read_header(segments(tmp_path, mon.run_id)[-1])
    assert last.roles == {"adversary": "d_loss", "gradient_penalty": "gp", "content": "content"}
    assert last.health == {"catch_window": 100} and last.prune_on == ("catch",)


def test_unknown_prune_signal_is_refused_at_once(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="prune_on names unknown signals \\['catchh'\\]"):
        Monitor(run="x", store=tmp_path, prune_on=("catchh",))


def test_log_never_raises_on_values_it_cannot_record(tmp_path: Path) -> None:
    with Monitor(run="x", store=tmp_path) as mon:
        mon.log(0, huge=10**400, complex_cpu=torch.tensor(1 + 2j), ok=1.0)
        mon.log(None, loss=1.0)  # type: ignore[arg-type]
    assert [k for _, k, _ in metric_rows(segments(tmp_path, mon.run_id))] == ["ok"]
    assert mon.problems.count("skipped:huge") == mon.problems.count("skipped:complex_cpu") == 1
    assert mon.problems.count("bad_step") == 1


def test_monitor_construction_does_not_wait_for_an_unresponsive_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    monkeypatch.setenv("TRAINLIGHT_OUTBOX", str(tmp_path / "outbox"))
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        sink = HttpSink(url, Problems(), outbox=tmp_path / "outbox", timeout_s=0.3)
        mon = Monitor(run="x", sink=sink, flush_interval=0.5)
        assert time.monotonic() - started < 0.2
        mon.log(0, loss=1.0)
        mon.close(timeout=1.0)
    assert sink.pending() >= 1  # kept in the outbox for a later delivery


def test_rows_from_sources_are_flushed_without_any_log_call(tmp_path: Path) -> None:
    from torch import nn

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    with Monitor(
        run="watch only", store=tmp_path, flush_interval=0.05, heartbeat_interval=60
    ) as mon:
        mon.watch(model, every=1, window=16)
        for _ in range(8):
            model(torch.randn(8, 4)).sum().backward()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(segments(tmp_path, mon.run_id)) < 2:
            time.sleep(0.05)
        tables = segments(tmp_path, mon.run_id)  # before close: the flush thread sent them
    kinds = {k for t in tables for k in t.column("table").to_pylist()}
    assert "layer_metrics" in kinds
