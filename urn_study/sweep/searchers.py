"""The searchers besides the grid: Optuna over the sampled axes (numbered trials, resumable) and the boundary search
(``urn_study.boundary``) as a Tune searcher. What a searcher needs of the study is checked before Ray starts
(``inputs.check_searcher``)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from urn_study import tracking
from urn_study.boundary import BoundaryPlan, Issued
from urn_study.study import Study, results_dir
from urn_study.sweep.records import SweepRecord
from urn_study.sweep.resume import Earlier
from urn_study.sweep.trainable import BOUNDARY_KEY, NUMBER_KEY, finite


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
        return {
            BOUNDARY_KEY: {
                "trial_id": f"{self.name}-b{issued.number:04d}",
                "point": point,
                "seed": issued.seed,
                "round": issued.round,
            }
        }

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        issued = self.live.pop(trial_id, None)
        if issued is not None:
            self._record(issued, _summary_of(result) if result and not error else {})

    def _record(self, issued: Issued, summary: dict) -> None:
        label = summary.get(self.plan.refine.outcome)  # a diverged trial has a phase but no depth: left out
        label = None if label in (None, "", "diverged") else _label_text(label)
        margin = summary.get("margin")
        self.plan.record(issued.point, issued.seed, label, float(margin) if finite(margin) else math.nan)

    def save(self, checkpoint_path: str) -> None:
        """The plan's state as JSON, which Tune keeps in the run's folder for a reader (a resume reads the MLflow
        records instead: nothing in the results folder is trusted to run)."""
        state = {
            "plan": self.plan.state(),
            "queue": [i.number for i in self.queue],
            "live": {tune_id: i.number for tune_id, i in self.live.items()},
        }
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


def optuna_space(study: Study) -> tuple[dict, dict]:
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


def optuna_searcher(study: Study, record: SweepRecord, earlier: "Earlier"):
    import optuna

    storage = optuna.storages.RDBStorage(f"sqlite:///{results_dir() / 'optuna.db'}")
    space, _ = optuna_space(study)
    again, numbers = {}, [-1]
    for run in earlier.runs:  # an unfinished trial's point, as the search space has it
        number = run.data.tags.get(tracking.TRIAL_TAG, "").rsplit("-o", 1)[-1]
        if number.isdigit():
            numbers.append(int(number))
            if run.info.status != "FINISHED":
                again[int(number)] = {key: _space_value(run.data.params.get(key), domain) for key, domain in space.items()}
    # the sampler's seed moves on with the trials run: a resumed sampler would otherwise draw the first points again
    return NumberedOptunaSearch(
        metric=study.metric,
        mode=study.mode,
        study_name=record.sweep_id,
        storage=storage,
        seed=study.sample_seed + len(earlier.runs),
        again=again,
        first=max(numbers) + 1,
    )


def _space_value(text: str | None, domain) -> Any:
    """A sampled or chosen value from its MLflow param (text), typed as the search space's domain wants it."""
    categories = getattr(domain, "categories", None)
    if categories is not None:
        return _grid_value(text, list(categories))
    number = _number(text)
    if isinstance(domain, tune.search.sample.Integer) and number is not None:
        return int(number)
    return number
