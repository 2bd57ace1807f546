"""Structure over a trial's lifetime (spec section 6), and a gallery of one W per phase.

Tables first: ``lifetime_table`` (a history as a per-epoch frame), ``schedule_changes`` (the epochs
where a regulator schedule or the data geometry changes), ``pick_representatives`` (one trial per
phase). Then drawing: ``draw_lifetime`` and ``draw_gallery``.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, NamedTuple

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from analysis.phase import PHASE_COLOURS, PHASE_ORDER, UNKNOWN_COLOUR, phase_label
from analysis.runs import trial_config
from urn_study.config import REGULATORS, Schedule, TrialConfig

SHARES = ("locality", "w_density", "w_skip_share", "w_recurrence_share")  # structure metrics in [0, 1]
DEPTHS = ("depth", "w_depth")  # what carries the task (lesions), and the longest path of the |W| pattern
ACCURACIES = ("train_accuracy", "test_accuracy")
SHORT = {"fully_connected": "FC", "locally_connected": "LC"}  # a transition's new phase, under its change


# --- tables ----------------------------------------------------------------------------------


def lifetime_table(history: list[dict] | pd.DataFrame) -> pd.DataFrame:
    """A trial's history as one row per epoch, sorted; structure columns are NaN between snapshots."""
    table = pd.DataFrame(history).copy()
    if "epoch" not in table.columns:
        raise KeyError("history has no 'epoch' column")
    for column in (*DEPTHS, *SHARES, *ACCURACIES):
        if column in table.columns:
            table[column] = pd.to_numeric(table[column], errors="coerce")
    return table.sort_values("epoch").reset_index(drop=True)


def schedule_changes(config: TrialConfig | Mapping[str, Any]) -> dict[int, str]:
    """Epoch -> what changes there: regulator schedules (``Schedule.change_epochs``) and a data switch."""
    if not isinstance(config, TrialConfig):
        config = trial_config(config)
    changes: dict[int, list[str]] = {}
    for name in REGULATORS:
        schedule: Schedule = config.regulators.schedule(name)
        for epoch in schedule.change_epochs():
            changes.setdefault(int(epoch), []).append(f"{name} {schedule.kind}")
    if config.data.switch_to:
        changes.setdefault(int(config.data.switch_epoch), []).append(f"data -> {config.data.switch_to}")
    if config.data.switch_back_epoch:
        changes.setdefault(int(config.data.switch_back_epoch), []).append(f"data -> {config.data.name}")
    return {epoch: ", ".join(labels) for epoch, labels in sorted(changes.items())}


TRANSITION_COLUMNS = (
    "change_epoch",
    "change",
    "phase_before",
    "phase_after",
    "changed",
    "epochs_to_new",
    "uncertain_after",
    "hidden_width_before",
    "hidden_width_after",
    "locality_before",
    "locality_after",
)


def transitions(history: list[dict] | pd.DataFrame, changes: Mapping[int, str]) -> pd.DataFrame:
    """One row per change of the trial's pressures: the phase read before it (at the last snapshot up to the
    change) and the phase it settles on (at the last snapshot before the next change, or the end), whether they
    differ, and the epochs it took: from the change to the first snapshot from which the label is the settled one
    up to the next change. Beside them the hidden width and the locality, before and settled."""
    table = lifetime_table(history)
    snaps = table[table["phase"].notna()] if "phase" in table.columns else table.iloc[:0]
    epochs = sorted(changes)
    rows = []
    for i, epoch in enumerate(epochs):
        end = epochs[i + 1] if i + 1 < len(epochs) else np.inf
        before = snaps[snaps["epoch"] <= epoch]
        stretch = snaps[(snaps["epoch"] > epoch) & (snaps["epoch"] <= end)]
        if before.empty or stretch.empty:
            continue
        old, new = before.iloc[-1], stretch.iloc[-1]
        differs = stretch["phase"].to_numpy() != new["phase"]
        settled = stretch.iloc[int(np.flatnonzero(differs)[-1]) + 1 if differs.any() else 0]
        rows.append(
            {
                "change_epoch": epoch,
                "change": changes[epoch],
                "phase_before": old["phase"],
                "phase_after": new["phase"],
                "changed": old["phase"] != new["phase"],
                "epochs_to_new": int(settled["epoch"] - epoch) if old["phase"] != new["phase"] else np.nan,
                "uncertain_after": bool(new.get("uncertain", 0.0) == 1.0),
                **{
                    f"{c}_{when}": float(row.get(c, np.nan))
                    for c in ("hidden_width", "locality")
                    for when, row in (("before", old), ("after", new))
                },
            }
        )
    return pd.DataFrame(rows, columns=list(TRANSITION_COLUMNS))


def changing_rows(df: pd.DataFrame) -> pd.Series:
    """Rows whose trial may change course (a regulator given as a schedule, or a data switch): a cheap
    screen before ``schedule_changes``, which builds each row's config."""
    mask = pd.Series(False, index=df.index)
    for name in REGULATORS:
        if f"regulators.{name}" in df.columns:
            mask |= df[f"regulators.{name}"].map(lambda v: isinstance(v, str) and v.lstrip().startswith("{"))
    if "data.switch_to" in df.columns:
        mask |= df["data.switch_to"].map(lambda v: isinstance(v, str) and v != "")
    return mask.astype(bool)


def pick_representatives(df: pd.DataFrame) -> pd.DataFrame:
    """One trial per phase (in ``PHASE_ORDER``): of the phase's most common depth, the most accurate."""
    if "phase" not in df.columns:
        return df.iloc[:0]
    rows = df[df["phase"].notna() & (df["phase"] != "diverged")].copy()
    if rows.empty:
        return rows
    for column, name in (("depth", "_depth"), ("test_accuracy", "_acc")):
        values = rows[column] if column in rows.columns else pd.Series(np.nan, index=rows.index)
        rows[name] = pd.to_numeric(values, errors="coerce").fillna(-1.0)
    usual = rows.groupby("phase")["_depth"].agg(lambda d: d.value_counts().sort_index().idxmax())
    rows = rows[rows["_depth"].values == usual.loc[rows["phase"]].values]
    rank = {p: i for i, p in enumerate(PHASE_ORDER)}
    rows["_rank"] = rows["phase"].map(lambda p: rank.get(p, len(rank)))
    best = rows.sort_values(["_rank", "_acc"], ascending=[True, False]).drop_duplicates("phase")
    return best.drop(columns=["_depth", "_acc", "_rank"]).reset_index(drop=True)


# --- drawing ---------------------------------------------------------------------------------


def _change_marks(change_epochs: Iterable[int] | Mapping[int, str]) -> dict[int, str]:
    if isinstance(change_epochs, Mapping):
        return {int(e): str(label) for e, label in change_epochs.items()}
    return {int(e): "" for e in change_epochs}


def _phase_band(ax, snapshots: pd.DataFrame) -> list[str]:
    """Background spans coloured by the phase read at each snapshot (from the previous snapshot on)."""
    previous = 0
    seen = []
    for epoch, phase in zip(snapshots["epoch"], snapshots["phase"]):
        ax.axvspan(previous, epoch, color=PHASE_COLOURS.get(phase, UNKNOWN_COLOUR), alpha=0.25, linewidth=0)
        previous = epoch
        if phase not in seen:
            seen.append(phase)
    return seen


def _plot_columns(ax, table: pd.DataFrame, columns: Iterable[str], **style) -> None:
    for column in columns:
        if column in table.columns and table[column].notna().any():
            points = table[["epoch", column]].dropna()
            ax.plot(points["epoch"], points[column], label=column.replace("_", " "), **style)


def draw_lifetime(
    history: list[dict] | pd.DataFrame,
    change_epochs: Iterable[int] | Mapping[int, str] = (),
    title: str = "",
    moves: pd.DataFrame | None = None,
) -> Figure:
    """Depth, structure shares and accuracy over epochs; the phase read at each snapshot as a coloured band
    behind the depth (over the epochs since the previous snapshot); dashed verticals where a schedule or the
    data change (``change_epochs``: epochs, or epoch -> label). A change at epoch e (``Schedule.at(e)``,
    counting from 0) takes effect after e epochs completed, so it is drawn at x = e. ``moves`` (``transitions``):
    each change's new phase and the epochs it took, written under its label; a triangle where it settled."""
    table = lifetime_table(history)
    fig = Figure(figsize=(8.0, 7.5))
    axes = fig.subplots(3, 1, sharex=True)
    snapshots = table[table["phase"].notna()] if "phase" in table.columns else table.iloc[:0]
    phases = _phase_band(axes[0], snapshots)
    _plot_columns(axes[0], table, DEPTHS[:1], marker="o", drawstyle="steps-post")
    _plot_columns(axes[0], table, DEPTHS[1:], marker="x", linestyle="--", drawstyle="steps-post")
    axes[0].set_ylabel("depth")
    axes[0].yaxis.set_major_locator(MaxNLocator(integer=True))
    highest = np.nanmax([table[c].max() for c in DEPTHS if c in table.columns] or [1.0])
    axes[0].set_ylim(-0.3, (highest if np.isfinite(highest) else 1.0) + 1.2)  # room for the change labels
    _plot_columns(axes[1], table, SHARES, marker=".")
    if "hidden_width" in table.columns and table["hidden_width"].notna().any():  # the width a regulator moves
        twin = axes[1].twinx()
        _plot_columns(twin, table, ("hidden_width",), color="black", linestyle=":", marker="")
        twin.set_ylabel("hidden neurons kept (dotted)")
        twin.set_ylim(bottom=0)
    axes[1].set_ylabel("share")
    axes[1].set_ylim(-0.05, 1.05)
    _plot_columns(axes[2], table, ACCURACIES)
    axes[2].set_ylabel("accuracy")
    axes[2].set_ylim(-0.02, 1.02)
    axes[2].set_xlabel("epochs completed")
    axes[2].xaxis.set_major_locator(MaxNLocator(integer=True))
    for epoch, label in _change_marks(change_epochs).items():
        for ax in axes:
            ax.axvline(epoch, color="#d62728", linestyle="--", linewidth=1.2)
        axes[0].annotate(
            (label or f"change @ {epoch}").replace(", ", "\n").replace(" -> ", "\n-> "),
            (epoch, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -3),
            textcoords="offset points",
            va="top",
            fontsize=7,
            color="#d62728",
        )
    for _, move in (moves if moves is not None else pd.DataFrame()).iterrows():
        short = SHORT.get(move["phase_after"], phase_label(move["phase_after"]))
        text = f"-> {short} in {move['epochs_to_new']:.0f}" if move["changed"] else f"stays {short}"
        axes[0].annotate(
            text,
            (move["change_epoch"], 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -26),
            textcoords="offset points",
            va="top",
            fontsize=7,
            color="#333333",
        )
        if move["changed"]:
            axes[0].plot(
                [move["change_epoch"] + move["epochs_to_new"]], [0.0], marker="^", color="black", markersize=7, clip_on=False
            )
    handles = [Patch(color=PHASE_COLOURS.get(p, UNKNOWN_COLOUR), alpha=0.4, label=phase_label(p)) for p in phases]
    for ax, extra in zip(axes, (handles, [], [])):
        lines, labels = ax.get_legend_handles_labels()
        if lines or extra:
            ax.legend(handles=lines + extra, fontsize=8, loc="center left", bbox_to_anchor=(1.13, 0.5), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


class GalleryItem(NamedTuple):
    title: str
    W: np.ndarray
    levels: list[int] | np.ndarray | None
    layout: Any = None  # urn_study.layout.Layout, if known


def draw_gallery(items: Iterable[GalleryItem], ncols: int = 3, title: str = "") -> Figure:
    """W heatmaps side by side (one per item, e.g. one per phase), each by ``analysis.plots.draw_weight_heatmap``."""
    from analysis.plots import draw_weight_heatmap

    items = list(items)
    if not items:
        raise ValueError("no trials to draw in the gallery")
    ncols = min(ncols, len(items))
    nrows = math.ceil(len(items) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 4.2 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.ravel()[len(items) :]:
        ax.set_visible(False)
    for ax, item in zip(axes.ravel(), items):
        draw_weight_heatmap(item.W, item.levels, layout=item.layout, title=item.title, ax=ax)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
