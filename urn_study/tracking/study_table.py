"""The study table: every run of a study as one flat record, kept by each sweep on its own run, read back whole.

A run's record (``run_record``) is what ``analysis.runs.load_study_runs`` types into its table: the run's info,
``param:``, ``metric:`` (latest value) and ``tag:`` columns, all as MLflow holds them (strings, floats, times in
milliseconds). Reading them with MLflow's search costs about 2 s per 1,000 runs, so each sweep keeps its trial
runs' records on its parent run as ``study_table.parquet`` (``SweepTable``: the driver writes it in batches as
trials end, ``close_sweep_run`` once more, whole, at the end), with a watermark in the file's metadata: every
run of the sweep that ended before it is in the table as it was then.

``records_from_tables`` reads a study from those tables and asks MLflow only for what they do not cover: the runs of a
sweep that ended at or after its table's watermark or have not ended (MLflow wins: a retried or resumed trial's
newer record replaces the table's), the rows a table holds as unfinished, the deleted runs (dropped), the runs of
sweeps without a readable table (one warning line) or whose sweep run was deleted, and the runs outside any
sweep (``urn-study train``). What it cannot see, as MLflow keeps no time of a run's last change: a tag or
metric written to a run of a sweep long after that run ended (the plain search, ``use_tables=False``, sees it).

Parquet (pyarrow), no pickle: strings, floats and integer times, the watermark as JSON in the schema's metadata.
Two sweeps of one study write two files on two runs; a sweep's own batches overwrite its file (last write wins).
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import unquote, urlparse

import pandas as pd

from urn_study.tracking.reading import UNFINISHED, run_fields, runs_by_id, runs_changed_since, search_runs
from urn_study.tracking.runs import ROLE_TAG, SWEEP_TAG, _find_runs, _now
from urn_study.tracking.store import TrackingError, client

_log = logging.getLogger(__name__)

TABLE_FILE = "study_table.parquet"  # an artifact of each sweep's run
TABLE_VERSION = 1
META_KEY = b"urn.study_table"  # the table's watermark and sweep, JSON in the parquet schema's metadata
WATERMARK_MARGIN_MS = 10_000  # a run that ended up to 10 s before a table was written is asked again (clock skew)
PARAM, METRIC, TAG = "param:", "metric:", "tag:"  # prefixes of the record columns
INFO = ("run_id", "run_name", "status", "start_time", "end_time", "artifact_uri")


class TableError(ValueError):
    """A study table that cannot be read (cut short, another format, another version)."""


# --- a run's record ----------------------------------------------------------------------------


def run_record(run: dict[str, Any]) -> dict[str, Any]:
    """One run (``reading.run_fields``) as a flat record: info, ``param:``, ``metric:`` (latest value) and
    ``tag:`` columns."""
    record: dict[str, Any] = {k: run[k] for k in INFO}
    record.update({PARAM + k: v for k, v in run["params"].items()})
    record.update({METRIC + k: v for k, v in run["metrics"].items()})
    record.update({TAG + k: v for k, v in run["tags"].items()})
    record[TAG + "parent_run_id"] = run["parent_run_id"]
    return record


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """One dtype per kind of column, whatever the source (a search, a parquet file): strings as objects (None if
    absent), metrics float, times nullable integer milliseconds."""
    frame = frame.copy()
    for column in frame.columns:
        if column.startswith(METRIC):
            frame[column] = frame[column].astype(float)
        elif column in ("start_time", "end_time"):
            frame[column] = pd.to_numeric(frame[column]).astype("Int64")
        else:
            frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    return frame


def records_frame(runs: Iterable[dict]) -> pd.DataFrame:
    """Runs (``reading.run_fields``) as a frame of records, one row each."""
    frame = pd.DataFrame([run_record(run) for run in runs])
    if frame.empty:
        frame = pd.DataFrame(columns=list(INFO[:5]))
    return normalise(frame)


def merged(frame: pd.DataFrame, fresh: list[dict], gone: set[str]) -> pd.DataFrame:
    """``frame`` with the runs ``fresh`` replacing or joining its rows (the newer record wins) and ``gone`` dropped."""
    if not fresh and not gone:
        return frame
    fresh_frame = records_frame(fresh).drop_duplicates("run_id", keep="last")
    keep = ~frame["run_id"].isin(set(fresh_frame["run_id"]) | gone)
    return normalise(pd.concat([frame[keep], fresh_frame], ignore_index=True))


def changed_runs(uri: str, experiment_id: str, frame: pd.DataFrame, watermark: int, scope: str = "") -> tuple[list[dict], set[str]]:
    """The runs (within ``scope``, a search filter) to read again over ``frame``, a table good up to ``watermark``:
    those that ended at or after it, those not ended, and ``frame``'s unfinished rows; and the ids of those of the
    latter no longer active (deleted or purged)."""
    found = {run["run_id"]: run for run in runs_changed_since(uri, experiment_id, watermark, scope)}
    pending = [rid for rid in frame.loc[frame["status"].isin(UNFINISHED), "run_id"] if rid not in found]
    found.update({run["run_id"]: run for run in runs_by_id(uri, experiment_id, pending)})
    return list(found.values()), set(pending) - set(found)


# --- the file ----------------------------------------------------------------------------------


def write_table(frame: pd.DataFrame, path: Path, sweep_id: str, watermark: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(normalise(frame), preserve_index=False)
    meta = {"version": TABLE_VERSION, "sweep": sweep_id, "watermark": int(watermark), "runs": len(frame)}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: json.dumps(meta).encode()})
    pq.write_table(table, path)


def read_table(path: Path) -> tuple[pd.DataFrame, dict]:
    """(records, metadata) of a table file; TableError if it cannot be read as one."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {})[META_KEY])
        if meta.get("version") != TABLE_VERSION or not isinstance(meta.get("watermark"), int):
            raise TableError(f"{path.name}: version {meta.get('version')!r}, this code reads {TABLE_VERSION}")
        frame = normalise(table.to_pandas())
        if "run_id" not in frame.columns or "status" not in frame.columns:
            raise TableError(f"{path.name}: no run_id or status column")
        return frame, meta
    except (pa.ArrowException, OSError, KeyError, ValueError) as err:
        if isinstance(err, TableError):
            raise
        raise TableError(f"{path.name}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None


def put_table(uri: str, run_id: str, sweep_id: str, frame: pd.DataFrame, watermark: int) -> None:
    """Write ``frame`` as the table artifact of the sweep's run ``run_id`` (replacing the one there)."""
    with tempfile.TemporaryDirectory(prefix="urn-table-") as folder:
        path = Path(folder) / TABLE_FILE
        write_table(frame, path, sweep_id, watermark)
        client(uri).log_artifact(run_id, str(path))


def get_table(uri: str, run: dict[str, Any]) -> tuple[pd.DataFrame, dict] | None:
    """The table of a sweep's run (``reading.run_fields``): read in place from a local store, else downloaded.
    None if it has none; TableError if it cannot be read."""
    artifact_uri = run.get("artifact_uri") or ""
    if artifact_uri.startswith("file:"):
        path = Path(unquote(urlparse(artifact_uri).path)) / TABLE_FILE
        return read_table(path) if path.is_file() else None
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="urn-table-") as folder:
        try:
            path = Path(client(uri).download_artifacts(run["run_id"], TABLE_FILE, folder))
        except (MlflowException, OSError):
            return None
        return read_table(path)


def sweep_scope(sweep_id: str) -> str:
    """The search filter of a sweep's trial runs."""
    return f"tags.`{ROLE_TAG}` = 'trial' and tags.`{SWEEP_TAG}` = '{sweep_id}'"


# --- writing: the driver's table of its sweep -----------------------------------------------------


class SweepTable:
    """A sweep's table as its driver keeps it while trials end: each ``update`` asks the store only for the sweep's
    trial runs changed since the last one (the first: the table a resumed sweep left, else every run of the sweep)
    and writes the whole table again on the sweep's run."""

    def __init__(self, uri: str, experiment_id: str, sweep_id: str, run_id: str):
        self.uri, self.experiment_id, self.sweep_id, self.run_id = uri, experiment_id, sweep_id, run_id
        self.frame: pd.DataFrame | None = None
        self.watermark = 0

    def update(self) -> int:
        """Bring the table up to date and write it; returns its number of runs."""
        asked = _now()
        scope = sweep_scope(self.sweep_id)
        if self.frame is None:
            try:
                here = get_table(self.uri, {"run_id": self.run_id, "artifact_uri": self._artifact_uri()})
            except TableError:
                here = None  # rewritten whole below
            if here is None:
                self.frame = records_frame(search_runs(self.uri, self.experiment_id, scope))
            else:
                self.frame, self.watermark = here[0], here[1]["watermark"]
        if self.watermark:
            fresh, gone = changed_runs(self.uri, self.experiment_id, self.frame, self.watermark, scope)
            self.frame = merged(self.frame, fresh, gone)
        self.watermark = asked - WATERMARK_MARGIN_MS
        put_table(self.uri, self.run_id, self.sweep_id, self.frame, self.watermark)
        return len(self.frame)

    def _artifact_uri(self) -> str:
        return client(self.uri).get_run(self.run_id).info.artifact_uri


def write_final_table(uri: str, run_id: str, sweep_id: str, runs: list, asked: int) -> None:
    """The whole table of a sweep at its end, from its trial runs as MLflow returned them at ``asked`` (ms);
    a failure is one warning line (readers then ask MLflow for the sweep's runs)."""
    from mlflow.exceptions import MlflowException

    try:
        put_table(uri, run_id, sweep_id, records_frame(run_fields(run) for run in runs), asked - WATERMARK_MARGIN_MS)
    except (MlflowException, TrackingError, OSError) as err:
        _log.warning(
            "sweep %s: its study table was not written (%s); loading the study asks MLflow for its runs",
            sweep_id,
            (str(err).splitlines() or [type(err).__name__])[0],
        )


def sweep_trial_runs(uri: str, experiment_id: str, sweep_id: str) -> tuple[list, int]:
    """(every trial run of a sweep, as MLflow objects; when they were asked for, ms)."""
    asked = _now()
    return _find_runs(client(uri), experiment_id, {ROLE_TAG: "trial", SWEEP_TAG: sweep_id}), asked


def rewrite_sweep_table(uri: str, experiment_id: str, sweep_id: str, run_id: str) -> None:
    """A sweep's table written whole again from every trial run it has now (as ``close_sweep_run`` does): for runs
    recorded after its end with earlier times (a store made up by a benchmark), which no watermark can see."""
    runs, asked = sweep_trial_runs(uri, experiment_id, sweep_id)
    write_final_table(uri, run_id, sweep_id, runs, asked)


# --- reading: a study from its sweeps' tables ----------------------------------------------------


def records_from_tables(uri: str, experiment_id: str) -> pd.DataFrame:
    """The records of every active run of an experiment (``records_frame``), as a full search returns them, from
    the sweeps' tables and MLflow for what they do not cover (module docstring)."""
    sweeps = search_runs(uri, experiment_id, f"tags.`{ROLE_TAG}` = 'sweep'")
    deleted = search_runs(uri, experiment_id, view="deleted")
    gone = {run["run_id"] for run in deleted}
    parts, fresh, unread = [records_frame(sweeps)], [], []
    uncovered = {run["tags"].get(SWEEP_TAG) for run in deleted if run["tags"].get(ROLE_TAG) == "sweep"}
    for sweep in sweeps:
        sweep_id = sweep["tags"].get(SWEEP_TAG, "")
        try:
            table = get_table(uri, sweep)
        except TableError as err:
            table, err_text = None, str(err)
        else:
            err_text = "no table"
        if table is None:
            # a sweep still running before its first batch (its own end-of-sweep report reads it then) is not news
            if sweep["status"] != "RUNNING" or err_text != "no table":
                unread.append(f"{sweep_id} ({err_text})")
            uncovered.add(sweep_id)
            continue
        frame, meta = table
        changed, left = changed_runs(uri, experiment_id, frame, meta["watermark"], sweep_scope(sweep_id))
        parts.append(frame)
        fresh += changed
        gone |= left
    if unread:
        _log.warning(
            "study table unreadable or missing for %d sweep(s), their runs read from MLflow: %s",
            len(unread),
            "; ".join(unread[:3]) + ("; ..." if len(unread) > 3 else ""),
        )
    for sweep_id in sorted(s for s in uncovered if s):
        fresh += search_runs(uri, experiment_id, f"tags.`{SWEEP_TAG}` = '{sweep_id}'")
    fresh += search_runs(uri, experiment_id, f"tags.`{SWEEP_TAG}` IS NULL")  # outside any sweep: urn-study train
    frame = normalise(pd.concat(parts, ignore_index=True)).drop_duplicates("run_id", keep="last")
    return merged(frame, fresh, gone)
