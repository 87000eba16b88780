"""The run page's data in one read, against the rows the real runs wrote (naive queries)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.app.store.filled_store import INF_STEP, NAN_STEP
from trainlight.app.store.database import Store, utc_naive
from trainlight.app.store.read.compare_data import load_compare
from trainlight.app.store.read.run_data import load_run_page
from trainlight.app.store.read.series import StepRange, scalar_series


def quantile_rows(store: Store, run_id: str, key: str) -> dict[int, list[float]]:
    with store.read() as cur:
        rows = cur.execute(
            "SELECT step, value FROM metrics WHERE run_id = ? AND key = ? ORDER BY step, value",
            [run_id, key],
        ).fetchall()
    out: dict[int, list[float]] = {}
    for step, value in rows:
        out.setdefault(int(step), []).append(float(value))
    return out


def test_gan_page_has_roles_runaway_and_both_distributions(
    filled: tuple[Store, dict[str, str]],
) -> None:
    store, runs = filled
    with store.read() as cur:
        data = load_run_page(cur, runs["gan"], StepRange(), utc_naive())
        early = load_run_page(cur, runs["gan"], StepRange(None, 250), utc_naive())
        loss = scalar_series(cur, runs["gan"], "content")
    assert data is not None and early is not None
    assert data.keys == ("content", "d_loss") and data.judging.roles["content"] == "content"
    np.testing.assert_array_equal(data.scalars["content"].mean, loss.mean)
    assert sorted(data.runaway) == ["runaway/critical", "runaway/distance"]
    reference = quantile_rows(store, runs["gan"], "runaway/ref_q")
    generated = quantile_rows(store, runs["gan"], "runaway/gen_q")
    assert list(reference) == [0] and len(reference[0]) == 257  # written once
    assert sorted(generated) == [0, 100, 200, 300, 400, 500]  # every 10th reading
    assert data.reference is not None and data.generated is not None
    assert data.reference.values.tolist() == reference[0]
    assert (data.generated.step, data.generated.values.tolist()) == (500, generated[500])
    assert early.generated is not None and early.generated.step == 200  # the span's end


def test_page_data_marks_nonfinite_and_knows_unknown_runs(
    filled: tuple[Store, dict[str, str]],
) -> None:
    store, runs = filled
    with store.read() as cur:
        data = load_run_page(cur, runs["long"], StepRange(), utc_naive())
        later = load_run_page(cur, runs["long"], StepRange(NAN_STEP + 1, None), utc_naive())
        missing = load_run_page(cur, "no-such-run", StepRange(), utc_naive())
    assert missing is None
    assert data is not None and later is not None
    [(key, step, value)] = data.nonfinite
    assert (key, step) == ("wave", NAN_STEP) and math.isnan(value)
    assert later.nonfinite == (("wave", INF_STEP, math.inf),)
    assert data.reference is None and not data.lca_totals and not data.layers


def test_lca_page_data_has_every_layer_table(filled: tuple[Store, dict[str, str]]) -> None:
    store, runs = filled
    with store.read() as cur:
        data = load_run_page(cur, runs["lca"], StepRange(), utc_naive())
    assert data is not None
    assert [s.name for s in data.layers["dead_frac"]] == ["1", "3"]
    assert [s.name for s in data.layers["lca"]] == list(data.lca_totals) == ["0", "2", "4"]
    for series in data.layers["lca"]:
        assert series.mean[-1] == pytest.approx(data.lca_totals[series.name])
    assert data.judging.settings.lca_window == 3  # the run's own health= override


def test_compare_data_one_read_for_several_runs(filled: tuple[Store, dict[str, str]]) -> None:
    store, runs = filled
    with store.read() as cur:
        data = load_compare(cur, (runs["gan"], "gone", runs["lca"]), utc_naive())
    assert [r.run_id for r in data.runs] == [runs["gan"], runs["lca"]]
    assert data.missing == ("gone",)
    assert data.keys == ("content", "d_loss", "loss", "lr")
    assert sorted(data.series[runs["lca"]]) == ["loss", "lr"]
    assert list(data.lca_totals[runs["lca"]]) == ["0", "2", "4"]
    assert data.lca_totals[runs["gan"]] == {}
