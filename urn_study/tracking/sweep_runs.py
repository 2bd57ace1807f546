"""A sweep's parent run: opened (or found again on resume), its report logged, closed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from urn_study.tracking.experiments import source_tags
from urn_study.tracking.runs import METRIC_BATCH, ROLE_TAG, STUDY_TAG, SWEEP_TAG, _find_runs, _log_params, _now
from urn_study.tracking.store import client
from urn_study.tracking.study_table import sweep_trial_runs, write_final_table

# --- the sweep (parent run) ----------------------------------------------------------------------


def open_sweep_run(
    uri: str, experiment_id: str, study_name: str, sweep_id: str, params: dict[str, Any], study_file: Path | None = None
) -> str:
    """The parent run of a sweep: found again (and set RUNNING) on resume, else created."""
    mlflow_client = client(uri)
    found = _find_runs(mlflow_client, experiment_id, {ROLE_TAG: "sweep", SWEEP_TAG: sweep_id})
    if found:
        run_id = found[0].info.run_id
        mlflow_client.update_run(run_id, status="RUNNING")
        return run_id
    run = mlflow_client.create_run(
        experiment_id,
        run_name=sweep_id,
        tags={ROLE_TAG: "sweep", STUDY_TAG: study_name, SWEEP_TAG: sweep_id, **source_tags(study_file)},
    )
    _log_params(mlflow_client, run.info.run_id, params)
    if study_file is not None:
        mlflow_client.log_artifact(run.info.run_id, str(study_file))
    return run.info.run_id


def close_sweep_run(uri: str, experiment_id: str, sweep_id: str, run_id: str, status: str) -> int:
    """End the parent run; any trial run of the sweep still RUNNING (its process was killed) ends FAILED
    (a resume sets it RUNNING again), and the sweep's study table is written whole from its trial runs
    (``study_table``). Returns how many trial runs were ended so."""
    mlflow_client = client(uri)
    runs, asked = sweep_trial_runs(uri, experiment_id, sweep_id)
    orphans = [r for r in runs if r.info.status == "RUNNING"]
    for run in orphans:
        mlflow_client.set_terminated(run.info.run_id, "FAILED")
    ended = {run.info.run_id: mlflow_client.get_run(run.info.run_id) for run in orphans}
    write_final_table(uri, run_id, sweep_id, [ended.get(run.info.run_id, run) for run in runs], asked)
    mlflow_client.set_terminated(run_id, status)
    return len(orphans)


def latest_sweep_run(uri: str, experiment_name: str) -> tuple[str, str] | None:
    """(run id, sweep id) of the newest sweep's run of an experiment, or None."""
    mlflow_client = client(uri)
    experiment = mlflow_client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    runs = mlflow_client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{ROLE_TAG}` = 'sweep'",
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    return (runs[0].info.run_id, runs[0].data.tags.get(SWEEP_TAG, "")) if runs else None


def log_sweep_report(uri: str, run_id: str, metrics: dict[str, float], files: list[Path]) -> None:
    """A sweep's summary metrics and its report's files (under ``phase/``) on its run; a refresh replaces them."""
    from mlflow.entities import Metric

    mlflow_client = client(uri)
    stamp = _now()
    items = [Metric(k, float(v), stamp, 0) for k, v in metrics.items()]
    for start in range(0, len(items), METRIC_BATCH):
        mlflow_client.log_batch(run_id, metrics=items[start : start + METRIC_BATCH], synchronous=True)
    for path in files:
        mlflow_client.log_artifact(run_id, str(path), "phase")


def trial_runs(uri: str, experiment_id: str, sweep_id: str | None = None) -> list:
    """The trial runs of an experiment (of one sweep if given), oldest first."""
    tags = {ROLE_TAG: "trial", **({SWEEP_TAG: sweep_id} if sweep_id else {})}
    return _find_runs(client(uri), experiment_id, tags)
