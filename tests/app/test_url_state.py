"""`url_state`: a view survives build → parse exactly, and a hand-edited link never raises."""

from __future__ import annotations

import pytest

from trainlight.app.url_state import DEFAULT_EVERY_S, GridState, build, compare_href, parse

STATES = [
    GridState(),
    GridState(project="voice", group="sweep-12", tag="gan", states=("amber", "red")),
    GridState(text='lr 3e-4 & "quoted" / ü', sort="recency", live=False, every_s=30),
    GridState(selected=("b-2", "a-1"), sort="name"),
    GridState(states=("green", "amber", "red", "grey"), text="a=b?c#d%20", every_s=1),
]


@pytest.mark.parametrize("state", STATES)
def test_build_then_parse_is_the_identity(state: GridState) -> None:
    assert parse(build(state)) == state
    assert parse(build(state).removeprefix("?")) == state


def test_default_view_has_a_clean_url_and_keys_have_a_fixed_order() -> None:
    assert build(GridState()) == ""
    assert build(GridState(sort="name", project="p")) == "?project=p&sort=name"
    assert build(GridState(states=("red",))) == "?state=red"


def test_parse_accepts_dash_query_kwargs_and_repeated_keys() -> None:
    assert parse({"state": "red", "sel": ["a-1,b-2", "a-1"]}) == GridState(
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
    assert parse(query) == expected
    assert expected.every_s >= 1 and DEFAULT_EVERY_S == 5


def test_compare_href_lists_runs_in_order() -> None:
    assert compare_href(["b-2", "a-1"]) == "/compare?runs=b-2,a-1"
