"""A study's table from MLflow: ``analysis.runs``' watermark cache against ``mlflow.search_runs`` plus a parquet file.

    .venv/bin/python benchmarks/study_table_cache.py /tmp/urn-cache          # 1,000 runs: the store made once (~3 min)
    .venv/bin/python benchmarks/study_table_cache.py --smoke                 # 100 runs in a temporary folder: ~30 s

The store is ``analysis_scale.py``'s (its study, one real trial, the others copied with their own configs and
results), made with ``--runs`` runs. Timed in turn (ours, the library's, ours, ...), medians of ``--repeats``:

- ours, cold: ``load_study_runs(refresh=True)``: the full search (``MlflowClient.search_runs``), the typed
  table, the cache written; warm: the cache plus the runs that may have changed since (ended after the
  watermark, still running, unfinished in the cache, deleted);
- the library's, cold: ``mlflow.search_runs`` (MLflow's own DataFrame: ``params.*``, ``metrics.*``,
  ``tags.*`` as strings, nothing typed) written to parquet; warm: the parquet read back plus
  ``mlflow.search_runs`` of the runs that ended after its latest end time, merged by run id (what a plain
  cache must do to see new runs; it sees neither deleted runs nor runs that were running);
- the library's parquet read alone (a cache that never asks the store).

Then ours' warm load taken apart: reading the cache, asking the store for changed runs, writing the cache
back, typing the table (``tidy_table``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from analysis_scale import STUDY, make_store, store_folder  # noqa: E402
from machine import describe  # noqa: E402

from urn_study.model import pick_device  # noqa: E402


def library_cold(uri: str, experiment_id: str, cache: Path) -> pd.DataFrame:
    import mlflow

    mlflow.set_tracking_uri(uri)
    table = mlflow.search_runs(experiment_ids=[experiment_id])
    table.to_parquet(cache, index=False)
    return table


def library_warm(uri: str, experiment_id: str, cache: Path) -> pd.DataFrame:
    import mlflow

    mlflow.set_tracking_uri(uri)
    table = pd.read_parquet(cache)
    watermark = int(table["end_time"].max().timestamp() * 1000)
    fresh = mlflow.search_runs(experiment_ids=[experiment_id], filter_string=f"attributes.end_time >= {watermark}")
    return pd.concat([table[~table["run_id"].isin(fresh["run_id"])], fresh], ignore_index=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", help="where the store is made or found (default: a temporary folder)")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="100 runs, once")
    args = parser.parse_args(argv)
    if args.smoke:
        args.runs, args.repeats = 100, 1

    print("study_table_cache |", describe(pick_device("auto")))
    with store_folder(args.folder, "urn-table-cache-") as folder:
        _, uri = make_store(folder, args.runs)
        measure(uri, folder, args.runs, args.repeats)


def measure(uri: str, folder: Path, n_runs: int, repeats: int) -> None:
    from mlflow.tracking import MlflowClient

    from analysis.runs import load_study_runs

    experiment_id = MlflowClient(uri).get_experiment_by_name(STUDY).experiment_id
    ours_dir, parquet = folder / "bench_cache", folder / "bench_library.parquet"
    ways = {
        "ours, cold (full search, typed, cache written)": lambda: load_study_runs(STUDY, uri, refresh=True, cache_dir=ours_dir),
        "library, cold (mlflow.search_runs, parquet written)": lambda: library_cold(uri, experiment_id, parquet),
        "ours, warm (cache + changed runs)": lambda: load_study_runs(STUDY, uri, cache_dir=ours_dir),
        "library, warm (parquet + runs ended since)": lambda: library_warm(uri, experiment_id, parquet),
        "library, parquet alone (never asks the store)": lambda: pd.read_parquet(parquet),
    }
    samples: dict[str, list[float]] = {name: [] for name in ways}
    rows: dict[str, int] = {}
    loads = [os.getloadavg()[0]]
    for _ in range(repeats):
        for name, load in ways.items():  # interleaved: each repeat runs every way once, in this order
            start = time.perf_counter()
            table = load()
            samples[name].append(time.perf_counter() - start)
            rows[name] = len(table)
        loads.append(os.getloadavg()[0])
    print(
        f"{n_runs} recorded trial runs (plus the sweep's run); medians of {repeats}, interleaved; "
        f"load average {min(loads):.1f} to {max(loads):.1f}"
    )
    print(f"{'':<54}{'seconds':>8}{'rows':>7}   each repeat")
    for name, times in samples.items():
        print(f"{name:<54}{statistics.median(times):>8.2f}{rows[name]:>7}   " + " ".join(f"{s:.2f}" for s in times))
    print(
        "where ours' warm load goes: "
        + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in warm_parts(uri, experiment_id, ours_dir, repeats).items())
    )


def warm_parts(uri: str, experiment_id: str, cache_dir: Path, repeats: int) -> dict[str, float]:
    """``load_study_runs``' warm path taken apart (medians): the cache read, the store asked for changed runs,
    the cache written back, the table typed."""
    from analysis import runs

    files = runs._cache_files(cache_dir, uri, experiment_id, STUDY)
    key = {"version": runs.CACHE_VERSION, "tracking_uri": uri, "experiment_id": experiment_id}
    parts: dict[str, list[float]] = {
        "reading the cache": [],
        "asking for changed runs": [],
        "writing it back": [],
        "typing the table": [],
    }
    for _ in range(repeats):
        start = time.perf_counter()
        frame, watermark = runs._read_cache(files, key)
        parts["reading the cache"].append(time.perf_counter() - start)
        start = time.perf_counter()
        runs._changed_runs(uri, experiment_id, frame, watermark)
        parts["asking for changed runs"].append(time.perf_counter() - start)
        start = time.perf_counter()
        runs._write_cache(files, key, frame)
        parts["writing it back"].append(time.perf_counter() - start)
        start = time.perf_counter()
        runs.tidy_table(frame)
        parts["typing the table"].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in parts.items()}


if __name__ == "__main__":
    main()
