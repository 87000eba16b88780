"""A signal registered once is judged at ingest, saved with the run's health state, and appears
everywhere signals are shown: grid column and row, terminal table and legend, API health field,
run-page panel with its evidence plot."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask

from tests.support.segments import metrics_segment
from trainlight.app.api import create_api
from trainlight.app.components.run_body import run_body
from trainlight.app.figures.run_page import NamedFigure, evidence_for, forget_evidence, run_figures
from trainlight.app.grid.columns import column_defs
from trainlight.app.grid.rows import static_record
from trainlight.app.intent import HostPolicy, install_intent_guard
from trainlight.app.store.database import Store, utc_naive
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.app.store.read.buckets import StepRange
from trainlight.app.store.read.grid import grid_rows
from trainlight.app.store.read.queries import list_runs
from trainlight.app.store.read.run_data import RunPageData, load_run_page
from trainlight.app.terminal import runs_table_text
from trainlight.app.url_state import RunView
from trainlight.collectors.health.judge import FeedContext, Judge
from trainlight.collectors.health.registry import register, signal_names, unregister
from trainlight.collectors.health.signal_spec import SignalSpec
from trainlight.collectors.health.verdict import GREEN, RED, Verdict
from trainlight.collectors.schema import StoreLayout, write_atomically


@dataclass
class ToyWindow:
    worst: tuple[int, float] | None = None  # (step, value) of the largest toy reading


class ToyJudge(Judge[ToyWindow]):
    """Red once a logged `toy` value exceeds 1; every reading is an evaluation point."""

    signal = "toy"
    window_type = ToyWindow

    def keys(self) -> set[str]:
        return {"toy"}

    def feed(self, ctx: FeedContext) -> None:
        steps, values = ctx.rows.metrics.get("toy", ([], []))
        for step, value in zip(steps, values, strict=True):
            if self.window.worst is None or value > self.window.worst[1]:
                self.window.worst = (step, value)
            worst_step, worst = self.window.worst
            verdict = (
                Verdict(RED, f"the toy is unhappy ({worst:g} at step {worst_step})", sticky=True)
                if worst > 1
                else Verdict(GREEN)
            )
            ctx.judge(step, self.rank, self.signal, verdict)


TOY = SignalSpec(
    name="toy",
    column="toy",
    title="Toy signal",
    summary="A signal that exists only in this test",
    explain=lambda s: f"Red when the toy says so (confirm {s.confirm}).",
    missing="not measured: call mon.toy()",
    judge=ToyJudge,
)


@pytest.fixture
def toy() -> Iterator[None]:
    register(TOY)

    @evidence_for("toy")
    def _toy(data: RunPageData, _view: RunView, revision: str) -> tuple[NamedFigure, ...]:
        return (NamedFigure("toy:plot", {"data": [], "layout": {"title": revision}}, zoom=False),)

    yield
    unregister("toy")
    forget_evidence("toy")


def _components(node: object) -> Iterator[object]:
    yield node
    children = getattr(node, "children", None)
    for child in children if isinstance(children, list) else [children] if children else []:
        yield from _components(child)


def test_a_registered_signal_shows_in_the_grid_terminal_api_and_run_page(
    tmp_path: Path, toy: None
) -> None:
    assert signal_names()[-1] == "toy"
    store = Store(StoreLayout.resolve(tmp_path))
    try:
        layout = store.layout
        layout.run_inbox("r-1").mkdir(parents=True)
        rows = [(2, "toy", 0.5), (3, "loss", 1), (3, "toy", 2.0), (4, "loss", 1)]
        write_atomically(layout.segment_path("r-1", 0), metrics_segment("r-1", 0, rows))
        Ingester(store).ingest_pending()
        now = utc_naive()
        with store.read() as cur:
            [grid_row] = grid_rows(cur)
            runs = list_runs(cur, now, timedelta(minutes=5))
            data = load_run_page(cur, "r-1", StepRange(), now)
        # the grid: a badge column and the row's state and reason
        toy_column = next(c for c in column_defs() if c.get("colId") == "h_toy")
        assert toy_column["headerName"] == "toy"
        record = static_record(grid_row)
        reason = "toy: the toy is unhappy (2 at step 3)"
        assert (record["h_toy"], record["r_toy"]) == ("red", reason)
        # the terminal: a sixth shape and the legend
        text = runs_table_text(runs, now)
        assert "○" * (len(signal_names()) - 2) + "●■" in text  # nonfinite green, toy red
        assert (
            "health: spike overfit gradients progress catch runaway dead_relu lca nonfinite toy"
            in text
        )
        # the API
        app = Flask(__name__)
        install_intent_guard(app, HostPolicy.serving())
        app.register_blueprint(create_api(store, timedelta(minutes=5)))
        [listed] = app.test_client().get("/api/v1/runs").get_json()["runs"]
        assert listed["health"]["toy"] == "red" and listed["health"]["catch"] == "grey"
        # the run page: the panel, its help from the run's settings, and the evidence plot
        assert data is not None
        figures = run_figures(data, RunView(), "r-1")
        assert [f.name for f in figures.evidence["toy"]] == ["toy:plot"]
        nodes = list(_components(run_body(data, figures, "r-1")))
        [panel] = [n for n in nodes if getattr(n, "id", None) == "panel-toy"]
        texts = [getattr(n, "children", None) for n in _components(panel)]
        assert "Toy signal" in texts and "Red when the toy says so (confirm 2)." in texts
        # its window is saved with the run's health state, under its name
        with store.read() as cur:
            [(saved,)] = cur.execute("SELECT state FROM health_state").fetchall()
        assert json.loads(saved)["toy"] == {"worst": [3, 2.0]}
    finally:
        store.close()
