from __future__ import annotations

from datetime import datetime, timedelta

from trainlight.app.formatting import format_age, format_value
from trainlight.app.store.read.queries import RunSummary
from trainlight.app.terminal import runs_table_text

NOW = datetime(2026, 1, 1, 12, 0, 0)


def summary(**kw: object) -> RunSummary:
    base: dict[str, object] = dict(
        run_id="r-1",
        name="n",
        project="p",
        group="g",
        tags=(),
        status="running",
        last_step=10,
        started_at=NOW,
        updated_at=NOW - timedelta(seconds=5),
        stop_requested=False,
        stop_reason="",
        dropped_rows=0,
        health={},
        last_values={"loss": float("nan")},
    )
    base.update(kw)
    return RunSummary(**base)  # type: ignore[arg-type]


def test_table_aligns_columns_and_spells_out_nan() -> None:
    text = runs_table_text([summary(), summary(run_id="r-22", name="longer name")], NOW)
    lines = text.splitlines()
    assert lines[0].startswith("RUN ID")
    assert lines[0].index("NAME") == lines[1].index("n ") == lines[2].index("longer name")
    assert "loss=NaN" in lines[1] and "5s ago" in lines[1]


def test_control_characters_in_names_cannot_move_the_cursor() -> None:
    text = runs_table_text([summary(name="evil\x1b[2J\rname\n")], NOW)
    assert "\x1b" not in text and "\r" not in text and len(text.splitlines()) == 3


def test_badges_are_shapes_in_signal_order_and_coloured_only_on_request() -> None:
    run = summary(health={"nonfinite": "red", "catch": "green", "dead_relu": "amber"})
    plain = runs_table_text([run], NOW)
    assert "●○▲○■" in plain  # catch, runaway, dead_relu, lca, nonfinite
    assert "\033[" not in plain
    coloured = runs_table_text([run], NOW, color=True)
    assert "\033[31m■" in coloured and "\033[32m●" in coloured


def test_empty_store_says_so() -> None:
    assert runs_table_text([], NOW) == "no runs in this store"


def test_value_and_age_formatting() -> None:
    assert [format_value(v) for v in (float("inf"), -float("inf"), 0.0, 1234567.0, 0.5)] == [
        "+Inf",
        "-Inf",
        "0",
        "1.23e+06",
        "0.5",
    ]
    assert format_age(NOW - timedelta(hours=3), NOW) == "3h ago"
    assert format_age(None, NOW) == "never"


def test_control_characters_in_metric_keys_are_shown_escaped() -> None:
    key = "loss\x1b]0;owned\x07\x1b[2J\r\u202e"
    text = runs_table_text([summary(name="a\x1bb", last_values={key: 1.0})], NOW)
    assert not any(ch in text for ch in "\x1b\x07\r\u202e")
    assert "a\\x1bb" in text and "loss\\x1b]0;owned" in text
    assert len(text.splitlines()) == 3
