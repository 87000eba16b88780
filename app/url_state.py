"""The grid's view state as a URL query string, and back.

Every piece of what the user sees on `/` (filters, sort, selection, live refresh) is a
`GridState`; the page writes it into the URL after every change and builds its layout from the
URL on load, so a copied link reproduces the view. `build` omits defaults and orders keys, so
one view has one URL; `parse` never raises: unknown or malformed values fall back to defaults
(a hand-edited link still opens).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode

from trainlight.collectors.health.verdict import STATES
from trainlight.collectors.schema import is_valid_run_id

SORTS = ("health", "recency", "name")
DEFAULT_SORT = "health"
DEFAULT_EVERY_S = 5
MIN_EVERY_S, MAX_EVERY_S = 1, 3600
_MAX_TEXT = 200

QueryValue = str | Sequence[str]


@dataclass(frozen=True)
class GridState:
    project: str = ""
    group: str = ""
    tag: str = ""
    states: tuple[str, ...] = ()  # worst-health states to show; empty: all
    text: str = ""
    sort: str = DEFAULT_SORT
    selected: tuple[str, ...] = ()  # run ids
    live: bool = True
    every_s: int = DEFAULT_EVERY_S


def parse(query: str | Mapping[str, QueryValue]) -> GridState:
    """A state from `?a=b&…` (or Dash's parsed query kwargs); bad values become defaults."""
    params = _as_mapping(query)
    states = set(_csv(params, "state"))
    sort = _one(params, "sort")
    return GridState(
        project=_one(params, "project"),
        group=_one(params, "group"),
        tag=_one(params, "tag"),
        states=tuple(s for s in STATES if s in states),  # canonical order
        text=_one(params, "q")[:_MAX_TEXT],
        sort=sort if sort in SORTS else DEFAULT_SORT,
        selected=_ordered(r for r in _csv(params, "sel") if is_valid_run_id(r)),
        live=_one(params, "live") not in ("0", "false", "off"),
        every_s=_every(_one(params, "every")),
    )


def build(state: GridState) -> str:
    """`?…` for a state (only non-default values, fixed key order); "" for the default view."""
    pairs = [
        ("project", state.project),
        ("group", state.group),
        ("tag", state.tag),
        ("state", ",".join(state.states)),
        ("q", state.text),
        ("sort", "" if state.sort == DEFAULT_SORT else state.sort),
        ("sel", ",".join(state.selected)),
        ("live", "" if state.live else "0"),
        ("every", "" if state.every_s == DEFAULT_EVERY_S else str(state.every_s)),
    ]
    kept = [(k, v) for k, v in pairs if v]
    return "?" + urlencode(kept) if kept else ""


def compare_href(run_ids: Sequence[str]) -> str:
    """The compare page for these runs (`/compare?runs=a,b`)."""
    return "/compare?" + urlencode({"runs": ",".join(run_ids)}, safe=",")


def _as_mapping(query: str | Mapping[str, QueryValue]) -> Mapping[str, QueryValue]:
    if isinstance(query, str):
        parsed = parse_qs(query.removeprefix("?"), keep_blank_values=True)
        return {k: v[0] if len(v) == 1 else v for k, v in parsed.items()}
    return query


def _one(params: Mapping[str, QueryValue], key: str) -> str:
    value = params.get(key, "")
    if not isinstance(value, str):  # repeated key: the first one wins
        value = value[0] if value else ""
    return value.strip()


def _csv(params: Mapping[str, QueryValue], key: str) -> list[str]:
    value = params.get(key, "")
    parts = [value] if isinstance(value, str) else list(value)
    return [item.strip() for part in parts for item in part.split(",") if item.strip()]


def _ordered(items: Iterable[str]) -> tuple[str, ...]:
    """Deduplicated, first occurrence kept."""
    return tuple(dict.fromkeys(items))


def _every(text: str) -> int:
    try:
        seconds = int(text)
    except ValueError:
        return DEFAULT_EVERY_S
    return min(max(seconds, MIN_EVERY_S), MAX_EVERY_S)
