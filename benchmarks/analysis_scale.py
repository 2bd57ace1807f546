"""Analysis scale: load, classify into cells and draw the phase diagram of 10,000 recorded trial runs.

    .venv/bin/python benchmarks/analysis_scale.py /tmp/urn-scale          # makes the store once (~15 min), then times
    .venv/bin/python benchmarks/analysis_scale.py --smoke                  # 100 runs in a temporary folder: ~25 s

The folder holds a study file (``scale.yaml``: locality 10 x l1 10 x steps 4 x 25 seeds = 10,000 trials, digits,
30 epochs) and its MLflow SQLite store with every trial recorded in the project's layout, made on the first
call and reused by later calls with the same folder and size. Trial 0 is trained and recorded for real,
through ``tracking.TrialRecord`` as a sweep's trial records itself (Ray's placement tags with this machine's
values). The others copy its record with their own values: their params are ``to_flat`` of their own config,
their tags the same keys (own trial id; phase, depth, widths and |W| hop spectrum from a made-up phase map over
locality and l1 with seed noise), their metrics the same keys at the same steps (its per-epoch history;
final accuracy, depth, locality, skip share and phase index set to match the phase), one ``log_batch`` per
run. Start and end times are spaced as in a sweep of two 10 s trials at a time (one ends every 5 s), so the
cache's watermark sees what it would after a real sweep. Artifacts: each run's folder holds its own
``config.json`` and hard links to trial 0's other files (W, snapshots, layout, structure, history, heatmap).

Timed, each the median of ``--repeats``: the sweep's study table written whole (once, as its driver does at
the end: ``urn_study.tracking.study_table``), ``load_study_runs`` cold (a full MLflow search, the cache
written: the first load, or ``--refresh``), cold from the study table (no local cache: what any machine that
reaches the store pays; the same DataFrame as the full search, checked) and warm (the cache plus the runs
changed since), ``latest_runs``,
``phase_grid``, ``draw_phase_diagram`` with the PNG saved; their sum (warm) against the 10 s target; then the
whole ``urn-study phase`` command (a fresh process: imports, the study file, the warm load, runs.csv, the grid,
PNG and SVG, the gallery), with its parts timed in this process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

from urn_study.model import pick_device  # noqa: E402

STUDY = "scale"
TARGET_SECONDS = 10.0
TABLE_TARGET_SECONDS = 2.0  # a cold load (no local cache) of the 10,000-run study from its sweep's table
LAYOUT_VERSION = 1  # bump when the generated record changes: a folder made before is rebuilt
PHASES = ("fully_connected", "locally_connected", "residual", "dead")  # the made-up map, left to right
RARE = ("shallow", "recurrent")
TRIAL_SECONDS, TRIAL_EVERY = 10.0, 5.0  # spacing of the recorded times: two 10 s trials at a time


def grid_for(n_runs: int) -> tuple[dict, list[int]]:
    """Grid axes and seeds giving ``n_runs`` trials: 400 cells (4 panels of 10 x 10), or 50 for small runs."""
    locality, l1, steps = (
        [0, 1e-4, 2e-4, 3e-4, 5e-4, 7e-4, 1e-3, 2e-3, 3e-3, 5e-3],
        [0, 1e-5, 3e-5, 1e-4, 2e-4, 3e-4, 5e-4, 1e-3, 2e-3, 3e-3],
        [2, 3, 4, 5],
    )
    if n_runs < 4000:
        locality, l1, steps = locality[::2], l1[::2], steps[:2]
    cells = len(locality) * len(l1) * len(steps)
    if n_runs % cells:
        raise SystemExit(f"--runs: a multiple of {cells} (the grid's cells), got {n_runs}")
    grid = {"regulators.locality": locality, "regulators.l1": l1, "model.steps": steps}
    return grid, list(range(n_runs // cells))


def write_study(folder: Path, n_runs: int) -> Path:
    grid, seeds = grid_for(n_runs)
    study = {
        "name": STUDY,
        "base": {
            "data.name": "digits",
            "model.hidden_channels": 1,
            "train.epochs": 30,
            "train.snapshot_every": 5,
            "train.checkpoint_every": 10,
        },
        "grid": grid,
        "seeds": seeds,
        "metric": "test_accuracy",
        "mode": "max",
        "resources": {"cpu": 1, "gpu": 0},
    }
    path = folder / f"{STUDY}.yaml"
    path.write_text(
        f"# Question: none; the recorded study of benchmarks/analysis_scale.py ({n_runs} trials).\n"
        f"# Then: urn-study phase {path} --tracking-uri sqlite:///{folder / 'mlflow.db'}\n" + yaml.safe_dump(study, sort_keys=False)
    )
    return path


# --- making the store ---------------------------------------------------------------------------


def made_up_phase(point: dict, grid: dict, rng: np.random.Generator) -> str:
    """Left to right FC, LC, residual, dead as locality grows (l1 moves the boundaries left); a seed lands
    in a neighbouring phase 15% of the time and in a rare one 2% of the time."""
    x = grid["regulators.locality"].index(point["regulators.locality"]) / (len(grid["regulators.locality"]) - 1)
    y = grid["regulators.l1"].index(point["regulators.l1"]) / (len(grid["regulators.l1"]) - 1)
    index = min(len(PHASES) - 1, int((x + 0.4 * y) * len(PHASES) / 1.4))
    draw = rng.random()
    if draw < 0.02:
        return RARE[int(rng.integers(len(RARE)))]
    if draw < 0.17:
        index = int(np.clip(index + rng.choice([-1, 1]), 0, len(PHASES) - 1))
    return PHASES[index]


def final_values(phase: str, steps: int, rng: np.random.Generator) -> dict:
    depth = {"dead": 0, "shallow": 1, "residual": max(1, steps - 1)}.get(phase, steps)
    accuracy = {"dead": 0.1, "shallow": 0.8, "residual": 0.88, "locally_connected": 0.93}.get(phase, 0.95)
    return {
        "depth": depth,
        "w_effective_depth": max(0.0, depth - rng.random()),
        "test_accuracy": float(np.clip(accuracy + rng.normal(0, 0.02), 0, 1)),
        "locality": float(rng.uniform(0.1, 0.9)),
        "w_skip_share": 0.6 if phase == "residual" else 0.05,
        "widths": [64] + [int(rng.integers(10, 64)) for _ in range(max(0, depth - 1))] + ([10] if depth else []),
        "w_hop_spectrum": [round(float(v), 4) for v in rng.dirichlet(np.ones(steps))],
    }


def record_template(study, uri: str) -> tuple[str, str, str]:
    """Trial 0 trained and recorded for real, as ``train_pack`` records a trial: (experiment, parent, run id)."""
    import socket

    import torch

    from urn_study import tracking
    from urn_study.trial import run_trial

    experiment = tracking.ensure_experiment(uri, study.name)
    sweep_id = f"{study.name}-benchmark"
    parent = tracking.open_sweep_run(
        uri,
        experiment,
        study.name,
        sweep_id,
        {
            "searcher": "grid",
            "trials": len(study.trials()),
            "study_file": str(study.path),
            "smoke": False,
            "fingerprint": study.fingerprint(),
            "trials_per_worker": 1,
        },
        study.path,
    )
    trial = study.trials()[0]
    placement = {
        "urn.node_ip": socket.gethostbyname("localhost"),
        "urn.node_id": "0" * 56,
        "urn.gpu_ids": "[]",
        "urn.device": "cpu",
        "urn.resources": json.dumps({"CPU": 1.0}),
        "urn.tune_trial": trial.trial_id,
        "urn.pid": str(os.getpid()),
    }
    record = tracking.TrialRecord.open(uri, experiment, parent, study.name, sweep_id, trial.trial_id, trial.config, placement)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        record.finish(run_trial(trial.config, record.log_epoch))
    finally:
        torch.set_num_threads(threads)
    tracking.close_sweep_run(uri, experiment, sweep_id, parent, "FINISHED")
    return experiment, parent, record.run_id


def copy_record(study, uri: str, experiment: str, template_id: str, out=sys.stdout) -> None:
    """Every trial but the first recorded like the template run, with its own config and made-up results."""
    from mlflow.entities import Metric, Param

    from urn_study import tracking
    from urn_study.artifacts import CONFIG
    from urn_study.config import to_flat

    client = tracking.client(uri)
    template = client.get_run(template_id)
    history = {key: [(m.step, m.value) for m in client.get_metric_history(template_id, key)] for key in template.data.metrics}
    final_step = max(step for points in history.values() for step, _ in points)
    tags = {k: v for k, v in template.data.tags.items() if k != "mlflow.runName"}
    artifacts = _local_folder(template.info.artifact_uri)
    files = [p for p in artifacts.rglob("*") if p.is_file() and p.name != CONFIG]
    grid = study.grid
    trials = study.trials()[1:]
    first_start = template.info.start_time - int(1000 * (TRIAL_EVERY * len(trials) + TRIAL_SECONDS))
    start_clock = time.perf_counter()
    for n, trial in enumerate(trials):
        rng = np.random.default_rng([trial.config.seed, n])
        phase = made_up_phase(trial.point, grid, rng)
        final = final_values(phase, trial.config.model.steps, rng)
        start = first_start + int(1000 * TRIAL_EVERY * n)
        end = start + int(1000 * TRIAL_SECONDS)
        run = client.create_run(
            experiment,
            start_time=start,
            run_name=trial.trial_id,
            tags={
                **tags,
                tracking.TRIAL_TAG: trial.trial_id,
                "urn.tune_trial": trial.trial_id,
                "phase": phase,
                "depth": str(final["depth"]),
                "widths": json.dumps(final["widths"]),
                "w_hop_spectrum": json.dumps(final["w_hop_spectrum"]),
            },
        )
        final_metrics = {
            **{k: float(v) for k, v in final.items() if not isinstance(v, list)},
            "phase_index": float(tracking.PHASE_CODES[phase]),
        }
        metrics = [
            Metric(
                key,
                final_metrics[key] if step == final_step and key in final_metrics else value,
                start + int((end - start) * step / (final_step + 1)),
                step,
            )
            for key, points in history.items()
            for step, value in points
        ]
        params = [Param(k, tracking.runs._param_text(v)) for k, v in to_flat(trial.config).items()]
        while metrics or params:  # MLflow's limits per batch: 100 params, 1000 entries in all
            some_params, params = params[: tracking.BATCH], params[tracking.BATCH :]
            room = 1000 - len(some_params)
            some_metrics, metrics = metrics[:room], metrics[room:]
            client.log_batch(run.info.run_id, metrics=some_metrics, params=some_params, synchronous=True)
        client.set_terminated(run.info.run_id, "FINISHED", end_time=end)
        folder = _local_folder(run.info.artifact_uri)
        folder.mkdir(parents=True, exist_ok=True)
        for path in files:
            target = folder / path.relative_to(artifacts)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)
        (folder / CONFIG).write_text(json.dumps(to_flat(trial.config), indent=1))
        if (n + 1) % 1000 == 0:
            rate = (n + 1) / (time.perf_counter() - start_clock)
            print(f"  {n + 1} / {len(trials)} runs recorded ({rate:.0f} per second)", file=out, flush=True)


def _local_folder(artifact_uri: str) -> Path:
    from urllib.parse import unquote, urlparse

    return Path(unquote(urlparse(artifact_uri).path))


def make_store(folder: Path, n_runs: int) -> tuple[Path, str]:
    """The study file and its recorded store under ``folder``: reused if complete, else made anew."""
    import shutil

    from urn_study.study import load_study

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    marker = folder / "store.json"
    wanted = {"runs": n_runs, "layout": LAYOUT_VERSION}
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        return folder / f"{STUDY}.yaml", uri
    for name in ("mlflow.db", "mlartifacts", "study_cache", "figures", "store.json"):
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    study = load_study(write_study(folder, n_runs))
    print(f"making the store: {n_runs} runs in {folder}", flush=True)
    experiment, _, template = record_template(study, uri)
    copy_record(study, uri, experiment, template)
    marker.write_text(json.dumps(wanted))
    print(f"  made in {time.perf_counter() - start:.0f} s", flush=True)
    return study.path, uri


def write_sweep_table(uri: str) -> None:
    """The benchmark sweep's study table written whole, as its driver writes it when the sweep ends: the copied
    runs are recorded after trial 0's sweep ended, with earlier times, so the table that sweep left lacks them."""
    from urn_study import tracking
    from urn_study.tracking.study_table import rewrite_sweep_table

    experiment = tracking.find_experiment(uri, STUDY)[0]
    run_id, sweep_id = tracking.latest_sweep_run(uri, STUDY)
    rewrite_sweep_table(uri, experiment, sweep_id, run_id)


# --- the timings --------------------------------------------------------------------------------


def timed(run, repeats: int) -> tuple[float, list[float], object]:
    samples, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = run()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), samples, out


def run_command(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", help="where the store is made or found (default: a temporary folder)")
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="100 runs (50 cells x 2 seeds), once")
    args = parser.parse_args(argv)
    if args.smoke:
        args.runs, args.repeats = 100, 1

    print("analysis_scale |", describe(pick_device("auto")))
    with store_folder(args.folder, "urn-analysis-scale-") as folder:
        study_path, uri = make_store(folder, args.runs)
        measure(study_path, uri, folder, args.runs, args.repeats)


@contextlib.contextmanager
def store_folder(folder: str | None, prefix: str):
    """``folder`` (else a temporary one) as URN_RESULTS_DIR while the store is made and read (the experiment's
    artifacts, the figures); the caller's URN_RESULTS_DIR is back afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as scratch:
        path = Path(folder or scratch).resolve()
        previous = os.environ.get("URN_RESULTS_DIR")
        os.environ["URN_RESULTS_DIR"] = str(path)
        try:
            yield path
        finally:
            if previous is None:
                os.environ.pop("URN_RESULTS_DIR", None)
            else:
                os.environ["URN_RESULTS_DIR"] = previous


def measure(study_path: Path, uri: str, folder: Path, n_runs: int, repeats: int) -> None:
    from analysis.cli_phase import write_phase_report
    from analysis.phase import choose_axes, draw_phase_diagram, phase_grid, save_figure
    from analysis.runs import latest_runs, load_study_runs
    from urn_study.study import load_study

    study = load_study(study_path)
    x, y, facet = choose_axes(study)
    print(f"{n_runs} recorded trial runs ({study_path}); axes x={x}, y={y}, facet={facet}; medians of {repeats}")
    rows = []
    keep_s, keep_all, _ = timed(lambda: write_sweep_table(uri), 1)
    rows.append(("the sweep's study table written whole (driver)", keep_s, keep_all))
    cold, cold_all, fresh = timed(lambda: load_study_runs(STUDY, uri, refresh=True), repeats)
    rows.append(("load_study_runs, cold (full search, cache written)", cold, cold_all))
    from_table, table_all, read = timed(lambda: load_study_runs(STUDY, uri, use_cache=False), repeats)
    rows.append(("load_study_runs, cold from the sweep's table", from_table, table_all))
    warm, warm_all, table = timed(lambda: load_study_runs(STUDY, uri), repeats)
    rows.append(("load_study_runs, warm (cache + changed runs)", warm, warm_all))
    if len(table) != n_runs or not table[["run_id", "phase", "test_accuracy"]].equals(fresh[["run_id", "phase", "test_accuracy"]]):
        raise RuntimeError(f"the cached table ({len(table)} runs) differs from the store's ({len(fresh)}; {n_runs} expected)")
    if not read.equals(fresh) or not (read.dtypes == fresh.dtypes).all():
        raise RuntimeError("the table read from the sweep's study table differs from MLflow's search")
    latest, latest_all, runs = timed(lambda: latest_runs(table), repeats)
    rows.append(("latest_runs", latest, latest_all))
    grid_s, grid_all, grid = timed(lambda: phase_grid(runs, x, y, facet), repeats)
    rows.append((f"phase_grid ({len(grid)} cells)", grid_s, grid_all))
    out = folder / "figures" / "benchmark"
    draw_s, draw_all, _ = timed(
        lambda: save_figure(draw_phase_diagram(grid, x, y, facet, title=STUDY), out / "phase_diagram", formats=("png",)), repeats
    )
    rows.append(("draw_phase_diagram + PNG", draw_s, draw_all))
    total = warm + latest + grid_s + draw_s
    rows.append(("total: warm load to PNG", total, []))
    rows.append(("  the same with the cold load", cold + latest + grid_s + draw_s, []))
    command = [
        sys.executable,
        "-m",
        "urn_study.cli",
        "phase",
        str(study_path),
        "--tracking-uri",
        uri,
        "--out",
        str(folder / "figures" / STUDY),
    ]
    cli_s, cli_all, _ = timed(lambda: run_command(command), repeats)
    rows.append(("urn-study phase (new process, warm cache)", cli_s, cli_all))
    study_s, study_all, _ = timed(lambda: load_study(study_path), repeats)
    rows.append((f"  of which: load_study ({n_runs} configs built)", study_s, study_all))
    rows.append(("  of which: load_study_runs, warm", warm, []))
    report_s, report_all, _ = timed(
        lambda: write_phase_report(runs, x, y, facet, folder / "figures" / "benchmark", uri, title=STUDY), repeats
    )
    rows.append(("  of which: write_phase_report", report_s, report_all))
    csv_s, csv_all, _ = timed(lambda: runs.to_csv(folder / "figures" / "benchmark" / "runs.csv", index=False), repeats)
    rows.append(("    of which: runs.csv", csv_s, csv_all))
    svg_s, svg_all, _ = timed(
        lambda: save_figure(draw_phase_diagram(grid, x, y, facet, title=STUDY), out / "phase_diagram", formats=("svg",)), repeats
    )
    rows.append(("    of which: draw_phase_diagram + SVG", svg_s, svg_all))
    rows.append(("  rest: interpreter, imports, store, latest_runs", cli_s - study_s - warm - report_s, []))

    print(f"{'':<52}{'seconds':>8}   each repeat")
    for name, seconds, samples in rows:
        print(f"{name:<52}{seconds:>8.2f}   " + " ".join(f"{s:.2f}" for s in samples))
    table_verdict = "met" if from_table < TABLE_TARGET_SECONDS else "missed"
    print(
        f"target: {n_runs} runs loaded cold (no local cache) from the sweep's study table in under "
        f"{TABLE_TARGET_SECONDS:g} s: {table_verdict} ({from_table:.2f} s, {cold / from_table:.0f}x faster than the "
        f"full search)"
    )
    verdict = "met" if total < TARGET_SECONDS else "missed"
    print(
        f"target: {n_runs} runs loaded (warm), classified and drawn in under {TARGET_SECONDS:g} s: {verdict} "
        f"({total:.1f} s); load average now {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
