"""Predictions and loss slices from a real Monitor reach the `arrays` table exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from trainlight.app.store.database import Store
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.collectors import Monitor
from trainlight.collectors.schema import StoreLayout


def test_predictions_and_slices_are_stored_as_float32_matrices(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    probe_x = torch.randn(32, 4)
    probe_y = torch.randint(0, 3, (32,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    recorded: dict[int, np.ndarray] = {}
    with Monitor(run="arrays", store=str(tmp_path), flush_interval=0.2) as mon:
        mon.landscape(model, lambda m: nn.functional.cross_entropy(m(probe_x), probe_y), every=5)
        for step in range(12):
            loss = nn.functional.cross_entropy(model(probe_x), probe_y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            mon.log(step, loss=loss)
            with torch.no_grad():
                probs = torch.softmax(model(probe_x), dim=1)
            mon.predictions(step, probs, every=4)
            if step % 4 == 0:
                recorded[step] = probs.numpy().copy()
    store = Store(StoreLayout.resolve(tmp_path))
    try:
        Ingester(store).ingest_pending()
        with store.read() as cur:
            rows = cur.execute(
                """SELECT step, key, n_rows, n_cols, "values" FROM arrays ORDER BY key, step"""
            ).fetchall()
            span = cur.execute("SELECT value FROM metrics WHERE key = 'landscape/span'").fetchall()
    finally:
        store.close()
    slices = [r for r in rows if r[1] == "landscape/slice"]
    assert [r[0] for r in slices] == [0, 5, 10]
    assert all(r[2:4] == (1, 21) and len(r[4]) == 21 for r in slices)
    predictions = [r for r in rows if r[1] == "predictions"]
    assert [r[0] for r in predictions] == [0, 4, 8]
    for step, _, n_rows, n_cols, values in predictions:
        assert (n_rows, n_cols) == (32, 3)
        np.testing.assert_array_equal(np.asarray(values, np.float32).reshape(32, 3), recorded[step])
    assert span == [(1.0,)]
