"""A signal registered once appears everywhere signals are shown: grid column and row, terminal
table and legend, API health field, run-page panel with its evidence plot."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask

from tests.support.segments import metrics_segment
from trainlight.app.api import create_api
from trainlight.app.components.run_body import run_body
from trainlight.app.figures.grid_columns import column_defs
from trainlight.app.figures.grid_rows import static_record
from trainlight.app.figures.run_page import NamedFigure, evidence_for, forget_evidence, run_figures
from trainlight.app.intent import HostPolicy, install_intent_guard
from trainlight.app.store.buckets import StepRange
from trainlight.app.store.database import Store, utc_naive
from trainlight.app.store.grid import grid_rows
from trainlight.app.store.inbox import Ingester
from trainlight.app.store.queries import list_runs
from trainlight.app.store.run_data import RunPageData, load_run_page
from trainlight.app.terminal import runs_table_text
from trainlight.app.viewstate import RunView
from trainlight.collectors.health.registry import register, signal_names, unregister
from trainlight.collectors.health.signal_spec import SignalSpec
from trainlight.collectors.schema import StoreLayout, write_atomically

TOY = SignalSpec(
    name="toy",
    column="toy",
    title="Toy signal",
    summary="A signal that exists only in this test",
    explain=lambda s: f"Red when the toy says so (confirm {s.confirm}).",
    missing="not measured: call mon.toy()",
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
        write_atomically(layout.segment_path("r-1", 0), metrics_segment("r-1", 0, [(3, "loss", 1)]))
        Ingester(store).ingest_pending()
        with store.write() as cur:  # the toy's rule would write this row at ingest
            cur.execute(
                """INSERT INTO health (run_id, signal, state, step, reason, updated_at, seq)
                   VALUES ('r-1', 'toy', 'red', 3, 'the toy is unhappy', now(), 0)"""
            )
        now = utc_naive()
        with store.read() as cur:
            [grid_row] = grid_rows(cur)
            runs = list_runs(cur, now, timedelta(minutes=5))
            data = load_run_page(cur, "r-1", StepRange(), now)
        # the grid: a badge column and the row's state and reason
        toy_column = next(c for c in column_defs() if c.get("colId") == "h_toy")
        assert toy_column["headerName"] == "toy"
        record = static_record(grid_row)
        assert (record["h_toy"], record["r_toy"]) == ("red", "toy: the toy is unhappy")
        # the terminal: a sixth shape and the legend
        text = runs_table_text(runs, now)
        assert "○○○○○■" in text and "health: catch runaway dead_relu lca nonfinite toy" in text
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
    finally:
        store.close()
