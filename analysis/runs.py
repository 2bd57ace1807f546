"""A study's recorded trials as one tidy table, and re-reading their structure with other thresholds.

``load_study_runs`` reads the trial runs of a study's MLflow experiment (local store or server, through
``urn_study.tracking``: the one package that imports mlflow) into a DataFrame, one row per trial: the config keys
typed back from MLflow's strings, the final metrics, the phase, depth, widths and locality, the run's status.
``reclassify`` re-runs the functional reading (``urn_study.reading.measure``) on each trial's saved W, b and W0 with other
thresholds, without retraining.

Scale: MLflow's search reads every param, tag and metric of every run (2 to 4 s per 1,000 runs from a
local SQLite store on 2 cores). So each sweep keeps its runs' raw records as a table on its own run
(``urn_study.tracking.study_table``), which a load on any machine reads, asking MLflow only for what the tables
do not cover; and the raw records are cached in a parquet file, one per (store, experiment), beside a local
store (``study_cache/``) or under ``urn_results/study_cache`` for a server. A later load asks the store only
for the runs that may have changed since: those that ended at or after the cache's watermark (the latest end
time it holds, less a margin), those still running, those the cache holds as unfinished, and the deleted ones
(dropped). What neither can see: a tag or metric written to a run long after it ended, or a run purged from
the store without being deleted first; ``refresh=True`` re-reads everything by MLflow's search.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import typing
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

# The record layout: the artifacts' names (urn_study.artifacts), the trial tag and final tags (urn_study.tracking);
# the store itself is read through tracking's reading functions (tracking.search_runs...).
from urn_study import tracking
from urn_study.artifacts import BIAS, INITIAL, LAYOUT, WEIGHTS
from urn_study.study import results_dir
from urn_study.tracking import FINAL_TAGS, TRIAL_TAG, is_local, resolve_tracking_uri
from urn_study.tracking.study_table import METRIC, PARAM, TAG, changed_runs, merged, normalise, records_frame, records_from_tables

CACHE_VERSION = 2
WATERMARK_MARGIN_MS = 10_000  # re-read runs that ended up to 10 s before the latest the cache holds (clock skew)
BASE_COLUMNS = ("trial_id", "run_id", "status", "start_time", "end_time")


# --- typing MLflow's strings back --------------------------------------------------------------


def config_key_types() -> dict[str, Any]:
    """Dotted config key -> its annotation (int, float, bool, str, or ``"strength"`` for number-or-schedule)."""
    from urn_study.config import SECTIONS, Strength, _key

    types: dict[str, Any] = {"seed": int}
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls, globalns={"Strength": Strength})
        for name, hint in hints.items():
            types[f"{section}.{_key(name)}"] = "strength" if hint == Strength else hint
    return types


def _as_number(text: pd.Series) -> pd.Series:
    return pd.to_numeric(text, errors="coerce")


def type_column(text: pd.Series, kind: Any = None) -> pd.Series:
    """MLflow param strings -> numbers, bools or strings by the key's config type (unknown keys: numbers
    if every value reads as one). Schedules stay strings: a column with any schedule stays all strings."""
    present = text.notna()
    numbers = _as_number(text)
    all_numbers = bool(numbers[present].notna().all())
    if kind is bool:
        return text.map(
            lambda v: v if v is None or (isinstance(v, float) and math.isnan(v)) else str(v).strip().lower() in ("true", "1", "yes")
        ).astype("boolean")
    if kind is str or (kind in ("strength", None) and not all_numbers):
        return text.astype(object).where(present, None)
    if kind is int or (
        kind is None
        and all_numbers
        and (numbers[present] % 1 == 0).all()
        and present.any()
        and not text[present].str.contains(r"[.eE]", regex=True).any()
    ):
        return numbers.astype("int64") if present.all() else numbers.astype("Int64")
    return numbers.astype(float)


def _json_list(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(("[", "{")):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _tag_column(text: pd.Series) -> pd.Series:
    """Tag strings -> lists (or mappings) where they hold JSON, else typed like params; "" (unset) -> missing."""
    text = text.where(text.astype(object) != "", None)
    lists = text.map(_json_list)
    return lists if lists.map(lambda v: isinstance(v, (list, dict))).any() else type_column(text)


def _tag_name(tag: str) -> str:
    return tag[len("urn.") :] if tag.startswith("urn.") else tag  # urn.sweep -> sweep


def tidy_table(records: pd.DataFrame, trial_tag: str = TRIAL_TAG) -> pd.DataFrame:
    """Raw run records (``param:``/``metric:``/``tag:`` columns) -> one typed row per trial run.

    Params keep their dotted names, metrics their names (latest values), tags lose the ``urn.`` prefix.
    The final tags (phase, depth, widths, hop_spectrum) win over a metric of the same name: a trial that
    diverged keeps its last snapshot's depth as a metric, but its final record has none.
    """
    trial_column = f"{TAG}{trial_tag}"
    if records.empty or trial_column not in records.columns:
        return pd.DataFrame(columns=list(BASE_COLUMNS))
    rows = records[records[trial_column].notna()]
    prefixed = [c for c in rows.columns if c.startswith((PARAM, METRIC, TAG))]
    rows = rows.drop(columns=[c for c in prefixed if rows[c].isna().all()])  # e.g. the sweep runs' own params
    columns: dict[str, pd.Series] = {
        "trial_id": rows[trial_column].astype(object),
        "run_id": rows["run_id"],
        "status": rows["status"],
        "artifact_uri": rows["artifact_uri"] if "artifact_uri" in rows.columns else None,
        "start_time": pd.to_datetime(rows["start_time"], unit="ms", utc=True),
        "end_time": pd.to_datetime(rows["end_time"], unit="ms", utc=True),
    }
    types = config_key_types()
    for raw in sorted(c for c in rows.columns if c.startswith(PARAM)):
        columns[raw[len(PARAM) :]] = type_column(rows[raw], types.get(raw[len(PARAM) :]))
    for raw in sorted(c for c in rows.columns if c.startswith(METRIC)):
        columns[raw[len(METRIC) :]] = rows[raw].astype(float)
    for raw in sorted(c for c in rows.columns if c.startswith(TAG) and c != trial_column):
        name = _tag_name(raw[len(TAG) :])
        if name in FINAL_TAGS or name not in columns:
            columns[name] = _tag_column(rows[raw])
    table = pd.DataFrame(columns, index=rows.index)
    if "depth" in table.columns:
        table["depth"] = pd.to_numeric(table["depth"], errors="coerce").astype("Int64")
    return table.sort_values(["trial_id", "start_time"], kind="stable").reset_index(drop=True)


# --- reading the store (through urn_study.tracking, the one module that speaks MLflow) ----------------


def _changed_runs(tracking_uri: str, experiment_id: str, cached: pd.DataFrame, watermark: int) -> tuple[list[dict], set[str]]:
    """Runs to re-read since the cache was written, and the ids of runs now deleted."""
    found, gone = changed_runs(tracking_uri, experiment_id, cached, watermark)
    deleted = {run["run_id"] for run in tracking.search_runs(tracking_uri, experiment_id, view="deleted")}
    return found, deleted | gone


# --- the cache -------------------------------------------------------------------------------


def default_cache_dir(tracking_uri: str) -> Path:
    """Beside a local store (``sqlite:///x/mlflow.db`` -> ``x/study_cache``), else ``urn_results/study_cache``."""
    if tracking_uri.startswith("sqlite:///") and tracking_uri != "sqlite:///:memory:":
        return Path(tracking_uri[len("sqlite:///") :]).parent / "study_cache"
    return results_dir() / "study_cache"


def _cache_files(cache_dir: Path, tracking_uri: str, experiment_id: str, name: str) -> tuple[Path, Path]:
    digest = hashlib.sha1(f"{tracking_uri}\n{experiment_id}".encode()).hexdigest()[:12]
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:60] + f"-{digest}"
    return cache_dir / f"{stem}.parquet", cache_dir / f"{stem}.json"


def _read_cache(files: tuple[Path, Path], key: dict) -> tuple[pd.DataFrame, int] | None:
    table, meta_file = files
    try:
        meta = json.loads(meta_file.read_text())
        if meta.get("key") != key or not table.is_file():
            return None
        return normalise(pd.read_parquet(table)), int(meta["watermark"])
    except (OSError, ValueError, KeyError):
        return None  # unreadable or from another version: rebuild


def _write_cache(files: tuple[Path, Path], key: dict, frame: pd.DataFrame) -> None:
    table, meta_file = files
    table.parent.mkdir(parents=True, exist_ok=True)
    ends = frame["end_time"].dropna()
    watermark = int(ends.max()) - WATERMARK_MARGIN_MS if len(ends) else 0
    tmp = table.with_suffix(f".parquet.{os.getpid()}.tmp")  # own name: two loaders may write at once
    frame.to_parquet(tmp, index=False)
    tmp.replace(table)  # write then rename: a reader never sees half a file
    meta_tmp = meta_file.with_suffix(f".json.{os.getpid()}.tmp")
    meta_tmp.write_text(json.dumps({"key": key, "watermark": watermark, "runs": len(frame)}))
    meta_tmp.replace(meta_file)


def study_records(
    tracking_uri: str,
    experiment_id: str,
    files: tuple[Path, Path] | None,
    key: dict,
    refresh: bool = False,
    use_tables: bool = True,
) -> pd.DataFrame:
    """Raw records of every active run of the experiment: from the local cache plus the runs changed since; else
    (no usable cache, ``files`` None) from the sweeps' study tables plus what they do not cover
    (``tracking.study_table``); else (``refresh``, or ``use_tables`` False) from a full search. Writes the cache
    back."""
    cached = _read_cache(files, key) if files is not None and not refresh else None
    if cached is not None:
        frame, watermark = cached
        frame = merged(frame, *_changed_runs(tracking_uri, experiment_id, frame, watermark))
    elif use_tables and not refresh:
        frame = records_from_tables(tracking_uri, experiment_id)
    else:
        frame = records_frame(tracking.search_runs(tracking_uri, experiment_id))
    if files is not None:
        _write_cache(files, key, frame)
    return frame


# --- the public loaders ----------------------------------------------------------------------


def _experiment(tracking_uri: str, study: Any) -> tuple[str, str]:
    """(id, name) of the MLflow experiment of a study: a Study (its name), an experiment name, or an experiment id."""
    name = getattr(study, "name", study)
    experiment = tracking.find_experiment(tracking_uri, str(name))
    if experiment is None:
        raise LookupError(f"no study {name!r} recorded in {tracking_uri} (run its sweep first)")
    return experiment


def load_study_runs(
    study: Any,
    tracking_uri: str | None = None,
    refresh: bool = False,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    use_tables: bool = True,
) -> pd.DataFrame:
    """One row per trial run of a study: trial_id, run_id, status, start/end time, every config key
    typed back (numbers, bools, strings; schedules as their recorded text), the final metrics, and the
    tags (phase, depth as integers, widths as lists...). Read from the local cache, else from the study tables
    the sweeps keep on their runs, else (``refresh``, ``use_tables=False``) by MLflow's search of every run; see
    the module docstring."""
    tracking_uri = resolve_tracking_uri(tracking_uri)
    store = Path(tracking_uri[len("sqlite:///") :]) if is_local(tracking_uri) else None
    if store is not None and not store.is_file():  # MLflow would create an empty store there: reading writes nothing
        raise LookupError(f"no study {getattr(study, 'name', study)!r} recorded: no MLflow store at {store}")
    experiment_id, experiment_name = _experiment(tracking_uri, study)
    files = None
    if use_cache:
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir(tracking_uri)
        files = _cache_files(folder, tracking_uri, experiment_id, experiment_name)
    key = {"version": CACHE_VERSION, "tracking_uri": tracking_uri, "experiment_id": experiment_id}
    records = study_records(tracking_uri, experiment_id, files, key, refresh, use_tables)
    return tidy_table(records, TRIAL_TAG)


def latest_runs(df: pd.DataFrame) -> pd.DataFrame:
    """One run per trial id: a trial run again by a later sweep of the study has several; keep its latest
    FINISHED run (else its latest run), so repeated sweeps do not count a seed twice."""
    if df.empty:
        return df
    order = df.assign(_finished=df["status"].eq("FINISHED")).sort_values(["trial_id", "_finished", "start_time"], kind="stable")
    return order.drop_duplicates("trial_id", keep="last").drop(columns="_finished").sort_index()


def trial_config(row: Any):
    """The TrialConfig of a study-table row (or any mapping holding dotted config keys); schedules
    recorded as text (JSON or a Python mapping) are read back."""
    import yaml

    from urn_study.config import all_keys, parse_config

    def value(v: Any) -> Any:
        return yaml.safe_load(v) if isinstance(v, str) and v.strip().startswith("{") else v

    keys = set(all_keys())
    return parse_config({k: value(v) for k, v in dict(row).items() if k in keys and not _missing(v)})


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


# --- artifacts and reclassification ----------------------------------------------------------


def _local_artifact(artifact_uri: str | None, name: str) -> Path | None:
    """The artifact's own file when the run's artifacts sit on this machine (a local store): no copy."""
    if not artifact_uri or not artifact_uri.startswith("file:"):
        return None
    from urllib.parse import unquote, urlparse

    path = Path(unquote(urlparse(artifact_uri).path)) / name
    return path if path.is_file() else None


def download_artifact(run_id: str, name: str, tracking_uri: str | None, folder: str | Path) -> Path:
    """A run's artifact copied into ``folder``; raises FileNotFoundError naming the run if absent."""
    return tracking.download_run_artifact(resolve_tracking_uri(tracking_uri), run_id, name, folder)


def load_trial_artifacts(run: Any, tracking_uri: str | None = None, names: Iterable[str] = (WEIGHTS, LAYOUT)) -> dict[str, Any]:
    """Named artifacts of one run (a run id, or a study-table row with ``run_id`` and ``artifact_uri``):
    ``.npy`` as arrays (never unpickled), ``layout.json`` as a Layout, other ``.json`` as plain data.
    Read in place from a local store, downloaded from a server."""
    import tempfile

    from urn_study.layout import Layout

    run_id = run if isinstance(run, str) else run["run_id"]
    artifact_uri = None if isinstance(run, str) else run.get("artifact_uri")
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="urn-artifacts-") as folder:
        for name in names:
            path = _local_artifact(artifact_uri, name) or download_artifact(run_id, name, tracking_uri, folder)
            if name.endswith(".npy"):
                out[name] = np.load(path, allow_pickle=False)
            elif name == LAYOUT:
                out[name] = Layout.load(path)
            else:
                out[name] = json.loads(path.read_text())
    return out


REPORT_COLUMNS = (
    "phase",
    "uncertain",
    "margin",
    "depth",
    "widths",
    "block_widths",
    "carrying_depths",
    "depth_shares",
    "hidden_width",
    "hidden_cost",
    "recurrence_cost",
    "locality",
    "receptive_field",
    "kept_units",
)
LIST_COLUMNS = ("widths", "block_widths", "carrying_depths", "depth_shares")


def trial_probe(config):
    """The held-out samples a trial was measured on, generated again from its config (data are seeded); after a
    mid-training switch of data, the data it ended on."""
    from urn_study.data import load_dataset
    from urn_study.reading.measure import probe_of

    data = config.data
    if data.switched_at(config.train.epochs - 1):
        data = data.switched()
    dataset = load_dataset(data, config.seed)
    return probe_of(dataset.x_test, dataset.y_test, config.seed)


def reread_structure(row: Any, thresholds=None, tracking_uri: str | None = None, probe=None):
    """The Measurement (urn_study.reading.measure) of one trial's saved W and b, read with ``thresholds`` (an
    ``urn_study.reading.function.Thresholds``) against its saved W0, on its held-out samples generated again
    (``trial_probe``) or on ``probe(config, artifacts)`` when given (other samples, planted networks)."""
    from urn_study.reading.function import Thresholds
    from urn_study.reading.measure import measure, measure_null

    config = trial_config(row)
    artifacts = load_trial_artifacts(row, tracking_uri, (WEIGHTS, BIAS, INITIAL, LAYOUT))
    layout = artifacts[LAYOUT]
    probe = probe(config, artifacts) if probe is not None else trial_probe(config)
    thresholds = thresholds or Thresholds()
    null = measure_null(artifacts[INITIAL], layout, config.model, probe, thresholds)
    return measure(artifacts[WEIGHTS], artifacts[BIAS], layout, config.model, probe, null, thresholds)


def reclassify(df: pd.DataFrame, thresholds=None, tracking_uri: str | None = None, probe=None) -> pd.DataFrame:
    """A copy of the study table with the phase and the functional figures (``REPORT_COLUMNS``) re-read from
    each trial's saved W, b and W0 with other ``thresholds`` (``urn_study.reading.function.Thresholds``), no
    retraining; ``probe`` as in ``reread_structure``. The recorded phase is kept in ``recorded_phase``;
    diverged trials and trials without saved arrays keep their values (``reclassified`` says which rows were
    re-read)."""
    reports: dict[Any, dict] = {}
    for index, row in df.iterrows():
        if row.get("phase") == "diverged":
            continue
        try:
            reports[index] = reread_structure(row, thresholds, tracking_uri, probe).to_dict()
        except FileNotFoundError:
            continue
    out = df.copy()
    out["recorded_phase"] = df["phase"] if "phase" in df.columns else None
    out["reclassified"] = [index in reports for index in df.index]
    for column in REPORT_COLUMNS:
        old = out[column] if column in out.columns else pd.Series(None, index=out.index, dtype=object)
        out[column] = [reports[i][column] if i in reports else old[i] for i in out.index]
    out["depth"] = pd.to_numeric(out["depth"], errors="coerce").astype("Int64")
    for column in set(REPORT_COLUMNS) - {"phase", "depth", *LIST_COLUMNS}:
        out[column] = pd.to_numeric(out[column], errors="coerce")
    return out
