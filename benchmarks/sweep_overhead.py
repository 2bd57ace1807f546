"""Sweep overhead: a reference sweep through Ray Tune and MLflow against the same trials in a plain loop.

    .venv/bin/python benchmarks/sweep_overhead.py            # 8 trials of ~10 s, 2 at a time: ~7 min on 2 cores
    .venv/bin/python benchmarks/sweep_overhead.py --smoke    # 2 short trials, once: ~30 s

The reference study (written to a temporary folder, never to search_spaces/): digits, hidden_channels 15
(S = 1034), T = 3, 30 epochs, structure every 5 and a checkpoint every 10 epochs (structure.yaml's
settings), l1 1e-4 and four locality strengths x seeds; one such trial takes about 10 s alone on one core
here. ``--channels`` and ``--epochs`` change its size.

Each repeat runs the same trials three ways, as many at a time as there are cores (``--cores``):
    plain: a ``ProcessPoolExecutor`` of ``cores`` spawned workers, each with OMP_NUM_THREADS=1 (what Ray sets
           for a 1-CPU trial; ``train_pack`` also sets one torch thread), calling ``run_trial`` on each
           config; nothing is recorded. Timed from creating the pool (worker start-up and imports inside)
           to the last result, and again to the pool shut down (its workers' exit).
    Tune alone: the same ``run_trial`` calls as Ray Tune trials that record nothing (``machine.tune_trial``:
           one report at the end, no MLflow, no checkpoints), with the Tune settings ``run_sweep`` uses (1 CPU
           each, actors reused, Tune's JSON logger); timed around ``Tuner.fit``, Ray started before. What Ray
           itself costs here, whatever the platform records.
    Ray:   ``run_sweep`` of the study file (local Ray with ``num_cpus = cores``, a local SQLite MLflow store
           under a temporary URN_RESULTS_DIR): every epoch to MLflow and Tune, checkpoints, artifacts, the
           summary. Two times: "Ray up" is ``run_sweep`` alone with Ray already started (as on a cluster, or
           the second sweep of a session), against the plain loop to its last result; "whole" adds
           ``ray.init`` and ``ray.shutdown``, against the plain loop with its pool shut down. Against Tune
           alone, it gives the record's own share.
The MLflow store is created (its schema migrated) once before the timings, as after a first sweep; the
imports of ray, mlflow and torch in this process are not timed. Each repeat starts with the next of the
three (plain, Tune alone, Ray; then Tune alone, Ray, plain; ...), so load from other users of a shared
machine falls on all; medians are reported, and each repeat's own ratio. Then the sweeps' time is split
using their trials' spans (a Ray trial's MLflow run), the whole machine's context switches per second and
kernel share of CPU while each ran are given (Linux ``/proc/stat``), and, for plain and Tune-alone trials,
what each trial's thread did (``/proc/thread-self``: seconds on a core, seconds waiting for one, times
preempted); last, one trial is recorded in-process step by step (no Ray) to cost each part of the record.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine  # noqa: E402
from machine import between, describe, kernel_counters, timed_trial, tune_trial  # noqa: E402

from urn_study.model import pick_device  # noqa: E402
from urn_study.study import load_study  # noqa: E402

LOCALITY = (0.0, 1e-4, 3e-4, 1e-3)
STUDY = "overhead"
QUEUE = "queue each epoch's metrics (a thread sends them)"
SIDES = ("plain", "tune", "ray")
RECORD_STEPS = (
    "open the run (search, create, params, tags)",
    QUEUE,
    "save checkpoints (save_state)",
    "finish (artifacts written and stored, tags, end)",
    "  of which: write the artifacts",
    "  of which: draw the W heatmap",
)


def write_study(folder: Path, n_trials: int, channels: int, epochs: int) -> Path:
    """The reference study: ``n_trials`` trials of one shape (locality strengths x seeds)."""
    per_seed = next(k for k in (4, 2, 1) if n_trials % k == 0)
    study = {
        "name": STUDY,
        "base": {
            "data.name": "digits",
            "model.hidden_channels": channels,
            "model.steps": 3,
            "train.epochs": epochs,
            "train.snapshot_every": min(5, epochs),
            "train.checkpoint_every": min(10, epochs),
            "regulators.l1": 1e-4,
        },
        "grid": {"regulators.locality": list(LOCALITY[:per_seed])},
        "seeds": list(range(n_trials // per_seed)),
        "metric": "test_accuracy",
        "mode": "max",
        "resources": {"cpu": 1, "gpu": 0},
        "trials_per_worker": 1,
    }
    path = folder / f"{STUDY}.yaml"
    path.write_text(
        f"# Question: none; the reference sweep of benchmarks/sweep_overhead.py ({n_trials} trials).\n"
        f"# Run: .venv/bin/python benchmarks/sweep_overhead.py\n" + yaml.safe_dump(study, sort_keys=False)
    )
    return path


def plain_loop(configs: list, cores: int) -> dict:
    """The trials on ``cores`` spawned worker processes of one thread each; wall time and each trial's span."""
    previous = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"  # read by the workers' torch at import, as in a 1-CPU Ray trial
    try:
        counters = kernel_counters()
        start = time.time()
        with ProcessPoolExecutor(cores, mp_context=multiprocessing.get_context("spawn")) as pool:
            trials = list(pool.map(timed_trial, configs))
            end = time.time()
            kernel = between(counters, kernel_counters())
        closed = time.time()
    finally:
        if previous is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = previous
    return {
        "wall": end - start,
        "closed": closed - start,
        "start": start,
        "end": end,
        "kernel": kernel,
        "spans": [(t["start"], t["end"]) for t in trials],
        "loops": [t["loop"] for t in trials],
        "threads": sorted({t["torch_threads"] for t in trials}),
        "thread": [t["thread"] for t in trials],
    }


def tune_alone(configs: list, cores: int, storage: Path) -> dict:
    """The same trials as Ray Tune trials that record nothing (``machine.tune_trial``: ``run_trial`` and one
    report), 1 CPU each, actors reused, Tune's JSON logger only: Tune as ``run_sweep`` sets it up, without
    MLflow, checkpoints or per-epoch reports. Timed from ``Tuner.fit`` to its end, Ray started just before."""
    import ray
    from ray import cloudpickle, tune
    from ray.tune.logger import JsonLoggerCallback

    from urn_study.sweep import driver

    cloudpickle.register_pickle_by_value(machine)  # Ray's workers cannot import benchmarks/machine.py
    driver.start_ray(None, cores)
    try:
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(tune_trial, configs=configs), {"cpu": 1}),
            param_space={"index": tune.grid_search(list(range(len(configs))))},
            tune_config=tune.TuneConfig(reuse_actors=True),
            run_config=tune.RunConfig(storage_path=str(storage), verbose=0, callbacks=[JsonLoggerCallback()]),
        )
        counters = kernel_counters()
        start = time.time()
        with contextlib.redirect_stdout(io.StringIO()):
            grid = tuner.fit()
        end = time.time()
        kernel = between(counters, kernel_counters())
    finally:
        ray.shutdown()
    if grid.errors:
        raise RuntimeError(f"the Tune-alone sweep failed: {grid.errors[0]}")
    trials = [result.metrics for result in grid]
    return {
        "wall": end - start,
        "start": start,
        "end": end,
        "kernel": kernel,
        "spans": [(t["start"], t["end"]) for t in trials],
        "loops": [t["loop"] for t in trials],
        "thread": [{k: t[k] for k in ("cpu", "wait", "preempted")} if "cpu" in t else None for t in trials],
    }


def ray_sweep(study_path: Path, uri: str, cores: int) -> dict:
    """``run_sweep`` of the study, Ray started just before (as ``run_sweep`` starts it) and shut down after."""
    import ray

    from urn_study import tracking
    from urn_study.commands import sweep_report  # the report `urn-study sweep` draws at the end, as before
    from urn_study.sweep import driver, records

    t0 = time.time()
    driver.start_ray(None, cores)  # the sweep's own start: run_sweep then finds Ray up and leaves it
    t1 = time.time()
    counters = kernel_counters()
    log = io.StringIO()
    with contextlib.redirect_stdout(log):  # Tune's progress lines
        code = driver.run_sweep(study_path, tracking_uri=uri, num_cpus=cores, out=log, report=sweep_report)
    t2 = time.time()
    kernel = between(counters, kernel_counters())
    ray.shutdown()
    t3 = time.time()
    if code != 0:
        raise RuntimeError(f"the reference sweep failed:\n{log.getvalue()}")
    record = records.find_record(load_study(study_path))
    experiment = tracking.client(uri).get_experiment_by_name(STUDY).experiment_id
    runs = tracking.trial_runs(uri, experiment, record.sweep_id)
    return {
        "wall": t3 - t0,
        "up": t2 - t1,
        "init": t1 - t0,
        "shutdown": t3 - t2,
        "start": t1,
        "end": t2,
        "kernel": kernel,
        "spans": [(r.info.start_time / 1000, r.info.end_time / 1000) for r in runs],
        "loops": [r.data.metrics.get("seconds", float("nan")) for r in runs],
    }


def split(run: dict, cores: int) -> dict[str, float]:
    """Where a sweep's wall time went, from its trials' spans: before the first trial started, inside the
    trials (their summed spans over the cores), between trials, after the last one ended; and a trial's
    span and training loop (its own ``seconds``: epochs, their reports and checkpoints) on average."""
    starts, ends = [s for s, _ in run["spans"]], [e for _, e in run["spans"]]
    inside = sum(e - s for s, e in run["spans"]) / cores
    return {
        "head": min(starts) - run["start"],
        "inside": inside,
        "between": max(ends) - min(starts) - inside,
        "tail": run["end"] - max(ends),
        "per_trial": statistics.mean(e - s for s, e in run["spans"]),
        "loop": statistics.mean(run["loops"]),
    }


def record_costs(config, uri: str) -> Counter:
    """One trial trained in this process (one thread) and recorded as a sweep records it, each step timed.
    No Ray: Tune's own share (its reports, copying checkpoints to storage) is what this leaves out."""
    import torch

    from urn_study import tracking
    from urn_study.artifacts import write_artifacts
    from urn_study.checkpoint import save_state
    from urn_study.reading.weight_image import weight_image
    from urn_study.trial import run_trial

    costs: Counter = Counter()

    def timed(name, fn, *args):
        start = time.perf_counter()
        out = fn(*args)
        costs[name] += time.perf_counter() - start
        return out

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        experiment = tracking.ensure_experiment(uri, STUDY)
        parent = tracking.open_sweep_run(uri, experiment, STUDY, "breakdown", {"searcher": "none"})
        record = timed(
            "open the run (search, create, params, tags)",
            tracking.TrialRecord.open,
            uri,
            experiment,
            parent,
            STUDY,
            "breakdown",
            f"{STUDY}-b0000",
            config,
            {},
        )
        with tempfile.TemporaryDirectory(prefix="urn-bench-") as folder:
            result = timed(
                "train",
                run_trial,
                config,
                lambda epoch, m: timed(QUEUE, record.log_epoch, epoch, m),
                lambda state: timed("save checkpoints (save_state)", save_state, state, Path(folder) / f"epoch_{state.epoch}"),
            )
            timed("  of which: write the artifacts", write_artifacts, result, Path(folder) / "artifacts")
        image = timed(
            "  of which: draw the W heatmap",
            lambda: weight_image(result.weights, result.structure.get("levels"), layout=result.layout, title=record.trial_id),
        )
        with tempfile.TemporaryDirectory(prefix="urn-bench-") as folder:
            timed("  of which: draw the W heatmap", lambda: image.save(Path(folder) / "W.png", compress_level=1))
        timed("finish (artifacts written and stored, tags, end)", record.finish, result)
        tracking.close_sweep_run(uri, experiment, "breakdown", parent, "FINISHED")
    finally:
        torch.set_num_threads(threads)
    costs["train"] -= costs[QUEUE] + costs["save checkpoints (save_state)"]
    return costs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8, help="trials in the reference sweep")
    parser.add_argument("--channels", type=int, default=15, help="model.hidden_channels (S = 64 (1 + c) + 10)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--cores", type=int, default=os.cpu_count(), help="trials at a time (Ray's num_cpus)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="2 trials of 2 epochs at S = 202, once: ~20 s")
    args = parser.parse_args(argv)
    if args.smoke:
        args.trials, args.channels, args.epochs, args.repeats = 2, 2, 2, 1

    print("sweep_overhead |", describe(pick_device("auto")))
    with tempfile.TemporaryDirectory(prefix="urn-sweep-overhead-") as folder:
        results = Path(folder) / "urn_results"
        previous = os.environ.get("URN_RESULTS_DIR")
        os.environ["URN_RESULTS_DIR"] = str(results)
        try:
            run(args, Path(folder), results)
        finally:
            if previous is None:
                os.environ.pop("URN_RESULTS_DIR", None)
            else:
                os.environ["URN_RESULTS_DIR"] = previous


def run(args, folder: Path, results: Path) -> None:
    from urn_study import tracking

    study_path = write_study(folder, args.trials, args.channels, args.epochs)
    configs = [t.config for t in load_study(study_path).trials()]
    uri = f"sqlite:///{results / 'mlflow.db'}"
    start = time.perf_counter()
    tracking.check_tracking(uri)
    tracking.ensure_experiment(uri, STUDY)
    store_seconds = time.perf_counter() - start
    size = 64 * (1 + args.channels) + 10
    print(
        f"reference sweep: {args.trials} trials, digits, S = {size}, T = 3, {args.epochs} epochs, "
        f"{args.cores} at a time; medians of {args.repeats} repeats (MLflow store created once before: "
        f"{store_seconds:.1f} s)"
    )

    runs: dict[str, list[dict]] = {side: [] for side in SIDES}
    for n in range(args.repeats):
        # each repeat starts with the next side: a load that rises or falls meets all of them alike
        for side in SIDES[n % len(SIDES) :] + SIDES[: n % len(SIDES)]:
            if side == "plain":
                runs[side].append(plain_loop(configs, args.cores))
            elif side == "tune":
                runs[side].append(tune_alone(configs, args.cores, results / "tune-alone"))
            else:
                runs[side].append(ray_sweep(study_path, uri, args.cores))
        plain, tune, ray = (runs[side][-1] for side in SIDES)
        print(
            f"  repeat {n + 1}: plain {plain['wall']:.1f} s ({plain['closed']:.1f} s with the pool shut down), "
            f"Tune alone {tune['wall']:.1f} s, Ray + MLflow up {ray['up']:.1f} s, whole {ray['wall']:.1f} s "
            f"(load average {os.getloadavg()[0]:.1f})",
            flush=True,
        )
    plains, tunes, rays = (runs[side] for side in SIDES)
    print_ratios(plains, tunes, rays, args.trials)
    print_split(plains, tunes, rays, args.cores)
    costs = record_costs(configs[0], uri)
    train = costs["train"]
    print(f"\none trial recorded in-process, no Ray (seconds, and share of its training time {train:.2f} s):")
    for name in RECORD_STEPS:
        print(f"  {name:<52}{costs[name]:>7.2f} {costs[name] / train:>7.1%}")


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def print_ratios(plains: list[dict], tunes: list[dict], rays: list[dict], n_trials: int) -> None:
    """Wall times, trials per hour and the ratios (each repeat's own, then their median) against the target;
    then the record's own share, the full sweep against Tune alone."""
    threads = sorted({t for p in plains for t in p["threads"]})
    walls = {
        "plain loop": [p["wall"] for p in plains],
        "plain, pool shut down": [p["closed"] for p in plains],
        "Ray Tune alone, Ray up": [t["wall"] for t in tunes],
        "Ray + MLflow, Ray up": [r["up"] for r in rays],
        "Ray + MLflow, whole": [r["wall"] for r in rays],
    }
    against = {
        "Ray Tune alone, Ray up": "plain loop",
        "Ray + MLflow, Ray up": "plain loop",
        "Ray + MLflow, whole": "plain, pool shut down",
    }
    ratios = {name: [a / b for a, b in zip(walls[name], walls[base])] for name, base in against.items()}
    print(f"plain workers: torch threads {', '.join(map(str, threads))}; load average now {os.getloadavg()[0]:.1f}")
    print(f"{'':<23}{'wall s':>7} {'trials/hour':>12}  {'against':<22}{'ratio':>6}   each repeat: ratio (wall s)")
    for name, samples in walls.items():
        wall = statistics.median(samples)
        line = f"{name:<23}{wall:>7.1f} {n_trials / wall * 3600:>12.0f}  "
        if name in against:
            line += f"{against[name]:<22}{statistics.median(ratios[name]):>6.3f}   " + "  ".join(
                f"{q:.3f} ({w:.1f})" for q, w in zip(ratios[name], samples)
            )
        else:
            line += " " * 31 + "  ".join(f"({w:.1f})" for w in samples)
        print(line)
    record = [a / b for a, b in zip(walls["Ray + MLflow, Ray up"], walls["Ray Tune alone, Ray up"])]
    print(
        f"the record's share (MLflow, checkpoints, reports): Ray + MLflow against Tune alone, Ray up both: "
        f"{statistics.median(record):.3f}   each repeat: " + "  ".join(f"{q:.3f}" for q in record)
    )
    ratio = statistics.median(ratios["Ray + MLflow, Ray up"])
    print(f"target: Ray up within 5% of the plain loop (ratio <= 1.050): {'met' if ratio <= 1.05 else 'missed'}")


def print_split(plains: list[dict], tunes: list[dict], rays: list[dict], cores: int) -> None:
    """Where the time goes: the sweeps' phases from their trials' spans; the machine and the trials' threads."""
    print(
        "\nwhere the time goes (medians, seconds; from each trial's span: a plain or Tune-alone trial's run_trial "
        "call, a Ray + MLflow trial's MLflow run)"
    )
    print(f"  Ray start (ray.init) {_median(rays, 'init'):.2f}, Ray shutdown {_median(rays, 'shutdown'):.2f}")
    sides = {"plain": plains, "Tune": tunes, "Ray up": rays}
    columns = (
        ("head", "before first trial"),
        ("inside", "inside trials"),
        ("between", "between trials"),
        ("tail", "after last"),
        ("per_trial", "a trial"),
        ("loop", "its training loop"),
    )
    print(f"  {'':<8}" + " ".join(f"{title:>{len(title) + 1}}" for _, title in columns))
    for name, runs in sides.items():
        splits = [split(r, cores) for r in runs]
        print(f"  {name:<8}" + " ".join(f"{statistics.median(s[k] for s in splits):>{len(title) + 1}.2f}" for k, title in columns))
    if all(r["kernel"] is not None for runs in sides.values() for r in runs):
        print(
            "  the whole machine meanwhile (/proc/stat: every process, the benchmark's own and any other's): "
            "a thread woken on a core the trials fill takes that core from a trial"
        )
        for name, runs in sides.items():
            print(
                f"  {name:<8} context switches/s {statistics.median(r['kernel']['switches_per_s'] for r in runs):>6.0f}   "
                f"kernel CPU {statistics.median(r['kernel']['kernel'] for r in runs):>5.1%}   "
                f"idle {statistics.median(r['kernel']['idle'] for r in runs):>5.1%}"
            )
    counted = {name: [t for r in runs for t in r["thread"] if t] for name, runs in (("plain", plains), ("Tune", tunes))}
    if all(counted.values()):
        print(
            "  a trial's thread (medians per trial, Linux /proc/thread-self): seconds on a core, seconds waiting "
            "in the run queue for one, and times a second taken off its core by another thread"
        )
        for name, threads in counted.items():
            spans = [e - s for r in sides[name] for s, e in r["spans"]]
            print(
                f"  {name:<8} on a core {statistics.median(t['cpu'] for t in threads):>6.2f}   "
                f"waiting {statistics.median(t['wait'] for t in threads):>5.2f}   "
                f"preempted/s {statistics.median(t['preempted'] for t in threads) / statistics.median(spans):>6.0f}"
            )


if __name__ == "__main__":
    main()
