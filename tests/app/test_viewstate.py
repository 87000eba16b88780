"""View state ↔ URL query: round trips, defaults, and tolerance of hand-edited links."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.support.segments import metrics_segment
from trainlight.app.store.database import Store, utc_naive
from trainlight.app.store.inbox import Ingester
from trainlight.app.store.run_data import load_run_page
from trainlight.app.store.series import StepRange
from trainlight.app.viewstate import (
    CompareView,
    LcaView,
    RunView,
    compare_query,
    lca_query,
    nearest_index,
    parse_compare_view,
    parse_lca_view,
    parse_run_view,
    range_from_relayout,
    run_query,
)
from trainlight.collectors.schema import StoreLayout, write_atomically


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
