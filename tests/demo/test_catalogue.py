"""The demo's run specs survive the trip to a training process; the catalogue is consistent."""

from __future__ import annotations

import json

import pytest

from trainlight.collectors.health.registry import signal_names
from trainlight.collectors.health.settings import HealthSettings
from trainlight.demo.catalogue import demo_runs
from trainlight.demo.events import PREFIX, Event, encode, parse
from trainlight.demo.recipes import DigitsRecipe, GanRecipe, RunSpec


@pytest.mark.parametrize("quick", [True, False])
def test_every_spec_round_trips_through_json(quick: bool) -> None:
    for spec in demo_runs(quick):
        assert RunSpec.from_json(spec.to_json()) == spec


def test_the_catalogue_names_are_unique_and_its_settings_valid() -> None:
    quick, full = demo_runs(quick=True), demo_runs(quick=False)
    assert [s.name for s in quick] == [s.name for s in full]
    assert len({s.name for s in quick}) == len(quick)
    for short, long in zip(quick, full, strict=True):
        assert short.steps <= long.steps
        assert set(short.prune_on) <= set(signal_names())
        HealthSettings.from_dict(short.health)  # raises on an unknown or bad setting
        assert short.config()["total_steps"] == short.steps


def test_config_carries_the_planned_length_seed_and_recipe() -> None:
    spec = RunSpec("r", "digits", DigitsRecipe(lr=0.5), steps=70, seed=3, story="s")
    config = spec.config()
    assert (config["total_steps"], config["seed"], config["lr"], config["story"]) == (
        70,
        3,
        0.5,
        "s",
    )
    json.dumps(config)  # stored as the run's JSON config


def test_bad_specs_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="does not match its recipe"):
        RunSpec("r", "gan", DigitsRecipe(), steps=10, seed=0, story="")
    with pytest.raises(ValueError, match="steps must be >= 1"):
        RunSpec("r", "gan", GanRecipe(), steps=0, seed=0, story="")
    with pytest.raises(ValueError, match="model must be 'mlp' or 'cnn'"):
        DigitsRecipe(model="resnet")
    with pytest.raises(ValueError, match=r"lr_decay must be in \(0, 1\], got 1.5"):
        DigitsRecipe(lr_decay=1.5)
    with pytest.raises(ValueError, match="smelu_beta must be > 0, got 0"):
        DigitsRecipe(smelu_beta=0)
    good = json.loads(RunSpec("r", "gan", GanRecipe(), steps=5, seed=0, story="").to_json())
    with pytest.raises(ValueError, match="unknown run family 'vae'"):
        RunSpec.from_json(json.dumps({**good, "family": "vae"}))
    with pytest.raises(ValueError, match=r"unknown run spec fields \['colour'\]"):
        RunSpec.from_json(json.dumps({**good, "colour": "red"}))


def test_events_round_trip_and_other_output_is_ignored() -> None:
    events = [
        Event("start", run_id="mlp-0a1b2c3d", total_steps=600),
        Event("step", step=41),
        Event("end", step=77, status="stopped", reason="auto-pruned: nonfinite red: loss = NaN"),
    ]
    for event in events:
        line = encode(event)
        assert "\n" not in line and parse(line) == event
    assert parse("epoch 3 loss 0.1") is None
    assert parse(PREFIX + "{not json") is None
    assert parse(PREFIX + '{"kind": "explode"}') is None
    assert parse(PREFIX + '{"step": 3}') is None
