"""The signals the pruners and stoppers of sweeps (Optuna, Ray Tune) act on unless told otherwise:
the everyday ones that say a run wastes its compute, whatever its model. GAN- and probe-specific
signals (`catch`, `runaway`, `lca`) are named explicitly by those who log them."""

DEFAULT_SIGNALS = ("nonfinite", "spike", "gradients", "overfit", "progress")
