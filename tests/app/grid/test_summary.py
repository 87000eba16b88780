"""`grid.summary`: the batch summary of the rows the grid shows, and its links."""

from __future__ import annotations

from dataclasses import replace

from tests.app.grid.test_rows import NOW, STALE, run
from trainlight.app.grid.rows import prepare_rows, view_rows
from trainlight.app.grid.summary import summarise, summary_component
from trainlight.app.url_state import GridState


def test_the_summary_counts_the_shown_runs_and_the_compute_stops_saved() -> None:
    rows = [
        run("a-green", 1, nonfinite="green"),
        run("b-amber", 1, dead_relu="amber"),
        run("c-red", 1, nonfinite="red", progress="red"),
        replace(run("d-pruned", 1, spike="red"), status="stopped", last_step=999,
                planned_steps=5000, steps_per_s=2.0),  # 4,000 steps at 2/s: 0.56 h
        run("e-stale", 30, nonfinite="green"),
    ]  # fmt: skip
    state = GridState(project="p")
    summary = summarise(view_rows(prepare_rows(rows), state, NOW, STALE))
    assert summary.runs == 5
    assert dict(summary.by_state) == {"red": 2, "amber": 1, "green": 2}
    assert [s for s, _ in summary.by_state] == ["red", "amber", "green"]  # worst first
    assert dict(summary.by_status) == {"running": 3, "stale": 1, "stopped": 1}
    assert summary.stalled == 1 and summary.saved_steps == 4000
    assert abs(summary.saved_hours - 4000 / 2 / 3600) < 1e-9
    assert [name for _, name, _ in summary.attention] == ["C-RED", "D-PRUNED", "B-AMBER"]
    component = summary_component(summary, replace(state, selected=("a-green",)))
    links = {c.children: c.href for c in component.children if hasattr(c, "href")}
    assert links["■ 2 red"] == "/?project=p&state=red"  # filters kept, selection dropped
    text = str(component.to_plotly_json())
    assert "4,000 steps (~0.6 h) saved by stops" in text and "1 stalled" in text
