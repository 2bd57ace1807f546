"""MLflow, in one place: the store, the experiment of a study, a parent run per sweep, a child run per trial.

The record of a study (experiment = the study's name; ``<name>-smoke`` for smoke sweeps):

- the experiment: a classic ML one in MLflow 3's UI (``mlflow.experimentKind``), its description
  (``mlflow.note.content``) the study's question, and a saved view of the runs table (``VIEW_TAG``) showing
  phase, depth, test accuracy and the study's axes: ``view_url``.
- parent run, one per sweep: run name = sweep id, tags ``urn.role=sweep``, ``urn.study``, ``urn.sweep``;
  params: searcher, trials, study_file (relative to the repository), smoke, fingerprint, trials_per_worker; the
  study file as artifact; when the sweep ends, its summary metrics (``trials_<phase>``, ``best_test_accuracy_<phase>``,
  ``diverged``, ``failed``) and, under ``phase/``, the phase diagram, gallery and grid (``log_sweep_report``).
- every run: MLflow's source tags (``mlflow.source.name``: the study or config file relative to its git
  repository, ``mlflow.source.git.commit``, ``mlflow.source.type``), a trial's copied from its sweep's run.
- child run, one per trial: run name = trial id, tags ``mlflow.parentRunId``, ``urn.role=trial``,
  ``urn.trial_id``, ``urn.study``, ``urn.sweep``, ``urn.attempts``, where it ran (``urn.node_ip``,
  ``urn.node_id``, ``urn.gpu_ids``, ``urn.device``, ``urn.resources``, ``urn.tune_trial``, ``urn.pid``),
  ``urn.resumed_from_epoch`` when an attempt started from a checkpoint; when it ends the ``FINAL_TAGS``
  (phase, depth, widths per level and per block... lists as JSON), and on teacher data the teacher's
  ``teacher_depth``, ``teacher_widths``, ``teacher_receptive_field``. Params: every config key (``to_flat``).
  Metrics, step = epoch: everything the trial reports per epoch, ``phase_index`` (see ``PHASE_CODES``)
  at snapshot epochs, and at the last epoch the final figures not reported per epoch (``seconds``...).
  Per-epoch metrics leave in batches from a background thread (``MetricSender``), about
  ``FLUSH_EVERY_S`` (5 s; ``$URN_METRICS_EVERY_S``) after the epoch at most, all of them before the run ends.
  Artifacts: the files of ``urn_study.artifacts`` (W, b, W0, snapshots, layout, config, the structure record,
  history, heatmap), and each snapshot's heatmap as an image with its step (key ``W``: the UI's image view).
- a single ``urn-study train --tracking-uri``: one run like a trial's, without a parent (``TrialRecord.open_single``).

Nothing else in the project imports mlflow, for writing or reading (``analysis.runs`` reads a study
through the functions under "reading a study's records"); runs always end FINISHED or FAILED.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from urn_study.artifacts import json_default, snapshot_images, write_artifacts
from urn_study.config import ConfigError, TrialConfig, to_flat
from urn_study.study import results_dir

# MLflow 3 sends usage telemetry from every process that imports it (a config fetch, then events, over
# HTTPS; its UI too). Off unless the user set MLFLOW_DISABLE_TELEMETRY: offline by default, and ~0.3 s of CPU
# per trial worker here. Set before mlflow is imported (this module imports it lazily; workers inherit it).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# MLflow draws a progress bar for every download, one per artifact file: reading a study's saved arrays
# (analysis.runs) would flood the output. Off unless the user set it; MLflow reads it at each download and
# takes no argument for it, so it is set here once, at import, not changed around a call.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

ROLE_TAG, STUDY_TAG, SWEEP_TAG, TRIAL_TAG = "urn.role", "urn.study", "urn.sweep", "urn.trial_id"
ATTEMPTS_TAG = "urn.attempts"
PARENT_TAG = "mlflow.parentRunId"
PHASE_CODES = {"dead": 0, "recurrent": 1, "shallow": 2, "residual": 3, "locally_connected": 4,
               "fully_connected": 5, "diverged": 6}
# the final figures that are words or lists: tags (phase and depth as the functional reading; w_: the |W| pattern)
FINAL_TAGS = ("phase", "depth", "widths", "block_widths", "carrying_depths", "depth_shares", "w_phase", "w_widths",
              "w_hop_spectrum", "null_phase")
BATCH = 100  # MLflow takes at most 100 params / tags per batch (and 1000 metrics)
METRIC_BATCH = 1000
FLUSH_EVERY_S = 5.0  # per-epoch metrics reach the store about this long after their epoch at most
FLUSH_ENV = "URN_METRICS_EVERY_S"  # overrides FLUSH_EVERY_S (0: send each epoch as soon as it is queued)
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


# MLflow logs each database error (several lines: SQL, parameters) before raising it; the raised error is
# what urn-study reports, in one line
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
_log = logging.getLogger(__name__)


class TrackingError(ConfigError):
    """The tracking store cannot be used (unreachable server, unwritable folder): said before any trial runs."""


# --- the store ---------------------------------------------------------------------------------


def default_tracking_uri() -> str:
    return f"sqlite:///{results_dir() / 'mlflow.db'}"


def default_artifact_root() -> Path:
    return results_dir() / "mlartifacts"


SERVER_SCHEMES = ("http", "https")
DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")  # each optionally with +driver (mysql+pymysql)
# query keys that carry a secret (?token=..., ?password=...): like credentials, never part of a URI here
SECRET_KEY = re.compile(r"token|passw|pwd|secret|api_?key|access_?key|auth|credential|signature", re.IGNORECASE)
# the pip package of each database driver SQLAlchemy loads by default or by name
DRIVER_PACKAGES = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary", "MySQLdb": "mysqlclient",
                   "pymysql": "PyMySQL", "pyodbc": "pyodbc", "pymssql": "pymssql"}


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else the local SQLite store; SQLite paths made absolute
    (trials run in their own folders), the scheme in lower case. MLflow's file store is refused, and so is a
    URI holding a secret: it is printed, stored in the sweep record and sent to every trial."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
    try:
        parts = urllib.parse.urlsplit(uri)
        if parts.scheme.lower() in SERVER_SCHEMES:
            parts.port  # noqa: B018 - raises ValueError for a port that is no number in 0..65535
    except ValueError as err:
        raise TrackingError(f"--tracking-uri {masked(uri)!r}: not a valid URI ({err})") from None
    scheme = parts.scheme.lower()
    uri = scheme + uri[len(parts.scheme):]
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///"):]
        return uri if path.startswith("/") else f"sqlite:///{Path(path).resolve()}"
    secrets = [key for key, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if SECRET_KEY.search(key)]
    if secrets:
        raise TrackingError(f"--tracking-uri {masked(uri)!r}: a secret in the query ({secrets[0]}=...) would be "
                            "printed and stored; give it in the environment instead (MLFLOW_TRACKING_TOKEN for a "
                            "server, PGPASSWORD or ~/.pgpass for PostgreSQL)")
    if scheme in SERVER_SCHEMES:
        if parts.username is not None or parts.password is not None:
            raise TrackingError("--tracking-uri: credentials in the URI would be printed and stored; give them "
                                "as MLFLOW_TRACKING_TOKEN (or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD) "
                                "in the environment instead")
        if not parts.hostname:
            raise TrackingError(f"--tracking-uri {masked(uri)!r}: no host; an MLflow server is {scheme}://host:port")
    if scheme.split("+")[0] in DATABASE_SCHEMES and parts.password is not None:
        raise TrackingError("--tracking-uri: a password in the URI would be printed and stored; leave it out "
                            "(postgresql://user@host/db) and give it to the database client instead "
                            "(PGPASSWORD or ~/.pgpass for PostgreSQL)")
    if scheme in SERVER_SCHEMES or uri.lower().startswith("databricks") or scheme.split("+")[0] in DATABASE_SCHEMES:
        return uri.rstrip("/")
    raise TrackingError(f"--tracking-uri {masked(uri)!r}: use an MLflow server (http://host:port) or sqlite:///path.db "
                        "(the file store is deprecated)")


def masked(uri: str) -> str:
    """``uri`` for a message: its user info and the values of secret query keys replaced by ``***``. By text,
    not by parsing: a malformed URI is masked too."""
    uri = re.sub(r"^([^:/?#]+://)[^/?#]*@", r"\1***@", uri)
    return re.sub(r"([?&][^=&#]*=)([^&#]*)", lambda m: m[1] + ("***" if SECRET_KEY.search(m[1]) else m[2]), uri)


def is_local(uri: str) -> bool:
    return uri.lower().startswith("sqlite:")


def check_tracking(uri: str, timeout: float = 10.0) -> None:
    """Raise TrackingError (one line) unless the store can be used right now."""
    _flush_every()  # a bad $URN_METRICS_EVERY_S is said here, not in every trial
    scheme = uri.split("://", 1)[0].lower()
    if scheme in SERVER_SCHEMES:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=timeout) as response:
                if response.status != 200:
                    raise OSError(f"HTTP {response.status}")
        except (OSError, urllib.error.URLError, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise TrackingError(f"MLflow server {masked(uri)} is not reachable ({reason}); start it (mlflow server "
                                f"--host 127.0.0.1 --port ...) or leave out --tracking-uri for the local store") from None
    elif scheme.split("+")[0] in DATABASE_SCHEMES:
        _check_driver(uri)
    elif is_local(uri):
        _check_writable(Path(uri[len("sqlite:///"):]).parent, f"tracking store {uri}")
        # where a local store's runs keep their artifacts: found unwritable only once the sweep's run is open
        _check_writable(default_artifact_root(), f"artifact folder of {uri}")


def _check_writable(folder: Path, what: str) -> None:
    """Create ``folder`` and a probe file in it, then remove the probe. Tried, not asked: os.access says yes
    to root everywhere, and a read-only mount or a file in the folder's place shows only when writing."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".urn-probe-"):
            pass
    except OSError as err:
        reason = "a file is in its place" if folder.exists() and not folder.is_dir() else err.strerror
        raise TrackingError(f"{what}: cannot create {folder} or write in it ({reason})") from None


def _check_driver(uri: str) -> None:
    """The database driver SQLAlchemy loads for ``uri`` must import (else MLflow fails once the sweep started)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(uri).get_dialect().import_dbapi()
    except ArgumentError as err:  # an unparsable URL, or a driver name SQLAlchemy does not know
        raise TrackingError(f"tracking store {masked(uri)}: {err}") from None
    except ImportError as err:
        if not err.name:
            raise TrackingError(f"tracking store {masked(uri)}: its database driver does not load ({err})") from None
        scheme = uri.split("://", 1)[0].split("+")[0]
        raise TrackingError(f"tracking store {masked(uri)}: its database driver {err.name} is not installed; "
                            f"pip install {DRIVER_PACKAGES.get(err.name, err.name)} (or name a driver you have: "
                            f"{scheme}+DRIVER://...)") from None


def client(uri: str) -> "_Client":
    """An MlflowClient for ``uri`` (see _Client for what happens when a server stops answering)."""
    return _Client(uri)


class _Client:
    """An MlflowClient whose calls, when a server stays away, wait and then fail in one line.

    MLflow itself retries every HTTP call with exponential backoff (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, 7 by
    default: about four minutes), so a server that restarts loses nothing: the trial waits, then logs.
    Past that, ``TrackingError`` names the server instead of a page of connection errors."""

    def __init__(self, uri: str):
        from mlflow.tracking import MlflowClient

        self._uri, self._mlflow = uri, MlflowClient(tracking_uri=uri)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_mlflow":  # copy / pickle probing a half-made object
            raise AttributeError(name)
        attribute = getattr(self._mlflow, name)
        if not callable(attribute):
            return attribute

        def call(*args, **kwargs):
            from mlflow.exceptions import MlflowException

            try:
                return attribute(*args, **kwargs)
            except MlflowException as err:
                if not no_answer(err):  # the server answered: a real error
                    raise
                raise TrackingError(f"MLflow server {masked(self._uri)} stopped answering ({name}), still after "
                                    "MLFLOW_HTTP_REQUEST_MAX_RETRIES retries with backoff") from None

        return call


def no_answer(err: BaseException) -> bool:
    """Whether MLflow raised ``err`` because its server gave no answer: the connection refused or cut, a timeout,
    or its retries spent on transient statuses (429, 5xx: a proxy before a server that is down). MLflow's REST
    client raises a plain MlflowException then, chained to the ``requests`` error; a server that answers with an
    error gives a RestException, or an MlflowException with no such error behind it."""
    from requests import exceptions as http

    return isinstance(err.__cause__ or err.__context__, (http.ConnectionError, http.RetryError, http.Timeout))


def ensure_experiment(uri: str, name: str, description: str | None = None, axes: tuple[str, ...] = ()) -> str:
    """The id of the study's experiment, created if needed (by the driver only: creation races), with its kind,
    saved view of the runs table (phase, depth, accuracy, then ``axes`` as params) and, given one, its
    description; an existing experiment gets them too. A local store keeps the artifacts under
    urn_results/mlartifacts; a server decides for itself."""
    from mlflow.exceptions import MlflowException

    tags = {EXPERIMENT_KIND_TAG: CLASSIC_ML, VIEW_TAG: table_view(axes),
            **({NOTE_TAG: description} if description else {})}
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
        lines = subprocess.run(["git", "-C", str(folder), "rev-parse", "--show-toplevel", "HEAD"], capture_output=True,
                               text=True, timeout=10, check=True).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None, None
    return (Path(lines[0]), lines[1]) if len(lines) == 2 else (None, None)


def _check_artifacts_here(uri: str, experiment) -> None:
    """A store inside this results folder whose experiment keeps its artifacts outside it was copied from another
    folder (MLflow records artifact folders as absolute paths): its runs would write into the original's."""
    if not is_local(uri) or not experiment.artifact_location.startswith("file://"):
        return
    store, here = Path(uri[len("sqlite:///"):]), results_dir()
    artifacts = Path(urllib.parse.urlsplit(experiment.artifact_location).path)
    if store.is_relative_to(here) and not artifacts.is_relative_to(here):
        raise TrackingError(f"experiment {experiment.name!r} of {store} keeps its artifacts in {artifacts}, outside "
                            f"{here}: the results folder was copied from another, whose runs it would write into; "
                            "resume in the original folder, or start the sweep in a fresh one")


@contextlib.contextmanager
def _creating_store(uri: str):
    """Around the first use of a local store: one process at a time (two drivers creating one SQLite store at once
    would both run MLflow's schema migrations, and one fails). An exclusive lock on ``<db>.lock``."""
    if not is_local(uri):
        yield
        return
    import fcntl

    path = Path(f"{uri[len('sqlite:///'):]}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _now() -> int:
    return int(time.time() * 1000)


def _find_runs(mlflow_client, experiment_id: str, tags: dict[str, str]) -> list:
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    return _all_pages(mlflow_client, experiment_id, filter_string=query, max_results=1000,
                      order_by=["attributes.start_time ASC"])


def _all_pages(mlflow_client, experiment_id: str, **search: Any) -> list:
    """Every run a search of one experiment finds, page after page (``search``: MlflowClient.search_runs' own)."""
    runs, token = [], None
    while True:
        page = mlflow_client.search_runs([experiment_id], page_token=token, **search)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _log_params(mlflow_client, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, _param_text(v)) for k, v in params.items()]
    for start in range(0, len(items), BATCH):
        mlflow_client.log_batch(run_id, params=items[start:start + BATCH], synchronous=True)


def _param_text(value: Any) -> str:
    """Schedules as JSON (readable back as YAML); everything else as ``str``."""
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def _set_tags(mlflow_client, run_id: str, tags: dict[str, Any]) -> None:
    from mlflow.entities import RunTag

    items = [RunTag(k, v if isinstance(v, str) else json.dumps(v)) for k, v in tags.items()]
    for start in range(0, len(items), BATCH):
        mlflow_client.log_batch(run_id, tags=items[start:start + BATCH], synchronous=True)


# --- the sweep (parent run) ----------------------------------------------------------------------


def open_sweep_run(uri: str, experiment_id: str, study_name: str, sweep_id: str, params: dict[str, Any],
                   study_file: Path | None = None) -> str:
    """The parent run of a sweep: found again (and set RUNNING) on resume, else created."""
    mlflow_client = client(uri)
    found = _find_runs(mlflow_client, experiment_id, {ROLE_TAG: "sweep", SWEEP_TAG: sweep_id})
    if found:
        run_id = found[0].info.run_id
        mlflow_client.update_run(run_id, status="RUNNING")
        return run_id
    run = mlflow_client.create_run(experiment_id, run_name=sweep_id,
                                   tags={ROLE_TAG: "sweep", STUDY_TAG: study_name, SWEEP_TAG: sweep_id,
                                         **source_tags(study_file)})
    _log_params(mlflow_client, run.info.run_id, params)
    if study_file is not None:
        mlflow_client.log_artifact(run.info.run_id, str(study_file))
    return run.info.run_id


def close_sweep_run(uri: str, experiment_id: str, sweep_id: str, run_id: str, status: str) -> int:
    """End the parent run; any trial run of the sweep still RUNNING (its process was killed) ends FAILED
    (a resume sets it RUNNING again). Returns how many trial runs were ended so."""
    mlflow_client = client(uri)
    orphans = [r for r in _find_runs(mlflow_client, experiment_id, {ROLE_TAG: "trial", SWEEP_TAG: sweep_id})
               if r.info.status == "RUNNING"]
    for run in orphans:
        mlflow_client.set_terminated(run.info.run_id, "FAILED")
    mlflow_client.set_terminated(run_id, status)
    return len(orphans)


def latest_sweep_run(uri: str, experiment_name: str) -> tuple[str, str] | None:
    """(run id, sweep id) of the newest sweep's run of an experiment, or None."""
    mlflow_client = client(uri)
    experiment = mlflow_client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    runs = mlflow_client.search_runs([experiment.experiment_id], filter_string=f"tags.`{ROLE_TAG}` = 'sweep'",
                                     max_results=1, order_by=["attributes.start_time DESC"])
    return (runs[0].info.run_id, runs[0].data.tags.get(SWEEP_TAG, "")) if runs else None


def log_sweep_report(uri: str, run_id: str, metrics: dict[str, float], files: list[Path]) -> None:
    """A sweep's summary metrics and its report's files (under ``phase/``) on its run; a refresh replaces them."""
    from mlflow.entities import Metric

    mlflow_client = client(uri)
    stamp = _now()
    items = [Metric(k, float(v), stamp, 0) for k, v in metrics.items()]
    for start in range(0, len(items), METRIC_BATCH):
        mlflow_client.log_batch(run_id, metrics=items[start:start + METRIC_BATCH], synchronous=True)
    for path in files:
        mlflow_client.log_artifact(run_id, str(path), "phase")


def trial_runs(uri: str, experiment_id: str, sweep_id: str | None = None) -> list:
    """The trial runs of an experiment (of one sweep if given), oldest first."""
    tags = {ROLE_TAG: "trial", **({SWEEP_TAG: sweep_id} if sweep_id else {})}
    return _find_runs(client(uri), experiment_id, tags)


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
    runs = _all_pages(client(uri), experiment_id, filter_string=filter_string, run_view_type=views[view],
                      max_results=READ_PAGE)
    return [run_fields(run) for run in runs]


def runs_changed_since(uri: str, experiment_id: str, since_ms: int) -> list[dict[str, Any]]:
    """The active runs that ended at or after ``since_ms`` (milliseconds since the epoch, MLflow's clock) or have
    not ended (``UNFINISHED``), each once."""
    found = {run["run_id"]: run for run in search_runs(uri, experiment_id, f"attributes.end_time >= {since_ms}")}
    for status in UNFINISHED:
        found.update({run["run_id"]: run for run in search_runs(uri, experiment_id, f"attributes.status = '{status}'")})
    return list(found.values())


def runs_by_id(uri: str, experiment_id: str, run_ids: list[str]) -> list[dict[str, Any]]:
    """The active runs of an experiment among ``run_ids`` (asked for 100 at a time: one filter per batch)."""
    found: list[dict[str, Any]] = []
    for start in range(0, len(run_ids), 100):
        ids = ", ".join(f"'{run_id}'" for run_id in run_ids[start:start + 100])
        found += search_runs(uri, experiment_id, f"attributes.run_id IN ({ids})")
    return found


def run_fields(run) -> dict[str, Any]:
    """One MLflow run as plain data: run_id, run_name, status, start_time and end_time (milliseconds),
    artifact_uri, parent_run_id (None for a sweep's run), and dicts of its params, metrics (latest values, floats)
    and tags (the project's own: MLflow's ``mlflow.*`` left out)."""
    info, data = run.info, run.data
    return {"run_id": info.run_id, "run_name": info.run_name, "status": info.status, "start_time": info.start_time,
            "end_time": info.end_time, "artifact_uri": info.artifact_uri, "parent_run_id": data.tags.get(PARENT_TAG),
            "params": dict(data.params), "metrics": {k: float(v) for k, v in data.metrics.items()},
            "tags": {k: v for k, v in data.tags.items() if not k.startswith("mlflow.")}}


def download_run_artifact(uri: str, run_id: str, name: str, folder: str | Path) -> Path:
    """The artifact ``name`` of a run copied into ``folder`` (which exists); FileNotFoundError naming the run and the
    artifact if it has none, TrackingError if the server stopped answering."""
    from mlflow.exceptions import MlflowException

    try:
        return Path(client(uri).download_artifacts(run_id, name, str(folder)))
    except (MlflowException, OSError) as err:
        raise FileNotFoundError(f"run {run_id}: no artifact {name!r} ({str(err).splitlines()[0]})") from None


# --- one trial (child run) -----------------------------------------------------------------------


class TrialRecord:
    """A trial's child run. ``open`` finds the run of (sweep, trial) again, so a retried or resumed trial
    continues its own run instead of adding one; epochs already logged are not logged twice."""

    def __init__(self, uri: str, run_id: str, trial_id: str, last_step: int, finished: bool, summary: dict):
        self.uri, self.run_id, self.trial_id = uri, run_id, trial_id
        self.last_step = last_step  # epochs <= this are already in the run
        self.finished = finished  # the run ended FINISHED before: nothing to do
        self.summary = summary  # finished runs: final metrics and tags, for the sweep's table
        self._client = client(uri)
        self._sender = MetricSender(lambda items: self._client.log_batch(self.run_id, metrics=items,
                                                                         synchronous=True))

    @classmethod
    def open(cls, uri: str, experiment_id: str, parent_run_id: str, study_name: str, sweep_id: str, trial_id: str,
             config: TrialConfig, tags: dict[str, Any] | None = None) -> "TrialRecord":
        mlflow_client = client(uri)
        found = _find_runs(mlflow_client, experiment_id, {ROLE_TAG: "trial", SWEEP_TAG: sweep_id,
                                                          TRIAL_TAG: trial_id})
        done = [r for r in found if r.info.status == "FINISHED"]
        if done:
            run = done[0]
            summary = {**run.data.metrics, **{k: run.data.tags.get(k) for k in FINAL_TAGS}}
            return cls(uri, run.info.run_id, trial_id, -1, True, summary)
        if found:
            run = found[0]
            run_id = run.info.run_id
            mlflow_client.update_run(run_id, status="RUNNING")
            attempts = int(run.data.tags.get(ATTEMPTS_TAG, "1")) + 1
            history = mlflow_client.get_metric_history(run_id, "task_loss")
            last_step = max((m.step for m in history), default=0)
        else:
            source = {k: v for k, v in mlflow_client.get_run(parent_run_id).data.tags.items()
                      if k.startswith(SOURCE_PREFIX)}
            run = mlflow_client.create_run(experiment_id, run_name=trial_id, tags={
                PARENT_TAG: parent_run_id, ROLE_TAG: "trial", STUDY_TAG: study_name, SWEEP_TAG: sweep_id,
                TRIAL_TAG: trial_id, **source})
            run_id, attempts, last_step = run.info.run_id, 1, 0
            _log_params(mlflow_client, run_id, to_flat(config))
        _set_tags(mlflow_client, run_id, {ATTEMPTS_TAG: str(attempts), **(tags or {})})
        return cls(uri, run_id, trial_id, last_step, False, {})

    @classmethod
    def open_single(cls, uri: str, experiment_id: str, experiment_name: str, config: TrialConfig,
                    tags: dict[str, str]) -> "TrialRecord":
        """A new run for one trial outside a sweep (``urn-study train``): no parent, named ``train-<time>``."""
        mlflow_client = client(uri)
        name = f"train-{time.strftime('%Y%m%d-%H%M%S')}"
        run = mlflow_client.create_run(experiment_id, run_name=name, tags={
            ROLE_TAG: "trial", STUDY_TAG: experiment_name, TRIAL_TAG: name, ATTEMPTS_TAG: "1", **tags})
        _log_params(mlflow_client, run.info.run_id, to_flat(config))
        return cls(uri, run.info.run_id, name, 0, False, {})

    def set_tags(self, tags: dict[str, Any]) -> None:
        _set_tags(self._client, self.run_id, tags)

    def log_epoch(self, epoch: int, metrics: dict[str, Any]) -> None:
        """One epoch's report (step = epoch; the phase as ``phase_index``), queued: it reaches the store
        from the sender's thread within ``FLUSH_EVERY_S``, or at ``flush``/``finish``."""
        if epoch <= self.last_step:
            return
        self._sender.add(_metric_items(epoch, metrics))
        self.last_step = epoch

    def flush(self) -> None:
        """Send every queued metric now; raises TrackingError if the store stays away (they stay queued)."""
        self._sender.flush()

    def finish(self, result) -> dict:
        """Log the final figures, tags and artifacts of a TrialResult and end the run FINISHED."""
        last = result.history[-1] if result.history else {}
        final_step = int(result.metrics.get("epochs", last.get("epoch", 0)))
        extra = {k: v for k, v in result.metrics.items() if k not in last and _is_number(v)}
        if "phase" not in last:  # a diverged trial's last report has no phase: log its phase_index here
            extra["phase"] = result.metrics.get("phase")
        if extra:
            self._sender.add(_metric_items(final_step, extra))
        self._sender.close()  # everything queued is in the store, or TrackingError
        tags = {k: _tag_text(result.metrics.get(k, result.structure.get(k))) for k in FINAL_TAGS}
        tags.update(ground_truth_tags(result.data_info))
        _set_tags(self._client, self.run_id, tags)
        with tempfile.TemporaryDirectory(prefix="urn-artifacts-") as folder:
            write_artifacts(result, Path(folder), title=self.trial_id)
            self._client.log_artifacts(self.run_id, folder)
        for epoch, image in snapshot_images(result):
            self._client.log_image(self.run_id, image, key=IMAGE_KEY, step=epoch, synchronous=True)
        self._client.set_terminated(self.run_id, "FINISHED")
        self.finished = True
        self.summary = {**{k: v for k, v in result.metrics.items() if _is_number(v)}, **tags}
        return self.summary

    def fail(self) -> None:
        try:
            self._sender.close()  # keep what the trial reported before it failed
        finally:
            self._client.set_terminated(self.run_id, "FAILED")


def ground_truth_tags(data_info: dict) -> dict[str, str]:
    """The planted teacher's depth, widths and receptive field (``teacher_*``), for runs on teacher data."""
    if not {"depth", "widths", "receptive_field"} <= set(data_info or {}):
        return {}
    return {f"teacher_{k}": _tag_text(data_info[k]) for k in ("depth", "widths", "receptive_field")}


def _metric_items(step: int, metrics: dict[str, Any]) -> list:
    from mlflow.entities import Metric

    stamp = _now()
    items = [Metric(k, float(v), stamp, step) for k, v in metrics.items() if _is_number(v)]
    if isinstance(metrics.get("phase"), str):
        items.append(Metric("phase_index", float(PHASE_CODES.get(metrics["phase"], -1)), stamp, step))
    return items


class MetricSender:
    """Metrics queued by the training loop, sent in order in batches from a background thread.

    The training loop never waits on the store: a batch leaves ``every_s`` seconds after the first metric
    queued since the last batch (one ``log_batch`` per 1000 metrics instead of one per epoch). While the
    store does not answer, the metrics stay queued and are tried again at the next turn (MLflow itself
    retries each call with backoff first); ``flush`` and ``close`` send from the caller's thread and raise
    that error, the metrics still queued."""

    def __init__(self, send, every_s: float | None = None):
        self._send, self.every_s = send, _flush_every() if every_s is None else every_s
        self._queue: list = []
        self._queue_lock = threading.Lock()  # guards the queue
        self._send_lock = threading.Lock()  # one sender at a time: batches leave in order
        self._queued = threading.Event()  # something waits to be sent
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failing = False  # the last send from the thread failed (said once, in a warning)

    @property
    def queued(self) -> int:
        with self._queue_lock:
            return len(self._queue)

    def add(self, items: list) -> None:
        with self._queue_lock:
            self._queue.extend(items)
        self._queued.set()
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(target=self._run, name="urn-metrics", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._queued.wait()
            if self._stop.wait(self.every_s):  # let a batch gather; close() sends the rest
                return
            self._queued.clear()
            try:
                self.flush()
            except Exception as err:  # noqa: BLE001 - still queued; the trial's own flush or close raises it
                if not self.failing:  # one line when the store goes away, one when it is back: not one per try
                    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
                    _log.warning("metrics wait for the tracking store, training goes on (%d queued): %s", self.queued,
                                 first)
                self.failing = True
                self._queued.set()
                self._stop.wait(max(self.every_s, 1.0))
            else:
                if self.failing:
                    _log.warning("metrics reach the tracking store again")
                self.failing = False

    def flush(self) -> None:
        with self._send_lock:
            with self._queue_lock:
                items, self._queue = self._queue, []
            sent = 0
            try:
                while sent < len(items):
                    self._send(items[sent:sent + METRIC_BATCH])
                    sent += METRIC_BATCH
            finally:
                if sent < len(items):  # back in front of anything queued meanwhile
                    with self._queue_lock:
                        self._queue[:0] = items[sent:]

    def close(self) -> None:
        """Stop the thread and send what is left (raises if that fails)."""
        self._stop.set()
        self._queued.set()  # wakes the thread, which then ends
        self.flush()


def _flush_every() -> float:
    text = os.environ.get(FLUSH_ENV, "")
    try:
        seconds = float(text) if text else FLUSH_EVERY_S
    except ValueError:
        seconds = -1.0
    if not math.isfinite(seconds) or seconds < 0:
        raise TrackingError(f"${FLUSH_ENV}: seconds between metric batches, a number >= 0; got {text!r}")
    return seconds


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _tag_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple, np.ndarray, dict)):
        return json.dumps(value, default=json_default)
    return str(value)


# --- the UI --------------------------------------------------------------------------------------


def ui_command(uri: str, port: int) -> list[str]:
    """``mlflow server`` on loopback only, for a local store (artifacts served from urn_results)."""
    import shutil
    import sys

    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow") or "mlflow"
    return [mlflow, "server", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port),
            "--artifacts-destination", str(default_artifact_root()), "--workers", "1"]


def _check_port_free(port: int) -> None:
    """A port something already listens on would have the browser open that instead: say so, before starting."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise ConfigError(f"--port {port}: 127.0.0.1:{port} is already in use (another server?); "
                              "choose another --port") from None


def serve_ui(uri: str | None, port: int, out: Any = None) -> int:
    """Run the MLflow UI for the local store in the foreground until interrupted (Ctrl-C or SIGTERM)."""
    import signal
    import subprocess
    import sys

    out = out or sys.stdout
    uri = resolve_tracking_uri(uri)
    if not is_local(uri):
        print(f"{uri} is an MLflow server: open it in a browser (through an SSH tunnel if remote)", file=out)
        return 0
    check_tracking(uri)
    _check_port_free(port)
    base = f"http://127.0.0.1:{port}"
    print(f"MLflow UI for {uri} at {base} (loopback only; Ctrl-C stops it)", file=out, flush=True)
    for name, experiment_id in _viewed_experiments(uri):
        print(f"  {name}: {view_url(base, experiment_id)}", file=out, flush=True)
    # its own process group: the server's workers and job runner all stop with it
    process = subprocess.Popen(ui_command(uri, port), start_new_session=True)

    def stop(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return process.wait()
    except KeyboardInterrupt:
        stop_group(process)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def _viewed_experiments(uri: str) -> list[tuple[str, str]]:
    """(name, id) of the experiments carrying the runs table's saved view (the studies'), by name."""
    experiments = client(uri).search_experiments(filter_string=f"tags.`{VIEW_TAG}` != ''", max_results=1000)
    return sorted((e.name, e.experiment_id) for e in experiments)


def stop_group(process, timeout: float = 15.0) -> None:
    """Stop a process started in its own session (``start_new_session``), and everything it started."""
    import signal
    import subprocess

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue
