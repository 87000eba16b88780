"""`TrainlightStopper` and `monitor_for_trial` in a real local Ray Tune sweep against a real
`trainlight serve`: the trial whose learning rate blows its loss up is stopped by Tune soon after
its run turns red, the healthy one runs to its end; and the stopper's own server checks are
cached, bounded in time, and harmless when the server is down."""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

ray = pytest.importorskip("ray")
tune = pytest.importorskip("ray.tune")

import duckdb  # noqa: E402
import torch  # noqa: E402

from tests.support.server import LiveServer, running_server, wait_until  # noqa: E402
from trainlight.collectors import Monitor  # noqa: E402
from trainlight.collectors.deadline_http import DeadlineClient  # noqa: E402
from trainlight.integrations.ray import (  # noqa: E402
    RUN_ID_KEY,
    TrainlightStopper,
    TrialStop,
    monitor_for_trial,
    report,
)

pytestmark = pytest.mark.timeout(150)

FLUSH = 0.3
STEPS = 200
REPORT_EVERY = 10
HEALTHY_LR, DOOMED_LR = 0.05, 100.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with running_server(tmp_path_factory.mktemp("ray") / "store") as live:
        yield live


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Two CPUs, no dashboard, quiet; the trials' outbox in the test's folder (workers inherit
    the environment ray.init starts them with)."""
    env = {
        "TRAINLIGHT_OUTBOX": str(tmp_path_factory.mktemp("outbox")),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    with mock.patch.dict(os.environ, env):
        os.environ.pop("TRAINLIGHT_TOKEN", None)
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
            configure_logging=False,
        )
        try:
            yield
        finally:
            ray.shutdown()


def linear_regression(url: str) -> Callable[[dict[str, Any]], None]:
    """A trainable: full-batch gradient descent on generated data, logged every step,
    reported to Tune every REPORT_EVERY steps. At lr 100 the loss overflows to Inf by step ~8."""

    def trainable(config: dict[str, Any]) -> None:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(256, 8, generator=gen)
        y = x @ torch.randn(8, generator=gen) + 0.1 * torch.randn(256, generator=gen)
        w = torch.zeros(8)
        with monitor_for_trial(config, store=url, project="ray", flush_interval=FLUSH) as mon:
            for step in range(STEPS):
                err = x @ w - y
                loss = (err**2).mean()
                w = w - config["lr"] * 2 * x.T @ err / len(y)
                mon.log(step, loss=loss)
                time.sleep(0.005)  # a step's worth of time, so that flushes fall inside the run
                if step % REPORT_EVERY == REPORT_EVERY - 1:
                    report(mon, {"loss": float(loss), "step": step})

    return trainable


def test_the_trial_that_turns_red_is_stopped_and_the_healthy_one_completes(
    local_ray: None, tmp_path: Path
) -> None:
    with running_server(tmp_path / "store") as server:
        stopper = TrainlightStopper(server.base_url, poll_interval_s=FLUSH)
        tuner = tune.Tuner(
            linear_regression(server.base_url),
            param_space={"lr": tune.grid_search([HEALTHY_LR, DOOMED_LR])},
            run_config=tune.RunConfig(
                name="linreg", storage_path=str(tmp_path / "ray"), stop=stopper, verbose=0
            ),
        )
        results = {r.config["lr"]: r for r in tuner.fit()}
        runs = {lr: _ended(server, r.metrics[RUN_ID_KEY]) for lr, r in results.items()}
        losses = _logged_loss(server, results[DOOMED_LR].metrics[RUN_ID_KEY])

    healthy, doomed = results[HEALTHY_LR], results[DOOMED_LR]
    assert healthy.error is None and doomed.error is None
    assert healthy.metrics["training_iteration"] == STEPS // REPORT_EVERY
    assert doomed.metrics["training_iteration"] < STEPS // REPORT_EVERY / 2
    assert not math.isfinite(doomed.metrics["loss"])

    assert list(stopper.stopped) == [doomed.metrics["trial_id"]]
    stop = stopper.stopped[doomed.metrics["trial_id"]]
    assert stop.run_id == doomed.metrics[RUN_ID_KEY] and stop.signal == "nonfinite"
    assert stop.reason.startswith("auto-pruned: nonfinite red: loss = ")

    assert runs[HEALTHY_LR]["status"] == "finished"
    assert runs[HEALTHY_LR]["last_step"] == STEPS - 1
    assert "red" not in runs[HEALTHY_LR]["health"].values()
    assert runs[DOOMED_LR]["status"] == "stopped", runs[DOOMED_LR]["stop_reason"]
    assert runs[DOOMED_LR]["stop_reason"] == stop.reason
    assert runs[DOOMED_LR]["health"]["nonfinite"] == "red"
    for lr, result in results.items():
        run = runs[lr]
        assert run["group"] == "linreg" and run["project"] == "ray"
        assert run["config"]["lr"] == lr
        assert run["config"]["ray"]["trial_id"] == result.metrics["trial_id"]
        assert run["name"] == run["config"]["ray"]["trial_name"]

    first_bad = next(wall for value, wall in losses if not math.isfinite(value))
    assert (losses[-1][1] - first_bad).total_seconds() <= 2 * FLUSH  # red, stopped: two flushes


def _ended(server: LiveServer, run_id: str) -> dict[str, Any]:
    """The run as the server has it once its end has been ingested."""
    return server.wait_for(
        lambda: (run := server.run(run_id)) and run["status"] != "running" and run,
        30,
        what=f"the end of run {run_id}",
    )


def _logged_loss(server: LiveServer, run_id: str) -> list[tuple[float, Any]]:
    """(value, wall time) of the run's loss rows in step order, from the store after the server
    stopped (DuckDB allows one process)."""
    server.process.terminate()
    server.process.wait(timeout=10)
    with duckdb.connect(str(server.store_dir / "trainlight.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT value, wall_time FROM metrics WHERE run_id = ? AND key = 'loss' ORDER BY step",
            [run_id],
        ).fetchall()
    return [(float(value), wall) for value, wall in rows]


# -- the stopper's own server checks --------------------------------------------------------------
def test_without_a_stop_in_the_results_the_stopper_asks_the_server(
    server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs opened without `monitor_for_trial` (no `trainlight_stop`): the server's verdict,
    with the auto-prune's reason when the run prunes on the signal, and a stop asked for on the
    API, stop the trial; a healthy run does not."""
    monkeypatch.setenv("TRAINLIGHT_OUTBOX", str(tmp_path / "outbox"))
    url = server.base_url
    pruned = Monitor("pruned", store=url, flush_interval=0.2, prune_on=("nonfinite",))
    plain = Monitor("plain", store=url, flush_interval=0.2)
    healthy = Monitor("healthy", store=url, flush_interval=0.2)
    asked = Monitor("asked", store=url, flush_interval=0.2)
    for mon in (pruned, plain, healthy, asked):
        for step in range(5):
            bad = step >= 3 and mon in (pruned, plain)
            mon.log(step, loss=math.inf if bad else 1.0 / (step + 1))
    server.wait_for(lambda: server.run(asked.run_id), 30, what="the run to reach the server")
    server.http.post(server.url(f"api/v1/runs/{asked.run_id}/stop"), json={"reason": "enough"})

    stopper = TrainlightStopper(url, signals=["nonfinite", "spike"], poll_interval_s=0.0)
    for mon in (pruned, plain, asked):
        result = {RUN_ID_KEY: mon.run_id}
        trial = f"trial-{mon.name}"
        wait_until(lambda t=trial, r=result: stopper(t, r), 30, what=f"{trial} stopped")
    wait_until(lambda: (server.run(healthy.run_id) or {}).get("last_step") == 4, 30)
    assert not stopper("trial-healthy", {RUN_ID_KEY: healthy.run_id})
    for mon in (pruned, plain, healthy, asked):
        mon.close()

    stops = {trial: (stop.signal, stop.reason) for trial, stop in stopper.stopped.items()}
    assert stops == {
        "trial-pruned": ("nonfinite", "auto-pruned: nonfinite red: loss = +Inf at step 3"),
        "trial-plain": ("nonfinite", "nonfinite red"),  # the API's health has no reasons
        "trial-asked": (None, "enough"),
    }
    assert stopper("trial-pruned", {})  # decided once, for good


def test_one_request_per_trial_per_interval_and_the_stopper_pickles(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests: list[str] = []
    real_request = DeadlineClient.request

    def counted(self: DeadlineClient, method: str, path: str, *args: Any, **kw: Any) -> Any:
        requests.append(path)
        return real_request(self, method, path, *args, **kw)

    monkeypatch.setattr(DeadlineClient, "request", counted)
    now = [100.0]
    stopper = TrainlightStopper(server.base_url, poll_interval_s=5.0, clock=lambda: now[0])
    for _ in range(10):
        assert not stopper("a", {RUN_ID_KEY: "run-a-0000aaaa"})
        assert not stopper("b", {RUN_ID_KEY: "run-b-0000bbbb"})
    assert not stopper("c", {"loss": 1.0}) and not stopper("d", {RUN_ID_KEY: "../etc"})
    now[0] += 4.9
    assert not stopper("a", {RUN_ID_KEY: "run-a-0000aaaa"})
    assert len(requests) == 2
    now[0] += 0.1
    assert not stopper("a", {RUN_ID_KEY: "run-a-0000aaaa"})
    a, b = "/api/v1/runs/run-a-0000aaaa", "/api/v1/runs/run-b-0000bbbb"
    assert requests == [a, b, a]

    stopper.stopped["x"] = TrialStop("run-x-0000cccc", "spike", "spike red")
    # Tune saves its run config, the stopper included, with cloudpickle
    copy = ray.cloudpickle.loads(ray.cloudpickle.dumps(stopper))
    assert copy.stopped == stopper.stopped and copy("x", {})


def test_a_server_that_is_down_or_silent_costs_one_bounded_try_and_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{closed.getsockname()[1]}"  # nothing listens once closed
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        mute = f"http://127.0.0.1:{silent.getsockname()[1]}"
        for url in (down, mute):
            caplog.clear()
            stopper = TrainlightStopper(url, poll_interval_s=60.0, timeout_s=0.5)
            started = time.monotonic()
            for trial in range(20):
                assert not stopper(f"t{trial}", {RUN_ID_KEY: f"run-{trial}-0000abcd"})
            assert time.monotonic() - started < 2.0  # one try, cut off at 0.5 s
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1 and "no verdicts for now" in warnings[0].getMessage()
