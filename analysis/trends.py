"""Measures against one numeric axis of a study: a table first, a figure second.

A phase diagram shows one label per cell; some questions are about how a measure moves along an axis (the
IPR of the fields against the data's gain, the hidden width against a regulator). ``trend_table`` gives, per
series (the other axes' values) and point of the axis, each measure's mean, spread and count over the seeds;
``draw_trends`` draws one panel per measure, with the same measure on the untrained networks (the null) where
the study records one.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.phase import axis_scale

# the fields of the neurons that carry the task (IPR, extent per axis, locality), the kept hidden width, accuracy
TREND_COLUMNS = ("ipr", "w_ipr", "receptive_field", "locality", "hidden_width", "test_accuracy")
NULL_OF = {"w_ipr": "null_w_ipr", "locality": "null_locality_all"}  # the same measure on the trial's untrained W0
TITLES = {
    "ipr": "IPR of the kept fields",
    "w_ipr": "IPR of the |W| fields",
    "receptive_field": "field extent (sites)",
    "locality": "locality of the kept fields",
    "hidden_width": "hidden neurons kept",
    "test_accuracy": "test accuracy",
}


def trend_table(
    runs: pd.DataFrame, x: str, series: Iterable[str | None] = (), columns: Iterable[str] = TREND_COLUMNS
) -> pd.DataFrame:
    """One row per (series, x): ``<column>_mean``, ``<column>_sd`` and ``<column>_n`` over the trials there
    (dead and diverged trials left out: they have no fields to measure). ``series``: the keys whose values tell
    the lines apart (None entries ignored)."""
    keys = [k for k in series if k is not None and k in runs.columns]
    wanted = [c for c in columns if c in runs.columns] + [NULL_OF[c] for c in columns if NULL_OF.get(c) in runs.columns]
    rows = runs[~runs.get("phase", pd.Series("", index=runs.index)).isin(("dead", "diverged"))].copy()
    rows[x] = pd.to_numeric(rows[x], errors="coerce")
    rows = rows[rows[x].notna()]
    for column in wanted:
        rows[column] = pd.to_numeric(rows[column], errors="coerce")
    if rows.empty or not wanted:
        return pd.DataFrame(columns=[*keys, x])
    grouped = rows.groupby([*keys, x], dropna=False)[wanted]
    table = grouped.agg(["mean", "std", "count"])
    table.columns = [f"{c}_{'sd' if s == 'std' else 'n' if s == 'count' else s}" for c, s in table.columns]
    return table.reset_index()


def draw_trends(
    table: pd.DataFrame, x: str, series: Iterable[str | None] = (), columns: Iterable[str] = TREND_COLUMNS, title: str = ""
) -> Figure:
    """One panel per measure: its mean against x with the spread over seeds as error bars, one line per series;
    the null's mean as a dashed grey line where there is one. A log x axis when the values span decades."""
    keys = [k for k in series if k is not None and k in table.columns]
    shown = [c for c in columns if f"{c}_mean" in table.columns and table[f"{c}_mean"].notna().any()]
    if not shown:
        raise ValueError(f"none of {', '.join(columns)} recorded for these trials")
    ncols = min(3, len(shown))
    nrows = -(-len(shown) // ncols)
    fig = Figure(figsize=(4.3 * ncols, 3.4 * nrows + 0.6))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    scale = axis_scale(table[x].tolist())
    groups = list(table.groupby(keys, sort=True)) if keys else [((), table)]
    for ax, column in zip(axes, shown):
        for value, part in groups:
            values = value if isinstance(value, tuple) else (value,)
            label = ", ".join(f"{k}={v}" for k, v in zip(keys, values)) or column
            part = part.sort_values(x)
            where = part[x].map(lambda v: scale.positions.get(float(v), v))
            ax.errorbar(where, part[f"{column}_mean"], yerr=part[f"{column}_sd"].fillna(0.0), marker="o", capsize=3, label=label)
            null = NULL_OF.get(column)
            if null and f"{null}_mean" in part.columns:
                ax.plot(where, part[f"{null}_mean"], linestyle="--", color="grey", linewidth=1)
        if NULL_OF.get(column) and f"{NULL_OF[column]}_mean" in table.columns:
            ax.plot([], [], linestyle="--", color="grey", label="untrained W0")
        ax.set_xscale("log" if scale.kind == "log" else "linear")  # zero, on a log axis, at its own tick (axis_scale)
        if not scale.sampled:  # a sampled axis keeps matplotlib's own ticks
            ax.set_xticks(scale.ticks, scale.labels)
        ax.minorticks_off()
        ax.set_title(TITLES.get(column, column), fontsize=10)
        ax.set_xlabel(x)
    for ax in axes[len(shown) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
