"""``urn-study sweep``: check the whole study, open the MLflow record (urn_study.tracking), start or join Ray, run one Tune
trial per pack of URN trials (or what the searcher asks for), print the summary, then hand the sweep's run to
the caller's ``report`` (the CLI draws the phase report there: this edge does not import the analysis above
it). Whether a trial is done is decided by its MLflow run: a finished run is never trained or recorded again;
``--resume`` runs what is left in a new Tune experiment (resume.py)."""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import ray
from ray import tune
from ray.tune.logger import JsonLoggerCallback

from urn_study import packing, tracking
from urn_study.config import ConfigError, to_flat
from urn_study.study import Study, pack_trials, results_dir, study_question
from urn_study.sweep.inputs import SweepInputs, check_inputs
from urn_study.sweep.progress import DiskFull, Progress, Watchdog, stop_reason, trial_dirname, trial_name
from urn_study.sweep.records import PENDING, SweepLock, SweepRecord, save_record
from urn_study.sweep.resume import Earlier, earlier_state
from urn_study.sweep.searchers import BoundarySearch, optuna_searcher, optuna_space
from urn_study.sweep.table_keeper import TableKeeper
from urn_study.sweep.trainable import SweepContext, disk_full, error_line, train_pack

Report = Callable[[Study, str, str, str], None]  # (study, tracking URI, the sweep's run id, sweep id)


def run_sweep(
    study_path: str | Path,
    smoke: bool = False,
    address: str | None = None,
    tracking_uri: str | None = None,
    searcher: str = "grid",
    max_concurrent: int | None = None,
    resume: str | None = None,
    storage: str | None = None,
    num_cpus: int | None = None,
    stall_timeout_s: float = 1800.0,
    gpus_per_trial: float | None = None,
    out=None,
    report: Report | None = None,
) -> int:
    """Run (or resume) a sweep of a study file; returns 0 when every trial finished, 128 + the signal's number
    when it was stopped by SIGINT or SIGTERM (the state saved for ``--resume``), else 1. ``gpus_per_trial``
    replaces the study's resources.gpu (for this run of the command; a resume takes it again). ``report`` is
    called once the summary is printed, with (study, tracking URI, the sweep's run id, sweep id), before that
    run ends; it must not raise (``urn_study.commands.sweep_report`` turns a failure into one warning line)."""
    return run_checked(
        check_inputs(
            study_path,
            smoke,
            address,
            tracking_uri,
            searcher,
            max_concurrent,
            resume,
            storage,
            num_cpus,
            stall_timeout_s,
            gpus_per_trial,
        ),
        out,
        report,
    )


def run_checked(inputs: SweepInputs, out=None, report: Report | None = None) -> int:
    """``run_sweep`` of inputs already checked (inputs.py: the CLI checks them before it imports this module)."""
    out = out or sys.stdout
    study, record = inputs.study, inputs.record
    try:
        with SweepLock(record.sweep_id):
            return _run_locked(
                study,
                record,
                inputs.searcher,
                inputs.smoke,
                inputs.address,
                inputs.max_concurrent,
                inputs.resume,
                inputs.num_cpus,
                inputs.stall_timeout_s,
                out,
                report,
            )
    except Exception as err:
        if not disk_full(str(err)):
            raise
        raise ConfigError(
            f"the disk is full ({error_line(str(err))}); free space, then continue with: urn-study "
            f"sweep {study.path}{' --smoke' if inputs.smoke else ''} --resume {record.sweep_id}"
        ) from None


def _run_locked(
    study: Study,
    record: SweepRecord,
    searcher: str,
    smoke: bool,
    address: str | None,
    max_concurrent: int | None,
    resume: str | None,
    num_cpus: int | None,
    stall_timeout_s: float,
    out,
    report: Report | None,
) -> int:
    if searcher == "boundary":
        n_trials = study.boundary_search().budget  # at most: the search may stop before
    else:
        n_trials = study.samples if searcher == "optuna" else len(study.trials())
    params = {
        "searcher": searcher,
        "trials": n_trials,
        "study_file": tracking.repo_path(study.path),
        "smoke": smoke,
        "fingerprint": record.fingerprint,
        "trials_per_worker": str(study.trials_per_worker),
    }
    experiment_id, parent, started = _open_record_while_ray_starts(study, record, params, address, num_cpus)
    print(
        f"{'resuming' if resume else 'starting'} sweep {record.sweep_id}: {n_trials} trials of {study.name} "
        f"({searcher}), {study.resources.cpu:g} CPU + {study.resources.gpu:g} GPU each\n"
        f"  MLflow: {record.tracking_uri} (experiment {study.name!r}); Ray results: {record.storage}",
        file=out,
        flush=True,
    )
    resume_command = f"urn-study sweep {study.path}{' --smoke' if smoke else ''} --resume {record.sweep_id}"
    status = "FAILED"
    stop = _Interrupts()
    stopping: threading.Thread | None = None
    try:
        state = earlier_state(record, experiment_id) if resume else Earlier()
        if resume:
            print(
                f"  {len(state.finished)} trials finished before; the rest run now, from the newest of "
                f"{sum(len(c) for c in state.checkpoints.values())} checkpoints the earlier runs left",
                file=out,
                flush=True,
            )
        per_pack = _packing(study, record, searcher, out)
        space, base, trials = _search_space(study, searcher, state.finished, per_pack)
        context = SweepContext(
            study.name,
            record.sweep_id,
            record.tracking_uri,
            experiment_id,
            parent,
            study.metric,
            base,
            trials,
            study.resources.cpu,
            state.checkpoints,
        )
        with stop:
            grid = (
                _tuner(study, record, context, space, searcher, max_concurrent, n_trials, state, stall_timeout_s).fit()
                if space is not None
                else None
            )
        rows = summary_rows(study, record, experiment_id, searcher, grid)
        reason = stop_reason(grid)
        if started:  # Ray's part is over: it stops (~1.5 s, mostly waiting for its processes) while the report is made
            stopping = threading.Thread(target=ray.shutdown, name="urn-ray-shutdown")
            stopping.start()
        if reason:
            print(
                f"stopped: the disk is full ({reason}) under {results_dir()} or the tracking store; free space, "
                f"then continue with: {resume_command}",
                file=out,
                flush=True,
            )
            return 1
        if stop.signal:
            status = "KILLED"
            done = sum(r["status"] == "FINISHED" for r in rows)
            print(
                f"stopped by {signal.Signals(stop.signal).name}: {done} of {n_trials} trials finished, the others "
                f"saved at their last checkpoint; continue with: {resume_command}",
                file=out,
                flush=True,
            )
            return 128 + stop.signal
        print(format_summary(rows, study), file=out, flush=True)
        if report is not None:
            report(study, record.tracking_uri, parent, record.sweep_id)
        # a boundary search may end before its budget: then every trial it asked for is the whole sweep
        complete = bool(rows) and all(r["status"] == "FINISHED" for r in rows) and (searcher == "boundary" or len(rows) >= n_trials)
        status = "FINISHED" if complete else "FAILED"
        if any(disk_full(r.get("error", "")) for r in rows):
            print(f"the disk is full under {results_dir()} or the tracking store: free space there", file=out, flush=True)
        if not complete:
            print(f"not every trial finished; continue with: {resume_command}", file=out, flush=True)
        return 0 if complete else 1
    finally:
        _close_sweep_run(record, experiment_id, parent, status)
        if stopping is not None:
            stopping.join()
        elif started:
            ray.shutdown()


def _open_record(study: Study, record: SweepRecord, params: dict) -> tuple[str, str]:
    """The study's experiment, the sweep's record on disk and its parent run: (experiment id, run id)."""
    experiment_id = tracking.ensure_experiment(record.tracking_uri, study.name, study_question(study.path), tuple(study.axes))
    save_record(record)
    return experiment_id, tracking.open_sweep_run(
        record.tracking_uri, experiment_id, study.name, record.sweep_id, params, study.path
    )


def _open_record_while_ray_starts(
    study: Study, record: SweepRecord, params: dict, address: str | None, num_cpus: int | None
) -> tuple[str, str, bool]:
    """``_open_record`` in a thread while Ray starts here (``start_ray``: in the main thread, where Ray sets its
    signal handlers): a new local Ray spends seconds waiting for its processes, a new store migrating its
    schema. A refused store is said first, as if Ray had not started (it is stopped again); a Ray that does not
    start ends the opened run FAILED. Returns (experiment id, the sweep's run id, whether Ray was started)."""
    with ThreadPoolExecutor(1, thread_name_prefix="urn-record") as pool:
        opening = pool.submit(_open_record, study, record, params)
        try:
            started = start_ray(address, num_cpus)
        except BaseException:
            experiment_id, parent = opening.result()  # the store's own error first
            _close_sweep_run(record, experiment_id, parent, "FAILED")
            raise
    try:
        experiment_id, parent = opening.result()
    except BaseException:
        if started:
            ray.shutdown()
        raise
    return experiment_id, parent, started


def _close_sweep_run(record: SweepRecord, experiment_id: str, parent: str, status: str) -> None:
    try:
        tracking.close_sweep_run(record.tracking_uri, experiment_id, record.sweep_id, parent, status)
    except Exception as err:  # noqa: BLE001 - a full disk, a store gone: the resume ends the run instead
        print(
            f"urn-study: could not end the sweep's MLflow run ({error_line(str(err))}); its resume will",
            file=sys.stderr,
            flush=True,
        )


class _Interrupts:
    """While Tune runs (``with``): SIGINT and SIGTERM stop the sweep the way Tune stops on SIGUSR1 (trials end;
    their records and checkpoints stay for --resume) and ``signal`` says which came; a second one stops at once
    (KeyboardInterrupt). Tune's own SIGINT handler is off (TUNE_DISABLE_SIGINT_HANDLER): it would print
    Tune's resume hint, not ours, and SIGTERM would not pass through it."""

    def __init__(self):
        self.signal = 0
        self.saved: dict = {}

    def __enter__(self) -> "_Interrupts":
        if threading.current_thread() is threading.main_thread():
            self.saved = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame) -> None:
        tune_handler = signal.getsignal(signal.SIGUSR1)  # Tune's, while its loop runs; it then resets itself
        if self.signal or not callable(tune_handler):
            raise KeyboardInterrupt
        self.signal = signum
        tune_handler(signal.SIGUSR1, frame)


def start_ray(address: str | None, num_cpus: int | None) -> bool:
    """Connect to ``address`` or start local Ray; False if this process was already connected."""
    # Tune's own tables and the workers' log lines would bury the progress lines: errors still come back
    # through Tune (the summary prints each failed trial's last error line; the full text is in its folder).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # A checkpoint with num_to_keep set makes Tune snapshot its experiment state each time; its warning on the
    # time that takes is noise here (a resume does not read that state: resume.py)
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # MLflow is the record: of Tune's own per-report files in every trial folder only result.json is kept
    # (Tune's results read it; `_tuner` adds its logger), no CSV or TensorBoard copy (~4 ms of driver CPU
    # per report, taken from the trials on a machine they fill)
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # SIGINT and SIGTERM are ours while Tune runs (_Interrupts): they stop it through its SIGUSR1 handler
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    _quiet_tune_lines()
    # Ray turns token authentication on for a new local instance and warns that it did, every sweep (the README
    # says so once). Choosing it with RAY_AUTH_MODE=token would not be warned of, but Ray reads that at import.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False, logging_level="WARNING")
    else:
        _start_local(num_cpus)
    return True


RAY_START_TRIES = 3  # Ray gives a new node a fixed 30 s to register; a busy machine can miss that now and then


class RayStartError(ConfigError):
    """Local Ray did not start: said in one line, before any trial ran."""


def _start_local(num_cpus: int | None, tries: int = RAY_START_TRIES, out=None) -> None:
    """A new local instance ("local": even where `ray start` left one running, which Ray would join silently). A node
    that misses Ray's fixed start-up wait is stopped, what it had started killed, and started again."""
    import psutil

    # the raylet waits this long (default 30 s) for its agents, Python processes slow to start on a busy machine
    os.environ.setdefault("RAY_raylet_start_wait_time_s", "120")
    me = psutil.Process()
    for attempt in range(1, tries + 1):
        before = {child.pid for child in me.children(recursive=True)}
        try:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
            return
        except Exception as err:
            if "timed out during startup" not in str(err):
                raise
            ray.shutdown()
            for child in me.children(recursive=True):  # the half-started node's GCS, raylet and helpers
                if child.pid not in before:
                    try:
                        child.kill()
                    except psutil.NoSuchProcess:
                        pass
            if attempt == tries:
                raise RayStartError(
                    f"local Ray did not start: its node missed Ray's fixed 30 s start-up wait {tries} "
                    f"times (is the machine this busy? trials would crawl too)"
                ) from err
            print(
                f"local Ray's node missed Ray's fixed 30 s start-up wait (a busy machine?): starting it again "
                f"({attempt + 1} of {tries})",
                file=out or sys.stderr,
                flush=True,
            )


class _TuneLines(logging.Filter):
    """Ray's log lines, made ours at their source: an interrupted run's lines name Tune's restore, not urn-study's
    --resume (printed instead): dropped; a failed trial and a failed copy to storage are one line each with the
    error's last line, not a 150-line trace (the trial's folder keeps the whole error)."""

    # (Tune's own result files of trials that never wrote one: the MLflow runs are the record, read instead)
    DROPPED = ("Stop signal received", "Experiment has been interrupted", "Trials did not complete", "Failed to fetch metrics")

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        if text.startswith(self.DROPPED):
            return False
        if text.startswith("Trial task failed for trial") and record.exc_info:
            record.msg = f"{text.replace('Trial task failed for trial', 'trial')} failed: {error_line(str(record.exc_info[1]))}"
            record.exc_info, record.exc_text, record.args = None, None, ()
        elif text.startswith("Last sync command failed"):
            record.msg = f"Ray could not copy results to storage: {error_line(text)}"
            record.args = ()
        elif text.startswith("Saving experiment state to storage") and record.exc_info:
            record.msg = f"Ray could not save its experiment state: {error_line(str(record.exc_info[1]))}"
            record.exc_info, record.exc_text, record.args = None, None, ()
        return True


def _quiet_tune_lines() -> None:
    for name in (
        "ray.tune.tune",
        "ray.tune.execution.tune_controller",
        "ray.train._internal.syncer",
        "ray.tune.execution.experiment_state",
        "ray.tune.analysis.experiment_analysis",
    ):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _TuneLines) for f in logger.filters):
            logger.addFilter(_TuneLines())


def _packing(study: Study, record: SweepRecord, searcher: str, out) -> int:
    """The trials per Tune trial of this sweep: its record's (a resume packs as the sweep started, so the packs'
    checkpoints are found again; a sweep recorded before the choice was packed by the study's number, or one),
    else the study's number or, under ``auto``, chosen from the trials and the Ray it runs on (packing.py);
    recorded and printed."""
    if record.trials_per_worker.isdigit():
        per_pack, reason = int(record.trials_per_worker), "as the sweep started"
    elif record.trials_per_worker != PENDING:  # a record from before the choice was recorded
        per_pack = study.trials_per_worker if isinstance(study.trials_per_worker, int) else 1
        reason = "as the sweep started"
    else:
        resources = ray.cluster_resources()
        slots = resources.get("CPU", 0.0) / study.resources.cpu if study.resources.cpu else math.inf
        gpu_bytes = None
        if study.resources.gpu:
            slots = min(slots, resources.get("GPU", 0.0) / study.resources.gpu)
            gpu_bytes = min(1.0, study.resources.gpu) * (packing.local_gpu_bytes() or packing.UNKNOWN_GPU_BYTES)
        chosen = packing.choose(
            study.trials_per_worker, [t.config for t in study.trials()], slots, gpu_bytes, one_at_a_time=searcher != "grid"
        )
        per_pack, reason = chosen.per_pack, chosen.reason
        record.trials_per_worker = str(per_pack)
        save_record(record)
    if searcher == "grid" and per_pack > 1:
        packs = len(pack_trials(study.trials(), per_pack))
        print(
            f"  packing: up to {per_pack} trials of one shape train together ({reason}): {packs} Tune trials", file=out, flush=True
        )
    elif searcher == "grid":
        print(f"  packing: one trial per Tune trial ({reason})", file=out, flush=True)
    else:
        print(f"  packing: one trial at a time ({reason})", file=out, flush=True)
    return per_pack


def _search_space(
    study: Study, searcher: str, finished: set[str] = frozenset(), per_pack: int = 1
) -> tuple[dict | None, dict, dict]:
    """(Tune param space, base config for optuna trials, trial id -> flat config for grid packs of up to
    ``per_pack`` trials). A grid's packs whose trials all finished before (a resumed sweep) are left out; None when
    none is left."""
    if searcher == "optuna":
        space, base = optuna_space(study)
        return space, base, {}
    if searcher == "boundary":
        return {}, dict(study.base), {}
    packs = [pack for pack in pack_trials(study.trials(), per_pack) if any(t.trial_id not in finished for t in pack)]
    if not packs:
        return None, {}, {}
    space = {"pack": tune.grid_search([[t.trial_id for t in pack] for pack in packs])}
    return space, {}, {t.trial_id: to_flat(t.config) for t in study.trials()}


def _tuner(
    study: Study,
    record: SweepRecord,
    context: SweepContext,
    space: dict,
    searcher: str,
    max_concurrent: int | None,
    n_trials: int,
    earlier: Earlier,
    stall_timeout_s: float = 1800.0,
) -> tune.Tuner:
    """A new Tune experiment for what is left of the sweep: all of it, or, resumed, the trials that did not finish
    before (under a name of its own beside the earlier runs' folders). Tune's saved state of an earlier run is
    never restored: it is pickled (whoever can write the results folder would run code here) and a full disk or
    a kill can leave it cut short; the MLflow records and our own checkpoints say all a resume needs."""
    resources = {"cpu": study.resources.cpu, "gpu": study.resources.gpu}
    epochs = max(t.config.train.epochs for t in study.trials())
    trainable = tune.with_resources(tune.with_parameters(train_pack, context=context), resources)
    search_alg, samples = None, 1
    left = n_trials - len(earlier.finished)
    if searcher == "optuna":
        search_alg, samples = optuna_searcher(study, record, earlier), left
    elif searcher == "boundary":
        search_alg, samples = BoundarySearch(study, study.metric, study.mode, earlier.runs), left
    tune_config = tune.TuneConfig(
        metric=study.metric,
        mode=study.mode,
        num_samples=max(1, samples),
        search_alg=search_alg,
        max_concurrent_trials=max_concurrent,
        reuse_actors=True,
        trial_name_creator=trial_name,
        trial_dirname_creator=trial_dirname,
    )
    name = f"{record.sweep_id}-resumed-{time.strftime('%Y%m%d-%H%M%S')}" if earlier.resumed else record.sweep_id
    run_config = tune.RunConfig(
        name=name,
        storage_path=record.storage,
        verbose=0,
        stop=DiskFull(),
        failure_config=tune.FailureConfig(max_failures=study.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        callbacks=[
            Progress(study.name, n_trials, epochs, budget=searcher == "boundary", done_before=len(earlier.finished)),
            Watchdog(stall_timeout_s),
            JsonLoggerCallback(),
            TableKeeper(context.tracking_uri, context.experiment_id, context.sweep_id, context.parent_run_id),
        ],
    )
    return tune.Tuner(trainable, param_space=space, tune_config=tune_config, run_config=run_config)


def summary_rows(study: Study, record: SweepRecord, experiment_id: str, searcher: str, grid=None) -> list[dict]:
    """One row per URN trial, from its MLflow run (the record of truth) and, for trials without one,
    the Tune error."""
    runs = {}
    for run in tracking.trial_runs(record.tracking_uri, experiment_id, record.sweep_id):
        trial_id = run.data.tags.get(tracking.TRIAL_TAG)
        if trial_id not in runs or run.info.status == "FINISHED":
            runs[trial_id] = run
    errors = _tune_errors(grid)
    expected = [t.trial_id for t in study.trials()] if searcher == "grid" else sorted(runs)
    rows = []
    for trial_id in expected:
        run = runs.get(trial_id)
        row = {"trial_id": trial_id, "status": run.info.status if run else "NOT RUN"}
        if run:
            row.update({k: run.data.params.get(k) for k in study.axes})
            row.update(
                {
                    "metric": run.data.metrics.get(study.metric),
                    "test_accuracy": run.data.metrics.get("test_accuracy"),
                    "phase": run.data.tags.get("phase", ""),
                    "depth": run.data.tags.get("depth", ""),
                }
            )
        if trial_id in errors and row["status"] != "FINISHED":
            row["error"] = errors[trial_id]
        rows.append(row)
    return rows


def _tune_errors(grid) -> dict[str, str]:
    out = {}
    if grid is None:
        return out
    for result in grid:
        if result.error is None:
            continue
        config = result.config or {}
        message = error_line(str(result.error)) or type(result.error).__name__
        for trial_id in config.get("pack", []):
            out[trial_id] = message[:200]
    return out


def format_summary(rows: list[dict], study: Study) -> str:
    """The table printed at the end of a sweep, then the count of each phase."""
    axes = study.axes
    header = ["trial", *[a.split(".")[-1] for a in axes], "status", study.metric, "phase", "depth"]
    if study.metric == "test_accuracy":
        header.remove(study.metric)
        header.insert(len(axes) + 2, "test_acc")
    table = []
    for row in rows:
        value = row.get("metric")
        table.append(
            [
                row["trial_id"],
                *[_short(row.get(a)) for a in axes],
                row["status"],
                "" if value is None else f"{value:.3f}",
                row.get("phase", ""),
                row.get("depth", ""),
            ]
        )
    widths = [max(len(str(x)) for x in column) for column in zip(header, *table)]
    lines = ["", "  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)) for line in table]
    phases: dict[str, int] = {}
    for row in rows:
        if row["status"] == "FINISHED":
            phases[row.get("phase") or "?"] = phases.get(row.get("phase") or "?", 0) + 1
    lines.append("phases: " + (", ".join(f"{p} {n}" for p, n in sorted(phases.items(), key=lambda kv: -kv[1])) or "none finished"))
    best = best_line(rows, study)
    if best:
        lines.append(best)
    for row in rows:
        if row.get("error"):
            lines.append(f"  {row['trial_id']} failed: {row['error']}")
    return "\n".join(lines)


def best_line(rows: list[dict], study: Study) -> str:
    """The finished trial with the best value of the study's metric (its mode; the first in trial order among
    equals): its id, the value, its axes' values (the sampled ones where Optuna drew them), phase and depth.
    Empty when no finished trial has a value (diverged trials are left out: no phase is read from them)."""
    candidates = [
        r
        for r in rows
        if r["status"] == "FINISHED"
        and r.get("phase") != "diverged"
        and isinstance(r.get("metric"), (int, float))
        and math.isfinite(r["metric"])
    ]
    if not candidates:
        return ""
    sign = 1 if study.mode == "max" else -1
    best = max(candidates, key=lambda r: sign * r["metric"])  # max keeps the first of equals
    values = ", ".join(f"{axis}={_short(best.get(axis))}" for axis in study.axes)
    depth = f", depth {best['depth']}" if best.get("depth") not in (None, "") else ""
    return (
        f"best trial ({'highest' if study.mode == 'max' else 'lowest'} {study.metric}): {best['trial_id']}, "
        f"{best['metric']:.3f}" + (f" at {values}" if values else "") + f" ({best.get('phase') or '?'}{depth})"
    )


def _short(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    try:
        number = float(text)
        return f"{number:g}"
    except ValueError:
        return text if len(text) <= 24 else text[:21] + "..."
