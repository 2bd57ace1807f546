"""The record edge: MLflow, in one package (no other project file imports mlflow), one job a module:
``store`` (which URIs, whether the store can be used, the client), ``runs`` (the record's tags, the run calls
the writers share), ``experiments`` (a study's experiment, its view and source tags), ``sweep_runs`` (a sweep's
parent run), ``trial_record`` (a trial's child run and its metric thread), ``study_table`` (the study table
each sweep keeps on its run), ``reading`` (a study's runs read back for ``analysis.runs``), ``ui`` (the MLflow
UI). Callers import the names below from ``urn_study.tracking``.

The record of a study (experiment = the study's name; ``<name>-smoke`` for smoke sweeps):

- the experiment: a classic ML one in MLflow 3's UI (``mlflow.experimentKind``), its description
  (``mlflow.note.content``) the study's question, and a saved view of the runs table (``VIEW_TAG``) showing
  phase, depth, test accuracy and the study's axes: ``view_url``.
- parent run, one per sweep: run name = sweep id, tags ``urn.role=sweep``, ``urn.study``, ``urn.sweep``;
  params: searcher, trials, study_file (relative to the repository), smoke, fingerprint, trials_per_worker; the
  study file as artifact; when the sweep ends, its summary metrics (``trials_<phase>``, ``best_test_accuracy_<phase>``,
  ``diverged``, ``failed``) and, under ``phase/``, the phase diagram, gallery and grid (``log_sweep_report``);
  ``study_table.parquet``: its trial runs' records, written in batches as trials end and whole at the end
  (``study_table``).
- every run: MLflow's source tags (``mlflow.source.name``: the study or config file relative to its git
  repository, ``mlflow.source.git.commit``, ``mlflow.source.type``), a trial's copied from its sweep's run.
- child run, one per trial: run name = trial id, tags ``mlflow.parentRunId``, ``urn.role=trial``,
  ``urn.trial_id``, ``urn.study``, ``urn.sweep``, ``urn.attempts``, where it ran (``urn.node_ip``,
  ``urn.node_id``, ``urn.gpu_ids``, ``urn.device``, ``urn.resources``, ``urn.tune_trial``, ``urn.pid``),
  ``urn.resumed_from_epoch`` when an attempt started from a checkpoint, ``urn.error`` (the error's line) on a run
  that ended FAILED with one, moved to ``urn.earlier_error`` (``attempt N: ...``) when a retry takes the run up;
  when it ends the ``FINAL_TAGS`` (phase, depth, widths per level and per block... lists as JSON), and on teacher
  data the teacher's ``teacher_depth``, ``teacher_widths``, ``teacher_receptive_field``. Params: every config
  key (``to_flat``). Metrics, step = epoch: everything the trial reports per epoch, ``phase_index`` (see ``PHASE_CODES``)
  at snapshot epochs, and at the last epoch the final figures not reported per epoch (``seconds``...).
  Per-epoch metrics leave in batches from a background thread (``MetricSender``), about
  ``FLUSH_EVERY_S`` (5 s; ``$URN_METRICS_EVERY_S``) after the epoch at most, all of them before the run ends.
  Artifacts: the files of ``urn_study.artifacts`` (W, b, W0, snapshots, layout, config, the structure record,
  history, heatmap), and each snapshot's heatmap as an image with its step (key ``W``: the UI's image view).
- a single ``urn-study train --tracking-uri``: one run like a trial's, without a parent (``TrialRecord.open_single``).

Nothing else in the project imports mlflow, for writing or reading (``analysis.runs`` reads a study
through ``reading``); runs always end FINISHED or FAILED.
"""

from urn_study.tracking.experiments import ensure_experiment, repo_path, source_tags
from urn_study.tracking.reading import (
    UNFINISHED,
    download_run_artifact,
    find_experiment,
    run_fields,
    runs_by_id,
    runs_changed_since,
    search_runs,
)
from urn_study.tracking.runs import (
    ATTEMPTS_TAG,
    BATCH,
    FINAL_TAGS,
    PARENT_TAG,
    PHASE_CODES,
    ROLE_TAG,
    STUDY_TAG,
    SWEEP_TAG,
    TRIAL_TAG,
)
from urn_study.tracking.store import (
    FLUSH_ENV,
    TrackingError,
    check_tracking,
    client,
    default_artifact_root,
    is_local,
    resolve_tracking_uri,
)
from urn_study.tracking.study_table import SweepTable
from urn_study.tracking.sweep_runs import close_sweep_run, latest_sweep_run, log_sweep_report, open_sweep_run, trial_runs
from urn_study.tracking.trial_record import MetricSender, TrialRecord
from urn_study.tracking.ui import serve_ui, server_env, stop_group, ui_command

__all__ = [
    "ATTEMPTS_TAG",
    "BATCH",
    "FINAL_TAGS",
    "FLUSH_ENV",
    "PARENT_TAG",
    "PHASE_CODES",
    "ROLE_TAG",
    "STUDY_TAG",
    "SWEEP_TAG",
    "TRIAL_TAG",
    "UNFINISHED",
    "MetricSender",
    "SweepTable",
    "TrackingError",
    "TrialRecord",
    "check_tracking",
    "client",
    "close_sweep_run",
    "default_artifact_root",
    "download_run_artifact",
    "ensure_experiment",
    "find_experiment",
    "is_local",
    "latest_sweep_run",
    "log_sweep_report",
    "open_sweep_run",
    "repo_path",
    "resolve_tracking_uri",
    "run_fields",
    "runs_by_id",
    "runs_changed_since",
    "search_runs",
    "serve_ui",
    "server_env",
    "source_tags",
    "stop_group",
    "trial_runs",
    "ui_command",
]
