"""User text reaches Plotly as text: tags in run names, metric keys and layer names are escaped."""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from trainlight.app.figures.lca import compare_lca_figure, heatmap_title, lca_layers_figure
from trainlight.app.figures.scalars import overlay_figure, scalar_figure
from trainlight.app.figures.style import Figure, plain
from trainlight.app.store.read.series import CatchMarks, Series

HOSTILE = [
    '<a href="https://evil.example">click</a>',
    '<span style="font-size:90px">big</span>',
    "loss<br>x & y",
]
# Templates we write (with our own <br>/<extra>), and keys Plotly never displays.
_OURS = {"hovertemplate", "texttemplate", "uirevision", "legendgroup"}


def _series(name: str) -> Series:
    steps = np.arange(4.0)
    values = np.array([1.0, 0.5, 0.25, 0.1])
    return Series(name, steps, values, values - 0.1, values + 0.1, (), 40, True)


def _strings(value: Any, key: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, str(k))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item, key)
    elif isinstance(value, str) and key not in _OURS:
        yield key, value


def _assert_no_markup(fig: Figure) -> None:
    for key, text in _strings(fig):
        assert "<" not in text and ">" not in text, (key, text)


@pytest.mark.parametrize("text", HOSTILE)
def test_names_keys_and_layers_reach_plotly_escaped(text: str) -> None:
    marks = CatchMarks(plateau_step=2, catch_step=3)
    _assert_no_markup(scalar_figure(_series(text), smooth=0.5, marks=marks, title=f"role: {text}"))
    _assert_no_markup(overlay_figure(text, [(text, _series("x")), ("b", _series("y"))]))
    _assert_no_markup(lca_layers_figure({text: -1.0, "fc": 2.0}, [_series(text)], [_series(text)]))
    _assert_no_markup(compare_lca_figure([(text, {text: 1.0})]))
    assert "<" not in heatmap_title(text, 10)


@pytest.mark.parametrize("text", [*HOSTILE, "plain name", "&lt; already", ""])
def test_escaping_shows_the_same_characters(text: str) -> None:
    assert html.unescape(plain(text)) == text
