"""A study's experiment: created once, its kind, description and saved view of the runs table; the source
tags (file, git commit) every run carries."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

from urn_study.study import results_dir
from urn_study.tracking.store import TrackingError, _creating_store, client, default_artifact_root, is_local

# MLflow 3's UI shows an experiment by its kind: without this tag it guesses GenAI (traces, token costs); the
# values are those of its bundled UI (mlflow/server/js): custom_model_development is the classic runs view
EXPERIMENT_KIND_TAG, CLASSIC_ML = "mlflow.experimentKind", "custom_model_development"
NOTE_TAG = "mlflow.note.content"  # the description the UI shows
# The runs table's columns live in the browser; a view saved as this experiment tag is what the UI's "Share"
# button writes, and a link carrying its key (view_url) opens the table with those columns
VIEW_KEY = "urn-study"
# MLflow 3.17's UI reads the kind from its "GenAI / Model training" switch (kept in the browser, GenAI at first)
# rather than from the tag; the switch also follows this query parameter of a link
WORKFLOW = "machine_learning"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
TABLE_COLUMNS = ("tags.`phase`", "tags.`depth`", "metrics.`test_accuracy`")
SOURCE_PREFIX = "mlflow.source."
IMAGE_KEY = "W"  # the snapshots' heatmaps in the UI's image view, one step per snapshot epoch


def ensure_experiment(uri: str, name: str, description: str | None = None, axes: tuple[str, ...] = ()) -> str:
    """The id of the study's experiment, created if needed (by the driver only: creation races), with its kind,
    saved view of the runs table (phase, depth, accuracy, then ``axes`` as params) and, given one, its
    description; an existing experiment gets them too. A local store keeps the artifacts under
    urn_results/mlartifacts; a server decides for itself."""
    from mlflow.exceptions import MlflowException

    tags = {EXPERIMENT_KIND_TAG: CLASSIC_ML, VIEW_TAG: table_view(axes), **({NOTE_TAG: description} if description else {})}
    with _creating_store(uri):  # the first use of a new SQLite store creates its tables
        mlflow_client = client(uri)
        experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is None:
        location = (default_artifact_root() / name).as_uri() if is_local(uri) else None
        try:
            return mlflow_client.create_experiment(name, artifact_location=location, tags=tags)
        except MlflowException:  # created meanwhile by another driver
            experiment = mlflow_client.get_experiment_by_name(name)
            if experiment is None:
                raise
    _check_artifacts_here(uri, experiment)
    if experiment.lifecycle_stage == "deleted":
        mlflow_client.restore_experiment(experiment.experiment_id)
    for key, value in tags.items():
        if experiment.tags.get(key) != value:
            mlflow_client.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id


def table_view(axes: tuple[str, ...] = ()) -> str:
    """The runs table's view as the UI saves it (JSON of its state): the columns phase, depth, test accuracy and
    the study's axes; the trials grouped by phase, each group's row showing its best accuracy (the sweep's
    run, which has no phase, under "Additional runs")."""
    columns = [*TABLE_COLUMNS, *(f"params.`{key}`" for key in axes)]
    group = {"aggregateFunction": "max", "groupByKeys": [{"mode": "tag", "groupByData": "phase"}]}
    return json.dumps({"selectedColumns": columns, "groupBy": group})


def view_url(base: str, experiment_id: str) -> str:
    """The link that opens an experiment's runs table with the columns of ``table_view``."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType={WORKFLOW}&viewStateShareKey={VIEW_KEY}"


def repo_path(path: str | Path) -> str:
    """``path`` relative to the root of its git repository (as a user types it there); else relative to the
    working directory if under it, else as given."""
    path = Path(path).resolve()
    root, _ = _git(path.parent)
    for base in (root, Path.cwd()):
        if base is not None and path.is_relative_to(base):
            return path.relative_to(base).as_posix()
    return str(path)


def source_tags(path: str | Path | None, name: str | None = None) -> dict[str, str]:
    """MLflow's source tags for a run started from ``path`` (a study or config file): its name relative to the
    repository (``name`` instead, if given) and the repository's commit, when it is in one."""
    tags = {f"{SOURCE_PREFIX}type": "LOCAL", f"{SOURCE_PREFIX}name": name or (repo_path(path) if path else "")}
    _, commit = _git(Path(path).resolve().parent if path else Path.cwd())
    if commit:
        tags[f"{SOURCE_PREFIX}git.commit"] = commit
    return tags


def _git(folder: Path) -> tuple[Path | None, str | None]:
    """(the root of the git repository holding ``folder``, its HEAD commit), or Nones outside one."""
    import subprocess

    try:
        lines = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None, None
    return (Path(lines[0]), lines[1]) if len(lines) == 2 else (None, None)


def _check_artifacts_here(uri: str, experiment) -> None:
    """A store inside this results folder whose experiment keeps its artifacts outside it was copied from another
    folder (MLflow records artifact folders as absolute paths): its runs would write into the original's."""
    if not is_local(uri) or not experiment.artifact_location.startswith("file://"):
        return
    store, here = Path(uri[len("sqlite:///") :]), results_dir()
    artifacts = Path(urllib.parse.urlsplit(experiment.artifact_location).path)
    if store.is_relative_to(here) and not artifacts.is_relative_to(here):
        raise TrackingError(
            f"experiment {experiment.name!r} of {store} keeps its artifacts in {artifacts}, outside "
            f"{here}: the results folder was copied from another, whose runs it would write into; "
            "resume in the original folder, or start the sweep in a fresh one"
        )
