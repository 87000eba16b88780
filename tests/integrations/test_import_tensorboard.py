"""`trainlight import tensorboard`: real trainings logged by torch's `SummaryWriter`, imported
into a store with the CLI, ingested, and read back from DuckDB. Every scalar event arrives once
with its step, value and own wall time (checked against TensorBoard's `EventAccumulator`), the
run that blows up is judged red, importing again adds nothing, a broken file costs only its own
run, and a source still being written is imported chunk by chunk without loss or repeat."""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
import time
from contextlib import redirect_stderr
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

pytest.importorskip("tensorboard")

import torch
from tensorboard.backend.event_processing import plugin_event_accumulator as tb
from tensorboard.util import tensor_util
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from tests.support.imported_store import comparable, counts, opened
from trainlight.app.cli import main
from trainlight.app.store.database import utc_naive
from trainlight.app.store.read.queries import list_runs
from trainlight.collectors.writer import encode_segment
from trainlight.integrations.importers.command import ImportRequest, run_import
from trainlight.integrations.importers.roles import guess_roles
from trainlight.integrations.importers.segments import (
    Chunk,
    encode_chunk,
    import_run_id,
    run_header,
    scalars_part,
)
from trainlight.integrations.importers.source import ScalarEvents, SourceRun

HEALTHY, DIVERGING = "lr0.05/seed1", "lr50/seed1"
AN_HOUR_AGO = time.time() - 3600
TAGS = {"train/loss", "val/loss"}


def train(writer: SummaryWriter, lr: float, steps: range) -> None:
    """A linear model fitted by SGD on generated data, logging its train and validation loss
    (the validation loss in the tensor form newer writers use). At lr 50 it overflows to Inf,
    then NaN, within ten steps."""
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(320, 8, generator=g), torch.randn(8, 1, generator=g)
    y = x @ w + 0.1 * torch.randn(320, 1, generator=g)
    torch.manual_seed(steps.start)
    model = nn.Linear(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for step in steps:
        idx = torch.randint(0, 256, (32,))
        loss = nn.functional.mse_loss(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        writer.add_scalar("train/loss", loss.item(), step)
        if step % 3 == 0:
            with torch.no_grad():
                val = nn.functional.mse_loss(model(x[256:]), y[256:]).item()
            writer.add_scalar("val/loss", val, step, new_style=True)


def write_run(logdir: Path, lr: float, steps: int = 60) -> None:
    with SummaryWriter(str(logdir)) as writer:
        train(writer, lr, range(steps))


def age(root: Path) -> None:
    """Make every file under `root` look written an hour ago: a source no longer growing."""
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (AN_HOUR_AGO, AN_HOUR_AGO))


def expected_events(run_dir: Path) -> list[tuple[str, int, object, int]]:
    """(tag, step, value, wall time in µs) of every scalar, read by TensorBoard's own loader
    (which turns both scalar forms into tensors of the `scalars` plugin)."""
    acc = tb.EventAccumulator(
        str(run_dir), size_guidance={tb.TENSORS: 0}, purge_orphaned_data=False
    )
    acc.Reload()
    return sorted(
        (
            tag,
            e.step,
            comparable(tensor_util.make_ndarray(e.tensor_proto).item()),
            round(e.wall_time * 1_000_000),
        )
        for tag in acc.PluginTagToContent("scalars")
        for e in acc.Tensors(tag)
    )


def stored_events(store_dir: Path, run_id: str) -> list[tuple[str, int, object, int]]:
    with opened(store_dir) as store, store.read() as cur:
        rows = cur.execute(
            "SELECT key, step, value, epoch_us(wall_time) FROM metrics WHERE run_id = ?",
            [run_id],
        ).fetchall()
    return sorted((k, s, comparable(v), us) for k, s, v, us in rows if k in TAGS)


@dataclass(frozen=True)
class Imported:
    logdir: Path
    store: Path
    code: int
    report: str


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Imported:
    """Two real runs, a garbage event file and a truncated one, imported with the CLI and
    ingested."""
    logdir = tmp_path_factory.mktemp("tb") / "sweep"
    write_run(logdir / HEALTHY, lr=0.05)
    write_run(logdir / DIVERGING, lr=50.0)
    (logdir / "garbage").mkdir()
    (logdir / "garbage" / "events.out.tfevents.1700000000.host.1.0").write_bytes(b"\x07" * 300)
    (good,) = (logdir / HEALTHY).iterdir()
    (logdir / "truncated").mkdir()
    (logdir / "truncated" / good.name).write_bytes(good.read_bytes()[:-7])
    age(logdir)
    store = tmp_path_factory.mktemp("store")
    with redirect_stderr(io.StringIO()) as report:  # where the CLI's lines go
        code = main(["import", "tensorboard", str(logdir), "--dir", str(store)])
    assert main(["ingest", "--dir", str(store)]) == 0
    return Imported(logdir, store, code, report.getvalue())


def run_id_of(imported: Imported, path: str) -> str:
    return import_run_id("tensorboard", str(imported.logdir.resolve()), path, path)


def test_every_scalar_event_arrives_once_with_its_step_value_and_wall_time(
    imported: Imported,
) -> None:
    for path in (HEALTHY, DIVERGING):
        expected = expected_events(imported.logdir / path)
        assert len(expected) == 60 + 20
        assert stored_events(imported.store, run_id_of(imported, path)) == expected
    with opened(imported.store) as store, store.read() as cur:
        runs = {r.name: r for r in list_runs(cur, utc_naive())}
    assert set(runs) == {HEALTHY, DIVERGING}
    for name in (HEALTHY, DIVERGING):
        assert runs[name].project == "sweep"
        assert runs[name].group == name.split("/")[0]
        assert runs[name].tags == ("tensorboard",)
        assert runs[name].status == "finished"
        assert runs[name].last_step == 59


def test_the_diverging_run_turns_red_and_the_healthy_one_does_not(imported: Imported) -> None:
    with opened(imported.store) as store, store.read() as cur:
        health = {r.name: r.health for r in list_runs(cur, utc_naive())}
        main_keys = dict(cur.execute("SELECT run_id, key FROM spark_runs").fetchall())
    assert health[DIVERGING]["nonfinite"] == "red"
    assert "red" not in health[HEALTHY].values(), health[HEALTHY]
    assert health[HEALTHY]["nonfinite"] == "green"
    assert health[HEALTHY]["spike"] != "grey"  # `train/loss` was recognised as the main loss
    assert main_keys[run_id_of(imported, HEALTHY)] == "train/loss"


def test_a_broken_event_file_costs_only_its_own_run(imported: Imported) -> None:
    assert imported.code == 1
    lines = imported.report.splitlines()
    failed = sorted(line.strip() for line in lines if "FAILED" in line)
    assert len(failed) == 2
    assert failed[0].startswith("garbage: FAILED: events.out.tfevents.1700000000.host.1.0: ")
    assert "crc32" in failed[0]
    assert failed[1].startswith("truncated: FAILED: ") and "truncated record" in failed[1]
    assert any(line.strip().startswith(f"{HEALTHY} (") for line in lines)
    assert lines[-1] == (
        f"imported 2 run(s), 160 events, 2 chunk(s) into {imported.store}; 2 run(s) failed"
    )


def test_importing_the_same_logs_again_adds_nothing(imported: Imported) -> None:
    before = counts(imported.store)
    assert before[0] == 2
    quiet = ["import", "tensorboard", str(imported.logdir), "--dir", str(imported.store)]
    assert main([*quiet, "--quiet"]) == 1  # the broken files still fail
    assert main(["ingest", "--dir", str(imported.store)]) == 0
    assert counts(imported.store) == before


def test_a_source_still_being_written_is_imported_in_whole_chunks(tmp_path: Path) -> None:
    """Its first import sends only the complete chunks (the file ends inside a record), the
    run stays running; once the file is complete and quiet the rest arrives and it closes."""
    complete = tmp_path / "complete"
    write_run(complete, lr=0.05, steps=40)
    (source,) = complete.iterdir()
    whole = source.read_bytes()
    logdir = tmp_path / "live"
    (logdir / "run").mkdir(parents=True)
    growing = logdir / "run" / source.name
    growing.write_bytes(whole[: len(whole) * 2 // 3 + 5])  # fresh mtime, cut inside a record
    store = tmp_path / "store"
    request = ImportRequest("tensorboard", logdir, directory=str(store), chunk_events=16)
    assert run_import(request, out=io.StringIO()) == 0
    assert main(["ingest", "--dir", str(store)]) == 0
    run_id = import_run_id("tensorboard", str(logdir.resolve()), "run", "run")
    first = stored_events(store, run_id)
    assert first and len(first) % 16 == 0
    with opened(store) as opened_store, opened_store.read() as cur:
        (run,) = list_runs(cur, utc_naive())
    assert run.status == "running"
    growing.write_bytes(whole)
    age(logdir)
    assert run_import(request, out=io.StringIO()) == 0
    assert main(["ingest", "--dir", str(store)]) == 0
    assert stored_events(store, run_id) == expected_events(complete)
    with opened(store) as opened_store, opened_store.read() as cur:
        (run,) = list_runs(cur, utc_naive())
    assert run.status == "finished"


def test_segments_are_the_collectors_bytes_and_ids_never_change() -> None:
    events = ScalarEvents((0, 1), ("loss", "loss"), (1.5, math.nan), (1700000000.25, 1700000001.5))
    run = SourceRun("tensorboard", Path("/logs"), "a/b", "a/b", "p", events, growing=False)
    run_id = import_run_id("tensorboard", "/logs", "a/b", "a/b")
    assert run_id == import_run_id("tensorboard", "/logs", "a/b", "a/b")
    assert run_id.startswith("a-b-") and len(run_id) == len("a-b-") + 8
    assert run_id != import_run_id("tensorboard", "/other", "a/b", "a/b")
    assert run_id != import_run_id("trackio", "/logs", "a/b", "a/b")
    header = run_header(run, run_id)
    closing = replace(header, seq=0, status="finished", sent_at=1700000001.5)
    part = scalars_part(events, slice(0, 2))
    chunk = Chunk(0, 0, 2, final=True)
    assert encode_chunk(events, chunk, header) == encode_segment([part], closing)


def test_main_losses_are_recognised_by_their_usual_spellings() -> None:
    assert guess_roles(["train/loss", "val/loss"]) == {"loss": "train/loss"}
    assert guess_roles(["Loss/train", "Loss/val", "Accuracy/val"]) == {
        "loss": "Loss/train",
        "val_loss": "Loss/val",
        "val_metric": "Accuracy/val",
    }
    assert guess_roles(["loss", "train_loss", "eval/loss"]) == {"val_loss": "eval/loss"}
    assert guess_roles(["train/loss", "loss/train"]) == {}  # ambiguous: no main loss


def test_the_importers_never_load_torch() -> None:
    code = (
        "import sys\n"
        "import trainlight.integrations.importers.command as c\n"
        "import trainlight.integrations.importers.tensorboard, trainlight.integrations."
        "importers.trackio\n"
        "assert 'torch' not in sys.modules, 'the importers imported torch'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_missing_logdir_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope"
    assert main(["import", "tensorboard", str(missing), "--dir", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert f"trainlight import tensorboard: {missing} is not a directory" in err
