"""What one demo training is: a recipe (the knobs its training code reads) and its run metadata.

A `RunSpec` crosses a process boundary: the torch-free orchestrator builds it, serialises it to
JSON on the training subprocess's command line, and `trainlight.demo.train` rebuilds it. The
recipes are the trainings' real hyper-parameters; nothing in them names a verdict. The verdicts
come from what the training then does.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class GanRecipe:
    """A conditional GAN on generated waveforms: L1 content loss plus an LSGAN adversary.

    `adversary_lr=0` freezes the adversary. `mean_blind` makes the content loss ignore each
    sample's mean (as a DC-removing pre-filter would); with `adversary_weight=0` nothing then
    pulls the output's DC offset (started at `dc_init`) back to the real data's.
    """

    adversary_lr: float = 2e-3
    adversary_weight: float = 0.05
    dc_init: float = 0.0
    mean_blind: bool = False
    roles: bool = True  # declare the GAN roles (enables `catch`)


ACTIVATIONS = ("relu", "leaky_relu", "smelu", "sigmoid", "tanh")


@dataclass(frozen=True)
class DigitsRecipe:
    """A classifier on scikit-learn's bundled 8x8 handwritten digits, SGD with momentum.

    `model`: "mlp" (`depth` hidden layers, two by default) or "cnn" (two conv layers).
    `activation`: "relu", "leaky_relu", "sigmoid" or "tanh"; `init_std` draws the MLP's weights from
    N(0, init_std²) with zero biases (None: PyTorch's default). `hang_seconds` > 0 stops the
    loop at step `hang_at` for that long (a stuck data loader: the process lives, no step
    comes), unless the run is stopped meanwhile. `train_size`: how many digits
    it trains on (0: every digit not held out).
    `lca_every` > 0 measures Loss Change Allocation on a fixed probe batch, drawn from the
    training digits or, with `probe="held_out"`, from digits it never trains on (correctly
    labelled). `label_shift` k trains on labels (y + k) mod 10: an off-by-one labelling bug.
    `activation="smelu"` uses trainlight's Smooth ReLU. `predictions_every` > 0 records the
    held-out digits' predicted probabilities every that many steps (replica comparison);
    `landscape_every` > 0 takes a loss-surface slice through the weights that often.
    `init_seed` (None: the run's seed) seeds the initial weights alone, the run's seed then only
    orders the batches: replicas as the reproducibility literature defines them share their
    initialisation and differ in data order. `lr_decay` multiplies the learning rate after every
    step (1: constant). `smelu_beta` is SmeLU's half-width (pre-activations here are O(1)).
    `lr_jump` > 1 multiplies the learning rate by that at step `lr_jump_at`: a schedule that
    restarts far too hot mid-run. `width`: the MLP's hidden units per layer. `label_noise`
    replaces that fraction of the training labels with random classes (the same digits every
    run): a wide MLP on few digits memorises them and its held-out accuracy falls.
    """

    model: str = "mlp"
    activation: str = "relu"
    lr: float = 0.05
    momentum: float = 0.9
    batch: int = 64
    train_size: int = 0
    lca_every: int = 0
    probe: str = "train"
    label_shift: int = 0
    predictions_every: int = 0
    landscape_every: int = 0
    init_seed: int | None = None
    lr_decay: float = 1.0
    smelu_beta: float = 0.5
    lr_jump: float = 1.0
    lr_jump_at: int = 0
    width: int = 64
    label_noise: float = 0.0
    depth: int = 2
    init_std: float | None = None
    hang_at: int = 0
    hang_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.model not in ("mlp", "cnn"):
            raise ValueError(f"model must be 'mlp' or 'cnn', got {self.model!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.depth < 1:
            raise ValueError(f"depth must be >= 1, got {self.depth!r}")
        if self.probe not in ("train", "held_out"):
            raise ValueError(f"probe must be 'train' or 'held_out', got {self.probe!r}")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1], got {self.lr_decay!r}")
        if not 0 <= self.label_noise <= 1:
            raise ValueError(f"label_noise must be in [0, 1], got {self.label_noise!r}")
        if not self.smelu_beta > 0:
            raise ValueError(f"smelu_beta must be > 0, got {self.smelu_beta!r}")


RECIPES: dict[str, type[GanRecipe] | type[DigitsRecipe]] = {
    "gan": GanRecipe,
    "digits": DigitsRecipe,
}


@dataclass(frozen=True)
class RunSpec:
    """One demo training: its recipe, its length and how it is described in the store."""

    name: str
    family: str  # a key of RECIPES
    recipe: GanRecipe | DigitsRecipe
    steps: int  # the planned length; a pruned run stops earlier
    seed: int
    story: str  # one line: what this run shows
    project: str = "trainlight-demo"
    group: str = ""
    tags: tuple[str, ...] = ()
    prune_on: tuple[str, ...] = ()
    health: dict[str, int | float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        expected = RECIPES.get(self.family)
        if expected is None or not isinstance(self.recipe, expected):
            raise ValueError(f"run {self.name!r}: family {self.family!r} does not match its recipe")
        if self.steps < 1:
            raise ValueError(f"run {self.name!r}: steps must be >= 1, got {self.steps}")

    def config(self) -> dict[str, Any]:
        """The run's config as stored: `total_steps` (planned length), seed, the recipe, story."""
        return {
            "total_steps": self.steps,
            "seed": self.seed,
            **asdict(self.recipe),
            "story": self.story,
        }

    def to_json(self) -> str:
        data = asdict(self)
        data["tags"], data["prune_on"] = list(self.tags), list(self.prune_on)
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        data = json.loads(text)
        recipe_type = RECIPES.get(data.get("family", ""))
        if recipe_type is None:
            raise ValueError(f"unknown run family {data.get('family')!r}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown run spec fields {sorted(unknown)}")
        data["recipe"] = recipe_type(**data["recipe"])
        data["tags"], data["prune_on"] = tuple(data["tags"]), tuple(data["prune_on"])
        return cls(**data)
