"""A shipped study end to end, three ways: ``urn-study sweep`` as shipped (packed: ``trials_per_worker`` auto), the
same sweep with one trial per worker (``trials_per_worker: 1``), and a plain Python loop of ``run_trial`` over the
same trials.

    .venv/bin/python benchmarks/study_throughput.py              # structure.yaml's 168 trials: ~6 min on 2 cores
    .venv/bin/python benchmarks/study_throughput.py --sub-grid   # 48 of them: ~2.5 min
    .venv/bin/python benchmarks/study_throughput.py --smoke      # 4 trials of 2 epochs: ~1 min, mostly Ray starting

The study is ``search_spaces/structure.yaml`` as shipped (digits, S = 138, 30 epochs, structure every 5, a
checkpoint every 10; locality 7 x l1 4 x T = 2, 3 x seeds 0, 1, 2: 168 trials), or with ``--sub-grid`` its
locality 0, 1e-4, 3e-4, 1e-3 x l1 0, 1e-4, 1e-3 x T = 2, 3 x seeds 0, 1 (48 trials; the smoke: locality 0, 1e-3
x seeds 0, 1 at l1 1e-4, T = 3, 2 epochs); written to a temporary folder with its own URN_RESULTS_DIR (MLflow
store, Ray results). Each way is one process, timed from its start to its exit (imports, Ray's start and stop,
the record, the report inside): the two sweeps run ``python -m urn_study.cli sweep FILE --num-cpus CORES``; the
loop runs ``run_trial`` on each trial of the loaded study, one after the other, with torch's default threads,
recording nothing. Ways take turns across repeats; medians are printed, and each repeat's figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

from urn_study.model import pick_device  # noqa: E402
from urn_study.study import load_study  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "search_spaces" / "structure.yaml"
WAYS = ("packed", "one per worker", "plain loop")
LOOP = """\
import sys
from urn_study.study import load_study
from urn_study.trial import run_trial
for trial in load_study(sys.argv[1]).trials():
    run_trial(trial.config)
"""


def write_study(folder: Path, smoke: bool, per_worker: int | None, sub_grid: bool = False) -> Path:
    """structure.yaml's grid and seeds as shipped (``sub_grid``: 48 of its trials); ``per_worker`` None: packed as
    shipped (auto), else that many trials per worker."""
    study = yaml.safe_load(SHIPPED.read_text())
    for key in ("smoke", "refine"):
        study.pop(key, None)
    study["name"] = "throughput" if per_worker is None else f"throughput-k{per_worker}"
    if smoke:
        study["base"].update({"train.epochs": 2, "train.snapshot_every": 1, "train.checkpoint_every": 1})
        study["grid"] = {"regulators.locality": [0, 1.0e-3], "regulators.l1": [1.0e-4], "model.steps": [3]}
        study["seeds"] = [0, 1]
    elif sub_grid:
        study["grid"] = {
            "regulators.locality": [0, 1.0e-4, 3.0e-4, 1.0e-3],
            "regulators.l1": [0, 1.0e-4, 1.0e-3],
            "model.steps": [2, 3],
        }
        study["seeds"] = [0, 1]
    if per_worker is not None:
        study["trials_per_worker"] = per_worker
    path = folder / f"{study['name']}.yaml"
    path.write_text(
        f"# Question: none; benchmarks/study_throughput.py's sub-grid of structure.yaml.\n"
        f"# Run: urn-study sweep {path.name}\n" + yaml.safe_dump(study, sort_keys=False)
    )
    return path


def run_way(way: str, paths: dict[str, Path], results: Path, cores: int) -> tuple[float, str]:
    """One way in its own process: (wall seconds, what it printed)."""
    env = {
        **os.environ,
        "URN_RESULTS_DIR": str(results),
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
    }
    if way == "plain loop":
        command = [sys.executable, "-c", LOOP, str(paths[way])]
    else:
        command = [sys.executable, "-m", "urn_study.cli", "sweep", str(paths[way]), "--num-cpus", str(cores)]
    # a Ray whose node misses its start-up wait on a busy machine is started again inside the sweep (sweep.driver),
    # and that time counts: it is what a user on that machine pays too
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=results, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{way} exited with {done.returncode}: {(done.stderr or done.stdout)[-2000:]}")
    return seconds, done.stdout


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="Ray's CPUs for the two sweeps")
    parser.add_argument("--smoke", action="store_true", help="4 trials of 2 epochs, once")
    parser.add_argument("--sub-grid", action="store_true", help="48 trials of structure.yaml's grid, not all 168")
    args = parser.parse_args(argv)
    if args.smoke:
        args.repeats = 1
    print("study_throughput |", describe(pick_device("auto")))
    with tempfile.TemporaryDirectory(prefix="urn-throughput-") as tmp:
        folder = Path(tmp)
        packed = write_study(folder, args.smoke, None, args.sub_grid)
        paths = {"packed": packed, "one per worker": write_study(folder, args.smoke, 1, args.sub_grid), "plain loop": packed}
        study = load_study(packed)
        trials = len(study.trials())
        print(
            f"{trials} trials of structure.yaml's {'smoke grid' if args.smoke else 'sub-grid' if args.sub_grid else 'grid'} "
            f"({', '.join(f'{k} {v}' for k, v in study.grid.items())}, "
            f"seeds {study.seeds}), {study.trials()[0].config.train.epochs} epochs; sweeps on {args.cores} CPUs, "
            f"the loop one trial after another; {args.repeats} repeat(s), ways in turn"
        )
        samples: dict[str, list[float]] = {way: [] for way in WAYS}
        packing = ""
        for repeat in range(args.repeats):
            for way in WAYS[repeat % 3 :] + WAYS[: repeat % 3]:
                results = folder / f"results-{repeat}-{way.replace(' ', '-')}"
                results.mkdir()
                seconds, out = run_way(way, paths, results, args.cores)
                samples[way].append(seconds)
                if way == "packed":
                    packing = next((line.strip() for line in out.splitlines() if "packing:" in line), "?")
    print(f"the packed sweep's {packing}")
    wall = {way: statistics.median(samples[way]) for way in WAYS}
    print(f"{'way':<16} {'wall s':>8} {'trials/hour':>12}   wall of each repeat")
    for way in WAYS:
        print(f"{way:<16} {wall[way]:>8.1f} {trials / wall[way] * 3600:>12.0f}   " + " ".join(f"{s:.1f}" for s in samples[way]))
    print(f"plain loop / packed: {wall['plain loop'] / wall['packed']:.2f}  (target: at least 1.5)")
    print(f"one per worker / packed: {wall['one per worker'] / wall['packed']:.2f}")
    print(f"plain loop / one per worker: {wall['plain loop'] / wall['one per worker']:.2f}")


if __name__ == "__main__":
    main()
