"""The driver's Tune callback that keeps the sweep's study table on its run (``tracking.SweepTable``) while trials
end: in batches, so that a load from another machine mid-sweep reads the table rather than searching every run;
``tracking.close_sweep_run`` writes it whole once more at the end."""

from __future__ import annotations

import logging
import time

from ray import tune

from urn_study import tracking
from urn_study.sweep.progress import pack_size

_log = logging.getLogger(__name__)


class TableKeeper(tune.Callback):
    """Writes the sweep's table once ``every_trials`` trials ended since the last write, or ``every_s`` seconds
    after the first of them ended, whichever comes first. A failed write is one warning line (a load then asks
    MLflow for what the table lacks); the next batch tries again. Plain data when pickled: the table is read
    again from the run after a restore."""

    def __init__(self, uri: str, experiment_id: str, sweep_id: str, run_id: str, every_trials: int = 50, every_s: float = 60.0):
        self.uri, self.experiment_id, self.sweep_id, self.run_id = uri, experiment_id, sweep_id, run_id
        self.every_trials, self.every_s = every_trials, every_s
        self._reset()

    def _reset(self) -> None:
        self.table = tracking.SweepTable(self.uri, self.experiment_id, self.sweep_id, self.run_id)
        self.ended, self.first_ended = 0, None  # trials ended since the last write, and when the first did
        self.failing = False

    def __getstate__(self) -> dict:
        return {
            k: v for k, v in self.__dict__.items() if k in ("uri", "experiment_id", "sweep_id", "run_id", "every_trials", "every_s")
        }

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset()

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._ended(pack_size(trial.config))

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._ended(pack_size(trial.config))

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        self._maybe_write()

    def _ended(self, trials: int) -> None:
        self.ended += trials
        self.first_ended = self.first_ended or time.monotonic()
        self._maybe_write()

    def _maybe_write(self) -> None:
        if not self.ended or (self.ended < self.every_trials and time.monotonic() - self.first_ended < self.every_s):
            return
        try:
            self.table.update()
        except Exception as err:  # noqa: BLE001 - a cache of what MLflow holds: the sweep goes on without it
            if not self.failing:
                _log.warning(
                    "sweep %s: its study table was not updated (%s); the next batch tries again",
                    self.sweep_id,
                    (str(err).strip().splitlines() or [type(err).__name__])[0],
                )
            self.failing = True
        else:
            self.failing = False
        self.ended, self.first_ended = 0, None
