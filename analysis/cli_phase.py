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
    parser = subparsers.add_parser("phase", help="draw the phase diagram of a recorded study",
                                   description="Write the phase diagram (PNG, SVG), its grid and the study table "
                                               "(CSV), a gallery of W heatmaps and, for studies with schedules or "
                                               "data switches, lifetime plots.")
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
    from analysis.phase import pooled_keys
    from analysis.runs import latest_runs, load_study_runs, resolve_tracking_uri
    from urn_study.config import all_keys
    from urn_study.study import load_study, results_dir

    study = load_study(args.study, smoke=args.smoke)
    uri = resolve_tracking_uri(args.tracking_uri)
    try:
        recorded = load_study_runs(study, uri, refresh=args.refresh)
    except LookupError as err:
        raise ConfigError(f"{err.args[0]}: run `urn-study sweep {args.study}{' --smoke' * args.smoke}` first") from None
    runs = latest_runs(recorded)
    if len(runs) < len(recorded):
        print(f"{len(recorded) - len(runs)} earlier runs of trials run again by a later sweep left out")
    if "phase" not in runs.columns or runs["phase"].notna().sum() == 0:
        raise ConfigError(f"study {study.name!r}: no finished trials recorded in {uri}; "
                          f"run `urn-study sweep {args.study}{' --smoke' * args.smoke}` first")
    x, y, facet = resolve_axes(study, args.x, args.y, args.facet)
    for flag, key in (("--x", x), ("--y", y), ("--facet", facet)):
        check_axis(flag, key, runs)
    pooled = pooled_keys(runs, (x, y, facet), all_keys())
    if pooled:
        print(f"note: cells pool trials that differ in {', '.join(pooled)} (not an axis; see runs.csv)")
    out = Path(args.out) if args.out else results_dir() / "figures" / study.name
    from analysis.boundaries import refined_rows

    refined = refined_rows(runs)
    if refined.any() and not refined.all():  # a grid sweep and a boundary search of one study: the grid's diagram
        print(f"the phase diagram reads the {int((~refined).sum())} grid trials; the {int(refined.sum())} trials of "
              "the boundary search go to boundaries.csv and boundary_map.png")
    written = write_phase_report(runs[~refined] if not refined.all() else runs, x, y, facet, out, uri, title=study.name,
                                 sampled=tuple(study.sample))
    written += _write_boundaries(runs[refined], study, x, y, facet, out)
    print(f"phase diagram of {study.name} ({len(runs)} trials; x={x}, y={y}, facet={facet}) written to {out}:")
    for path in written:
        print(f"  {path.name}")
    return 0


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


def write_phase_report(runs: pd.DataFrame, x: str, y: str | None, facet: str | None, out: Path,
                       tracking_uri: str | None = None, title: str = "", sampled: tuple[str, ...] = ()) -> list[Path]:
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


def _write_boundaries(runs: pd.DataFrame, study: Any, x: str, y: str | None, facet: str | None, out: Path) -> list[Path]:
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
    print(f"boundary search: {trials} trials, {len(table)} brackets, {located} within a factor {refine.tolerance:g}")
    if x not in refine.axes:
        return [out / "boundaries.csv"]
    return [out / "boundaries.csv", *save_figure(draw_boundary_map(plan, x, y, facet, title=study.name), out / "boundary_map",
                                                 formats=("png",))]


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

    items = [item for _, row in pick_representatives(runs).iterrows()
             if (item := _gallery_item(row, tracking_uri)) is not None]
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
    kinds = changing["run_id"].map(lambda run_id: repr(sorted(changes[run_id].items())
                                                     if isinstance(changes[run_id], dict) else changes[run_id]))
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
            fig = draw_lifetime(history, changes[row["run_id"]], title=f"{row['trial_id']} ({row['phase']})",
                                moves=trial_moves)
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
