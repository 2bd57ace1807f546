"""Trials the boundary search needs to locate a phase boundary, against a dense grid of the same resolution.

    .venv/bin/python benchmarks/boundary_search.py            # three trained lines: ~10 min on 2 cores
    .venv/bin/python benchmarks/boundary_search.py --out docs/figures/boundary_benchmark   # and keep the trials
    .venv/bin/python benchmarks/boundary_search.py --smoke    # a synthetic phase function, no training: seconds

Lines (each from a shipped study, with its own coarse values): along the wiring cost of `structure.yaml` at
T = 2 and l1 1e-4 (fully connected, then residual); along l1 of the same at no wiring cost (fully connected,
a narrow residual band, shallow); along l1 of `depth.yaml` at no wiring cost, following the depth that carries
the task (4, 3, 2). Each is searched by ``urn_study.boundary`` from the coarse values (one seed a point, more
where a bracket's end is uncertain or its seeds disagree, labels implied seed by seed along the line) to a
factor 1.25, and swept by a dense grid spaced by the same factor over the same range (and 0), three seeds a
point (the study's first three), its label their majority.

**Same answer**, as printed: every bracket the search reports is matched by a bracket of the dense grid with
the same labels on either side that overlaps it (both may hold the place where the majority of the three seeds
changes; each is within the tolerance, so their ends are at most a factor 1.25 x 1.25 apart). A bracket of the
dense grid that the search has no match for is printed as well ("the dense grid also has"), with whether it lies
between two coarse values whose majority labels agree: a band narrower than the coarse spacing, which no search
that starts from the coarse grid sees, and which a dense grid sees only where one of its values falls in it. The
search's labels that were implied rather than trained are then trained too (not counted): printed is how many
of them the training contradicts, and at how many of the search's points the majority of all three trained
seeds differs from the search's label.

Trials are trained in this process (``run_trials``, each round of the search as one batch): the count of
trials is the figure, not the time. ``--out`` writes every trained trial (``trials.csv``) and the figures
(``summary.csv``); a later run with the same ``--out`` reuses the trials already there.
"""

from __future__ import annotations

import argparse
import csv
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
from urn_study.trial import run_trials  # noqa: E402

STRUCTURE = {
    "model.input_mode": "once",
    "model.readout": "last",
    "model.steps": 2,
    "data.name": "digits",
    "model.init_scale": 0.05,
    "train.epochs": 30,
    "train.snapshot_every": 30,
}
DEPTH = {
    "data.name": "nlgp",
    "data.dims": 1,
    "data.side": 16,
    "model.steps": 4,
    "model.input_mode": "clamp",
    "model.readout": "all",
    "model.readout_from": 1,
    "model.init_scale": 0.05,
    "train.epochs": 60,
    "train.snapshot_every": 60,
}
LINES = {  # name -> (base, axis, its coarse values in the study, the other axis held, the label followed)
    "locality at l1 1e-4": (
        STRUCTURE,
        "regulators.locality",
        [0, 1e-4, 3e-4, 5e-4, 1e-3, 2e-3, 3e-3],
        {"regulators.l1": 1e-4},
        "phase",
    ),
    "l1 at locality 0": (STRUCTURE, "regulators.l1", [0, 1e-4, 3e-4, 1e-3], {"regulators.locality": 0.0}, "phase"),
    "depth: l1 at locality 0": (DEPTH, "regulators.l1", [0, 1e-4, 3e-4, 6e-4, 1e-3, 2e-3], {"regulators.locality": 0.0}, "depth"),
}
SEEDS = [0, 1, 2]
TOLERANCE = 1.25
FIELDS = ["line", "value", "seed", "label", "margin"]


class Trained:
    """Trained outcomes of one line, (value, seed) -> (label, margin), trained on demand in batches and kept."""

    def __init__(self, name: str, known: dict):
        self.name, self.known = name, known
        self.base, self.axis, _, self.held, self.outcome = LINES[name]
        self.trained = 0

    def __call__(self, asked: list[tuple[float, int]]) -> list[tuple[str, float]]:
        todo = sorted({key for key in asked if key not in self.known})
        if todo:
            configs = [parse_config({**self.base, **self.held, self.axis: v, "seed": s}) for v, s in todo]
            for key, result in zip(todo, run_trials(configs)):
                label = result.metrics[self.outcome]
                label = str(int(label)) if self.outcome == "depth" and label is not None else str(label)
                self.known[key] = (label, float(result.metrics.get("margin", math.nan)))
            self.trained += len(todo)
        return [self.known[key] for key in asked]


def synthetic(asked: list[tuple[float, int]]) -> list[tuple[str, float]]:
    """A known boundary at 4.1e-4 whose labels are uncertain within a factor 1.3 of it (the smoke form)."""
    out = []
    for value, _ in asked:
        margin = abs(math.log(value / 4.1e-4)) / math.log(1.3) if value > 0 else 10.0
        out.append(("locally_connected" if value >= 4.1e-4 else "fully_connected", margin))
    return out


def search(axis: str, coarse: list, outcomes) -> BoundaryPlan:
    plan = BoundaryPlan({axis: coarse}, SEEDS, Refine((axis,), TOLERANCE, budget=10 * len(coarse) * len(SEEDS)))
    while not plan.done:
        issued = plan.next_trials()
        for trial, (label, margin) in zip(issued, outcomes([(float(i.point[0]), i.seed) for i in issued])):
            plan.record(trial.point, trial.seed, label, margin)
    return plan


def dense_values(plan: BoundaryPlan, axis: str, coarse: list) -> list[float]:
    """0 (if the coarse values have it), then from where 0 is drawn to the top coarse value in equal log steps of
    at most the tolerance."""
    low, high = plan.zero_at[axis], max(coarse)
    steps = math.ceil(math.log(high / low) / math.log(TOLERANCE))
    values = [float(f"{low * (high / low) ** (i / steps):.3g}") for i in range(steps + 1)]
    return ([0.0] if 0 in coarse else []) + values


def dense(axis: str, values: list[float], outcomes) -> BoundaryPlan:
    """Every value with every seed: the label of a point is the majority of the three."""
    plan = BoundaryPlan(
        {axis: values},
        SEEDS,
        Refine((axis,), TOLERANCE, budget=len(values) * len(SEEDS), start_seeds=len(SEEDS), max_seeds=len(SEEDS)),
    )
    issued = plan.next_trials()
    for trial, (label, margin) in zip(issued, outcomes([(float(i.point[0]), i.seed) for i in issued])):
        plan.record(trial.point, trial.seed, label, margin)
    return plan


def matches(searched: list, swept: list) -> tuple[list, list]:
    """(search brackets, each with its overlapping dense bracket of the same labels or None; dense brackets that
    no search bracket matches)."""
    pairs = [
        (
            s,
            next(
                (
                    d
                    for d in swept
                    if (s.phase_low, s.phase_high) == (d.phase_low, d.phase_high) and s.low <= d.high and d.low <= s.high
                ),
                None,
            ),
        )
        for s in searched
    ]
    matched = {id(d) for _, d in pairs if d is not None}
    return pairs, [d for d in swept if id(d) not in matched]


def between_agreeing_coarse(plan: BoundaryPlan, bracket) -> bool:
    """Whether a dense bracket lies between two neighbouring coarse values whose majority labels agree."""
    coarse = sorted(float(v) for v in plan.grid[bracket.axis])
    for low, high in zip(coarse, coarse[1:]):
        if low <= bracket.low and bracket.high <= high:
            return plan.label((low,)) == plan.label((high,))
    return False


def implied_check(plan: BoundaryPlan, outcomes) -> tuple[int, int, int]:
    """(labels implied, of them contradicted by training, search points whose three trained seeds' majority
    differs from the search's label)."""
    implied = [
        (p, s)
        for p in plan.results
        for s in SEEDS[: plan.refine.max_seeds]
        if s not in plan.results[p] and plan.implied(p, s) is not None
    ]
    trained = outcomes([(float(p[0]), s) for p, s in implied])
    wrong = sum(label != plan.implied(p, s) for (p, s), (label, _) in zip(implied, trained))
    full = outcomes([(float(p[0]), s) for p in plan.results for s in SEEDS])
    moved = 0
    for i, point in enumerate(plan.results):
        labels = [label for label, _ in full[i * len(SEEDS) : (i + 1) * len(SEEDS)]]
        top = max(labels.count(x) for x in labels)
        moved += plan.label(point) not in {x for x in labels if labels.count(x) == top}
    return len(implied), wrong, moved


def read_trials(path: Path) -> dict[str, dict]:
    known: dict[str, dict] = {name: {} for name in LINES}
    if path.exists():
        for row in csv.DictReader(path.open()):
            if row["line"] in known:
                known[row["line"]][(float(row["value"]), int(row["seed"]))] = (row["label"], float(row["margin"]))
    return known


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a synthetic phase function on one line: seconds")
    parser.add_argument("--lines", nargs="*", choices=list(LINES), help="which lines (default: all)")
    parser.add_argument("--out", type=Path, help="a folder for trials.csv and summary.csv (trials there are reused)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(describe(pick_device("cpu")))
    names = list(LINES)[:1] if args.smoke else (args.lines or list(LINES))
    known = read_trials(args.out / "trials.csv") if args.out else {name: {} for name in LINES}
    print(f"{'line':24s} {'search':>7s} {'dense':>6s} {'ratio':>6s}  search bracket(s) -> dense bracket(s)")
    summary = []
    for name in names:
        _, axis, coarse, _, _ = LINES[name]
        outcomes = synthetic if args.smoke else Trained(name, known[name])
        start = time.perf_counter()
        plan = search(axis, coarse, outcomes)
        swept = dense(axis, dense_values(plan, axis, coarse), outcomes)
        searched, grid = plan.segments(), swept.segments()
        pairs, unmatched = matches(searched, grid)
        agree = bool(pairs) and all(d is not None for _, d in pairs)
        implied, wrong, moved = implied_check(plan, outcomes)
        text = "; ".join(
            f"[{s.low:.3g}, {s.high:.3g}] {s.phase_low}->{s.phase_high}"
            f"{'' if s.located else ' (not located)'} -> "
            f"{f'[{d.low:.3g}, {d.high:.3g}]' if d else 'no dense bracket'}"
            for s, d in pairs
        )
        extra = "; ".join(
            f"[{d.low:.3g}, {d.high:.3g}] {d.phase_low}->{d.phase_high}"
            f"{' (between agreeing coarse values)' if between_agreeing_coarse(plan, d) else ''}"
            for d in unmatched
        )
        print(
            f"{name:24s} {len(plan.issued):7d} {len(swept.issued):6d} {len(swept.issued) / len(plan.issued):6.1f}  "
            f"{text or 'no bracket'} ({'same answer' if agree else 'DIFFERENT'}"
            f"{f'; the dense grid also has {extra}' if extra else ''}; labels implied {implied}, contradicted by "
            f"training {wrong}; search labels unlike the trained majority {moved}; "
            f"{time.perf_counter() - start:.0f} s)",
            flush=True,
        )
        common = {
            "line": name,
            "search_trials": len(plan.issued),
            "dense_trials": len(swept.issued),
            "ratio": len(swept.issued) / len(plan.issued),
            "implied": implied,
            "contradicted": wrong,
            "majority_differs": moved,
        }
        for s, d in pairs:
            summary.append(
                {
                    **common,
                    "found_by": "both" if d else "search",
                    "phase_low": s.phase_low,
                    "phase_high": s.phase_high,
                    "search_low": s.low,
                    "search_high": s.high,
                    "dense_low": d.low if d else math.nan,
                    "dense_high": d.high if d else math.nan,
                    "between_agreeing_coarse": False,
                }
            )
        for d in unmatched:
            summary.append(
                {
                    **common,
                    "found_by": "dense",
                    "phase_low": d.phase_low,
                    "phase_high": d.phase_high,
                    "search_low": math.nan,
                    "search_high": math.nan,
                    "dense_low": d.low,
                    "dense_high": d.high,
                    "between_agreeing_coarse": between_agreeing_coarse(plan, d),
                }
            )
    if args.out and not args.smoke:
        args.out.mkdir(parents=True, exist_ok=True)
        with (args.out / "trials.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(FIELDS)
            for name in LINES:
                for (value, seed), (label, margin) in sorted(known[name].items()):
                    writer.writerow([name, value, seed, label, margin])
        keys = list(dict.fromkeys(k for row in summary for k in row))
        with (args.out / "summary.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(summary)


if __name__ == "__main__":
    main()
