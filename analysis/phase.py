"""Phase diagrams: a grid of cells over two chosen axes (faceted by a third), computed first, drawn second.

``phase_grid`` turns the study table (one row per trial, see ``analysis.runs``) into plain data: one row
per (facet, x, y) cell with the majority phase over the seeds, how strongly they agree, the depth and the
accuracy. ``draw_phase_diagram`` only draws such a grid: tiles over grid axes; over a sampled axis (declared
under the study's ``sample:``, or one of many distinct values, each trial its own) one point per cell at its
place, since drawn values do not tile. ``choose_axes`` picks the axes from a study's grid and sampled axes
when the user names none.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import matplotlib
import matplotlib.colors
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # not pyplot: no global state, no GUI backend, nothing to close
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from urn_study.boundary import zero_position
from urn_study.reading.structure import PHASES

PHASE_ORDER = (*PHASES, "diverged")
# Fixed colours, so one phase looks the same in every figure; chosen to stay apart for colour-blind readers.
PHASE_COLOURS = {
    "dead": "#bdbdbd",
    "recurrent": "#cc79a7",
    "shallow": "#f0e442",
    "residual": "#e69f00",
    "locally_connected": "#009e73",
    "fully_connected": "#0072b2",
    "diverged": "#000000",
}
UNKNOWN_COLOUR = "#ffffff"
ZERO_LABEL = "0"
SUMMARIES = ("locality", "hidden_width", "w_skip_share")  # per-cell means beside the phase
UNCERTAIN_HATCH = "////"  # a cell whose majority label is mostly within its band
# An axis not declared sampled still reads as sampled when it has at least this many distinct numbers and they
# are more than half of its cells' values (a grid axis repeats each value across the other axes' values).
SAMPLED_MIN_VALUES = 16
WHY = ("hidden_cost", "recurrence_cost", "depth", "w_depth", "locality", "w_locality")  # beside each label change


def phase_label(phase: str) -> str:
    """``locally_connected`` -> ``locally connected`` (legend text)."""
    return str(phase).replace("_", " ")


# --- the grid as data ----------------------------------------------------------------------


def majority_phase(phases: Iterable[str]) -> tuple[str, int]:
    """(most common phase, its count); a tie goes to the phase earlier in ``PHASE_ORDER`` (dead first)."""
    counts = Counter(phases)
    rank = {p: i for i, p in enumerate(PHASE_ORDER)}
    phase = min(counts, key=lambda p: (-counts[p], rank.get(p, len(rank)), str(p)))
    return phase, counts[phase]


def _numeric(rows: pd.DataFrame, column: str) -> pd.Series:
    if column not in rows.columns:
        return pd.Series(np.nan, index=rows.index)
    values = rows[column]
    if values.dtype == bool or str(values.dtype) == "boolean":
        values = values.astype(float)
    return pd.to_numeric(values, errors="coerce")


def _phase_counts(phases: pd.Series, cell: pd.Series) -> pd.DataFrame:
    """Trials per (cell, phase), columns in ``PHASE_ORDER`` (so ``idxmax`` breaks ties towards dead)."""
    counts = pd.crosstab(cell, phases)
    known = [p for p in PHASE_ORDER if p in counts.columns]
    return counts[known + sorted(set(counts.columns) - set(known))]


def _majority_depth(depth: pd.Series, cell: pd.Series) -> pd.Series:
    """Most common depth per cell (ties to the smaller depth)."""
    table = pd.DataFrame({"cell": cell, "depth": depth}).dropna()
    table = table.groupby(["cell", "depth"]).size().rename("count").reset_index()
    table = table.sort_values(["cell", "count", "depth"], ascending=[True, False, True]).drop_duplicates("cell")
    return table.set_index("cell")["depth"].astype(int)


def phase_grid(df: pd.DataFrame, x: str, y: str | None, facet: str | None = None) -> pd.DataFrame:
    """One row per (facet, x, y) cell over the trials of ``df`` that have a phase, sorted by the axes.

    Columns: the axis keys, ``phase`` (majority over the cell's trials, ties to the earlier phase in
    ``PHASE_ORDER``), ``agreement`` (share of the cell's trials in that phase), ``n``, ``depth`` (mean over
    the majority's trials), ``majority_depth`` (their most common depth, -1 if unknown), ``uncertain`` (share
    of the majority's trials whose label lies within its band), ``margin`` (their median margin, in bands),
    ``test_accuracy`` (mean, and ``_std`` over trials), ``locality``, ``hidden_width`` and ``w_skip_share``
    (means over all the cell's trials), then ``n_<phase>`` counts for every phase of ``PHASE_ORDER``. Trials
    differing in keys other than the axes (seeds, and the keys ``pooled_keys`` lists) share a cell.
    """
    keys = [k for k in (facet, x, y) if k is not None]
    missing = [k for k in [*keys, "phase"] if k not in df.columns]
    if missing:
        raise KeyError(f"no column {missing[0]!r} in the study table")
    rows = df[df["phase"].notna()]
    columns = [
        *keys,
        "phase",
        "agreement",
        "n",
        "depth",
        "majority_depth",
        "uncertain",
        "margin",
        "test_accuracy",
        "test_accuracy_std",
        *SUMMARIES,
        *(f"n_{p}" for p in PHASE_ORDER),
    ]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    cell = rows.groupby(keys, dropna=False, sort=True).ngroup().rename("cell")
    phases = rows["phase"].astype(str)
    counts = _phase_counts(phases, cell)
    first = ~cell.duplicated()
    grid = rows.loc[first.values, keys].set_axis(cell[first].values).sort_index()
    grid["phase"] = counts.idxmax(axis=1)
    grid["n"] = counts.sum(axis=1)
    grid["agreement"] = counts.max(axis=1) / grid["n"]
    agreeing = phases.values == grid["phase"].loc[cell].values
    depth = _numeric(rows, "depth")[agreeing]
    grid["depth"] = depth.groupby(cell[agreeing]).mean()
    grid["majority_depth"] = _majority_depth(depth, cell[agreeing]).reindex(grid.index, fill_value=-1)
    uncertain = _numeric(rows, "uncertain").astype(float)[agreeing]
    grid["uncertain"] = uncertain.groupby(cell[agreeing]).mean()
    grid["margin"] = _numeric(rows, "margin")[agreeing].groupby(cell[agreeing]).median()
    accuracy = _numeric(rows, "test_accuracy").groupby(cell)
    grid["test_accuracy"], grid["test_accuracy_std"] = accuracy.mean(), accuracy.std(ddof=0)
    for metric in SUMMARIES:
        grid[metric] = _numeric(rows, metric).groupby(cell).mean()
    for p in PHASE_ORDER:
        grid[f"n_{p}"] = counts[p] if p in counts.columns else 0
    return grid[columns].reset_index(drop=True)


def label_changes(df: pd.DataFrame) -> pd.DataFrame:
    """Trials per (label of the |W| pattern, functional phase), with the functional figures that tell why:
    columns ``w_phase``, ``phase``, ``trials``, ``uncertain`` (how many of them lie within a band), and the
    means of ``hidden_cost``, ``recurrence_cost``, ``depth``, ``w_depth``, ``locality`` and ``w_locality``."""
    columns = ["w_phase", "phase", "trials", "uncertain", *WHY]
    if df.empty or "w_phase" not in df.columns or "phase" not in df.columns:
        return pd.DataFrame(columns=columns)
    rows = df[df["phase"].notna() & df["w_phase"].notna()]
    table = rows.assign(_uncertain=_numeric(rows, "uncertain").fillna(0.0), **{column: _numeric(rows, column) for column in WHY})
    grouped = table.groupby(["w_phase", "phase"], sort=True)
    out = grouped.size().rename("trials").to_frame()
    out["uncertain"] = grouped["_uncertain"].sum().astype(int)
    for column in WHY:
        out[column] = grouped[column].mean()
    return out.reset_index()[columns]


def pooled_keys(df: pd.DataFrame, axes: Iterable[str | None], config_keys: Iterable[str]) -> list[str]:
    """Config keys other than the axes and ``seed`` that take more than one value inside some cell: the
    cells of ``phase_grid`` pool trials that differ in them (a key that only varies with an axis is not listed)."""
    keys = [k for k in axes if k is not None]
    others = [k for k in config_keys if k in df.columns and k not in keys and k != "seed"]
    if not others or df.empty:
        return []
    text = df[others].astype(str)
    spread = text.groupby([df[k].astype(str) for k in keys] if keys else np.zeros(len(df))).nunique()
    return [k for k in others if (spread[k] > 1).any()]


# --- axes ------------------------------------------------------------------------------------


class AxisScale(NamedTuple):
    kind: str  # "log", "linear" or "category"
    positions: dict  # axis value -> coordinate drawn
    ticks: list[float]  # empty on a sampled axis: matplotlib places the ticks
    labels: list[str]
    sampled: bool = False  # values drawn from a range (points at their places), not a grid (tiles)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and math.isfinite(float(value))


def _format(value: float) -> str:
    return f"{value:g}"


def _label(value: Any) -> str:
    """Tick text: numbers short; a schedule recorded as JSON as ``step 0→0.01 @10`` / ``linear 0→0.01 @5-20``."""
    if _is_number(value):
        return _format(float(value))
    text = str(value)
    if text.startswith("{"):
        try:
            spec = json.loads(text)
            if spec.get("kind") == "step":
                return f"step {spec['before']:g}→{spec['after']:g} @{spec['epoch']}"
            if spec.get("kind") == "linear":
                return f"linear {spec['start']:g}→{spec['end']:g} @{spec['start_epoch']}-{spec['end_epoch']}"
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
    return text


def looks_sampled(values: Iterable[Any]) -> bool:
    """Whether an axis's values (one per cell) read as drawn from a range rather than listed on a grid: at least
    ``SAMPLED_MIN_VALUES`` distinct numbers, more than half of the values."""
    present = [v for v in values if _is_number(v)]
    distinct = len(set(map(float, present)))
    return distinct >= SAMPLED_MIN_VALUES and distinct > len(present) / 2


def axis_scale(values: Iterable[Any], decades: float = 1.0, sampled: bool | None = None) -> AxisScale:
    """How to place an axis's values: log when they are numbers >= 0 whose positive ones span at least
    ``decades`` decades; zero then sits one (log) step left of the smallest positive value, with its own
    ``0`` tick. Other numbers: linear; anything else (names, schedules): categories in sorted order.
    A sampled axis of numbers (``sampled``; None: ``looks_sampled``) places each value at itself, on a log scale
    when all are > 0 and span ``decades``, with matplotlib's own ticks."""
    values = list(values)
    distinct = list(dict.fromkeys(v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))))
    if sampled is None:
        sampled = looks_sampled(values)
    if sampled and distinct and all(_is_number(v) for v in distinct):
        numbers = sorted(float(v) for v in distinct)
        log = numbers[0] > 0 and math.log10(numbers[-1] / numbers[0]) >= decades
        return AxisScale("log" if log else "linear", {v: v for v in numbers}, [], [], sampled=True)
    if distinct and all(_is_number(v) for v in distinct):
        numbers = sorted(float(v) for v in distinct)
        positive = [v for v in numbers if v > 0]
        if numbers[0] >= 0 and len(positive) >= 2 and math.log10(positive[-1] / positive[0]) >= decades:
            zero_at = zero_position(positive)
            positions = {v: (zero_at if v == 0 else v) for v in numbers}
            labels = [ZERO_LABEL if v == 0 else _format(v) for v in numbers]
            return AxisScale("log", positions, [positions[v] for v in numbers], labels)
        return AxisScale("linear", {v: v for v in numbers}, numbers, [_format(v) for v in numbers])
    ordered = sorted(distinct, key=lambda v: (not _is_number(v), float(v) if _is_number(v) else 0.0, str(v)))
    return AxisScale(
        "category",
        {v: float(i) for i, v in enumerate(ordered)},
        list(map(float, range(len(ordered)))),
        [_label(v) for v in ordered],
    )


def _apply_scale(ax, scale: AxisScale, which: str, key: str) -> None:
    set_scale, set_ticks, set_labels, set_lim, set_label = (
        (ax.set_xscale, ax.set_xticks, ax.set_xticklabels, ax.set_xlim, ax.set_xlabel)
        if which == "x"
        else (ax.set_yscale, ax.set_yticks, ax.set_yticklabels, ax.set_ylim, ax.set_ylabel)
    )
    set_scale("log" if scale.kind == "log" else "linear")
    if scale.sampled:
        set_lim(*_sampled_limits(scale))
        set_label(f"{key} ({'log, ' if scale.kind == 'log' else ''}sampled)")
        return
    set_ticks(scale.ticks)
    set_labels(scale.labels, rotation=30 if which == "x" and scale.kind == "log" else 0)
    if which == "x" and scale.kind == "log":
        ax.get_xaxis().set_minor_locator(matplotlib.ticker.NullLocator())
    if which == "y" and scale.kind == "log":
        ax.get_yaxis().set_minor_locator(matplotlib.ticker.NullLocator())
    edges = cell_edges(scale)
    set_lim(min(lo for lo, _ in edges.values()), max(hi for _, hi in edges.values()))
    set_label(key + (" (log)" if scale.kind == "log" else ""))
    if scale.kind == "log" and scale.labels[0] == ZERO_LABEL and len(scale.ticks) > 1:
        gap = math.sqrt(scale.ticks[0] * scale.ticks[1])  # the 0 column is off the log scale: set it apart
        (ax.axvline if which == "x" else ax.axhline)(gap, color="#999999", linestyle=":", linewidth=1.0, zorder=1)


def _sampled_limits(scale: AxisScale) -> tuple[float, float]:
    """The values' range and a margin of 5% of it on either side (in decades on a log axis)."""
    low, high = min(scale.positions.values()), max(scale.positions.values())
    if scale.kind == "log":
        pad = max(0.05 * math.log10(high / low), 0.1)
        return low / 10**pad, high * 10**pad
    pad = 0.05 * (high - low) or 0.5 * abs(low) or 0.5
    return low - pad, high + pad


# --- drawing ---------------------------------------------------------------------------------


def _facets(grid: pd.DataFrame, facet: str | None) -> list[tuple[Any, pd.DataFrame]]:
    if facet is None:
        return [(None, grid)]
    return [(value, part) for value, part in grid.groupby(facet, dropna=False, sort=True)]


def cell_edges(scale: AxisScale) -> dict:
    """Axis value -> (low, high) edges of its cells: halfway to the neighbours (in decades on a log axis),
    so cells tile the panel without overlapping however unevenly the values are spaced."""
    values = sorted(scale.positions, key=lambda v: scale.positions[v])
    logs = scale.kind == "log"
    coords = [math.log10(scale.positions[v]) if logs else scale.positions[v] for v in values]
    if len(coords) == 1:
        bounds = [coords[0] - 0.5, coords[0] + 0.5]
    else:
        mids = [(a + b) / 2 for a, b in zip(coords, coords[1:])]
        bounds = [2 * coords[0] - mids[0]] + mids + [2 * coords[-1] - mids[-1]]
    to_axis = (lambda c: 10**c) if logs else (lambda c: c)
    return {v: (to_axis(bounds[i]), to_axis(bounds[i + 1])) for i, v in enumerate(values)}


def _draw_cells(ax, part: pd.DataFrame, x: str, y: str | None, xs: AxisScale, ys: AxisScale) -> None:
    """One rectangle per cell: colour = majority phase, solidity = how many seeds agree, hatched when most of
    the majority's labels lie within their band (uncertain), text = depth."""
    x_edges, y_edges = cell_edges(xs), cell_edges(ys)
    gap = 0.06  # share of a cell left blank on each side, so neighbouring cells stay distinct
    for _, cell in part.iterrows():
        xv, yv = cell[x], (cell[y] if y is not None else None)
        if xv not in x_edges or yv not in y_edges:
            continue
        (x0, x1), (y0, y1) = _shrink(x_edges[xv], gap, xs.kind), _shrink(y_edges[yv], gap, ys.kind)
        agreement = float(cell["agreement"])
        unanimous = agreement >= 1.0
        ax.add_patch(
            Rectangle(
                (x0, y0),
                x1 - x0,
                y1 - y0,
                facecolor=PHASE_COLOURS.get(cell["phase"], UNKNOWN_COLOUR),
                alpha=0.25 + 0.75 * agreement,
                edgecolor="none",
                zorder=2,
            )
        )
        ax.add_patch(
            Rectangle(
                (x0, y0),
                x1 - x0,
                y1 - y0,
                fill=False,
                edgecolor="#333333",
                zorder=3,
                linewidth=1.4 if unanimous else 0.6,
                linestyle="-" if unanimous else "--",
            )
        )
        if is_uncertain(cell):
            ax.add_patch(
                Rectangle(
                    (x0, y0), x1 - x0, y1 - y0, fill=False, hatch=UNCERTAIN_HATCH, edgecolor="#555555", linewidth=0.0, zorder=3
                )
            )
        if len(part) <= 400 and cell["majority_depth"] >= 0 and cell["phase"] not in ("dead", "diverged"):
            ink = "white" if cell["phase"] == "fully_connected" and agreement > 0.5 else "black"
            ax.annotate(
                str(int(cell["majority_depth"])),
                (_middle(x0, x1, xs.kind), _middle(y0, y1, ys.kind)),
                ha="center",
                va="center",
                fontsize=9,
                fontweight="bold",
                color=ink,
                zorder=4,
            )


def _draw_points(ax, part: pd.DataFrame, x: str, y: str | None, xs: AxisScale, ys: AxisScale) -> None:
    """One marker per cell (a sampled point: a trial, or its seeds) at its place, in one scatter: colour = majority
    phase, paler where the seeds disagree, hollow (a ring of the phase's colour) where the label is uncertain."""
    where, faces, edges, widths = [], [], [], []
    for _, cell in part.iterrows():
        xv, yv = cell[x], (cell[y] if y is not None else None)
        if xv not in xs.positions or yv not in ys.positions:
            continue
        colour = PHASE_COLOURS.get(cell["phase"], UNKNOWN_COLOUR)
        hollow = is_uncertain(cell)
        where.append((xs.positions[xv], ys.positions[yv]))
        faces.append(
            matplotlib.colors.to_rgba("white" if hollow else colour, 1.0 if hollow else 0.25 + 0.75 * float(cell["agreement"]))
        )
        edges.append(matplotlib.colors.to_rgba(colour if hollow else "#333333"))
        widths.append(2.0 if hollow else 0.6)
    if where:
        ax.scatter(*zip(*where), s=48, c=faces, edgecolors=edges, linewidths=widths, zorder=3)


def is_uncertain(cell: pd.Series) -> bool:
    """A cell drawn as uncertain: at least half of the trials of its majority phase are labelled within the
    band of some threshold (see urn_study.reading.function)."""
    share = cell.get("uncertain")
    return share is not None and not pd.isna(share) and float(share) >= 0.5


def _shrink(edges: tuple[float, float], gap: float, kind: str) -> tuple[float, float]:
    lo, hi = edges
    if kind == "log":
        width = math.log10(hi / lo)
        return lo * 10 ** (gap * width), hi / 10 ** (gap * width)
    width = hi - lo
    return lo + gap * width, hi - gap * width


def _middle(lo: float, hi: float, kind: str) -> float:
    return math.sqrt(lo * hi) if kind == "log" else (lo + hi) / 2


def _legend_handles(phases: Iterable[str], points: bool = False) -> list:
    present = [p for p in PHASE_ORDER if p in set(phases)] + sorted(set(phases) - set(PHASE_ORDER))
    if points:
        dot = {"marker": "o", "linestyle": "none", "markersize": 8, "markeredgecolor": "#333333"}
        return [
            *(Line2D([], [], markerfacecolor=PHASE_COLOURS.get(p, UNKNOWN_COLOUR), label=phase_label(p), **dot) for p in present),
            Line2D([], [], markerfacecolor="#777777", alpha=0.6, label="seeds disagree (paler = less)", **dot),
            Line2D(
                [],
                [],
                **{**dot, "markeredgecolor": "#555555"},
                markerfacecolor="white",
                markeredgewidth=2.0,
                label="label near a threshold",
            ),
        ]
    handles = [Patch(facecolor=PHASE_COLOURS.get(p, UNKNOWN_COLOUR), edgecolor="#333333", label=phase_label(p)) for p in present]
    handles += [
        Line2D(
            [],
            [],
            marker="s",
            linestyle="none",
            markersize=10,
            markerfacecolor="#777777",
            alpha=1.0,
            markeredgecolor="#333333",
            label="all seeds agree",
        ),
        Line2D(
            [],
            [],
            marker="s",
            linestyle="none",
            markersize=10,
            markerfacecolor="#777777",
            alpha=0.6,
            markeredgecolor="#333333",
            label="seeds disagree (paler = less)",
        ),
        Patch(facecolor="white", edgecolor="#555555", hatch=UNCERTAIN_HATCH, label="label near a threshold"),
        Line2D([], [], linestyle="none", marker="$2$", markersize=8, color="black", label="number = depth"),
    ]
    return handles


def draw_phase_diagram(
    grid: pd.DataFrame, x: str, y: str | None, facet: str | None = None, title: str = "", sampled: Iterable[str] = ()
) -> Figure:
    """Draw a ``phase_grid``: one panel per facet value, a square per cell coloured by its majority phase,
    paler and dashed where the seeds disagree, hatched where the label is uncertain, the depth inside. Where x
    or y is sampled (listed in ``sampled``, the study's ``sample:`` keys, or ``looks_sampled``) each cell is a
    point at its place instead, hollow where the label is uncertain."""
    facets = _facets(grid, facet)
    ncols = min(len(facets), 3)
    nrows = math.ceil(len(facets) / ncols)
    declared = set(sampled)
    xs = axis_scale(grid[x], sampled=True if x in declared else None)
    ys = (
        axis_scale(grid[y], sampled=True if y in declared else None)
        if y is not None
        else AxisScale("category", {None: 0.0}, [0.0], [""])
    )
    points = xs.sampled or ys.sampled
    side = 4.6 if points else max(3.2, 0.55 * max(len(xs.ticks), len(ys.ticks)) + 1.5)
    height = side if y is not None else 2.4
    fig = Figure(figsize=(side * ncols + 2.6, height * nrows + 0.6))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.ravel()[len(facets) :]:
        ax.set_visible(False)
    for ax, (value, _) in zip(axes.ravel(), facets):
        _apply_scale(ax, xs, "x", x)
        if y is not None:
            _apply_scale(ax, ys, "y", y)
        else:
            ax.set_yticks([])
            ax.set_ylim(-0.6, 0.6)
        if facet is not None:
            ax.set_title(f"{facet} = {value}", fontsize=10)
    fig.legend(
        handles=_legend_handles(grid["phase"], points),
        loc="center right",
        title="phase (majority of seeds)",
        fontsize=9,
        title_fontsize=9,
        frameon=False,
    )
    if title:
        fig.suptitle(title)
    for ax, (_, part) in zip(axes.ravel(), facets):
        (_draw_points if points else _draw_cells)(ax, part, x, y, xs, ys)
    fig.tight_layout(rect=(0, 0, 1 - 2.4 / fig.get_figwidth(), 1))
    return fig


def save_figure(fig: Figure, stem: str | Path, formats: Iterable[str] = ("png", "svg"), dpi: int = 130) -> list[Path]:
    """Write ``stem.<format>`` for each format; SVG keeps text as text (searchable, editable)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        for fmt in formats:
            path = stem.with_suffix(f".{fmt}")
            fig.savefig(path, dpi=dpi, bbox_inches="tight")
            written.append(path)
    return written


# --- choosing axes ---------------------------------------------------------------------------


def choose_axes(axes: Any) -> tuple[str, str | None, str | None]:
    """(x, y, facet) from a study's grid axes (a mapping key -> values, or a Study with such a grid; its sampled
    axes count as axes of ``samples`` values each).

    x and y: the regulator axes with the most values (file order breaks ties), topped up with other
    axes; facet: a ``data.*`` axis among the rest, else the remaining axis with the most values.
    Axes with a single value and ``seed`` are never chosen.
    """
    grid = _grid_axes(axes)
    varied = [k for k, values in grid.items() if k != "seed" and len(values) > 1]
    if not varied:
        raise ValueError("the study's grid has no axis with more than one value to draw")
    by_count = sorted(varied, key=lambda k: -len(grid[k]))  # stable: file order among equals
    regulators = [k for k in by_count if k.startswith("regulators.")]
    others = [k for k in by_count if k not in regulators]
    non_data = [k for k in others if not k.startswith("data.")]
    data = [k for k in others if k.startswith("data.")]
    plane = (regulators + non_data + data)[:2]
    rest = [k for k in by_count if k not in plane]
    facet = next((k for k in rest if k.startswith("data.")), rest[0] if rest else None)
    return plane[0], (plane[1] if len(plane) > 1 else None), facet


def _grid_axes(axes: Any) -> dict[str, list]:
    if isinstance(axes, dict):
        return {k: list(v) if isinstance(v, (list, tuple)) else [v] for k, v in axes.items()}
    sample = getattr(axes, "sample", None)
    if isinstance(sample, dict) and isinstance(getattr(axes, "grid", None), dict):
        draws = int(getattr(axes, "samples", 1))
        return {**_grid_axes(axes.grid), **{key: [spec] * draws for key, spec in sample.items()}}
    for attr in ("grid", "axes", "space"):
        value = getattr(axes, attr, None)
        if isinstance(value, dict):
            return _grid_axes(value)
    raise TypeError(f"cannot read grid axes from {type(axes).__name__}")
