"""`trainlight demo`: a batch of real small trainings, healthy and doomed, live in the dashboard.

Two halves. The orchestration (catalogue, recipes, events, jobs, progress, dashboard, command) is
torch-free, so the `trainlight` command imports it without torch. The trainings (train, gan,
digits, waveforms) import torch and run only inside the training subprocesses, each instrumented
through the public collector API alone, as a user's training script would be.
"""
