"""`trainlight landscape`: the 2-D surface against the probe loss at the checkpoint, against
LossSlicer's 1-D slice along the same seed's direction, its stored JSON, and the command itself
end to end in a subprocess on a tiny model from a module written for the test: its α row at a
checkpoint equals the slice a real training recorded at that step, with the run's seed, span and
points read from the store."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from trainlight.app import cli
from trainlight.collectors.landscape_surface import (
    Surface,
    SurfaceJob,
    load_model,
    load_object,
    loss_surface,
    surface_json,
)
from trainlight.collectors.schema import StoreLayout
from trainlight.collectors.signals.landscape import LossSlicer, alphas_for

MODEL_MODULE = """
import torch
from torch import nn


def factory() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Dropout(0.5), nn.Linear(6, 3))


def probe_loss(model: nn.Module) -> torch.Tensor:
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(16, 4, generator=generator)
    y = torch.randint(0, 3, (16,), generator=generator)
    return nn.functional.cross_entropy(model(x), y)
"""


@pytest.fixture
def model_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module `surface_model_<test>` importable here and by subprocesses (PYTHONPATH)."""
    package = tmp_path / "modules"
    package.mkdir()
    (package / "surface_model.py").write_text(textwrap.dedent(MODEL_MODULE))
    monkeypatch.syspath_prepend(str(package))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(package), *sys.path]))
    return "surface_model"


def trained(module: str) -> nn.Module:
    """The factory's model with weights moved away from their initial values."""
    torch.manual_seed(3)
    model: nn.Module = load_object(f"{module}:factory")()
    probe = load_object(f"{module}:probe_loss")
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(20):
        opt.zero_grad()
        probe(model).backward()
        opt.step()
    return model


def test_the_centre_is_the_probe_loss_and_the_alpha_axis_is_the_slice(model_module: str) -> None:
    model = trained(model_module)
    probe = load_object(f"{model_module}:probe_loss")
    before = {n: p.detach().clone() for n, p in model.state_dict().items()}
    calls = []
    surface = loss_surface(
        model, probe, points=7, span=0.8, seed=5, advance=lambda: calls.append(1)
    )
    assert len(calls) == 49 and surface.alphas == surface.betas == alphas_for(7, 0.8)
    assert len(surface.losses) == 7 and all(len(row) == 7 for row in surface.losses)
    model.eval()  # the probe runs in eval mode: dropout off
    with torch.no_grad():
        centre = float(probe(model))
    assert surface.losses[3][3] == pytest.approx(centre, rel=1e-12)
    reference = LossSlicer(model.train(), probe, points=7, span=0.8, seed=5).slice()
    assert surface.losses[3] == pytest.approx(reference.losses, rel=1e-12)  # β = 0 row
    assert surface.losses[0] != pytest.approx(reference.losses)  # other rows move along d₁
    assert all(torch.equal(before[n], p) for n, p in model.state_dict().items())
    assert model.training  # each module's mode restored


def test_the_json_holds_the_grid_with_nonfinite_losses_as_null() -> None:
    surface = Surface(
        (-1.0, 0.0, 1.0), (-1.0, 0.0, 1.0), ((1.0, math.nan, 2.0),) * 2 + ((3.0,) * 3,)
    )
    job = SurfaceJob("run-1", "m:f", Path("/ckpt/model.pt"), "m:p", points=3, span=1.0, seed=4)
    created = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)
    document = json.loads(surface_json(surface, job, created))
    assert document == {
        "run_id": "run-1",
        "checkpoint": "/ckpt/model.pt",
        "points": 3,
        "span": 1.0,
        "seed": 4,
        "alphas": [-1.0, 0.0, 1.0],
        "betas": [-1.0, 0.0, 1.0],
        "losses": [[1.0, None, 2.0], [1.0, None, 2.0], [3.0, 3.0, 3.0]],
        "created_at": "2024-05-01T12:30:00+00:00",
    }
    inf = Surface((0.0,), (0.0,), ((math.inf,),))
    assert json.loads(surface_json(inf, job, created))["losses"] == [[None]]


def test_load_object_says_what_is_wrong() -> None:
    with pytest.raises(ValueError, match=r"expected 'pkg\.module:name'"):
        load_object("no_colon")
    with pytest.raises(ValueError, match="has no attribute 'missing'"):
        load_object("math:missing")
    assert load_object("math:sqrt") is math.sqrt


def test_the_command_stores_the_surface_from_a_checkpoint(
    tmp_path: Path, model_module: str
) -> None:
    model = trained(model_module)
    checkpoint = tmp_path / "model.pt"
    torch.save(model.state_dict(), checkpoint)
    store = tmp_path / "store"
    command = [sys.executable, "-m", "trainlight.app.cli", "landscape", "run-abc"]
    command += ["--model", f"{model_module}:factory", "--checkpoint", str(checkpoint)]
    command += ["--probe", f"{model_module}:probe_loss", "--points", "5", "--span", "0.5"]
    command += ["--seed", "2", "--dir", str(store)]
    started = dt.datetime.now(dt.UTC)
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    path = StoreLayout.resolve(store).surface_path("run-abc")
    assert path == store.absolute() / "surfaces" / "run-abc.json"
    assert str(path) in done.stdout
    document = json.loads(path.read_text())
    described = (document["run_id"], document["points"], document["span"], document["seed"])
    assert described == ("run-abc", 5, 0.5, 2)
    assert document["checkpoint"] == str(checkpoint)
    assert document["alphas"] == document["betas"] == list(alphas_for(5, 0.5))
    probe = load_object(f"{model_module}:probe_loss")
    want = loss_surface(model, probe, points=5, span=0.5, seed=2).losses
    assert document["losses"] == [pytest.approx(list(row), rel=1e-12) for row in want]
    assert dt.datetime.fromisoformat(document["created_at"]) >= started.replace(microsecond=0)
    assert not [p for p in path.parent.iterdir() if p != path]  # no temporary left behind


def test_the_command_refuses_bad_arguments_with_the_value(
    tmp_path: Path, model_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """In process (the command's own `main`): the end-to-end subprocess is the test above."""
    base = ["landscape", "--model", f"{model_module}:factory"]
    base += ["--probe", f"{model_module}:probe_loss"]
    base += ["--checkpoint", str(tmp_path / "missing.pt"), "--dir", str(tmp_path)]
    given = ["--seed", "0", "--span", "1", "--points", "5"]
    for extra, message in (
        (["run-x", "--seed", "0", "--span", "1", "--points", "4"], "odd and >= 5, got 4"),
        (["Bad Id!", *given], "invalid run id"),
        (["run-x", *given], "missing.pt"),
        (["run-x", "--seed", "3"], "pass --span, --points"),
    ):
        try:
            code = cli.main(base + extra)
        except SystemExit as exit:
            code = exit.code
        stderr = capsys.readouterr().err
        assert code == 2 and message in stderr, stderr
    assert not (tmp_path / "surfaces").exists()


def test_the_demo_digits_factory_and_probe_fit_the_command(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    model = load_object("trainlight.demo.digits:mlp")()
    checkpoint = tmp_path / "digits.pt"
    torch.save(model.state_dict(), checkpoint)
    job = SurfaceJob("digits-1", "trainlight.demo.digits:mlp", checkpoint, "m:p", points=5)
    loaded = load_model(job)
    probe = load_object("trainlight.demo.digits:probe_loss")
    surface = loss_surface(loaded, probe, points=5, span=1.0)
    with torch.no_grad():
        assert surface.losses[2][2] == pytest.approx(float(probe(model.eval())), rel=1e-12)
    assert all(math.isfinite(v) for row in surface.losses for v in row)
