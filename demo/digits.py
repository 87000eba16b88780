"""The classifier family: small MLPs and CNNs on scikit-learn's bundled handwritten digits.

`load_digits` ships with scikit-learn (1,797 8x8 images, no download). The split is fixed, so
replicas that differ only in seed see the same digits; the seed sets the batch order and, unless
the recipe fixes `init_seed`, the initial weights. Instrumented only through the public Monitor
API: `watch` for dead ReLUs and NaN, `lca` for Loss Change Allocation on a fixed probe batch,
`log` for the curves.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from trainlight.collectors import Monitor, SmeLU
from trainlight.demo.recipes import DigitsRecipe

HELD_OUT = 297  # digits never trained on: 1,500 remain for training
PROBE_SIZE = 256
SPLIT_SEED = 0
EVAL_EVERY = 25  # steps between held-out evaluations


@dataclass(frozen=True)
class Digits:
    images: torch.Tensor  # [n, 1, 8, 8], pixel values scaled to [0, 1]
    labels: torch.Tensor  # [n]
    train: torch.Tensor  # indices
    held_out: torch.Tensor  # indices


def load_digits_split() -> Digits:
    """The digits as tensors, with a fixed train / held-out split."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise SystemExit(
            "the digits trainings need scikit-learn: pip install 'trainlight[demo]'"
        ) from exc
    bunch = load_digits()
    images = torch.tensor(bunch.data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    labels = torch.tensor(bunch.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SPLIT_SEED))
    return Digits(images, labels, order[:-HELD_OUT], order[-HELD_OUT:])


def build_model(recipe: DigitsRecipe) -> nn.Sequential:
    """The recipe's network; layer names are the Sequential indices ('2', '4', ...)."""

    def act() -> nn.Module:
        if recipe.activation == "smelu":
            return SmeLU(beta=recipe.smelu_beta)
        plain = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}.get(recipe.activation)
        return plain() if plain is not None else nn.LeakyReLU(0.01)

    if recipe.model == "mlp":
        layers: list[nn.Module] = [nn.Flatten()]
        width_in = 64
        for _ in range(recipe.depth):
            linear = nn.Linear(width_in, recipe.width)
            if recipe.init_std is not None:
                nn.init.normal_(linear.weight, std=recipe.init_std)
                nn.init.zeros_(linear.bias)
            layers += [linear, act()]
            width_in = recipe.width
        return nn.Sequential(*layers, nn.Linear(width_in, 10))
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        act(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        act(),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10),
    )


def mlp() -> nn.Sequential:
    """The default recipe's network (MLP, ReLU), for `trainlight landscape --model
    trainlight.demo.digits:mlp` with a state_dict saved from such a run."""
    return build_model(DigitsRecipe())


def probe_loss(model: nn.Module) -> torch.Tensor:
    """Cross-entropy on a fixed batch of held-out digits (`--probe
    trainlight.demo.digits:probe_loss`)."""
    images, labels = _held_out_probe()
    return nn.functional.cross_entropy(model(images), labels)


@functools.cache
def _held_out_probe() -> tuple[torch.Tensor, torch.Tensor]:
    """Loaded once per process: probe_loss runs once per point of a surface."""
    data = load_digits_split()
    probe = data.held_out[:PROBE_SIZE]
    return data.images[probe], data.labels[probe]


@dataclass(frozen=True)
class Training:
    """One training's state: the model, its optimiser and schedule, its batch stream and the
    labels it trains on (per digit: the recipe's shift and noise applied)."""

    model: nn.Sequential
    opt: torch.optim.SGD
    schedule: torch.optim.lr_scheduler.ExponentialLR
    batches: Iterator[torch.Tensor]
    labels: torch.Tensor


def start_training(recipe: DigitsRecipe, seed: int, data: Digits) -> Training:
    """The initial weights come from `recipe.init_seed` (or `seed`), the batch order from `seed`."""
    torch.manual_seed(seed if recipe.init_seed is None else recipe.init_seed)
    model = build_model(recipe)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum)
    schedule = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=recipe.lr_decay)
    train = data.train[: recipe.train_size] if recipe.train_size else data.train
    batches = shuffled_batches(train, recipe.batch, torch.Generator().manual_seed(seed))
    return Training(model, opt, schedule, batches, training_labels(recipe, data))


def training_labels(recipe: DigitsRecipe, data: Digits) -> torch.Tensor:
    """Every digit's label as the recipe trains on it: shifted, and `label_noise` of the
    training digits given a random class (fixed: the same digits and classes every run)."""
    labels = (data.labels + recipe.label_shift) % 10
    if recipe.label_noise:
        noise = torch.Generator().manual_seed(SPLIT_SEED + 1)
        flip = data.train[torch.rand(len(data.train), generator=noise) < recipe.label_noise]
        labels[flip] = torch.randint(0, 10, (len(flip),), generator=noise)
    return labels


def train_step(
    training: Training,
    data: Digits,
    measure: AbstractContextManager[object] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step on the next batch (the optimiser step inside `measure`): (loss, accuracy)."""
    idx = next(training.batches)
    logits = training.model(data.images[idx])
    labels = training.labels[idx]
    loss = nn.functional.cross_entropy(logits, labels)
    training.opt.zero_grad()
    loss.backward()
    with measure or nullcontext():
        training.opt.step()
    training.schedule.step()
    return loss, (logits.argmax(1) == labels).float().mean()


def train_digits(mon: Monitor, recipe: DigitsRecipe, steps: int, seed: int) -> None:
    """Train for `steps` steps (fewer if `mon` asks to stop), reporting to `mon`."""
    data = load_digits_split()
    probe = data.held_out if recipe.probe == "held_out" else data.train
    probe_x, probe_y = data.images[probe[:PROBE_SIZE]], data.labels[probe[:PROBE_SIZE]]
    training = start_training(recipe, seed, data)
    model = training.model
    mon.watch(model, every=1, window=2048)
    lca = None
    if recipe.lca_every:
        lca = mon.lca(
            model,
            lambda m: nn.functional.cross_entropy(m(probe_x), probe_y),
            every=recipe.lca_every,
        )
    if recipe.landscape_every:
        mon.landscape(
            model,
            lambda m: nn.functional.cross_entropy(m(probe_x), probe_y),
            every=recipe.landscape_every,
        )
    for step in range(steps):
        if recipe.hang_seconds and step == recipe.hang_at:
            hang(mon, recipe.hang_seconds)
        if recipe.lr_jump != 1.0 and step == recipe.lr_jump_at:
            for group in training.opt.param_groups:
                group["lr"] *= recipe.lr_jump
        loss, acc = train_step(training, data, lca.measure(step) if lca else None)
        mon.log(step, loss=loss, acc=acc)
        if step % EVAL_EVERY == 0 or step == steps - 1:
            mon.log(step, **held_out_scores(model, data))
        if recipe.predictions_every and step % recipe.predictions_every == 0:
            probs = held_out_probabilities(model, data)
            labels = data.labels[data.held_out]
            mon.predictions(step, probs, every=recipe.predictions_every, labels=labels)
        if mon.should_stop():
            break


def hang(mon: Monitor, seconds: float) -> None:
    """Make no step for `seconds` (a stuck data loader), or until the run is stopped."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not mon.should_stop():
        time.sleep(0.1)


def shuffled_batches(
    indices: torch.Tensor, batch: int, rng: torch.Generator
) -> Iterator[torch.Tensor]:
    """Endless minibatches: a new permutation each epoch, cut into batches (last may be short)."""
    while True:
        order = indices[torch.randperm(len(indices), generator=rng)]
        yield from order.split(batch)


def held_out_probabilities(model: nn.Module, data: Digits) -> torch.Tensor:
    """Predicted class probabilities of the held-out digits, always in the same order (the probe
    set replicas are compared on)."""
    with torch.no_grad():
        return torch.softmax(model(data.images[data.held_out]), dim=1)


def held_out_scores(model: nn.Module, data: Digits) -> dict[str, torch.Tensor]:
    """Loss and accuracy on the digits the model never trains on."""
    with torch.no_grad():
        logits = model(data.images[data.held_out])
        labels = data.labels[data.held_out]
        return {
            "val_loss": nn.functional.cross_entropy(logits, labels),
            "val_acc": (logits.argmax(1) == labels).float().mean(),
        }
