"""``urn-study phase STUDY.yaml``: the phase diagram, its grid, the study table, a W gallery and lifetime plots.

    urn-study phase search_spaces/quickstart.yaml --out urn_results/figures/quickstart

Files written to the output folder: ``phase_diagram.png``/``.svg``, ``phase_grid.csv`` (one row per cell),
``runs.csv`` (one row per trial), ``label_changes.csv`` (trials per |W|-pattern label and functional phase),
``gallery.png`` (one W per phase); for a study refined by ``--searcher boundary``, ``boundaries.csv`` (each
bracket of the phase) and ``boundary_map.png`` (its points and brackets); ``trends.csv``/``trends.png`` (where
the x axis is numeric: the fields' IPR, extent and locality, the hidden width and the accuracy against it, per
series of the other axes); and, for a study whose trials change a regulator schedule or switch data,
``lifetime_<trial_id>.png``/``.svg`` (one per kind of change and phase first, up to 8) and ``transitions.csv``
(every trial's phase before and after each change, and the epochs each new phase took).
"""

from __future__ import annotations

import argparse
import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from urn_study.config import ConfigError

if TYPE_CHECKING:  # pandas loads inside the handler: `urn-study train` does not pay for it
    import pandas as pd

MAX_LIFETIME_PLOTS = 8  # one per kind of change and phase first: enough to watch each structure form


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "phase",
        help="draw the phase diagram of a recorded study",
        description="Write the phase diagram (PNG, SVG), its grid and the study table "
        "(CSV), a gallery of W heatmaps and, for studies with schedules or "
        "data switches, lifetime plots.",
    )
    parser.add_argument("study", help="the study's YAML file (the one its sweep ran)")
    parser.add_argument("--x", help="config key on the x axis (default: chosen from the study's grid)")
    parser.add_argument("--y", help="config key on the y axis")
    parser.add_argument("--facet", help="config key with one panel per value (e.g. data.name)")
    parser.add_argument("--out", help="folder for the figures and tables (default urn_results/figures/STUDY)")
    parser.add_argument("--tracking-uri", help="MLflow store the sweep recorded to (default: the sweep's)")
    parser.add_argument("--smoke", action="store_true", help="the study's smoke sweep (its own experiment)")
    parser.add_argument("--refresh", action="store_true", help="re-read every run instead of the cached table")
    parser.set_defaults(handler=run_phase)


def run_phase(args: argparse.Namespace) -> int:
    from analysis.runs import resolve_tracking_uri
    from urn_study.study import load_study, results_dir

    study = load_study(args.study, smoke=args.smoke)
    uri = resolve_tracking_uri(args.tracking_uri)
    out = Path(args.out) if args.out else results_dir() / "figures" / study.name
    sweep = f"urn-study sweep {args.study}{' --smoke' * args.smoke}"
    recorded, (x, y, facet), written = phase_report(study, uri, out, (args.x, args.y, args.facet), args.refresh, sweep)
    print(f"phase diagram of {study.name} ({len(_latest_runs(recorded))} trials; x={x}, y={y}, facet={facet}) written to {out}:")
    for path in written:
        print(f"  {path.name}")
    _refresh_sweep_run(study.name, uri, recorded, written)
    return 0


def phase_report(
    study: Any,
    uri: str,
    out: Path,
    axes: tuple = (None, None, None),
    refresh: bool = False,
    sweep: str = "urn-study sweep",
    say=print,
) -> tuple[pd.DataFrame, tuple, list[Path]]:
    """Write the study's phase report into ``out``: (every recorded run, the axes drawn, the files written).
    ``sweep`` is the command an error says to run first; ``say`` prints the notes on what was read."""
    from analysis.phase import pooled_keys
    from analysis.runs import load_study_runs
    from urn_study.config import all_keys

    try:
        recorded = load_study_runs(study, uri, refresh=refresh)
    except LookupError as err:
        raise ConfigError(f"{err.args[0]}: run `{sweep}` first") from None
    runs = _latest_runs(recorded)
    if len(runs) < len(recorded):
        say(f"{len(recorded) - len(runs)} earlier runs of trials run again by a later sweep left out")
    if "phase" not in runs.columns or runs["phase"].notna().sum() == 0:
        raise ConfigError(f"study {study.name!r}: no finished trials recorded in {uri}; run `{sweep}` first")
    x, y, facet = resolve_axes(study, *axes)
    for flag, key in (("--x", x), ("--y", y), ("--facet", facet)):
        check_axis(flag, key, runs)
    pooled = pooled_keys(runs, (x, y, facet), all_keys())
    if pooled:
        say(f"note: cells pool trials that differ in {', '.join(pooled)} (not an axis; see runs.csv)")
    from analysis.boundaries import refined_rows

    refined = refined_rows(runs)
    if refined.any() and not refined.all():  # a grid sweep and a boundary search of one study: the grid's diagram
        say(
            f"the phase diagram reads the {int((~refined).sum())} grid trials; the {int(refined.sum())} trials of "
            "the boundary search go to boundaries.csv and boundary_map.png"
        )
    written = write_phase_report(
        runs[~refined] if not refined.all() else runs, x, y, facet, out, uri, title=study.name, sampled=tuple(study.sample)
    )
    written += _write_boundaries(runs[refined], study, x, y, facet, out, say)
    return recorded, (x, y, facet), written


def _latest_runs(recorded: pd.DataFrame) -> pd.DataFrame:
    from analysis.runs import latest_runs

    return latest_runs(recorded)


# --- the sweep's run: its summary and report -------------------------------------------------------------

SWEEP_RUN_FILES = ("phase_diagram.png", "phase_diagram.svg", "gallery.png", "phase_grid.csv")  # on the sweep's run


def sweep_summary(runs: pd.DataFrame) -> dict[str, float]:
    """A sweep's figures from its trial runs (one per trial): ``trials``, ``failed`` (not finished), ``diverged``,
    and per phase read ``trials_<phase>`` and ``best_test_accuracy_<phase>``."""
    finished = runs[runs["status"] == "FINISHED"]
    phases = finished["phase"] if "phase" in finished.columns else finished["status"].iloc[:0]
    summary = {
        "trials": float(len(runs)),
        "failed": float(len(runs) - len(finished)),
        "diverged": float((phases == "diverged").sum()),
    }
    for phase, group in finished[phases.notna() & (phases != "diverged")].groupby("phase"):
        summary[f"trials_{phase}"] = float(len(group))
        best = group["test_accuracy"].max() if "test_accuracy" in group.columns else float("nan")
        if best == best:  # not NaN
            summary[f"best_test_accuracy_{phase}"] = float(best)
    return summary


def record_sweep_report(study: Any, uri: str, run_id: str, sweep_id: str) -> None:
    """At a sweep's end: its summary, phase diagram, gallery and grid on its MLflow run (drawn in a temporary
    folder; ``urn-study phase`` writes them where the user looks and refreshes them on the run)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="urn-phase-") as folder:
        recorded, _, written = phase_report(study, uri, Path(folder), say=lambda *_: None)
        _log_sweep_report(uri, run_id, sweep_id, recorded, written)


def _log_sweep_report(uri: str, run_id: str, sweep_id: str, recorded: pd.DataFrame, written: list[Path]) -> None:
    from urn_study import tracking

    runs = _latest_runs(recorded[recorded["sweep"] == sweep_id]) if "sweep" in recorded.columns else recorded.iloc[:0]
    tracking.log_sweep_report(uri, run_id, sweep_summary(runs), [p for p in written if p.name in SWEEP_RUN_FILES])


def _refresh_sweep_run(study_name: str, uri: str, recorded: pd.DataFrame, written: list[Path]) -> None:
    """The report just written, on the latest sweep's run (one warning line if the store refuses)."""
    import sys

    from urn_study import tracking

    try:
        latest = tracking.latest_sweep_run(uri, study_name)
        if latest is not None:
            _log_sweep_report(uri, *latest, recorded, written)
    except Exception as err:  # noqa: BLE001 - the files are written; only their copy on the run is missing
        print(
            f"urn-study: warning: the report was not copied to the sweep's MLflow run ({str(err).splitlines()[0]})", file=sys.stderr
        )


def resolve_axes(study: Any, x: str | None, y: str | None, facet: str | None) -> tuple[str, str | None, str | None]:
    """The axes given, the rest filled from ``choose_axes(study)`` in its order (x, y, facet)."""
    from analysis.phase import choose_axes

    try:
        chosen = choose_axes(study)
    except ValueError as err:
        if x is None:
            raise ConfigError(f"study {getattr(study, 'name', study)!r}: {err}; name one with --x") from None
        chosen = (None, None, None)
    spare = [k for k in chosen if k is not None and k not in (x, y, facet)]
    x = x or (spare.pop(0) if spare else None)
    y = y or (spare.pop(0) if spare else None)
    facet = facet or (spare.pop(0) if spare else None)
    return x, y, facet


def check_axis(flag: str, key: str | None, runs: pd.DataFrame) -> None:
    """A ConfigError naming the key when it is no column of the study table."""
    if key is None or key in runs.columns:
        return
    close = difflib.get_close_matches(key, [str(c) for c in runs.columns], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"{flag} {key}: not a key recorded for this study's trials{hint}")


def write_phase_report(
    runs: pd.DataFrame,
    x: str,
    y: str | None,
    facet: str | None,
    out: Path,
    tracking_uri: str | None = None,
    title: str = "",
    sampled: tuple[str, ...] = (),
) -> list[Path]:
    """Write the study table, the phase grid and diagram, the gallery and the lifetime plots into ``out``.
    ``sampled``: the study's sampled axes (drawn as points, not tiles; a trend's series never split by one)."""
    from analysis.phase import draw_phase_diagram, label_changes, phase_grid, save_figure

    out.mkdir(parents=True, exist_ok=True)
    written = [out / "runs.csv", out / "phase_grid.csv", out / "label_changes.csv"]
    runs.to_csv(written[0], index=False)
    grid = phase_grid(runs, x, y, facet)
    grid.to_csv(written[1], index=False)
    label_changes(runs).to_csv(written[2], index=False)
    written += save_figure(draw_phase_diagram(grid, x, y, facet, title=title, sampled=sampled), out / "phase_diagram")
    # a trend's lines are never split by a sampled axis: each of its values is one trial's, a line of one point
    series_y, series_facet = (None if key in sampled else key for key in (y, facet))
    written += _write_trends(runs, x, series_y, series_facet, out, title)
    written += _write_gallery(runs, out, tracking_uri, title)
    written += _write_lifetimes(runs, out, tracking_uri)
    return written


def _write_boundaries(runs: pd.DataFrame, study: Any, x: str, y: str | None, facet: str | None, out: Path, say=print) -> list[Path]:
    """For a study refined by the boundary search: its brackets (CSV) and its points and brackets (a map)."""
    from analysis.boundaries import boundary_table, draw_boundary_map, plan_of
    from analysis.phase import save_figure

    if runs.empty:
        return []
    refine = study.boundary_search()
    plan = plan_of(runs, study.grid, study.seeds, refine)
    table = boundary_table(plan)
    table.to_csv(out / "boundaries.csv", index=False)
    located = int(table["located"].sum()) if len(table) else 0
    trials = sum(len(r) for r in plan.results.values())
    say(f"boundary search: {trials} trials, {len(table)} brackets, {located} within a factor {refine.tolerance:g}")
    if x not in refine.axes:
        return [out / "boundaries.csv"]
    return [
        out / "boundaries.csv",
        *save_figure(draw_boundary_map(plan, x, y, facet, title=study.name), out / "boundary_map", formats=("png",)),
    ]


def _write_trends(runs: pd.DataFrame, x: str, y: str | None, facet: str | None, out: Path, title: str) -> list[Path]:
    """Where x is numeric: each measure of the fields, width and accuracy against it, one line per (y, facet)."""
    from analysis.phase import save_figure
    from analysis.trends import draw_trends, trend_table

    table = trend_table(runs, x, (y, facet))
    if table.empty:
        return []
    table.to_csv(out / "trends.csv", index=False)
    return [out / "trends.csv", *save_figure(draw_trends(table, x, (y, facet), title=title), out / "trends", formats=("png",))]


def _write_gallery(runs: pd.DataFrame, out: Path, tracking_uri: str | None, title: str) -> list[Path]:
    from analysis.lifetime import draw_gallery, pick_representatives
    from analysis.phase import save_figure

    items = [item for _, row in pick_representatives(runs).iterrows() if (item := _gallery_item(row, tracking_uri)) is not None]
    if not items:
        return []
    return save_figure(draw_gallery(items, title=f"{title}: one trial per phase"), out / "gallery", formats=("png",))


def _gallery_item(row: pd.Series, tracking_uri: str | None) -> Any:
    from analysis.lifetime import GalleryItem
    from analysis.phase import phase_label
    from analysis.runs import load_trial_artifacts
    from urn_study.artifacts import LAYOUT, STRUCTURE, WEIGHTS

    try:
        artifacts = load_trial_artifacts(row, tracking_uri, names=(WEIGHTS, LAYOUT, STRUCTURE))
    except FileNotFoundError:
        return None
    label = f"{phase_label(row['phase'])}: {row['trial_id']}, depth {row.get('depth')}"
    return GalleryItem(label, artifacts[WEIGHTS], artifacts[STRUCTURE].get("levels"), artifacts[LAYOUT])


def _write_lifetimes(runs: pd.DataFrame, out: Path, tracking_uri: str | None) -> list[Path]:
    """Lifetime plots of one trial per kind of change (schedule, data switch, both...) and phase, and the
    transitions of every trial that changes course."""
    import pandas as pd

    from analysis.lifetime import changing_rows, draw_lifetime, pick_representatives, schedule_changes, transitions
    from analysis.phase import save_figure
    from analysis.runs import load_trial_artifacts
    from urn_study.artifacts import HISTORY

    candidates = runs[changing_rows(runs)]
    changes = {row["run_id"]: schedule_changes(row.to_dict()) for _, row in candidates.iterrows()}
    changing = candidates.loc[[bool(changes[run_id]) for run_id in candidates["run_id"]]]
    kinds = changing["run_id"].map(
        lambda run_id: repr(sorted(changes[run_id].items()) if isinstance(changes[run_id], dict) else changes[run_id])
    )
    groups = [pick_representatives(group) for _, group in changing.groupby(kinds, sort=False)]
    if not groups:  # nothing changes course in this study (no schedule, no data switch)
        return []
    first = list(pd.concat(groups)["run_id"])  # one per kind of change and phase, then the others, up to the cap
    chosen = set((first + [r for r in changing["run_id"] if r not in first])[:MAX_LIFETIME_PLOTS])
    written: list[Path] = []
    moves = []
    for _, row in changing.iterrows():
        try:
            history = load_trial_artifacts(row, tracking_uri, names=(HISTORY,))[HISTORY]
        except FileNotFoundError:
            continue
        trial_moves = transitions(history, changes[row["run_id"]])
        moves.append(trial_moves.assign(trial_id=row["trial_id"], **{k: row[k] for k in _varied(runs)}))
        if row["run_id"] in chosen:
            fig = draw_lifetime(history, changes[row["run_id"]], title=f"{row['trial_id']} ({row['phase']})", moves=trial_moves)
            written += save_figure(fig, out / f"lifetime_{row['trial_id']}")
    if moves:
        pd.concat(moves).to_csv(out / "transitions.csv", index=False)
        written.append(out / "transitions.csv")
    return written


def _varied(runs: pd.DataFrame) -> list[str]:
    """The config keys (and seed) whose values differ between the study's trials."""
    from urn_study.config import all_keys

    keys = [k for k in all_keys() if k in runs.columns]
    return [k for k in keys if runs[k].astype(str).nunique() > 1]
