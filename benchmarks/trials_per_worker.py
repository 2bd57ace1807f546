"""Trials per hour of one worker that trains K trials of one shape together (``trials_per_worker: K``).

    .venv/bin/python benchmarks/trials_per_worker.py           # K = 1, 2, 4, 8 at S = 202: about a minute on 2 cores
    .venv/bin/python benchmarks/trials_per_worker.py --channels 1   # S = 138: structure.yaml's network
    .venv/bin/python benchmarks/trials_per_worker.py --smoke   # seconds

Each measurement runs the same 8 trials (digits, hidden_channels 2 so S = 202, T = 3, batch 128, the ``train``
defaults otherwise, 8 settings of seed and locality strength like a small sweep) through the real ``run_trials``, K
at a time (``--channels`` sets the hidden channels, so S = 64 (1 + channels) + 10): data loading, training, epoch
metrics, structure snapshots and the final structure report are all inside the time; Ray and MLflow are not. The K
values take turns in each repeat, so load from other users of a shared machine falls on all of them; medians are
reported.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

from urn_study.config import parse_config  # noqa: E402
from urn_study.model import pick_device  # noqa: E402
from urn_study.trial import run_trials  # noqa: E402

LOCALITY = (0.0, 1e-4, 3e-4, 1e-3)


def sweep(n_trials: int, epochs: int, channels: int = 2) -> list:
    """A small sweep of one shape: seeds and locality strengths vary, the group key does not."""
    return [
        parse_config(
            {
                "seed": i,
                "data.name": "digits",
                "model.hidden_channels": channels,
                "model.steps": 3,
                "train.epochs": epochs,
                "regulators.l1": 1e-4,
                "regulators.locality": LOCALITY[i % len(LOCALITY)],
            }
        )
        for i in range(n_trials)
    ]


def seconds_for(configs: list, k: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(configs), k):
        run_trials(configs[i : i + k])
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--channels", type=int, default=2, help="hidden channels: S = 64 (1 + channels) + 10")
    parser.add_argument("--smoke", action="store_true", help="K = 1 and 2, one epoch, once: seconds")
    args = parser.parse_args(argv)
    if args.smoke:
        args.ks, args.epochs, args.repeats = [1, 2], 1, 1

    n_trials = math.lcm(*args.ks)  # every K divides it: 8 for the default K
    configs = sweep(n_trials, args.epochs, args.channels)
    print("trials_per_worker |", describe(pick_device(configs[0].train.device)))
    size = 64 * (1 + args.channels) + 10
    print(
        f"{n_trials} trials per measurement: digits, S = {size}, T = 3, batch 128, {args.epochs} epochs, "
        f"structure every 5 epochs and at the end; medians of {args.repeats} repeats"
    )
    run_trials([parse_config({"data.name": "digits", "model.hidden_channels": args.channels, "train.epochs": 1})])  # warm-up
    samples: dict[int, list[float]] = {k: [] for k in args.ks}
    for _ in range(args.repeats):
        for k in args.ks:
            samples[k].append(seconds_for(configs, k))
    base = n_trials / statistics.median(samples[args.ks[0]]) * 3600
    print(f"{'K':>3} {'s per trial':>12} {'trials/hour':>12} {'vs K=' + str(args.ks[0]):>8}   seconds of each repeat")
    for k in args.ks:
        seconds = statistics.median(samples[k])
        per_hour = n_trials / seconds * 3600
        print(
            f"{k:>3} {seconds / n_trials:>12.3f} {per_hour:>12.0f} {per_hour / base:>8.2f}   "
            + " ".join(f"{s:.2f}" for s in samples[k])
        )


if __name__ == "__main__":
    main()
