"""The demo's batch of trainings: healthy ones and doomed ones, each doomed for a real reason.

Between them every badge ends green on some run and red on another, because of what the
training does: a GAN whose adversary catches (catch green) and one whose adversary is frozen
(catch red, auto-pruned); a GAN whose output's DC offset nothing pulls back (runaway red); an MLP
with a sane learning rate (dead_relu green) and one 20x too high (its ReLUs die); a LeakyReLU MLP
at a learning rate that overflows to NaN (nonfinite red, auto-pruned); a CNN still learning, its
LCA measured on training digits (lca green), and one memorising 64 digits, measured on digits it
never sees (held-out loss rising: lca red); two replicas sharing their initial weights and
differing only in data order, and two more with SmeLU instead of ReLU, all four recording their
held-out predictions and labels (prediction difference between replicas: repro green).

`quick` sizes the batch to finish in under three minutes on two CPU cores; the full demo trains
longer. The recipes' numbers were chosen by running them: see tests/demo for what is checked.
"""

from __future__ import annotations

from trainlight.demo.recipes import DigitsRecipe, GanRecipe, RunSpec

# The healthy CNN is judged green while it still learns; by ~350 steps its probe loss (on
# training digits) stops falling steadily and some layer hurts now and then (amber). The full
# demo trains the GANs and MLPs longer, not the CNNs.
CNN_STEPS = 300
PREDICTIONS_EVERY = 50  # replicas record their held-out predictions this often
LANDSCAPE_EVERY = 100


def _gan(
    name: str, recipe: GanRecipe, steps: int, story: str, prune_on: tuple[str, ...] = ()
) -> RunSpec:
    return RunSpec(
        name=name,
        family="gan",
        recipe=recipe,
        steps=steps,
        seed=1,
        story=story,
        group="gan",
        tags=("gan", "waveforms"),
        prune_on=prune_on,
    )


def _digits(
    name: str,
    recipe: DigitsRecipe,
    steps: int,
    story: str,
    group: str,
    seed: int = 0,
    prune_on: tuple[str, ...] = (),
    health: dict[str, int | float] | None = None,
) -> RunSpec:
    return RunSpec(
        name=name,
        family="digits",
        recipe=recipe,
        steps=steps,
        seed=seed,
        story=story,
        group=group,
        tags=("digits", recipe.model),
        prune_on=prune_on,
        health=health or {},
    )


def demo_runs(quick: bool = False) -> tuple[RunSpec, ...]:
    """Every demo training, the slowest first (so two workers finish at about the same time)."""
    return _gan_runs(900 if quick else 3000) + _digits_runs(quick)


def _gan_runs(steps: int) -> tuple[RunSpec, ...]:
    return (
        _gan("gan catches", GanRecipe(), steps, "the adversary catches: healthy GAN"),
        _gan(
            "gan dc runaway",
            GanRecipe(dc_init=2.0, mean_blind=True, adversary_weight=0.0, roles=False),
            steps,
            "mean-blind content loss, adversary ignored: the DC offset is never pulled back",
        ),
        _gan(
            "gan frozen adversary",
            GanRecipe(adversary_lr=0.0),
            steps,
            "the adversary never learns, so it never catches: pruned",
            prune_on=("catch",),
        ),
    )


def _digits_runs(quick: bool) -> tuple[RunSpec, ...]:
    cnn, mlp = CNN_STEPS, (600 if quick else 2000)
    # Replicas as the reproducibility literature defines them: one initialisation (init_seed),
    # the run's seed orders the batches.
    healthy = DigitsRecipe(predictions_every=PREDICTIONS_EVERY, init_seed=0)
    smooth = DigitsRecipe(activation="smelu", predictions_every=PREDICTIONS_EVERY, init_seed=0)
    replica_story = "replica: the healthy MLP's config and initial weights, another data order"
    smelu_story = "replica with SmeLU instead of ReLU: same initial weights, another data order"
    return (
        _digits(
            "cnn lca",
            DigitsRecipe(model="cnn", lr=0.005, lca_every=2),
            cnn,
            "a small CNN still learning: every layer lowers the probe loss",
            "digits-cnn",
        ),
        _digits(
            "cnn labels off by one",
            DigitsRecipe(model="cnn", lr=0.005, lca_every=2, probe="held_out", label_shift=1),
            cnn,
            "trains on labels shifted by one (a data bug); LCA on correctly labelled held-out "
            "digits: every step makes their loss worse",
            "digits-cnn",
        ),
        _digits(
            "mlp",
            DigitsRecipe(landscape_every=LANDSCAPE_EVERY),
            mlp,
            "a healthy MLP; a loss-surface slice through its weights every 100 steps",
            "digits-mlp",
        ),
        _digits(
            "mlp lr=1",
            DigitsRecipe(lr=1.0),
            mlp,
            "learning rate 20x too high: the ReLUs die",
            "digits-mlp",
        ),
        _digits(
            "mlp lr jump",
            DigitsRecipe(lr_jump=20.0, lr_jump_at=300),
            mlp,
            "the schedule restarts 20x too hot at step 300: the loss spikes and never comes "
            "back: pruned",
            "digits-mlp",
            prune_on=("spike",),
        ),
        _digits(
            "mlp leaky lr=2",
            DigitsRecipe(activation="leaky_relu", lr=2.0),
            mlp,
            "learning rate 40x too high, leaky units cannot die: the loss overflows to NaN",
            "digits-mlp",
            prune_on=("nonfinite",),
        ),
        _digits(
            "mlp wide 150 digits",
            DigitsRecipe(width=512, train_size=150, batch=32),
            mlp,
            "a wide MLP on 150 digits: its validation loss rises as it grows sure of the "
            "digits it gets wrong, while its accuracy holds: amber, never red",
            "digits-overfit",
        ),
        _digits(
            "mlp wide 150 noisy labels",
            DigitsRecipe(width=512, train_size=150, batch=32, label_noise=0.4),
            mlp,
            "the same on labels 40% random: it memorises the noise and its held-out accuracy "
            "falls: overfit, pruned",
            "digits-overfit",
            prune_on=("overfit",),
        ),
        _digits(
            "mlp deep sigmoid",
            DigitsRecipe(activation="sigmoid", depth=8, init_std=0.01, lr=0.1),
            mlp,
            "eight sigmoid layers from a tiny init: no gradient reaches the first layers and "
            "the loss never moves: gradients vanish, pruned",
            "digits-mlp",
            prune_on=("gradients",),
        ),
        _digits(
            "mlp hangs",
            DigitsRecipe(hang_at=400, hang_seconds=60.0),
            mlp,
            "its data loader hangs at step 400 while the process lives: stalled, pruned "
            "(the demo's stall floor is 5 s; the default, 15 min, leaves room for evaluations)",
            "digits-mlp",
            prune_on=("progress",),
            health={"progress_stall_floor": 5.0},
        ),
        _digits("mlp replica seed=1", healthy, mlp, replica_story, "replicas", seed=1),
        _digits("mlp replica seed=2", healthy, mlp, replica_story, "replicas", seed=2),
        _digits("mlp smelu seed=1", smooth, mlp, smelu_story, "replicas-smelu", seed=1),
        _digits("mlp smelu seed=2", smooth, mlp, smelu_story, "replicas-smelu", seed=2),
    )
