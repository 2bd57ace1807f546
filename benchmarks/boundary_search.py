"""Trials the boundary search needs to locate a phase boundary, against a dense grid of the same resolution.

    .venv/bin/python benchmarks/boundary_search.py            # two boundaries of structure.yaml at T = 2: ~6 min
    .venv/bin/python benchmarks/boundary_search.py --smoke    # a synthetic phase function, no training: seconds

Two lines of `search_spaces/structure.yaml` at T = 2 (digits, input written once, 30 epochs): along the wiring
cost at l1 1e-4 (fully connected without it, residual with it) and along l1 at no wiring cost (fully connected,
then no hidden layer needed). Each is searched by ``urn_study.boundary`` from the study's own coarse values (one
seed a point, more where seeds disagree or a label is uncertain) to a factor 1.25, and swept by a dense grid
spaced by the same factor over the same range (and 0), three seeds a point (the study's), its label the
majority. Trials are trained one after the other in this process (``run_trial``: the count of trials is the
figure, not the scheduling). Printed per line: trials each way, their ratio, and both brackets, which must
agree: the dense grid's bracket lies within or across the search's.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

from urn_study.boundary import BoundaryPlan, Refine  # noqa: E402
from urn_study.config import parse_config  # noqa: E402
from urn_study.model import pick_device  # noqa: E402
from urn_study.trial import run_trial  # noqa: E402

BASE = {"model.input_mode": "once", "model.readout": "last", "model.steps": 2, "data.name": "digits",
        "model.init_scale": 0.05, "train.epochs": 30, "train.snapshot_every": 30}
LINES = {  # name -> (axis, its coarse values in structure.yaml, the other axis held)
    "locality at l1 1e-4": ("regulators.locality", [0, 1e-4, 3e-4, 5e-4, 1e-3, 2e-3, 3e-3], {"regulators.l1": 1e-4}),
    "l1 at locality 0": ("regulators.l1", [0, 1e-4, 3e-4, 1e-3], {"regulators.locality": 0.0}),
}
SEEDS = [0, 1, 2]
TOLERANCE = 1.25


def trained_phase(axis: str, held: dict, value: float, seed: int) -> tuple[str, float]:
    result = run_trial(parse_config({**BASE, **held, axis: value, "seed": seed}))
    return result.metrics["phase"], float(result.metrics.get("margin", math.nan))


def synthetic_phase(axis: str, held: dict, value: float, seed: int) -> tuple[str, float]:
    """A known boundary at 4.1e-4 whose labels are uncertain within a factor 1.3 of it (the smoke form)."""
    margin = abs(math.log(value / 4.1e-4)) / math.log(1.3) if value > 0 else 10.0
    return ("locally_connected" if value >= 4.1e-4 else "fully_connected"), margin


def search(axis: str, coarse: list, held: dict, phase_of) -> tuple[BoundaryPlan, int]:
    plan = BoundaryPlan({axis: coarse}, SEEDS, Refine((axis,), TOLERANCE, budget=10 * len(coarse) * len(SEEDS)))
    while not plan.done:
        for issued in plan.next_trials():
            plan.record(issued.point, issued.seed, *phase_of(axis, held, issued.point[0], issued.seed))
    return plan, len(plan.issued)


def dense_values(plan: BoundaryPlan, axis: str, coarse: list) -> list[float]:
    """0 (if the coarse values have it) and the values spaced by the tolerance from where 0 is drawn to the top."""
    low, high = plan.zero_at[axis], max(coarse)
    steps = math.ceil(math.log(high / low) / math.log(TOLERANCE))
    values = [float(f"{low * TOLERANCE ** i:.3g}") for i in range(steps + 1)]
    return ([0.0] if 0 in coarse else []) + values


def dense_bracket(axis: str, values: list[float], held: dict, phase_of) -> tuple[tuple, int]:
    plan = BoundaryPlan({axis: values}, SEEDS, Refine((axis,), TOLERANCE, budget=len(values) * len(SEEDS),
                                                       start_seeds=len(SEEDS), max_seeds=len(SEEDS)))
    for issued in plan.next_trials():
        plan.record(issued.point, issued.seed, *phase_of(axis, held, issued.point[0], issued.seed))
    segments = plan.segments()
    return tuple((s.low, s.high, s.phase_low, s.phase_high) for s in segments), len(plan.issued)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a synthetic phase function on one line: seconds")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(describe(pick_device("cpu")))
    lines = dict(list(LINES.items())[:1]) if args.smoke else LINES
    phase_of = synthetic_phase if args.smoke else trained_phase
    print(f"{'line':24s} {'search':>7s} {'dense':>6s} {'ratio':>6s}  search bracket -> dense bracket(s)")
    for name, (axis, coarse, held) in lines.items():
        start = time.perf_counter()
        plan, searched = search(axis, coarse, held, phase_of)
        brackets = [(s.low, s.high, s.phase_low, s.phase_high, s.located) for s in plan.segments()]
        dense, swept = dense_bracket(axis, dense_values(plan, axis, coarse), held, phase_of)
        agree = all(any(lo <= d_hi and d_lo <= hi for lo, hi, *_ in brackets) for d_lo, d_hi, *_ in dense)
        text = "; ".join(f"[{lo:.3g}, {hi:.3g}] {a}->{b}{'' if ok else ' (not located)'}" for lo, hi, a, b, ok in brackets)
        dense_text = "; ".join(f"[{lo:.3g}, {hi:.3g}] {a}->{b}" for lo, hi, a, b in dense)
        print(f"{name:24s} {searched:7d} {swept:6d} {swept / searched:6.1f}  {text} -> {dense_text} "
              f"({'same answer' if agree else 'DIFFERENT'}; {time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
