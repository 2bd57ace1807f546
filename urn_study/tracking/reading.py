"""Reading a study's records back: its experiment, its runs as plain records, a run's artifact (``analysis.runs``
makes them a table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from urn_study.tracking.runs import PARENT_TAG, _all_pages
from urn_study.tracking.store import client

# --- reading a study's records (analysis.runs makes them a table) -------------------------------------

READ_PAGE = 10_000  # runs per page when reading a whole study: fewer round trips than MLflow's default 1,000
UNFINISHED = ("RUNNING", "SCHEDULED")  # run statuses that may still change


def find_experiment(uri: str, study: str) -> tuple[str, str] | None:
    """(id, name) of the experiment named ``study``, else (digits) of the experiment of that id; None if neither."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client(uri)
    experiment = mlflow_client.get_experiment_by_name(study)
    if experiment is None and study.isdigit():
        try:
            experiment = mlflow_client.get_experiment(study)
        except MlflowException:  # no such id
            experiment = None
    return None if experiment is None else (experiment.experiment_id, experiment.name)


def search_runs(uri: str, experiment_id: str, filter_string: str = "", view: str = "active") -> list[dict[str, Any]]:
    """Every run of an experiment that ``filter_string`` (MLflow's search syntax) selects, among its active runs
    (``view="active"``) or its deleted ones (``"deleted"``), each as a plain record (``run_fields``)."""
    from mlflow.entities import ViewType

    views = {"active": ViewType.ACTIVE_ONLY, "deleted": ViewType.DELETED_ONLY}
    if view not in views:
        raise ValueError(f"view: 'active' or 'deleted', not {view!r}")
    runs = _all_pages(client(uri), experiment_id, filter_string=filter_string, run_view_type=views[view], max_results=READ_PAGE)
    return [run_fields(run) for run in runs]


def runs_changed_since(uri: str, experiment_id: str, since_ms: int, scope: str = "") -> list[dict[str, Any]]:
    """The active runs (among those the filter ``scope`` selects, if given) that ended at or after ``since_ms``
    (milliseconds since the epoch, MLflow's clock) or have not ended (``UNFINISHED``), each once."""

    def search(condition: str) -> list[dict[str, Any]]:
        return search_runs(uri, experiment_id, f"{scope} and {condition}" if scope else condition)

    found = {run["run_id"]: run for run in search(f"attributes.end_time >= {since_ms}")}
    for status in UNFINISHED:
        found.update({run["run_id"]: run for run in search(f"attributes.status = '{status}'")})
    return list(found.values())


def runs_by_id(uri: str, experiment_id: str, run_ids: list[str]) -> list[dict[str, Any]]:
    """The active runs of an experiment among ``run_ids`` (asked for 100 at a time: one filter per batch)."""
    found: list[dict[str, Any]] = []
    for start in range(0, len(run_ids), 100):
        ids = ", ".join(f"'{run_id}'" for run_id in run_ids[start : start + 100])
        found += search_runs(uri, experiment_id, f"attributes.run_id IN ({ids})")
    return found


def run_fields(run) -> dict[str, Any]:
    """One MLflow run as plain data: run_id, run_name, status, start_time and end_time (milliseconds),
    artifact_uri, parent_run_id (None for a sweep's run), and dicts of its params, metrics (latest values, floats)
    and tags (the project's own: MLflow's ``mlflow.*`` left out)."""
    info, data = run.info, run.data
    return {
        "run_id": info.run_id,
        "run_name": info.run_name,
        "status": info.status,
        "start_time": info.start_time,
        "end_time": info.end_time,
        "artifact_uri": info.artifact_uri,
        "parent_run_id": data.tags.get(PARENT_TAG),
        "params": dict(data.params),
        "metrics": {k: float(v) for k, v in data.metrics.items()},
        "tags": {k: v for k, v in data.tags.items() if not k.startswith("mlflow.")},
    }


def download_run_artifact(uri: str, run_id: str, name: str, folder: str | Path) -> Path:
    """The artifact ``name`` of a run copied into ``folder`` (which exists); FileNotFoundError naming the run and the
    artifact if it has none, TrackingError if the server stopped answering."""
    from mlflow.exceptions import MlflowException

    try:
        return Path(client(uri).download_artifacts(run_id, name, str(folder)))
    except (MlflowException, OSError) as err:
        raise FileNotFoundError(f"run {run_id}: no artifact {name!r} ({str(err).splitlines()[0]})") from None
