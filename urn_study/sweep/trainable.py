"""Inside a Tune trial: ``train_pack`` trains a pack of URN trials (``trials_per_worker``), records each in its
MLflow run (urn_study.tracking) and reports to Tune: every epoch to the runs, to Tune at checkpoint epochs (and every
``REPORT_EVERY_S`` between: each report waits on Tune's loop). A checkpoint holds one ``save_state`` folder per
trial; a retried or resumed trial goes on from the newest whole one.

A trial of the pack whose training fails (its reading, its record's metrics, its checkpoint: urn_study.trial) or
whose record cannot be written fails alone: the others train on and are recorded, its run ends FAILED with its
error, and the Tune trial then fails naming it, so that Tune retries it, alone, from its last checkpoint (its state
before it failed). A full disk stops the sweep instead (``disk_full``)."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray import tune

from urn_study import tracking
from urn_study.checkpoint import CheckpointError, load_state, save_state
from urn_study.config import parse_config
from urn_study.sweep.inputs import REPORT_EVERY_S

NUMBER_KEY = "urn_trial_number"  # optuna's trial number, added to each suggested config
BOUNDARY_KEY = "urn_boundary"  # a boundary-search trial's id, point, seed and round in its Tune config
# "EPOCH:FOLDER": every Tune trial stops after reporting its checkpoint of EPOCH, writes FOLDER/<trial>.paused (its
# pid) and waits for FOLDER/go (all) or FOLDER/<trial>.go (that one). Fault tests inject their fault while the trial
# waits there, never in a time window.
PAUSE_ENV = "URN_PAUSE_AT"
STOP_KEY = "urn_stop_sweep"  # a trial's report that no trial can go on (a full disk): its reason
CHECKPOINT_PREFIX = "urn-checkpoint-"  # + pid: the worker's folder for a checkpoint until Tune has copied it
LOG_KEY = "urn_log"  # in a report: the warning lines the trial's own loggers wrote since its last report


class WarningRelay(logging.Handler):
    """The warnings of the project's own loggers (``urn_study.*``: a store that stops taking metrics...) inside a
    Tune trial, kept for its next report: the driver prints them (``Progress``). Ray's worker logs do not reach the
    driver's terminal (their noise would bury the progress lines); the trial's log keeps every line as well."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname.lower()}: {record.getMessage()}")

    def pending(self) -> dict[str, str]:
        """``{LOG_KEY: lines}`` for the next report, once; {} when nothing was written."""
        lines, self.lines = self.lines, []
        return {LOG_KEY: "\n".join(lines)} if lines else {}


RELAY = WarningRelay()


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
    logging.getLogger("urn_study").addHandler(RELAY)
    try:
        for trial_id, config in members:
            records.append(
                tracking.TrialRecord.open(
                    context.tracking_uri,
                    context.experiment_id,
                    context.parent_run_id,
                    context.study,
                    context.sweep_id,
                    trial_id,
                    config,
                    tags,
                )
            )
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
        tune.report(
            {
                **_whereabouts(),
                "epoch": max((s.get("epochs", 0) for s in summaries), default=0),
                context.metric: mean([s.get(context.metric) for s in summaries]),
                "urn_summary": json.dumps(summaries, default=str),
                **RELAY.pending(),
            }
        )
    finally:
        logging.getLogger("urn_study").removeHandler(RELAY)
        for record in records:
            if not (record.finished or record.failed):  # a member failed in training is ended FAILED already
                try:
                    record.fail()
                except Exception as err:
                    if not disk_full(str(err)):  # a full disk: a resume ends the run instead
                        raise


def _members(tune_config: dict, context: SweepContext) -> list[tuple[str, Any]]:
    if "pack" in tune_config:
        return [(trial_id, parse_config(context.trials[trial_id])) for trial_id in tune_config["pack"]]
    if BOUNDARY_KEY in tune_config:
        trial = tune_config[BOUNDARY_KEY]
        return [
            (
                trial["trial_id"],
                parse_config({**context.base, **trial["point"], "seed": trial["seed"]}, source=f"trial {trial['trial_id']}"),
            )
        ]
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
    return {
        "urn.node_ip": ray.util.get_node_ip_address(),
        "urn.node_id": runtime.get_node_id(),
        "urn.gpu_ids": json.dumps([str(g) for g in ray.get_gpu_ids()]),
        "urn.device": str(pick_device(config.train.device)),
        "urn.resources": json.dumps(bundles, default=str),
        "urn.tune_trial": tune_context.get_trial_name(),
        "urn.pid": str(os.getpid()),
    }


def _train(members, records, todo: list[int], metric: str, earlier: list[str]) -> None:
    from urn_study.trial import run_trials

    ids = [members[i][0] for i in todo]
    configs = [members[i][1] for i in todo]
    reporter = PackReporter(ids, [records[i] for i in todo], configs[0].train, metric)
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
    failed, unrecorded = [], []
    for i, result in zip(todo, results):
        if result.error is not None:  # out of the pack in training: Tune's retry trains it again
            print(f"urn-study: {members[i][0]} failed in training:", file=sys.stderr)
            traceback.print_exception(result.exception, file=sys.stderr)
            failed.append(f"{members[i][0]} ({error_line(result.error)})")
            try:
                records[i].fail(error_line(result.error))
            except Exception as err:  # noqa: BLE001 - still unfinished: train_pack fails its run again at the end
                if disk_full(str(err)):
                    raise
            continue
        try:
            records[i].finish(result)
        except Exception as err:  # noqa: BLE001 - one member's record: the others' are still written
            if disk_full(str(err)):
                raise
            unrecorded.append(f"{members[i][0]} ({error_line(str(err))})")
    # Tune retries the pack: its recorded members are skipped, the others go on from their checkpoint
    said = [f"{', '.join(failed)} failed in training"] if failed else []
    said += [f"the record of {', '.join(unrecorded)} failed"] if unrecorded else []
    if said:
        raise RuntimeError("; ".join(said) + "; the pack's other trials are recorded")


def _resumes(trial_ids: list[str], earlier: list[str]) -> tuple[list, list[str]]:
    """Each trial's state from the newest checkpoint that holds all of them whole and at one epoch (a member that
    failed in training is saved as it was before it failed: with the others it resumes only from a checkpoint
    before that): this Tune trial's own (a retry), an older one of it where that is damaged (Tune keeps two), then
    those of the sweep's earlier runs (``earlier``: a resumed sweep), else none (the trials start again from epoch
    0). Also the names of the checkpoints passed over."""
    from urn_study.trial import resumable_together

    latest = tune.get_checkpoint()
    skipped = []
    own = _checkpoints_from(latest) if latest is not None else []
    for checkpoint in own + [tune.Checkpoint(path) for path in earlier]:
        try:
            with checkpoint.as_directory() as folder:
                if all((Path(folder) / t).is_dir() for t in trial_ids):
                    states = [load_state(Path(folder) / t) for t in trial_ids]
                    if resumable_together(states):
                        return states, skipped
                    # a member that failed in training is saved as it was before: not where the others are
                    print(
                        f"urn-study: {', '.join(trial_ids)}: checkpoint {checkpoint.path} skipped (its trials stopped "
                        "at different epochs)",
                        file=sys.stderr,
                    )
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
    older = sorted(
        (i.path for i in infos if i.type == fs.FileType.Directory and i.base_name.startswith("checkpoint_") and i.base_name < name),
        reverse=True,
    )
    return [latest, *[tune.Checkpoint(path, filesystem=latest.filesystem) for path in older]]


class PackReporter:
    """Turns run_trials' per-trial callbacks into ``tune.report`` calls: at checkpoint epochs with one
    checkpoint holding a folder per trial, at the last epoch, and at other epochs if ``REPORT_EVERY_S``
    passed since the last report (progress for long gaps between checkpoints). Each epoch goes to the
    trial's MLflow run. A trial that diverged or failed (its last report says which) is waited for no more; a
    failed one is still saved at each checkpoint (run_trials gives its state before it failed), and a save that
    fails leaves the checkpoint without that trial."""

    def __init__(self, trial_ids: list[str], records: list, train, metric: str, clock=time.monotonic):
        self.ids, self.records, self.train, self.metric, self.clock = trial_ids, records, train, metric, clock
        self.dead: set[int] = set()  # diverged or failed in an earlier epoch: reports no more
        self.epoch_metrics: dict[int, dict] = {}
        self.latest: dict[int, float] = {}  # the metric carried between snapshot epochs
        self.saved = 0
        self.folder: str | None = None
        self.epoch = 0
        self.sent_at = self.clock()

    def reports(self) -> list:
        return [lambda epoch, m, i=i: _full_disk_ends_pack(self._report, i, epoch, m) for i in range(len(self.ids))]

    def checkpoints(self) -> list:
        return [lambda state, i=i: _full_disk_ends_pack(self._checkpoint, i, state) for i in range(len(self.ids))]

    def _checkpoint_epoch(self, epoch: int) -> bool:
        """Not the last epoch: the trials' records are written right after it (a retry of a trial that fails
        there starts from the checkpoint before)."""
        return epoch % self.train.checkpoint_every == 0 and epoch < self.train.epochs

    def _report(self, i: int, epoch: int, metrics: dict) -> None:
        if "failed" not in metrics:  # a trial that failed in training: its run ends FAILED with its error (_train)
            self.records[i].log_epoch(epoch, metrics)
        self.epoch = epoch
        self.epoch_metrics[i] = metrics
        if finite(metrics.get(self.metric)):
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
        try:
            save_state(state, Path(self.folder) / self.ids[i])
        except Exception:
            # that trial fails (run_trials); the checkpoint goes without it, the others' still whole
            shutil.rmtree(Path(self.folder) / self.ids[i], ignore_errors=True)
            self._saved_one()
            raise
        self._saved_one()

    def _saved_one(self) -> None:
        """Every trial is saved at each checkpoint epoch (a failed one as it was before it failed): once all
        were, the checkpoint goes."""
        self.saved += 1
        if self.saved == len(self.ids):
            self._send(self.folder)

    def _send(self, folder: str | None) -> None:
        metrics: dict[str, Any] = {
            "epoch": self.epoch,
            self.metric: mean(list(self.latest.values())),
            **_whereabouts(),
            **RELAY.pending(),
        }
        if len(self.ids) == 1 and self.epoch_metrics:
            metrics.update(
                {k: float(v) for k, v in self.epoch_metrics[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            )
            metrics[self.metric] = mean(list(self.latest.values()))
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
        self.dead |= {i for i, m in self.epoch_metrics.items() if "diverged" in m or "failed" in m}
        self.epoch_metrics, self.saved, self.folder = {}, 0, None

    def flush(self) -> None:
        """Send what the last epoch left (all trials diverged before a checkpoint epoch's save)."""
        if self.epoch_metrics or self.folder:
            self._send(self.folder if self.saved == len(self.ids) else None)


def _full_disk_ends_pack(callback, *args) -> None:
    """A trial's callback. Its error fails that trial alone (run_trials), but a full disk is no trial's own: it ends
    the pack (PackError), and ``train_pack`` the sweep."""
    try:
        callback(*args)
    except Exception as err:
        if disk_full(str(err)):
            from urn_study.trial import PackError

            raise PackError(str(err)) from err
        raise


def _whereabouts() -> dict[str, Any]:
    """Where the trial's process runs, in each report: the driver's Watchdog stops it there if it freezes."""
    return {"urn_pid": os.getpid(), "urn_node_id": ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""}


def remove_stale_checkpoints(folder: str | None = None) -> list[str]:
    """Remove the checkpoint folders that workers killed mid-save left in the temporary folder (``folder``):
    each is named after its worker's pid, and is stale once that process is gone."""
    removed = []
    for path in Path(folder or tempfile.gettempdir()).glob(f"{CHECKPOINT_PREFIX}*-*"):
        pid = path.name[len(CHECKPOINT_PREFIX) :].split("-", 1)[0]
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
    (gate / f".{trial_id}.tmp").write_text(str(os.getpid()))
    (gate / f".{trial_id}.tmp").replace(gate / f"{trial_id}.paused")  # whole when seen
    while not (gate / "go").exists() and not (gate / f"{trial_id}.go").exists():
        time.sleep(0.05)


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def mean(values: list) -> float:
    values = [float(v) for v in values if finite(v)]
    return sum(values) / len(values) if values else float("nan")


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
