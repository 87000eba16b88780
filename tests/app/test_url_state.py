"""`url_state`: every page's view survives build → parse exactly, defaults make clean URLs, and a
hand-edited link never raises."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.support.segments import metrics_segment
from trainlight.app.store.database import Store, utc_naive
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.app.store.read.run_data import load_run_page
from trainlight.app.store.read.series import StepRange
from trainlight.app.url_state import (
    DEFAULT_EVERY_S,
    CompareView,
    GridState,
    LcaView,
    RunView,
    compare_href,
    compare_query,
    grid_query,
    lca_query,
    nearest_index,
    parse_compare_view,
    parse_grid_view,
    parse_lca_view,
    parse_run_view,
    range_from_relayout,
    run_query,
)
from trainlight.collectors.schema import StoreLayout, write_atomically

STATES = [
    GridState(),
    GridState(project="voice", group="sweep-12", tag="gan", states=("amber", "red")),
    GridState(text='lr 3e-4 & "quoted" / ü', sort="recency", live=False, every_s=30),
    GridState(selected=("b-2", "a-1"), sort="name"),
    GridState(states=("green", "amber", "red", "grey"), text="a=b?c#d%20", every_s=1),
]


@pytest.mark.parametrize("state", STATES)
def test_build_then_parse_is_the_identity(state: GridState) -> None:
    assert parse_grid_view(grid_query(state)) == state
    assert parse_grid_view(grid_query(state).removeprefix("?")) == state


def test_default_view_has_a_clean_url_and_keys_have_a_fixed_order() -> None:
    assert grid_query(GridState()) == ""
    assert grid_query(GridState(sort="name", project="p")) == "?project=p&sort=name"
    assert grid_query(GridState(states=("red",))) == "?state=red"


def test_parse_accepts_dash_query_kwargs_and_repeated_keys() -> None:
    assert parse_grid_view({"state": "red", "sel": ["a-1,b-2", "a-1"]}) == GridState(
        states=("red",), selected=("a-1", "b-2")
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?sort=bogus", GridState()),
        ("?state=purple,red,red", GridState(states=("red",))),
        ("?state=red,amber", GridState(states=("amber", "red"))),
        ("?every=abc", GridState()),
        ("?every=0", GridState(every_s=1)),
        ("?every=999999", GridState(every_s=3600)),
        ("?live=0", GridState(live=False)),
        ("?live=yes", GridState()),
        ("?sel=ok-1,../etc,,", GridState(selected=("ok-1",))),
        ("?q=" + "x" * 500, GridState(text="x" * 200)),
        ("", GridState()),
        ("?%zz=1&&=", GridState()),
    ],
)
def test_bad_or_partial_values_fall_back_to_defaults(query: str, expected: GridState) -> None:
    assert parse_grid_view(query) == expected
    assert expected.every_s >= 1 and DEFAULT_EVERY_S == 5


def test_compare_href_lists_runs_in_order() -> None:
    assert compare_href(["b-2", "a-1"]) == "/compare?runs=b-2,a-1"


def query_dict(query: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(query).query))


@pytest.mark.parametrize(
    "view", [RunView(), RunView(0.6), RunView(0.0, 10, 500), RunView(0.99, None, 7)]
)
def test_run_view_round_trip(view: RunView) -> None:
    assert parse_run_view(query_dict(run_query(view))) == view


def test_run_view_defaults_make_a_clean_url() -> None:
    assert run_query(RunView()) == ""
    assert run_query(RunView(0.5, 1, 2)) == "?smooth=0.5&from=1&to=2"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"smooth": "abc", "from": "x", "to": ""}, RunView()),
        ({"smooth": "5"}, RunView(0.99)),
        ({"smooth": "-1"}, RunView(0.0)),
        ({"smooth": "nan"}, RunView(0.0)),
        ({"from": "900", "to": "100"}, RunView(0.0, 100, 900)),
        ({"from": "12.7"}, RunView(0.0, 12)),
    ],
)
def test_run_view_tolerates_bad_links(query: dict[str, str], expected: RunView) -> None:
    assert parse_run_view(query) == expected


@pytest.mark.parametrize(
    "view",
    [LcaView(), LcaView("features.0", 400), LcaView("fc", 0, True, True), LcaView(None, 5)],
)
def test_lca_view_round_trip(view: LcaView) -> None:
    assert parse_lca_view(query_dict(lca_query(view))) == view


def test_lca_view_flags() -> None:
    assert parse_lca_view({"play": "yes", "all": "0", "layer": ""}) == LcaView(playing=True)
    assert lca_query(LcaView("a b/c", 3, True)) == "?layer=a+b/c&step=3&play=1"


def test_compare_view() -> None:
    assert parse_compare_view({"runs": " a, b ,,a,c"}) == CompareView(("a", "b", "c"))
    assert parse_compare_view({}) == CompareView()
    assert compare_query(["a", "b"]) == "?runs=a,b"
    assert compare_query([]) == ""
    assert compare_query(["a"], 0.5) == "?runs=a&smooth=0.5"
    assert parse_compare_view({"runs": "a", "smooth": "0.5"}) == CompareView(("a",), 0.5)


def test_nearest_index() -> None:
    steps = [0, 10, 20, 40]
    assert nearest_index(steps, None) == 3
    assert nearest_index(steps, 14) == 1
    assert nearest_index(steps, 15) == 1  # a tie goes to the earlier frame
    assert nearest_index(steps, 1000) == 3
    assert nearest_index([], 5) == 0


def test_range_from_relayout() -> None:
    assert range_from_relayout(None) is None
    assert range_from_relayout({"autosize": True}) is None
    assert range_from_relayout({"xaxis.autorange": True}) == (None, None)
    assert range_from_relayout({"xaxis.range[0]": 10.4, "xaxis.range[1]": 99.2}) == (10, 100)
    assert range_from_relayout({"xaxis.range": [50, 20]}) == (20, 50)
    assert range_from_relayout({"yaxis.range[0]": 1, "yaxis.range[1]": 2}) is None


@pytest.mark.parametrize(
    "query",
    [{"from": "1e300"}, {"from": "-1e300", "to": "9" * 40}, {"to": 1e300}, {"from": "1e400"}],
)
def test_huge_step_links_are_clamped_and_the_run_page_still_loads(
    tmp_path: Path, query: dict[str, object]
) -> None:
    view = parse_run_view(query)
    for bound in (view.start, view.end):
        assert bound is None or abs(bound) <= 2**53 - 1
    store = Store(StoreLayout.resolve(tmp_path))
    try:
        store.layout.run_inbox("r-1").mkdir(parents=True)
        segment = metrics_segment("r-1", 0, [(0, "x", 1.0), (5, "x", 2.0)])
        write_atomically(store.layout.segment_path("r-1", 0), segment)
        Ingester(store).ingest_pending()
        with store.read() as cur:
            data = load_run_page(cur, "r-1", StepRange(view.start, view.end), utc_naive())
        assert data is not None
    finally:
        store.close()
