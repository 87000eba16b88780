"""A scripted training process for the multi-process tests: real Monitor, real store.

It logs deterministic values so a test can check that every row arrived exactly once:
step s logs `loss = 1/(s+1)`, `step_copy = s`, `tensor_loss` as a 0-d tensor.
Prints `run_id <id>` once started, `progress <step> <unix time>` periodically, and
`stopped <step> <unix time>` if it saw a stop request.
"""

from __future__ import annotations

import argparse
import time

import torch

from trainlight.collectors import Monitor


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--run", default="trainer")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--flush-interval", type=float, default=0.5)
    parser.add_argument("--step-sleep", type=float, default=0.0)
    parser.add_argument("--progress-every", type=int, default=100)
    args = parser.parse_args()
    with Monitor(
        run=args.run,
        project="tests",
        store=args.store,
        config=vars(args),
        flush_interval=args.flush_interval,
        heartbeat_interval=2.0,
    ) as mon:
        print("run_id", mon.run_id, flush=True)
        for step in range(args.steps):
            mon.log(
                step,
                loss=1.0 / (step + 1),
                step_copy=float(step),
                tensor_loss=torch.tensor(2.0 / (step + 1)),
            )
            if step % args.progress_every == 0:
                print("progress", step, time.time(), flush=True)
            if mon.should_stop():
                print("stopped", step, time.time(), flush=True)
                break
            if args.step_sleep:
                time.sleep(args.step_sleep)
    print("done", flush=True)


if __name__ == "__main__":
    main()
