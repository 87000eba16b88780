"""`grid.delta`: what a grid refresh sends, given what the browser already holds."""

from __future__ import annotations

from datetime import datetime, timedelta

from trainlight.app.grid.delta import Sent, ShownRow, plan_update, view_key
from trainlight.app.grid.rows import prepare_rows, view_rows
from trainlight.app.store.read.grid import GridRow, SignalState
from trainlight.app.url_state import GridState

NOW = datetime(2025, 1, 1, 12, 0, 0)
STALE = timedelta(minutes=5)


def run(run_id: str, minutes_ago: float, last_step: int = 10, **health: str) -> GridRow:
    return GridRow(
        run_id=run_id,
        name=run_id,
        project="p",
        group="g",
        tags=(),
        status="running",
        last_step=last_step,
        updated_at=NOW - timedelta(minutes=minutes_ago),
        stop_requested=False,
        health={s: SignalState(v, v) for s, v in health.items()},
        spark_key="loss",
        spark=(3.0, 2.0, 1.0),
    )


RECENCY = GridState(sort="recency")


def records(rows: list[GridRow], state: GridState = RECENCY) -> list[ShownRow]:
    return view_rows(prepare_rows(rows), state, NOW, STALE)


ROWS = [run("a", 1), run("b", 2), run("c", 3)]
VIEW = view_key(RECENCY)


def test_a_first_load_sends_every_row_in_server_order() -> None:
    update = plan_update(Sent(), VIEW, records(ROWS), meta=("p",))
    assert update.full is not None
    assert [(r["run_id"], r["order"]) for r in update.full] == [("a", 0), ("b", 1), ("c", 2)]
    assert set(update.changed) == {"a", "b", "c"} and update.meta_changed


def test_an_unchanged_store_sends_nothing() -> None:
    first = plan_update(Sent(), VIEW, records(ROWS), meta=("p",))
    again = plan_update(Sent.parse(first.sent.to_json()), VIEW, records(ROWS), meta=("p",))
    assert not again.rows_changed and not again.meta_changed and again.full is None


def test_a_tick_sends_only_added_updated_and_removed_rows() -> None:
    held = Sent.parse(plan_update(Sent(), VIEW, records(ROWS), meta=1).sent.to_json())
    # `a` logged more (still the most recent), `c` is gone, `d` is new and the oldest.
    now = [run("a", 0, last_step=20), run("b", 2), run("d", 9)]
    update = plan_update(held, VIEW, records(now), meta=1)
    assert update.full is None and not update.meta_changed
    assert [r["run_id"] for r in update.update] == ["a"]
    assert [(r["run_id"], r["order"]) for r in update.add] == [("d", 2)]
    assert update.remove == ("c",)
    assert update.transaction()["remove"] == [{"run_id": "c"}]
    assert set(update.changed) == {"a", "d"}


def test_a_row_that_moves_is_resent_with_its_new_position_and_only_it_and_those_it_passed() -> None:
    held = Sent.parse(plan_update(Sent(), VIEW, records(ROWS), meta=1).sent.to_json())
    now = [run("a", 1), run("b", 2), run("c", 0.5, last_step=11)]  # c jumps to the top
    update = plan_update(held, VIEW, records(now), meta=1)
    assert sorted((r["run_id"], r["order"]) for r in update.update) == [
        ("a", 1),
        ("b", 2),
        ("c", 0),
    ]
    worse = [run("a", 1), run("b", 2, nonfinite="red"), run("c", 3)]
    by_health = GridState(sort="health")
    held = Sent.parse(
        plan_update(Sent(), view_key(by_health), records(ROWS, by_health), 1).sent.to_json()
    )
    update = plan_update(held, view_key(by_health), records(worse, by_health), 1)
    assert sorted(r["run_id"] for r in update.update) == ["a", "b"]  # c keeps position 2


def test_a_new_view_or_a_browser_holding_nothing_gets_full_rows() -> None:
    held = Sent.parse(plan_update(Sent(), VIEW, records(ROWS), meta=1).sent.to_json())
    by_name = GridState(sort="name")
    update = plan_update(held, view_key(by_name), records(ROWS, by_name), meta=1)
    assert update.full is not None and len(update.full) == 3
    for junk in (None, [], {"rows": "x"}, "text"):
        assert plan_update(Sent.parse(junk), VIEW, records(ROWS), 1).full is not None


def test_the_browser_record_is_patched_after_a_transaction() -> None:
    first = plan_update(Sent(), VIEW, records(ROWS), meta=1)
    assert first.browser_record() == first.sent.to_json()
    held = Sent.parse(first.sent.to_json())
    update = plan_update(held, VIEW, records([run("a", 0, last_step=20), run("b", 2)]), meta=2)
    ops = update.browser_record().to_plotly_json()["operations"]
    assert {(o["operation"], tuple(o["location"])) for o in ops} == {
        ("Assign", ("rows", "a")),
        ("Delete", ("rows", "c")),
        ("Assign", ("meta",)),
    }
    assert (
        next(o for o in ops if o["location"] == ["rows", "a"])["params"]["value"]
        == (update.sent.rows["a"])
    )
