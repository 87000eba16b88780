"""`grid.rows`: filtering, worst-health sort, row records and sparkline scaling."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from trainlight.app.grid.rows import (
    filter_options,
    matches,
    prepare_rows,
    row_record,
    sort_rows,
    sparkline,
    view_rows,
)
from trainlight.app.store.read.grid import GridRow, LayerLight, SignalState
from trainlight.app.url_state import GridState

NOW = datetime(2025, 1, 1, 12, 0, 0)
STALE = timedelta(seconds=60)


def run(run_id: str, minutes_ago: float = 0, **health: str) -> GridRow:
    return GridRow(
        run_id=run_id,
        name=run_id.upper(),
        project="p" if run_id < "m" else "q",
        group="g1",
        tags=("gan",) if "gan" in run_id else (),
        status="running",
        last_step=1234,
        updated_at=NOW - timedelta(minutes=minutes_ago),
        stop_requested=False,
        health={s: SignalState(v, f"why {v}") for s, v in health.items()},
    )


ROWS = [
    run("a-green", 1, nonfinite="green", dead_relu="green"),
    run("b-amber", 5, dead_relu="amber"),
    run("c-red-old", 30, nonfinite="red"),
    run("d-red-new", 2, nonfinite="red"),
    run("e-two-reds", 50, nonfinite="red", lca="red"),
    run("z-gan-none", 0),
]


def ids(rows: list[GridRow]) -> list[str]:
    return [r.run_id for r in rows]


def test_worst_health_first_then_more_reds_then_recency() -> None:
    assert ids(sort_rows(ROWS, "health")) == [
        "e-two-reds",
        "d-red-new",
        "c-red-old",
        "b-amber",
        "a-green",
        "z-gan-none",
    ]
    assert ids(sort_rows(ROWS, "recency"))[:2] == ["z-gan-none", "a-green"]
    assert ids(sort_rows(ROWS, "name")) == sorted(ids(ROWS))


def test_filters_combine() -> None:
    assert [r.run_id for r in ROWS if matches(r, GridState(states=("red",)))] == [
        "c-red-old",
        "d-red-new",
        "e-two-reds",
    ]
    assert [r.run_id for r in ROWS if matches(r, GridState(tag="gan"))] == ["z-gan-none"]
    assert [r.run_id for r in ROWS if matches(r, GridState(text="TWO"))] == ["e-two-reds"]
    assert not [r for r in ROWS if matches(r, GridState(project="q", states=("amber",)))]
    assert [r.run_id for r in ROWS if matches(r, GridState(states=("grey",)))] == ["z-gan-none"]


def test_row_record_flattens_badges_reasons_lights_and_stale_status() -> None:
    row = GridRow(
        **{
            **run("c-red-old", 30, nonfinite="red").__dict__,
            "spark_key": "loss",
            "spark": (3.0, float("nan"), 1.0),
            "lca_layers": (
                LayerLight("fc1", -0.5),
                LayerLight("fc2", 0.2),
                LayerLight("fc3", float("nan")),
            ),
        },
    )
    record = row_record(row, NOW, STALE)
    assert record["status"] == "stale"
    assert (record["h_nonfinite"], record["r_nonfinite"]) == ("red", "nonfinite: why red")
    assert (record["h_catch"], record["r_catch"]) == ("grey", "catch: no data yet")
    assert record["worst"] == "red"
    assert record["lca_layers"] == [
        ["fc1", "helping", "-0.5"],
        ["fc2", "hurting", "0.2"],
        ["fc3", "hurting", "NaN"],
    ]
    assert record["spark_alarms"] == [60.0]
    assert record["spark_title"] == "loss: last 1"
    assert record["step_text"] == "1,234"
    assert record["updated_ms"] == 1735731000000  # 11:30 UTC: the browser shows "30m ago"


def test_sparkline_scales_into_the_box_with_the_minimum_at_the_bottom() -> None:
    line = sparkline([4.0, 2.0, 0.0], width=100, height=24)
    assert line.points == "0,2 50,12 100,22"
    assert line.alarms == ()
    flat = sparkline([1.0, 1.0])
    assert flat.points == "0,2 120,2"
    assert sparkline([]).points == ""
    only_bad = sparkline([math.inf, -math.inf])
    assert (only_bad.points, only_bad.alarms) == ("", (0.0, 120.0))


def test_view_rows_and_filter_options() -> None:
    shown = view_rows(prepare_rows(ROWS), GridState(states=("red",), sort="name"), NOW, STALE)
    assert [r.record["run_id"] for r in shown] == ["c-red-old", "d-red-new", "e-two-reds"]
    assert [r.record["order"] for r in shown] == [0, 1, 2]
    assert shown[0].record == {**row_record(ROWS[2], NOW, STALE), "order": 0}
    options = filter_options(ROWS)
    assert (options.projects, options.groups, options.tags) == (("p", "q"), ("g1",), ("gan",))


def test_prepare_rows_rebuilds_only_the_runs_that_changed() -> None:
    first = prepare_rows(ROWS)
    changed = GridRow(**{**ROWS[1].__dict__, "last_step": 9999})
    again = prepare_rows([ROWS[0], changed, *ROWS[2:]], previous=first)
    assert all(again[i] is first[i] for i in range(len(ROWS)) if i != 1)  # reused as is
    assert again[1] is not first[1] and again[1].record["step_text"] == "9,999"
    assert again[1].digest != first[1].digest
    assert prepare_rows(ROWS, previous=again)[1].record == first[1].record
