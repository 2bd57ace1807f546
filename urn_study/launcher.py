"""Ray, in one place: a study's trials run as Ray Tune trials, on this machine or a cluster.

``run_sweep`` checks the whole study, opens the MLflow record (tracking.py), then runs one Tune trial per
pack of 1..K URN trials (``trials_per_worker``). Grid studies go through Tune's default searcher with
one grid value per pack; ``--searcher optuna`` lets ``OptunaSearch`` (its study in an SQLite file under
urn_results) pick the sampled axes. Inside a Tune trial, ``run_trials`` trains the pack; every epoch goes
to each trial's MLflow run, and to Tune at checkpoint epochs (and every ``REPORT_EVERY_S`` between: each
report waits on Tune's loop). A checkpoint holds one ``save_state`` folder per trial, so a failed trial is
retried from it. Whether a trial is done is decided by its MLflow run: a finished run is never trained or
recorded again. ``--resume`` starts a new Tune experiment for what is left, from the sweep's MLflow runs and
the checkpoints its earlier runs left (never from Tune's pickled state: ``_tuner``).
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.logger import JsonLoggerCallback
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from urn_study import tracking
from urn_study.boundary import BoundaryPlan, Issued
from urn_study.checkpoint import META, CheckpointError, load_state, save_state
from urn_study.config import ConfigError, parse_config, to_flat
from urn_study.study import Study, load_study, pack_trials, results_dir

NUMBER_KEY = "urn_trial_number"  # optuna's trial number, added to each suggested config
REPORT_EVERY_S = 10.0  # between checkpoint epochs, an epoch is reported to Tune (progress) this often at most
SEARCHERS = ("grid", "optuna", "boundary")
BOUNDARY_KEY = "urn_boundary"  # a boundary-search trial's id, point, seed and round in its Tune config
# "EPOCH:FOLDER": every Tune trial stops after reporting its checkpoint of EPOCH, writes FOLDER/<trial>.paused (its
# pid) and waits for FOLDER/go (all) or FOLDER/<trial>.go (that one). Fault tests inject their fault while the trial
# waits there, never in a time window.
PAUSE_ENV = "URN_PAUSE_AT"
STOP_KEY = "urn_stop_sweep"  # a trial's report that no trial can go on (a full disk): its reason
CHECKPOINT_PREFIX = "urn-checkpoint-"  # + pid: the worker's folder for a checkpoint until Tune has copied it


# --- the sweep's identity (what --resume finds again) --------------------------------------------


@dataclass
class SweepRecord:
    sweep_id: str
    study: str
    study_file: str
    fingerprint: str
    searcher: str
    tracking_uri: str
    storage: str  # Ray results: a folder or a URI every node can reach
    created: str
    results: str = ""  # the results folder it was written in: paths under it move with a copied folder

    @property
    def experiment_path(self) -> str:
        return f"{self.storage.rstrip('/')}/{self.sweep_id}"


def _records_dir() -> Path:
    return results_dir() / "sweeps"


def _new_record(study: Study, searcher: str, tracking_uri: str, storage: str | None) -> SweepRecord:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    sweep_id = f"{study.name}-{stamp}"
    n = 1
    while (_records_dir() / f"{sweep_id}.json").exists():  # two sweeps started in the same second
        n += 1
        sweep_id = f"{study.name}-{stamp}-{n}"
    return SweepRecord(sweep_id, study.name, str(study.path.resolve()), study.fingerprint(), searcher, tracking_uri,
                       storage or str(results_dir() / "ray"), time.strftime("%Y-%m-%d %H:%M:%S"), str(results_dir()))


def _save_record(record: SweepRecord) -> None:
    _records_dir().mkdir(parents=True, exist_ok=True)
    path = _records_dir() / f"{record.sweep_id}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(record), indent=1))
    tmp.replace(path)  # a full disk or a kill never leaves half a record


def read_record(path: Path) -> SweepRecord:
    """A sweep record; ConfigError naming the file if it is not one. A record written in another results folder
    (this one is a copy) has its paths under that folder moved here."""
    try:
        data = json.loads(path.read_text())
        record = SweepRecord(**data)
        if not all(isinstance(v, str) for v in asdict(record).values()):
            raise TypeError("a value is not text")
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as err:
        raise ConfigError(f"{path}: not a sweep record ({type(err).__name__}: {str(err)[:120]})") from None
    here = str(results_dir())
    if record.results and record.results != here:
        old = record.results.rstrip("/")
        record.storage = here + record.storage[len(old):] if record.storage.startswith(old + "/") else record.storage
        prefix = f"sqlite:///{old}/"
        if record.tracking_uri.startswith(prefix):
            record.tracking_uri = f"sqlite:///{here}/{record.tracking_uri[len(prefix):]}"
        record.results = here
    return record


def find_record(study: Study, which: str = "latest") -> SweepRecord:
    """The sweep to resume: by id, or the latest one of this study. Files in the records folder that are not
    sweep records are passed over with a warning (one broken file never blocks every study's resume)."""
    where = f"{study.path}: --resume"
    if which != "latest":
        path = _records_dir() / f"{which}.json"
        if not path.is_file():
            raise ConfigError(f"{where}: no sweep {which!r} in {_records_dir()}")
        record = read_record(path)
        if record.study != study.name:
            raise ConfigError(f"{where}: sweep {which!r} belongs to study {record.study!r}, not {study.name!r}")
    else:
        records = []
        for path in sorted(_records_dir().glob("*.json")):
            try:
                records.append(read_record(path))
            except ConfigError as err:
                print(f"urn-study: warning: skipped {err}", file=sys.stderr)
        records = [r for r in records if r.study == study.name]
        if not records:
            raise ConfigError(f"{where}: no earlier sweep of {study.name!r} in {_records_dir()}")
        record = max(records, key=lambda r: (r.created, r.sweep_id))
    if record.fingerprint != study.fingerprint():
        raise ConfigError(f"{where}: the study changed since sweep {record.sweep_id} started (its trials differ); "
                          "start a new sweep instead")
    return record


class SweepLock:
    """One driver per sweep: held (an exclusive lock on ``sweeps/<id>.lock``) from start to end, so a second
    ``--resume`` of a sweep that is running says so instead of training and logging its trials twice. The
    lock ends with the process, however it ends."""

    def __init__(self, sweep_id: str):
        self.path = _records_dir() / f"{sweep_id}.lock"
        self.file = None

    def __enter__(self) -> "SweepLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise ConfigError(f"sweep {self.path.stem} is running now ({holder}); wait for it to end, or stop it "
                              "and resume once") from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"pid {os.getpid()} on {os.uname().nodename}")
        self.file.flush()
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()  # releases the lock; the file stays (removing it would race a waiting driver)


# --- inside a Tune trial -------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepContext:
    """What every Tune trial needs to know about its sweep (plain data: it travels to the workers)."""

    study: str
    sweep_id: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    metric: str
    base: dict  # optuna: the study's base config (dotted)
    trials: dict  # grid: trial id -> flat config (to_flat)
    cpus: float
    earlier: dict = field(default_factory=dict)  # a resumed sweep: Tune trial name -> checkpoints of earlier runs


def train_pack(tune_config: dict, context: SweepContext) -> None:
    """The Tune trainable: train a pack of URN trials, record each in MLflow, report to Tune."""
    members = _members(tune_config, context)
    remove_stale_checkpoints()
    import torch

    torch.set_num_threads(max(1, int(context.cpus)))
    tags = _placement_tags(members[0][1])
    if BOUNDARY_KEY in tune_config:  # the refinement round it was added in (0: the coarse grid)
        tags["urn.round"] = str(tune_config[BOUNDARY_KEY]["round"])
    records: list = []
    try:
        for trial_id, config in members:
            records.append(tracking.TrialRecord.open(context.tracking_uri, context.experiment_id,
                                                     context.parent_run_id, context.study, context.sweep_id,
                                                     trial_id, config, tags))
        todo = [i for i, record in enumerate(records) if not record.finished]
        if todo:
            earlier = context.earlier.get(tune.get_context().get_trial_name(), [])
            try:
                _train(members, records, todo, context.metric, earlier)
            except Exception as err:
                if not disk_full(str(err)):
                    raise
                # no retry can help: the driver's DiskFull stops the sweep (what was recorded stays)
                tune.report({STOP_KEY: error_line(str(err)), context.metric: float("nan")})
                return
        summaries = [{"trial_id": trial_id, **record.summary} for (trial_id, _), record in zip(members, records)]
        tune.report({**_whereabouts(), "epoch": max((s.get("epochs", 0) for s in summaries), default=0),
                     context.metric: _mean([s.get(context.metric) for s in summaries]),
                     "urn_summary": json.dumps(summaries, default=str)})
    finally:
        for record in records:
            if not record.finished:
                record.fail()


def _members(tune_config: dict, context: SweepContext) -> list[tuple[str, Any]]:
    if "pack" in tune_config:
        return [(trial_id, parse_config(context.trials[trial_id])) for trial_id in tune_config["pack"]]
    if BOUNDARY_KEY in tune_config:
        trial = tune_config[BOUNDARY_KEY]
        return [(trial["trial_id"], parse_config({**context.base, **trial["point"], "seed": trial["seed"]},
                                                 source=f"trial {trial['trial_id']}"))]
    number = int(tune_config[NUMBER_KEY])
    point = {k: v for k, v in tune_config.items() if k != NUMBER_KEY}
    trial_id = f"{context.study}-o{number:04d}"
    return [(trial_id, parse_config({**context.base, **point}, source=f"trial {trial_id}"))]


def _placement_tags(config) -> dict[str, str]:
    """Where the trial runs: node, GPUs Ray gave it, the device the trial picked, its Tune trial."""
    from urn_study.model import pick_device

    runtime = ray.get_runtime_context()
    tune_context = tune.get_context()
    resources = tune_context.get_trial_resources()
    bundles = getattr(resources, "bundles", None) or resources
    return {"urn.node_ip": ray.util.get_node_ip_address(), "urn.node_id": runtime.get_node_id(),
            "urn.gpu_ids": json.dumps([str(g) for g in ray.get_gpu_ids()]),
            "urn.device": str(pick_device(config.train.device)),
            "urn.resources": json.dumps(bundles, default=str), "urn.tune_trial": tune_context.get_trial_name(),
            "urn.pid": str(os.getpid())}


def _train(members, records, todo: list[int], metric: str, earlier: list[str]) -> None:
    from urn_study.trial import run_trials

    ids = [members[i][0] for i in todo]
    configs = [members[i][1] for i in todo]
    reporter = _PackReporter(ids, [records[i] for i in todo], configs[0].train, metric)
    resumes, skipped = _resumes(ids, earlier)
    if skipped:
        for i in todo:
            records[i].set_tags({"urn.skipped_checkpoints": " ".join(skipped)})
    if resumes[0] is not None:
        epoch = max(state.epoch for state in resumes)  # a diverged trial's stopped earlier
        for i, state in zip(todo, resumes):
            records[i].set_tags({"urn.resumed_from_epoch": str(epoch)})
            # epochs the checkpoint holds but the run may lack (killed before they were sent): log_epoch
            # skips those already in the run
            for entry in state.history:
                records[i].log_epoch(entry["epoch"], {k: v for k, v in entry.items() if k != "epoch"})
    results = run_trials(configs, reporter.reports(), reporter.checkpoints(), resumes)
    reporter.flush()
    for i, result in zip(todo, results):
        records[i].finish(result)


def _resumes(trial_ids: list[str], earlier: list[str]) -> tuple[list, list[str]]:
    """Each trial's state from the newest checkpoint that holds all of them whole: this Tune trial's own (a
    retry), an older one of it where that is damaged (Tune keeps two), then those of the sweep's earlier runs
    (``earlier``: a resumed sweep), else none (the trials start again from epoch 0). Also the names of the
    checkpoints passed over."""
    latest = tune.get_checkpoint()
    skipped = []
    own = _checkpoints_from(latest) if latest is not None else []
    for checkpoint in own + [tune.Checkpoint(path) for path in earlier]:
        try:
            with checkpoint.as_directory() as folder:
                if all((Path(folder) / t).is_dir() for t in trial_ids):
                    return [load_state(Path(folder) / t) for t in trial_ids], skipped
        except (CheckpointError, OSError) as err:
            print(f"urn-study: {', '.join(trial_ids)}: checkpoint {checkpoint.path} skipped ({err})", file=sys.stderr)
        skipped.append(checkpoint.path.rstrip("/").rsplit("/", 1)[-1])
    return [None] * len(trial_ids), skipped


def _checkpoints_from(latest) -> list:
    """``latest`` and the checkpoints beside it in its trial's folder, newest first."""
    from pyarrow import fs

    parent, name = latest.path.rstrip("/").rsplit("/", 1)
    try:
        infos = latest.filesystem.get_file_info(fs.FileSelector(parent))
    except OSError:
        return [latest]
    older = sorted((i.path for i in infos if i.type == fs.FileType.Directory and i.base_name.startswith("checkpoint_")
                    and i.base_name < name), reverse=True)
    return [latest, *[tune.Checkpoint(path, filesystem=latest.filesystem) for path in older]]


class _PackReporter:
    """Turns run_trials' per-trial callbacks into ``tune.report`` calls: at checkpoint epochs with one
    checkpoint holding a folder per trial, at the last epoch, and at other epochs if ``REPORT_EVERY_S``
    passed since the last report (progress for long gaps between checkpoints). Each epoch goes to the
    trial's MLflow run."""

    def __init__(self, trial_ids: list[str], records: list, train, metric: str, clock=time.monotonic):
        self.ids, self.records, self.train, self.metric, self.clock = trial_ids, records, train, metric, clock
        self.dead: set[int] = set()  # diverged in an earlier epoch: reports no more
        self.epoch_metrics: dict[int, dict] = {}
        self.latest: dict[int, float] = {}  # the metric carried between snapshot epochs
        self.saved = 0
        self.folder: str | None = None
        self.epoch = 0
        self.sent_at = self.clock()

    def reports(self) -> list:
        return [lambda epoch, m, i=i: self._report(i, epoch, m) for i in range(len(self.ids))]

    def checkpoints(self) -> list:
        return [lambda state, i=i: self._checkpoint(i, state) for i in range(len(self.ids))]

    def _checkpoint_epoch(self, epoch: int) -> bool:
        """Not the last epoch: the trials' records are written right after it (a retry of a trial that fails
        there starts from the checkpoint before)."""
        return epoch % self.train.checkpoint_every == 0 and epoch < self.train.epochs

    def _report(self, i: int, epoch: int, metrics: dict) -> None:
        self.records[i].log_epoch(epoch, metrics)
        self.epoch = epoch
        self.epoch_metrics[i] = metrics
        if _finite(metrics.get(self.metric)):
            self.latest[i] = float(metrics[self.metric])
        expected = set(range(len(self.ids))) - self.dead
        if set(self.epoch_metrics) >= expected and not self._checkpoint_epoch(epoch):
            if epoch == self.train.epochs or self.clock() - self.sent_at >= REPORT_EVERY_S:
                self._send(None)
            else:
                self._next_epoch()

    def _checkpoint(self, i: int, state) -> None:
        if not self._checkpoint_epoch(self.epoch):  # a diverged trial's state.epoch stopped earlier
            return
        if self.folder is None:
            self.folder = tempfile.mkdtemp(prefix=f"{CHECKPOINT_PREFIX}{os.getpid()}-")
        save_state(state, Path(self.folder) / self.ids[i])
        self.saved += 1
        if self.saved == len(self.ids):
            self._send(self.folder)

    def _send(self, folder: str | None) -> None:
        metrics: dict[str, Any] = {"epoch": self.epoch, self.metric: _mean(list(self.latest.values())),
                                   **_whereabouts()}
        if len(self.ids) == 1 and self.epoch_metrics:
            metrics.update({k: float(v) for k, v in self.epoch_metrics[0].items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool)})
            metrics[self.metric] = _mean(list(self.latest.values()))
        try:
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder) if folder else None)
        finally:
            if folder:
                shutil.rmtree(folder, ignore_errors=True)  # report has copied it to storage
        if folder:
            _pause_point(self.ids[0], self.epoch)
        self.sent_at = self.clock()
        self._next_epoch()

    def _next_epoch(self) -> None:
        self.dead |= {i for i, m in self.epoch_metrics.items() if "diverged" in m}
        self.epoch_metrics, self.saved, self.folder = {}, 0, None

    def flush(self) -> None:
        """Send what the last epoch left (all trials diverged before a checkpoint epoch's save)."""
        if self.epoch_metrics or self.folder:
            self._send(self.folder if self.saved == len(self.ids) else None)


def _whereabouts() -> dict[str, Any]:
    """Where the trial's process runs, in each report: the driver's Watchdog stops it there if it freezes."""
    return {"urn_pid": os.getpid(), "urn_node_id": ray.get_runtime_context().get_node_id() if ray.is_initialized()
            else ""}


def remove_stale_checkpoints(folder: str | None = None) -> list[str]:
    """Remove the checkpoint folders that workers killed mid-save left in the temporary folder (``folder``):
    each is named after its worker's pid, and is stale once that process is gone."""
    removed = []
    for path in Path(folder or tempfile.gettempdir()).glob(f"{CHECKPOINT_PREFIX}*-*"):
        pid = path.name[len(CHECKPOINT_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _pause_point(trial_id: str, epoch: int) -> None:
    """Wait at the gate ``$URN_PAUSE_AT`` names, if it names this epoch (see PAUSE_ENV)."""
    at, _, folder = os.environ.get(PAUSE_ENV, "").partition(":")
    if not folder or at != str(epoch):
        return
    gate = Path(folder)
    (gate / f"{trial_id}.paused").write_text(str(os.getpid()))
    while not (gate / "go").exists() and not (gate / f"{trial_id}.go").exists():
        time.sleep(0.05)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _mean(values: list) -> float:
    values = [float(v) for v in values if _finite(v)]
    return sum(values) / len(values) if values else float("nan")


# --- progress --------------------------------------------------------------------------------------


class Progress(tune.Callback):
    """Live progress in URN trials: done, running, failed, waiting, epochs, time left. Plain data only:
    Tune pickles it with the experiment and brings it back on resume."""

    def __init__(self, study: str, total_trials: int, epochs: int, every_s: float = 10.0, budget: bool = False,
                 done_before: int = 0):
        self.study, self.total, self.epochs, self.every_s = study, total_trials, epochs, every_s
        self.budget = budget  # total_trials is a budget the search may not spend (the boundary search)
        self.done_before = done_before  # a resumed sweep: trials that finished in its earlier runs
        self._reset()

    def _reset(self) -> None:
        self.start = time.monotonic()
        self.last_print = 0.0
        self.first_epochs: float | None = None
        self.last_line = ""
        self.peak_running = 0

    def setup(self, **info) -> None:
        self._reset()

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items()
                if k in ("study", "total", "epochs", "every_s", "budget", "done_before")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset()

    def counts(self, trials: list) -> dict[str, float]:
        out = {"done": self.done_before, "running": 0, "failed": 0, "epochs": float(self.done_before * self.epochs)}
        for trial in trials:
            size = _pack_size(trial.config)
            status = trial.status
            if status == "TERMINATED" and "urn_summary" not in (trial.last_result or {}):
                continue  # stopped by an interrupt, not finished: waiting for a resume
            if status == "TERMINATED":
                out["done"] += size
                out["epochs"] += size * self.epochs
            elif status == "ERROR":
                out["failed"] += size
                out["epochs"] += size * self.epochs
            elif status in ("RUNNING", "PAUSED"):
                out["running"] += size
                out["epochs"] += size * float((trial.last_result or {}).get("epoch", 0) or 0)
        return out

    def line(self, trials: list, final: bool = False) -> str:
        c = self.counts(trials)
        elapsed = time.monotonic() - self.start
        if self.first_epochs is None:
            self.first_epochs = c["epochs"]  # work done before this session (a resume) does not count
        total = c["done"] + c["failed"] if self.budget and final else self.total
        waiting = max(0, total - c["done"] - c["failed"] - c["running"])
        done_now = c["epochs"] - self.first_epochs
        remaining = total * self.epochs - c["epochs"]
        left = _clock(remaining * elapsed / done_now) if done_now > 0 and remaining >= 0 else "?"
        of = f"at most {total}" if self.budget and not final else str(total)
        queue = f"{waiting} more at most" if self.budget and not final else f"{waiting} waiting"
        return (f"[{_clock(elapsed)}] {self.study}: {c['done']}/{of} done, {c['running']} running, "
                f"{c['failed']} failed, {queue} | {int(c['epochs'])}/{total * self.epochs} "
                f"epochs | " + (f"at most {self.peak_running} ran at once" if final else f"~{left} left"))

    def _maybe_print(self, trials: list, force: bool = False, final: bool = False) -> None:
        now = time.monotonic()
        self.peak_running = max(self.peak_running, int(self.counts(trials)["running"]))
        if force or now - self.last_print >= self.every_s:
            line = self.line(trials, final)
            if force or line != self.last_line:
                print(line, flush=True)
                self.last_line, self.last_print = line, now

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        self._maybe_print(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._maybe_print(trials, force=True)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._maybe_print(trials, force=True)

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        self._maybe_print(trials)

    def on_experiment_end(self, trials: list, **info) -> None:
        self._maybe_print(trials, force=True, final=True)


class DiskFull(tune.Stopper):
    """Stops every trial once one reports that the disk is full (``STOP_KEY``): retrying each trial three times
    against a full disk only buries the cause (the driver reads it from that trial's result)."""

    def __init__(self):
        self.full = False

    def __call__(self, trial_id: str, result: dict) -> bool:
        self.full = self.full or bool(result.get(STOP_KEY))
        return self.full

    def stop_all(self) -> bool:
        return self.full


def _stop_reason(grid) -> str:
    for result in grid or []:
        if (result.metrics or {}).get(STOP_KEY):
            return str(result.metrics[STOP_KEY])
    return ""


class Watchdog(tune.Callback):
    """A trial that has reported nothing for ``timeout_s`` (its process stopped, hung in a driver call, swapping)
    would hold the sweep for ever: its process is killed where it runs, so Tune retries it from its checkpoint
    (``max_failures``), and a line says so. Trials report at least at every checkpoint epoch and every
    ``REPORT_EVERY_S`` between; the timeout must exceed the longest epoch."""

    def __init__(self, timeout_s: float, clock=time.monotonic):
        self.timeout_s, self.clock = timeout_s, clock
        self._reset()

    def _reset(self) -> None:
        self.heard: dict[str, float] = {}  # Tune trial id -> when it last reported (or started)
        self.where: dict[str, tuple] = {}  # Tune trial id -> (pid, node id) of its last report

    def setup(self, **info) -> None:
        self._reset()

    def __getstate__(self) -> dict:
        return {"timeout_s": self.timeout_s}

    def __setstate__(self, state: dict) -> None:
        self.timeout_s, self.clock = state["timeout_s"], time.monotonic
        self._reset()

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        self.heard[trial.trial_id] = self.clock()
        self.where.pop(trial.trial_id, None)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        self.heard[trial.trial_id] = self.clock()
        if "urn_pid" in result:
            self.where[trial.trial_id] = (int(result["urn_pid"]), str(result.get("urn_node_id", "")))

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self.heard.pop(trial.trial_id, None)

    on_trial_error = on_trial_complete

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        now = self.clock()
        for trial in trials:
            since = self.heard.get(trial.trial_id)
            if trial.status != "RUNNING" or since is None or now - since < self.timeout_s:
                continue
            self.heard[trial.trial_id] = now  # once per timeout
            pid, node = self.where.get(trial.trial_id, (None, ""))
            what = f"{trial_name(trial)} has reported nothing for {now - since:.0f} s"
            if pid is None:
                print(f"urn-study: {what} (and never reported where it runs): still waiting", flush=True)
                continue
            print(f"urn-study: {what}: its process {pid} is stopped, to be retried from its checkpoint", flush=True)
            _kill_on_node(pid, node)


def _kill_on_node(pid: int, node_id: str) -> None:
    """SIGKILL process ``pid`` on the Ray node ``node_id`` (this machine's own, or through a task placed there)."""
    if not node_id or node_id == ray.get_runtime_context().get_node_id():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    kill = ray.remote(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False))(_kill_here)
    kill.remote(pid)


def _kill_here(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _pack_size(config: dict) -> int:
    return len(config.get("pack", [None]))


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


def trial_name(trial) -> str:
    """Tune trials are named after the URN trials they hold (``quickstart-0003``, ``study-0004+3``)."""
    config = trial.config
    if "pack" in config:
        ids = config["pack"]
        return ids[0] if len(ids) == 1 else f"{ids[0]}+{len(ids) - 1}"
    if BOUNDARY_KEY in config:
        return config[BOUNDARY_KEY]["trial_id"]
    return f"optuna-{config.get(NUMBER_KEY, trial.trial_id)}"


def trial_dirname(trial) -> str:
    return f"{trial_name(trial)}_{trial.trial_id}"


# --- the searchers -----------------------------------------------------------------------------------


class NumberedOptunaSearch(OptunaSearch):
    """OptunaSearch that numbers each config in the order asked: stable URN trial ids (``<name>-o0003``). A
    resumed sweep's unfinished trials (``again``: number -> their points) are asked first, under their own
    numbers, new ones numbered after the highest before (``first``); the earlier run's optuna trials that were
    cut short are marked failed."""

    def __init__(self, *args, again: dict[int, dict] | None = None, first: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.again = again or {}
        self.next_number = first

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        ready = super().set_search_properties(metric, mode, config, **spec)
        if ready and self.again:
            import optuna

            for trial in self._ot_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                self._ot_study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            for number, point in sorted(self.again.items()):
                self._ot_study.enqueue_trial(point, user_attrs={NUMBER_KEY: number})
            self.again = {}
        return ready

    def suggest(self, trial_id: str):
        config = super().suggest(trial_id)
        if isinstance(config, dict):
            number = self._ot_trials[trial_id].user_attrs.get(NUMBER_KEY)
            if number is None:
                number, self.next_number = self.next_number, self.next_number + 1
            config[NUMBER_KEY] = int(number)
        return config


class BoundarySearch(Searcher):
    """The boundary search (``urn_study.boundary``) as a Tune searcher: the coarse grid first, then trials where
    neighbouring points or seeds disagree, as their results come in. It returns None (Tune asks again) while
    every bracket waits for a result, and FINISHED when the plan is done. A resumed sweep's search starts from
    its trials' MLflow runs (``runs``): the finished ones' labels, and the unfinished ones asked for again first,
    under their own numbers."""

    def __init__(self, study: Study, metric: str, mode: str, runs: list | None = None):
        super().__init__(metric=metric, mode=mode)
        self.name = study.name
        self.plan = BoundaryPlan(study.grid, study.seeds, study.boundary_search())
        self.queue: list = []
        self.live: dict[str, Any] = {}  # Tune trial id -> Issued
        for run in runs or []:
            self._add_earlier(run)

    def _add_earlier(self, run) -> None:
        """One trial run of the sweep's earlier runs into the plan: as a result if it finished, else queued."""
        trial_id = run.data.tags.get(tracking.TRIAL_TAG, "")
        number = trial_id.rsplit("-b", 1)[-1]
        if not number.isdigit():
            return
        params = run.data.params
        point = tuple(_grid_value(params.get(key), values) for key, values in self.plan.grid.items())
        seed = int(params.get("seed", self.plan.seeds[0]))
        issued = Issued(int(number), point, seed, int(run.data.tags.get("urn.round", "0")))
        self.plan.issued.append(issued)
        if run.info.status != "FINISHED":
            self.plan.pending.add((point, seed))
            self.queue.append(issued)
            return
        summary = {**run.data.metrics, **{k: run.data.tags.get(k) for k in tracking.FINAL_TAGS}}
        self._record(issued, summary)

    def suggest(self, trial_id: str):
        if not self.queue:
            self.queue = self.plan.next_trials()
        if not self.queue:
            return Searcher.FINISHED if self.plan.done else None
        issued = self.queue.pop(0)
        self.live[trial_id] = issued
        point = dict(zip(self.plan.keys, issued.point))
        return {BOUNDARY_KEY: {"trial_id": f"{self.name}-b{issued.number:04d}", "point": point, "seed": issued.seed,
                               "round": issued.round}}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        issued = self.live.pop(trial_id, None)
        if issued is not None:
            self._record(issued, _summary_of(result) if result and not error else {})

    def _record(self, issued: Issued, summary: dict) -> None:
        label = summary.get(self.plan.refine.outcome)  # a diverged trial has a phase but no depth: left out
        label = None if label in (None, "", "diverged") else _label_text(label)
        margin = summary.get("margin")
        self.plan.record(issued.point, issued.seed, label, float(margin) if _finite(margin) else math.nan)

    def save(self, checkpoint_path: str) -> None:
        """The plan's state as JSON, which Tune keeps in the run's folder for a reader (a resume reads the MLflow
        records instead: nothing in the results folder is trusted to run)."""
        state = {"plan": self.plan.state(), "queue": [i.number for i in self.queue],
                 "live": {tune_id: i.number for tune_id, i in self.live.items()}}
        Path(checkpoint_path).write_text(json.dumps(state))


def _grid_value(text: str | None, values: list) -> Any:
    """A grid axis's value from its MLflow param (text): the grid's own value where one matches, else a number
    (a value the search added between two grid values)."""
    for value in values:
        if str(value) == text or (_is_number(value) and _number(text) == float(value)):
            return value
    number = _number(text)
    return number if number is not None else text


def _number(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _label_text(label: Any) -> str:
    """A phase as it is, a depth (a metric: 3.0) as the integer text the search compares (``3``)."""
    number = _number(label)
    return str(int(number)) if number is not None and number.is_integer() else str(label)


def _summary_of(result: dict) -> dict:
    """The one URN trial's final summary from a Tune result (``train_pack`` reports it as JSON)."""
    try:
        summaries = json.loads(result.get("urn_summary", "[]"))
    except (TypeError, ValueError):
        return {}
    return summaries[0] if summaries else {}


def check_searcher(study: Study, searcher: str) -> None:
    """Errors a searcher would only meet inside Ray, raised before it starts (one line, file and key)."""
    where = str(study.path)
    if searcher not in SEARCHERS:
        raise ConfigError(f"--searcher {searcher!r}: one of {', '.join(SEARCHERS)}")
    if searcher == "boundary":
        if study.trials_per_worker != 1:
            raise ConfigError(f"{where}: trials_per_worker: must be 1 with --searcher boundary "
                              f"(got {study.trials_per_worker}); packs are for grids")
        if study.sample:
            raise ConfigError(f"{where}: sample: --searcher boundary refines grid axes; sampled axes are for optuna")
        for key, values in study.grid.items():
            if any(not isinstance(v, (int, float, str, bool)) for v in values):
                raise ConfigError(f"{where}: grid.{key}: the boundary search takes only plain values (no schedules)")
        study.boundary_search()  # a study without an axis to bisect says so here
    if searcher == "optuna":
        if study.trials_per_worker != 1:
            raise ConfigError(f"{where}: trials_per_worker: must be 1 with --searcher optuna "
                              f"(got {study.trials_per_worker}); packs are for grids")
        if not study.sample:
            raise ConfigError(f"{where}: sample: --searcher optuna needs sampled axes (none given)")
        for key, values in study.grid.items():
            if any(not isinstance(v, (int, float, str, bool)) for v in values):
                raise ConfigError(f"{where}: grid.{key}: optuna takes only plain values (no schedules) as choices")


def _optuna_space(study: Study) -> tuple[dict, dict]:
    """(Tune search space, constant base): sampled axes as Tune domains, grid axes and seeds as choices."""
    domains = {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}
    space: dict[str, Any] = {}
    base = dict(study.base)
    for key, sampled in study.sample.items():
        space[key] = tune.choice(list(sampled.args)) if sampled.kind == "choice" else domains[sampled.kind](*sampled.args)
    for key, values in {**study.grid, "seed": study.seeds}.items():
        if len(values) == 1:
            base[key] = values[0]
        else:
            space[key] = tune.choice(list(values))
    return space, base


def _optuna_searcher(study: Study, record: SweepRecord, earlier: "Earlier"):
    import optuna

    storage = optuna.storages.RDBStorage(f"sqlite:///{results_dir() / 'optuna.db'}")
    space, _ = _optuna_space(study)
    again, numbers = {}, [-1]
    for run in earlier.runs:  # an unfinished trial's point, as the search space has it
        number = run.data.tags.get(tracking.TRIAL_TAG, "").rsplit("-o", 1)[-1]
        if number.isdigit():
            numbers.append(int(number))
            if run.info.status != "FINISHED":
                again[int(number)] = {key: _space_value(run.data.params.get(key), domain)
                                      for key, domain in space.items()}
    # the sampler's seed moves on with the trials run: a resumed sampler would otherwise draw the first points again
    return NumberedOptunaSearch(metric=study.metric, mode=study.mode, study_name=record.sweep_id, storage=storage,
                                seed=study.sample_seed + len(earlier.runs), again=again, first=max(numbers) + 1)


def _space_value(text: str | None, domain) -> Any:
    """A sampled or chosen value from its MLflow param (text), typed as the search space's domain wants it."""
    categories = getattr(domain, "categories", None)
    if categories is not None:
        return _grid_value(text, list(categories))
    number = _number(text)
    if isinstance(domain, tune.search.sample.Integer) and number is not None:
        return int(number)
    return number


# --- the driver ---------------------------------------------------------------------------------------


def run_sweep(study_path: str | Path, smoke: bool = False, address: str | None = None, tracking_uri: str | None = None,
              searcher: str = "grid", max_concurrent: int | None = None, resume: str | None = None,
              storage: str | None = None, num_cpus: int | None = None, stall_timeout_s: float = 1800.0,
              out=None) -> int:
    """Run (or resume) a sweep of a study file; returns 0 when every trial finished, 128 + the signal's number
    when it was stopped by SIGINT or SIGTERM (the state saved for ``--resume``), else 1."""
    out = out or sys.stdout
    study = load_study(study_path, smoke=smoke)
    if resume:
        record = find_record(study, resume)
        searcher = record.searcher
        record.tracking_uri = tracking.resolve_tracking_uri(tracking_uri or record.tracking_uri)
    else:
        record = _new_record(study, searcher, tracking.resolve_tracking_uri(tracking_uri), storage)
    check_searcher(study, searcher)
    if max_concurrent is not None and max_concurrent < 1:
        raise ConfigError(f"--max-concurrent: must be at least 1, got {max_concurrent}")
    if num_cpus is not None and num_cpus < 1:
        raise ConfigError(f"--num-cpus: must be at least 1, got {num_cpus}")
    if not stall_timeout_s > REPORT_EVERY_S:
        raise ConfigError(f"--stall-timeout: must be more than {REPORT_EVERY_S:g} s (trials report that often at "
                          f"most), got {stall_timeout_s:g}")
    if not address:
        check_local_resources(study, num_cpus)
    tracking.check_tracking(record.tracking_uri)
    check_storage(record.storage)
    try:
        with SweepLock(record.sweep_id):
            return _run_locked(study, record, searcher, smoke, address, max_concurrent, resume, num_cpus,
                               stall_timeout_s, out)
    except Exception as err:
        if not disk_full(str(err)):
            raise
        raise ConfigError(f"the disk is full ({error_line(str(err))}); free space, then continue with: urn-study "
                          f"sweep {study.path}{' --smoke' if smoke else ''} --resume {record.sweep_id}") from None


def _run_locked(study: Study, record: SweepRecord, searcher: str, smoke: bool, address: str | None,
                max_concurrent: int | None, resume: str | None, num_cpus: int | None, stall_timeout_s: float,
                out) -> int:
    _save_record(record)
    experiment_id = tracking.ensure_experiment(record.tracking_uri, study.name)
    if searcher == "boundary":
        n_trials = study.boundary_search().budget  # at most: the search may stop before
    else:
        n_trials = study.samples if searcher == "optuna" else len(study.trials())
    parent = tracking.open_sweep_run(record.tracking_uri, experiment_id, study.name, record.sweep_id,
                                     {"searcher": searcher, "trials": n_trials, "study_file": record.study_file,
                                      "smoke": smoke, "fingerprint": record.fingerprint,
                                      "trials_per_worker": study.trials_per_worker}, study.path)
    print(f"{'resuming' if resume else 'starting'} sweep {record.sweep_id}: {n_trials} trials of {study.name} "
          f"({searcher}), {study.resources.cpu:g} CPU + {study.resources.gpu:g} GPU each\n"
          f"  MLflow: {record.tracking_uri} (experiment {study.name!r}); Ray results: {record.experiment_path}",
          file=out, flush=True)
    resume_command = f"urn-study sweep {study.path}{' --smoke' if smoke else ''} --resume {record.sweep_id}"
    status, started = "FAILED", False
    stop = _Interrupts()
    try:
        state = _earlier_state(record, experiment_id) if resume else Earlier()
        if resume:
            print(f"  {len(state.finished)} trials finished before; the rest run now, from the newest of "
                  f"{sum(len(c) for c in state.checkpoints.values())} checkpoints the earlier runs left",
                  file=out, flush=True)
        started = _start_ray(address, num_cpus)
        space, base, trials = _search_space(study, searcher, state.finished)
        context = SweepContext(study.name, record.sweep_id, record.tracking_uri, experiment_id, parent, study.metric,
                               base, trials, study.resources.cpu, state.checkpoints)
        with stop:
            grid = _tuner(study, record, context, space, searcher, max_concurrent, n_trials, state,
                          stall_timeout_s).fit() if space is not None else None
        rows = summary_rows(study, record, experiment_id, searcher, grid)
        reason = _stop_reason(grid)
        if reason:
            print(f"stopped: the disk is full ({reason}) under {results_dir()} or the tracking store; free space, "
                  f"then continue with: {resume_command}", file=out, flush=True)
            return 1
        if stop.signal:
            status = "KILLED"
            done = sum(r["status"] == "FINISHED" for r in rows)
            print(f"stopped by {signal.Signals(stop.signal).name}: {done} of {n_trials} trials finished, the others "
                  f"saved at their last checkpoint; continue with: {resume_command}", file=out, flush=True)
            return 128 + stop.signal
        print(format_summary(rows, study), file=out, flush=True)
        # a boundary search may end before its budget: then every trial it asked for is the whole sweep
        complete = bool(rows) and all(r["status"] == "FINISHED" for r in rows) and (
            searcher == "boundary" or len(rows) >= n_trials)
        status = "FINISHED" if complete else "FAILED"
        if any(disk_full(r.get("error", "")) for r in rows):
            print(f"the disk is full under {results_dir()} or the tracking store: free space there", file=out, flush=True)
        if not complete:
            print(f"not every trial finished; continue with: {resume_command}", file=out, flush=True)
        return 0 if complete else 1
    finally:
        try:
            tracking.close_sweep_run(record.tracking_uri, experiment_id, record.sweep_id, parent, status)
        except Exception as err:  # noqa: BLE001 - a full disk, a store gone: the resume ends the run instead
            print(f"urn-study: could not end the sweep's MLflow run ({error_line(str(err))}); its resume will",
                  file=sys.stderr, flush=True)
        if started:
            ray.shutdown()


class _Interrupts:
    """While Tune runs (``with``): SIGINT and SIGTERM stop the sweep the way Tune stops on SIGUSR1 (trials end,
    the experiment state is saved for --resume) and ``signal`` says which came; a second one stops at once
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


def check_storage(storage: str) -> None:
    """A local results folder for Ray must be writable before anything starts (a URI is checked by Ray)."""
    if "://" in storage and not storage.startswith("file://"):
        return
    folder = Path(storage.removeprefix("file://"))
    probe = folder / f".urn-probe-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"--storage {storage}: Ray cannot write its results there ({err.strerror or err})") from None


def check_local_resources(study: Study, num_cpus: int | None) -> None:
    """On local Ray a trial bigger than the machine would wait forever: say so before Ray starts. (On a
    cluster, given by --address, nodes may still be added by the autoscaler.)"""
    where = f"{study.path}: resources"
    if ray.is_initialized():
        total = ray.cluster_resources()
        cpus, gpus, source = total.get("CPU", 0.0), total.get("GPU", 0.0), "the connected Ray"
    else:
        cpus = float(num_cpus if num_cpus is not None else os.cpu_count() or 1)
        gpus = float(_local_gpus()) if study.resources.gpu > 0 else 0.0
        source = "local Ray" + (" (--num-cpus)" if num_cpus is not None else "")
    if study.resources.cpu > cpus:
        raise ConfigError(f"{where}.cpu: a trial asks for {study.resources.cpu:g} CPUs, {source} has {cpus:g}")
    if study.resources.gpu > gpus:
        raise ConfigError(f"{where}.gpu: a trial asks for {study.resources.gpu:g} GPU, {source} has {gpus:g} "
                          "(run on a cluster with --address, or set resources.gpu: 0)")


def _local_gpus() -> int:
    import torch

    return torch.cuda.device_count()


def _start_ray(address: str | None, num_cpus: int | None) -> bool:
    """Connect to ``address`` or start local Ray; False if this process was already connected."""
    # Tune's own tables and the workers' log lines would bury the progress lines: errors still come back
    # through Tune (the summary prints each failed trial's last error line; the full text is in its folder).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # A checkpoint with num_to_keep set forces a snapshot of the experiment state: wanted (resume loses less).
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # MLflow is the record: of Tune's own per-report files in every trial folder only result.json is kept
    # (Tune's results read it; `_tuner` adds its logger), no CSV or TensorBoard copy (~4 ms of driver CPU
    # per report, taken from the trials on a machine they fill)
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # SIGINT and SIGTERM are ours while Tune runs (_Interrupts): they stop it through its SIGUSR1 handler
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    _quiet_tune_interrupt_messages()
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False, logging_level="WARNING")
    else:
        # "local": a new instance, even where `ray start` left one running (Ray would join that one silently)
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 logging_level="WARNING")
    return True


class _TuneLines(logging.Filter):
    """Ray's log lines, made ours at their source: an interrupted run's lines name Tune's restore, not urn-study's
    --resume (printed instead): dropped; a failed trial and a failed copy to storage are one line each with the
    error's last line, not a 150-line trace (the trial's folder keeps the whole error)."""

    # (Tune's own result files of trials that never wrote one: the MLflow runs are the record, read instead)
    DROPPED = ("Stop signal received", "Experiment has been interrupted", "Trials did not complete",
               "Failed to fetch metrics")

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        if text.startswith(self.DROPPED):
            return False
        if text.startswith("Trial task failed for trial") and record.exc_info:
            record.msg = f"{text.replace('Trial task failed for trial', 'trial')} failed: " \
                         f"{error_line(str(record.exc_info[1]))}"
            record.exc_info, record.exc_text, record.args = None, None, ()
        elif text.startswith("Last sync command failed"):
            record.msg = f"Ray could not copy results to storage: {error_line(text)}"
            record.args = ()
        elif text.startswith("Saving experiment state to storage") and record.exc_info:
            record.msg = f"Ray could not save its experiment state: {error_line(str(record.exc_info[1]))}"
            record.exc_info, record.exc_text, record.args = None, None, ()
        return True


def _quiet_tune_interrupt_messages() -> None:
    for name in ("ray.tune.tune", "ray.tune.execution.tune_controller", "ray.train._internal.syncer",
                 "ray.tune.execution.experiment_state", "ray.tune.analysis.experiment_analysis"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _TuneLines) for f in logger.filters):
            logger.addFilter(_TuneLines())


def error_line(text: str) -> str:
    """The line of an error's text that says what went wrong: the last ``SomeError: ...`` line (SQLAlchemy and
    Ray add lines after it), else the last line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if disk_full(text):  # the cause, wherever the chain of exceptions put it
        return next(line for line in lines if disk_full(line))[:300]
    for line in reversed(lines):
        head = line.split(":", 1)[0].split(".")[-1].split("(")[0]
        if ":" in line and (head.endswith(("Error", "Exception")) or head in ("KeyboardInterrupt", "SystemExit")):
            return line[:300]
    return lines[-1][:300] if lines else ""


def disk_full(text: str) -> bool:
    return any(s in text for s in ("No space left on device", "database or disk is full", "[Errno 28]"))


def _search_space(study: Study, searcher: str, finished: set[str] = frozenset()) -> tuple[dict | None, dict, dict]:
    """(Tune param space, base config for optuna trials, trial id -> flat config for grid packs). A grid's packs
    whose trials all finished before (a resumed sweep) are left out; None when none is left."""
    if searcher == "optuna":
        space, base = _optuna_space(study)
        return space, base, {}
    if searcher == "boundary":
        return {}, dict(study.base), {}
    packs = [pack for pack in pack_trials(study.trials(), study.trials_per_worker)
             if any(t.trial_id not in finished for t in pack)]
    if not packs:
        return None, {}, {}
    space = {"pack": tune.grid_search([[t.trial_id for t in pack] for pack in packs])}
    return space, {}, {t.trial_id: to_flat(t.config) for t in study.trials()}


def _tuner(study: Study, record: SweepRecord, context: SweepContext, space: dict, searcher: str,
           max_concurrent: int | None, n_trials: int, earlier: "Earlier", stall_timeout_s: float = 1800.0) -> tune.Tuner:
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
        search_alg, samples = _optuna_searcher(study, record, earlier), left
    elif searcher == "boundary":
        search_alg, samples = BoundarySearch(study, study.metric, study.mode, earlier.runs), left
    tune_config = tune.TuneConfig(
        metric=study.metric, mode=study.mode, num_samples=max(1, samples), search_alg=search_alg,
        max_concurrent_trials=max_concurrent, reuse_actors=True, trial_name_creator=trial_name,
        trial_dirname_creator=trial_dirname)
    name = f"{record.sweep_id}-resumed-{time.strftime('%Y%m%d-%H%M%S')}" if earlier.resumed else record.sweep_id
    run_config = tune.RunConfig(
        name=name, storage_path=record.storage, verbose=0, stop=DiskFull(),
        failure_config=tune.FailureConfig(max_failures=study.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        callbacks=[Progress(study.name, n_trials, epochs, budget=searcher == "boundary", done_before=len(earlier.finished)),
                   Watchdog(stall_timeout_s), JsonLoggerCallback()])
    return tune.Tuner(trainable, param_space=space, tune_config=tune_config, run_config=run_config)


# --- a resumed sweep: from its MLflow records and its checkpoints ---------------------------------------------


@dataclass
class Earlier:
    """What the earlier runs of a sweep left: its trial runs, which finished, and the checkpoints of the rest."""

    runs: list = field(default_factory=list)  # MLflow runs of the sweep's trials, oldest first
    checkpoints: dict = field(default_factory=dict)  # Tune trial name -> checkpoint folders, newest first
    resumed: bool = False

    @property
    def finished(self) -> set[str]:
        return {r.data.tags.get(tracking.TRIAL_TAG) for r in self.runs if r.info.status == "FINISHED"}


def _earlier_state(record: SweepRecord, experiment_id: str) -> Earlier:
    return Earlier(tracking.trial_runs(record.tracking_uri, experiment_id, record.sweep_id),
                   checkpoints_of(record.storage, record.sweep_id), resumed=True)


def checkpoints_of(storage: str, sweep_id: str) -> dict[str, list[str]]:
    """Every checkpoint the sweep's runs left under ``storage`` (its first run's folder ``<sweep_id>`` and its
    resumes' ``<sweep_id>-resumed-*``), by Tune trial name, newest (highest epoch) first. Read from each
    checkpoint's JSON only: a damaged one is found out, and passed over, when a trial loads it."""
    from pyarrow import fs

    filesystem, root = fs.FileSystem.from_uri(storage if "://" in storage else str(Path(storage).resolve()))
    if "://" in storage:
        prefix = storage.rstrip("/")[: len(storage.rstrip("/")) - len(root.rstrip("/"))]
    else:
        prefix = ""

    def folders(path: str) -> list:
        try:
            return [i for i in filesystem.get_file_info(fs.FileSelector(path)) if i.type == fs.FileType.Directory]
        except (OSError, FileNotFoundError):
            return []

    found: dict[str, list[tuple[int, str]]] = {}
    for run in folders(root):
        if run.base_name != sweep_id and not run.base_name.startswith(f"{sweep_id}-resumed-"):
            continue
        for trial in folders(run.path):
            name = _trial_name_of(trial.base_name)
            for checkpoint in folders(trial.path):
                if checkpoint.base_name.startswith("checkpoint_"):
                    found.setdefault(name, []).append((_checkpoint_epoch(filesystem, checkpoint.path),
                                                       prefix + checkpoint.path))
    return {name: [path for _, path in sorted(items, reverse=True)] for name, items in found.items()}


def _trial_name_of(dirname: str) -> str:
    """The trial name in a Tune trial folder's name (``trial_dirname``: ``<name>_<Tune's id>``, the id being
    ``<hex>_<index>`` as Tune makes them)."""
    match = re.fullmatch(r"(.+)_[0-9a-f]+_\d+", dirname)
    return match[1] if match else dirname.rsplit("_", 1)[0]


def _checkpoint_epoch(filesystem, path: str) -> int:
    """The epoch a checkpoint holds (its first trial's state.json), or -1 where it cannot be read."""
    from pyarrow import fs

    try:
        member = next(i for i in filesystem.get_file_info(fs.FileSelector(path)) if i.type == fs.FileType.Directory)
        with filesystem.open_input_stream(f"{member.path}/{META}") as stream:
            return int(json.loads(stream.read())["epoch"])
    except (StopIteration, OSError, ValueError, KeyError, TypeError):
        return -1


# --- the summary -------------------------------------------------------------------------------------


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
            row.update({"metric": run.data.metrics.get(study.metric), "test_accuracy": run.data.metrics.get("test_accuracy"),
                        "phase": run.data.tags.get("phase", ""), "depth": run.data.tags.get("depth", "")})
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
        table.append([row["trial_id"], *[_short(row.get(a)) for a in axes], row["status"],
                      "" if value is None else f"{value:.3f}", row.get("phase", ""), row.get("depth", "")])
    widths = [max(len(str(x)) for x in column) for column in zip(header, *table)]
    lines = ["", "  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)) for line in table]
    phases: dict[str, int] = {}
    for row in rows:
        if row["status"] == "FINISHED":
            phases[row.get("phase") or "?"] = phases.get(row.get("phase") or "?", 0) + 1
    lines.append("phases: " + (", ".join(f"{p} {n}" for p, n in sorted(phases.items(), key=lambda kv: -kv[1]))
                               or "none finished"))
    for row in rows:
        if row.get("error"):
            lines.append(f"  {row['trial_id']} failed: {row['error']}")
    return "\n".join(lines)


def _short(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    try:
        number = float(text)
        return f"{number:g}"
    except ValueError:
        return text if len(text) <= 24 else text[:21] + "..."


def main(args) -> int:
    """The ``urn-study sweep`` handler."""
    return run_sweep(args.study, smoke=args.smoke, address=args.address, tracking_uri=args.tracking_uri,
                     searcher=args.searcher, max_concurrent=args.max_concurrent, resume=args.resume,
                     storage=args.storage, num_cpus=args.num_cpus, stall_timeout_s=args.stall_timeout)

