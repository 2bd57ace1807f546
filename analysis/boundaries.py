"""The boundaries of a study refined by ``--searcher boundary``: a table of brackets, then a map of the points.

A refined study's trials are not on a grid: the search added points where the phase changes. ``boundary_table``
reads the study table (one row per trial) into the search's own plan (``urn_study.boundary``) and lists every
bracket: the line it lies on, the two values it lies between, the phases on either side, whether it is within
the study's tolerance. ``draw_boundary_map`` draws each point at its place, coloured by its phase (a hollow
marker where its seeds disagree or its label is uncertain), and each bracket as a bar between its two ends.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis.phase import PHASE_COLOURS, UNKNOWN_COLOUR, phase_label
from urn_study.boundary import BoundaryPlan, Refine

REFINED = r"-b\d{4}$"  # the trial ids of a boundary search
DEPTH_COLOURS = {"0": "#bdbdbd", "1": "#f0e442", "2": "#56b4e9", "3": "#0072b2", "4": "#003f5c", "5": "#000033"}


def refined_rows(runs: pd.DataFrame) -> pd.Series:
    """Which of the study's trials came from a boundary search (their ids end in ``-b0000``...)."""
    if "trial_id" not in runs.columns:
        return pd.Series(False, index=runs.index)
    return runs["trial_id"].astype(str).str.contains(REFINED)


def plan_of(runs: pd.DataFrame, grid: dict[str, list], seeds: list[int], refine: Refine) -> BoundaryPlan:
    """The search's plan, filled with the recorded trials' labels (the phase, or the depth where the study refines
    the depth) and margins; diverged and failed trials left out."""
    plan = BoundaryPlan(grid, seeds, refine)
    for _, row in runs.iterrows():
        if not isinstance(row.get("phase"), str) or row.get("phase") in ("", "diverged"):
            continue
        phase = str(row[refine.outcome]) if refine.outcome == "phase" else str(int(float(row[refine.outcome])))
        point = tuple(_value(row[key], grid[key]) for key in grid)
        margin = pd.to_numeric(row.get("margin"), errors="coerce")
        plan.record(point, int(row["seed"]), phase, float(margin) if pd.notna(margin) else math.nan)
    return plan


def boundary_table(plan: BoundaryPlan) -> pd.DataFrame:
    """One row per bracket: its axis, the line's other values, low and high, the phases, the ratio, located."""
    rows = [
        {
            "axis": s.axis,
            **dict(s.line),
            "low": s.low,
            "high": s.high,
            "phase_low": s.phase_low,
            "phase_high": s.phase_high,
            "ratio": s.ratio,
            "located": s.located,
        }
        for s in plan.segments()
    ]
    return pd.DataFrame(rows)


def draw_boundary_map(plan: BoundaryPlan, x: str, y: str | None = None, facet: str | None = None, title: str = "") -> Figure:
    """Every point at (x, y), one panel per facet value; each bracket as a bar between its ends (black: located,
    red: not). A refined axis is drawn on a log scale (0 one step below its smallest value), another as rows."""
    keys = plan.keys
    facets = sorted({p[keys.index(facet)] for p in plan.results}, key=str) if facet else [None]
    fig = Figure(figsize=(5.0 * len(facets) + 1.5, 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(facets), squeeze=False)).ravel()
    rows = sorted({p[keys.index(y)] for p in plan.results}, key=_order) if y else [None]

    def place(axis: str | None, value: Any) -> float:
        if axis is None:
            return 0.0
        if axis in plan.zero_at:
            return _position(value, plan.zero_at[axis])
        return float(rows.index(value))

    seen = set()
    for ax, value in zip(axes, facets):
        for point in plan.results:
            if facet and point[keys.index(facet)] != value:
                continue
            label = plan.label(point)
            colour = PHASE_COLOURS.get(label, DEPTH_COLOURS.get(label, UNKNOWN_COLOUR))
            ax.scatter(
                [place(x, point[keys.index(x)])],
                [place(y, point[keys.index(y)]) if y else 0.0],
                s=30 + 25 * len(plan.results[point]),
                color="white" if plan.ambiguous(point) else colour,
                edgecolors=colour,
                linewidths=2,
                zorder=3,
            )
            seen.add(label)
        for segment in plan.segments():
            line = dict(segment.line)
            if segment.axis not in (x, y) or (facet and line.get(facet) != value):
                continue
            ends = [place(segment.axis, segment.low), place(segment.axis, segment.high)]
            across = segment.axis == x
            other = place(y, line[y]) if across and y else place(x, line[x]) if not across else 0.0
            xs, ys = (ends, [other, other]) if across else ([other, other], ends)
            ax.plot(
                xs, ys, linewidth=6, color="black" if segment.located else "#d62728", alpha=0.35, solid_capstyle="butt", zorder=2
            )
        ax.set_xscale("log")
        ax.set_xlabel(f"{x} (log; 0 drawn at {plan.zero_at.get(x, 1.0):.2g})")
        if y in plan.zero_at:
            ax.set_yscale("log")
            ax.set_ylabel(f"{y} (log; 0 drawn at {plan.zero_at[y]:.2g})")
        else:
            ax.set_yticks(range(len(rows)), [str(v) for v in rows] if y else [""])
            ax.set_ylim(-0.6, len(rows) - 0.4)
            ax.set_ylabel(y or "")
        if facet:
            ax.set_title(f"{facet} = {value}", fontsize=10)
    handles = [
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            color=PHASE_COLOURS.get(p, DEPTH_COLOURS.get(p, UNKNOWN_COLOUR)),
            label=phase_label(p) if p in PHASE_COLOURS else f"depth {p}",
        )
        for p in sorted(seen, key=str)
    ]
    handles += [
        Line2D(
            [], [], marker="o", linestyle="", markerfacecolor="white", markeredgecolor="grey", label="seeds disagree or uncertain"
        ),
        Line2D([], [], color="black", alpha=0.35, linewidth=6, label="bracket, located"),
        Line2D([], [], color="#d62728", alpha=0.35, linewidth=6, label="bracket, not located"),
    ]
    axes[-1].legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.suptitle(title or "boundary search: points and brackets")
    return fig


def _value(raw: Any, coarse: list) -> Any:
    """A recorded value (MLflow params come back as strings) as the kind of the axis's grid values."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in coarse):
        number = float(raw)
        return int(number) if all(isinstance(v, int) for v in coarse) and number.is_integer() else number
    return raw if not isinstance(raw, float) else str(raw)


def _position(value: float, zero: float) -> float:
    return zero if float(value) == 0 else float(value)


def _order(value: Any) -> tuple:
    return (0, float(value), "") if isinstance(value, (int, float)) else (1, 0.0, str(value))
