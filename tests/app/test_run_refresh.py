"""What one render of the run page sends, given what the browser already holds."""

from __future__ import annotations

from datetime import datetime

import dash
import numpy as np

from trainlight.app.components.run_refresh import run_update
from trainlight.app.store.read.queries import RunDetail, RunSummary
from trainlight.app.store.read.run_data import RunPageData
from trainlight.app.store.read.series import (
    CatchMarks,
    HealthChange,
    Judging,
    Series,
    StepClock,
)
from trainlight.app.url_state import RunView

SLOTS = ["scalar:loss"]


def page_data(last_step: int, health: str = "green") -> RunPageData:
    """A running run with one curve that has `last_step + 1` points."""
    steps = np.arange(last_step + 1, dtype=np.float64)
    values = 1.0 / (1.0 + steps / 10.0)
    summary = RunSummary(
        run_id="r-1",
        name="live",
        project="",
        group="",
        tags=(),
        status="running",
        last_step=last_step,
        started_at=None,
        updated_at=None,
        stop_requested=False,
        stop_reason="",
        dropped_rows=0,
    )
    return RunPageData(
        detail=RunDetail(summary, config={}, host="", pid=None),
        keys=("loss",),
        scalars={"loss": Series("loss", steps, values, values, values, (), len(steps))},
        marks=CatchMarks(),
        history=(HealthChange("nonfinite", health, 0, "", datetime(2026, 1, 1)),),
        judging=Judging(),
        runaway={},
        reference=None,
        generated=None,
        layers={},
        lca_totals={},
        nonfinite=(),
        spikes=(),
        val_loss_key=None,
        overfits=(),
        clock=StepClock(),
    )


def test_first_render_sends_the_body_then_refreshes_send_only_what_changed() -> None:
    first = run_update(page_data(99), RunView(), "r-1", None, [])
    assert first.body is not None and first.figures == []
    assert sorted(first.sent["figures"]) == ["scalar:loss"]

    idle = run_update(page_data(99), RunView(), "r-1", first.sent, SLOTS)
    assert idle.body is dash.no_update and idle.header is dash.no_update
    assert idle.figures == [dash.no_update]

    grown = run_update(page_data(109), RunView(), "r-1", first.sent, SLOTS)
    assert grown.body is dash.no_update and grown.header is not dash.no_update  # last step
    [patch] = grown.figures
    assert isinstance(patch, dash.Patch)
    operations = patch.to_plotly_json()["operations"]
    assert {op["operation"] for op in operations} == {"Assign", "Extend"}
    assert all(op["location"][:2] == ["data", 0] for op in operations)
    extended = [op for op in operations if op["operation"] == "Extend"]
    assert all(len(op["params"]["value"]) == 10 for op in extended)  # steps 100..109

    smoother = run_update(page_data(99), RunView(smooth=0.9), "r-1", first.sent, SLOTS)
    assert smoother.body is dash.no_update
    [figure] = smoother.figures  # a raw line appears under the smoothed one: a new figure
    assert isinstance(figure, dict)
    assert [t["name"] for t in figure["data"]] == ["loss (raw)", "loss"]
    resmoothed = run_update(page_data(99), RunView(smooth=0.5), "r-1", smoother.sent, SLOTS)
    [patch] = resmoothed.figures  # same traces, other weights: only the smoothed y is sent
    assert isinstance(patch, dash.Patch)
    [op] = patch.to_plotly_json()["operations"]
    assert (op["operation"], op["location"]) == ("Assign", ["data", 1, "y"])


def test_a_new_verdict_or_an_unknown_run_rebuilds_the_page() -> None:
    first = run_update(page_data(99), RunView(), "r-1", None, [])
    turned = run_update(page_data(99, health="red"), RunView(), "r-1", first.sent, SLOTS)
    assert turned.body is not dash.no_update and turned.figures == [dash.no_update]
    gone = run_update(None, RunView(), "r-1", first.sent, SLOTS)
    assert gone.body is None and gone.sent == {} and "Run not found" in str(gone.header)
