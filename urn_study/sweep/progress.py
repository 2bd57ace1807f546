"""The driver's Tune callbacks and stopper: the progress line, the watchdog that stops a frozen trial, the stop on
a full disk; and the names Tune gives trials and their folders."""

from __future__ import annotations

import os
import signal
import time

import ray
from ray import tune

from urn_study.sweep.trainable import BOUNDARY_KEY, LOG_KEY, NUMBER_KEY, STOP_KEY


class Progress(tune.Callback):
    """Live progress in URN trials: done, running, failed, waiting, epochs, time left; and each warning a trial sends
    with its report (``WarningRelay``), named after its trial. Plain data only:
    Tune pickles it with the experiment and brings it back on resume."""

    def __init__(
        self, study: str, total_trials: int, epochs: int, every_s: float = 10.0, budget: bool = False, done_before: int = 0
    ):
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
        return {k: v for k, v in self.__dict__.items() if k in ("study", "total", "epochs", "every_s", "budget", "done_before")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset()

    def counts(self, trials: list) -> dict[str, float]:
        out = {"done": self.done_before, "running": 0, "failed": 0, "epochs": float(self.done_before * self.epochs)}
        for trial in trials:
            size = pack_size(trial.config)
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
        return (
            f"[{_clock(elapsed)}] {self.study}: {c['done']}/{of} done, {c['running']} running, "
            f"{c['failed']} failed, {queue} | {int(c['epochs'])}/{total * self.epochs} "
            f"epochs | " + (f"at most {self.peak_running} ran at once" if final else f"~{left} left")
        )

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

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        """The warnings the trial's own loggers wrote since its last report (``WarningRelay``), a line each."""
        for line in (result.get(LOG_KEY) or "").splitlines():
            print(f"{trial_name(trial)}: {line}", flush=True)

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


def stop_reason(grid) -> str:
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
        _kill_here(pid)
        return
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    kill = ray.remote(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False))(_kill_here)
    kill.remote(pid)


def _kill_here(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def pack_size(config: dict) -> int:
    """How many URN trials a Tune trial's config trains (a pack's members; else one)."""
    return len(config.get("pack", [None]))


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return (
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else f"{seconds // 60}:{seconds % 60:02d}"
    )


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
