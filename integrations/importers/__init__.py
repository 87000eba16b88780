"""Importers: runs already logged by TensorBoard or trackio, as trainlight runs, for triage.

`trainlight import tensorboard LOGDIR` and `trainlight import trackio DB` read the other tool's
files with its own reader (TensorBoard's record reader) or read-only (trackio's SQLite), and send
each run through the collectors' own wire format and transports (inbox or HTTP), so the store
ingests and judges them like any collector's run. Imports are idempotent: run ids and segment
sequence numbers are derived from the source, never drawn at random (segments.py).

Each module imports what it reads at import time; this package itself imports nothing, so the
app can name `command` lazily and never load TensorBoard (or torch) on its own.
"""
