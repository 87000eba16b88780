"""Monitor.lca through the real writer and ingester: rows, frames thinned in the store, verdict."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from trainlight.app.store.database import Store
from trainlight.app.store.ingest.inbox import Ingester
from trainlight.collectors import Monitor
from trainlight.collectors.schema import StoreLayout


def test_lca_rows_frames_and_verdict_land_in_the_store(tmp_path: Path) -> None:
    torch.manual_seed(0)
    x, y = torch.randn(256, 8), torch.randint(0, 3, (256,))
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    probe_x, probe_y = x[:64], y[:64]
    every, steps, max_frames = 2, 60, 4
    with Monitor(run="lca", store=tmp_path, health={"lca_window": 3, "confirm": 1}) as mon:
        lca = mon.lca(
            model,
            lambda m: nn.functional.cross_entropy(m(probe_x), probe_y),
            every=every,
            max_frames=max_frames,
        )
        for step in range(steps):
            idx = torch.randint(0, 256, (32,))
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            with lca.measure(step):
                opt.step()
            mon.log(step, loss=loss)
    assert mon.problems.snapshot() == {}
    store = Store(StoreLayout.resolve(tmp_path))
    try:
        Ingester(store).ingest_pending()
        with store.read() as cur:
            layers = dict(
                cur.execute(
                    "SELECT layer, count(*) FROM layer_metrics WHERE key = 'lca' GROUP BY layer"
                ).fetchall()
            )
            frames = cur.execute(
                "SELECT layer, count(*), max(n_rows), max(n_cols) FROM lca_frames GROUP BY layer"
            ).fetchall()
            stride = cur.execute(
                "SELECT max(value) FROM metrics WHERE key = 'lca/frame_stride'"
            ).fetchone()
            off_stride = cur.execute(
                "SELECT count(*) FROM lca_frames WHERE (step // ?) % ? <> 0",
                [every, int(stride[0])],
            ).fetchone()
            verdicts = cur.execute("SELECT state FROM health WHERE signal = 'lca'").fetchall()
    finally:
        store.close()
    assert layers == {"0": steps // every, "2": steps // every}
    assert {layer for layer, *_ in frames} == {"0", "2"}
    assert all(count <= max_frames for _, count, _, _ in frames)
    assert (frames[0][2], frames[0][3]) in ((16, 8), (3, 16))
    assert stride[0] >= 8 and off_stride == (0,)
    assert verdicts, "the lca badge was judged"
