"""What measuring a W by lesions costs a trial: the untrained null once, then every snapshot and the final W.

    .venv/bin/python benchmarks/lesion_cost.py            # S = 202 and 1034 on digits, T = 3: about two minutes
    .venv/bin/python benchmarks/lesion_cost.py --smoke    # S = 202 only, once: seconds

For each size, a trial is trained for a few epochs through the real ``run_trial`` (digits, hidden_channels 2
or 15, T = 3, l1 1e-4), then its final W is measured as the trial measures it (``urn_study.reading.measure``: the
functional report with every lesion and the |W| descriptors at every snapshot, the degree-keeping shuffle
too at the final one) on its 450 held-out samples, ``--repeats`` times; the null (W0, with its random
reference networks; once per trial, and shared by the trials of a worker with the same seed, model and data)
likewise. Printed: median
seconds of each part, the lesion passes it ran (real forward runs of the network, batched), and what the
default schedule costs a 30-epoch trial (6 snapshots + the null) against that trial's training time (30 times
the median epoch of the training run, the measured last epoch left out).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

import urn_study.reading.function as function  # noqa: E402
from urn_study.config import parse_config, to_flat  # noqa: E402
from urn_study.data import load_dataset  # noqa: E402
from urn_study.model import pick_device  # noqa: E402
from urn_study.reading.measure import measure, measure_null, probe_of  # noqa: E402
from urn_study.trial import run_trial  # noqa: E402

SIZES = {202: 2, 1034: 15}  # S -> hidden channels on digits (64 inputs, 10 outputs)


def timed(repeats: int, call) -> tuple[float, object]:
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def counted_runs(call) -> tuple[object, int, int]:
    """Call with ``urn_study.reading.function.run`` counted: (result, forward runs, lesions in them)."""
    original, calls = function.run, []

    def counting(net, x, masks=None, means=None, weights=None):
        calls.append(1 if masks is None else len(masks))
        return original(net, x, masks, means, weights)

    function.run = counting
    try:
        return call(), len(calls), sum(calls)
    finally:
        function.run = original


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=sorted(SIZES), choices=sorted(SIZES))
    parser.add_argument("--epochs", type=int, default=5, help="training before the measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="S = 202, one epoch, once")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.epochs, args.repeats = [202], 1, 1

    print("lesion_cost |", describe(pick_device("auto")))
    print(
        f"digits, T = 3, l1 1e-4, trained {args.epochs} epochs; medians of {args.repeats}; a 30-epoch trial "
        "measures its null once, 5 snapshots and the final W"
    )
    header = (
        "S",
        "probe",
        "null s",
        "snapshot s",
        "final s",
        "function s",
        "runs",
        "lesions",
        "per trial s",
        "train 30 ep s",
        "share",
    )
    rows = []
    for size in args.sizes:
        config = parse_config(
            {
                "data.name": "digits",
                "model.hidden_channels": SIZES[size],
                "model.steps": 3,
                "regulators.l1": 1e-4,
                "train.epochs": args.epochs,
                "train.snapshot_every": args.epochs,
            }
        )
        run_trial(parse_config({**to_flat(config), "train.epochs": 1}))  # warm-up: imports, threads, data
        stamps = [time.perf_counter()]
        result = run_trial(config, report=lambda epoch, m: stamps.append(time.perf_counter()))
        # an epoch's training (and its accuracy figures): the epochs before the last, which alone is measured
        epoch_s = statistics.median(b - a for a, b in zip(stamps[1:-1], stamps[2:])) if len(stamps) > 3 else stamps[-1] - stamps[0]
        data = load_dataset(config.data, config.seed)
        probe = probe_of(data.x_test, data.y_test, config.seed)
        null_s, null = timed(args.repeats, lambda: measure_null(result.initial_weights, result.layout, config.model, probe))
        measure_s, _ = timed(
            args.repeats, lambda: measure(result.weights, result.bias, result.layout, config.model, probe, null, shuffle=False)
        )
        final_s, _ = timed(args.repeats, lambda: measure(result.weights, result.bias, result.layout, config.model, probe, null))
        net = function.Network.of(result.weights, result.bias, result.layout, config.model)
        function_s, _ = timed(args.repeats, lambda: function.functional_report(net, probe, null.function))
        _, runs, lesions = counted_runs(lambda: function.functional_report(net, probe, null.function))
        train_30 = 30 * epoch_s
        per_trial = null_s + 5 * measure_s + final_s
        rows.append(
            (
                size,
                len(probe.y),
                f"{null_s:.2f}",
                f"{measure_s:.2f}",
                f"{final_s:.2f}",
                f"{function_s:.2f}",
                runs,
                lesions,
                f"{per_trial:.1f}",
                f"{train_30:.1f}",
                f"{per_trial / (per_trial + train_30):.2f}",
            )
        )
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(str(x).rjust(w) for x, w in zip(row, widths)))


if __name__ == "__main__":
    main()
