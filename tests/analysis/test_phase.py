"""Phase grids from hand-made study tables (exact values), their drawing, and the lifetime plots."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.colors
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.patches import Rectangle

from analysis.lifetime import draw_lifetime, lifetime_table, pick_representatives, schedule_changes, transitions
from analysis.phase import (
    PHASE_COLOURS,
    PHASE_ORDER,
    ZERO_LABEL,
    axis_scale,
    choose_axes,
    draw_phase_diagram,
    majority_phase,
    phase_grid,
    phase_label,
    pooled_keys,
    save_figure,
)
from urn_study.study import load_study

X, Y, F = "regulators.l1", "regulators.locality", "data.name"
ROOT = Path(__file__).resolve().parents[2]


def table() -> pd.DataFrame:
    """Two facets; cell (digits, 0, 0) has 3 seeds 2:1, cell (digits, 1e-3, 0) a 1:1:1 tie plus a run with no
    phase yet, cell (nlgp, 0, 1e-2) one seed."""
    rows = [
        ("digits", 0.0, 0.0, 0, "residual", 2, 0.90, 0.2),
        ("digits", 0.0, 0.0, 1, "residual", 3, 0.80, 0.4),
        ("digits", 0.0, 0.0, 2, "shallow", 1, 0.70, 0.6),
        ("digits", 1e-3, 0.0, 0, "fully_connected", 2, 0.50, 0.1),
        ("digits", 1e-3, 0.0, 1, "shallow", 1, 0.40, 0.1),
        ("digits", 1e-3, 0.0, 2, "locally_connected", 2, 0.30, 0.9),
        ("digits", 1e-3, 0.0, 3, None, None, None, None),  # still running: no phase
        ("nlgp", 0.0, 1e-2, 0, "dead", 0, 0.50, 0.0),
    ]
    df = pd.DataFrame(rows, columns=[F, X, Y, "seed", "phase", "depth", "test_accuracy", "locality"])
    df["depth"] = df["depth"].astype("Int64")
    return df


def test_majority_phase_breaks_ties_by_phase_order():
    assert majority_phase(["residual", "residual", "shallow"]) == ("residual", 2)
    assert majority_phase(["fully_connected", "shallow", "locally_connected"]) == ("shallow", 1)
    assert majority_phase(["diverged", "dead"]) == ("dead", 1)


def test_phase_grid_values_exactly():
    grid = phase_grid(table(), X, Y, facet=F)
    assert list(grid[[F, X, Y]].itertuples(index=False, name=None)) == [
        ("digits", 0.0, 0.0),
        ("digits", 1e-3, 0.0),
        ("nlgp", 0.0, 1e-2),
    ]
    assert list(grid["phase"]) == ["residual", "shallow", "dead"]
    assert grid["agreement"].tolist() == pytest.approx([2 / 3, 1 / 3, 1.0])
    assert grid["n"].tolist() == [3, 3, 1]  # the run without a phase is not counted
    assert grid["depth"].tolist() == pytest.approx([2.5, 1.0, 0.0])  # over the majority's seeds only
    assert grid["majority_depth"].tolist() == [2, 1, 0]  # tie 2 vs 3 goes to the smaller
    assert grid["test_accuracy"].tolist() == pytest.approx([0.8, 0.4, 0.5])
    assert grid["test_accuracy_std"].iloc[2] == 0.0
    assert grid["locality"].tolist() == pytest.approx([0.4, 1.1 / 3, 0.0])
    assert grid.loc[0, ["n_residual", "n_shallow", "n_dead"]].tolist() == [2, 1, 0]
    assert grid.loc[1, ["n_fully_connected", "n_locally_connected", "n_shallow"]].tolist() == [1, 1, 1]
    assert {f"n_{p}" for p in PHASE_ORDER} <= set(grid.columns)


def test_phase_grid_without_facet_or_y_and_errors():
    grid = phase_grid(table(), X, Y)
    assert F not in grid.columns and len(grid) == 3
    pooled = phase_grid(table(), X, None)  # one axis: cells pool over y
    assert pooled[X].tolist() == [0.0, 1e-3]
    assert pooled["n"].tolist() == [4, 3] and pooled["phase"].tolist() == ["residual", "shallow"]
    with pytest.raises(KeyError, match="regulators.width"):
        phase_grid(table(), "regulators.width", Y)
    empty = phase_grid(table().iloc[6:7], X, Y)
    assert empty.empty and "phase" in empty.columns


def test_pooled_keys_names_what_shares_a_cell():
    df = table().assign(
        **{"model.steps": [2, 3, 2, 2, 2, 2, 2, 2], "train.lr": 0.01, "regulators.self": [0, 0, 0, 1, 1, 1, 1, 0]}
    )  # self varies with the axes only
    keys = ["seed", X, Y, F, "model.steps", "train.lr", "regulators.self"]
    assert pooled_keys(df, [X, Y, F], keys) == ["model.steps"]
    assert pooled_keys(df, [X, None, None], keys) == [Y, F, "model.steps"]  # self still follows l1 alone


def test_axis_scale_log_with_a_zero_tick_linear_and_categories():
    log = axis_scale([0.0, 1e-4, 1e-3, 1e-2, 1e-3])
    assert log.kind == "log" and log.labels == [ZERO_LABEL, "0.0001", "0.001", "0.01"]
    assert log.positions[1e-3] == 1e-3 and 0 < log.positions[0.0] < 1e-4
    assert math.log10(1e-4 / log.positions[0.0]) == pytest.approx(1.0)  # one decade step to the left
    assert axis_scale([1, 2, 3]).kind == "linear"
    assert axis_scale([0.0, 1e-3, 1e-2]).kind == "log"  # one decade is enough for a log axis
    assert axis_scale([0.0, 1e-3, 5e-3]).kind == "linear"  # less is not
    cat = axis_scale(["nlgp", "digits", None, float("nan")])
    assert cat.kind == "category" and cat.labels == ["digits", "nlgp"] and cat.positions["nlgp"] == 1.0
    step = '{"kind": "step", "before": 0.0, "after": 0.01, "epoch": 10}'
    assert axis_scale(["0.0", step]).labels == ["0.0", "step 0→0.01 @10"]  # a schedule column is text


def test_choose_axes_prefers_regulators_and_facets_by_data():
    grid = {
        "seed": [0, 1, 2, 3],
        "data.name": ["digits", "digits_permuted"],
        "regulators.l1": [0, 1e-4, 1e-3],
        "regulators.locality": [0, 1e-3, 1e-2, 1e-1],
        "model.steps": [3],
    }
    assert choose_axes(grid) == ("regulators.locality", "regulators.l1", "data.name")
    assert choose_axes({"regulators.self": [0, 1], "model.steps": [2, 3, 4]}) == ("regulators.self", "model.steps", None)
    assert choose_axes({"data.gain": [0, 1, 3]}) == ("data.gain", None, None)
    with pytest.raises(ValueError, match="no axis"):
        choose_axes({"seed": [0, 1], "model.steps": [3]})


def test_draw_phase_diagram_writes_png_and_svg_with_legend(tmp_path):
    grid = phase_grid(table(), X, Y, facet=F)
    fig = draw_phase_diagram(grid, X, Y, facet=F, title="hand-made")
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"residual", "shallow", "dead"} <= set(legend) and "locally connected" not in legend  # only phases drawn
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2 and axes[0].get_title() == f"{F} = digits"
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["0", "0.001"]
    png, svg = save_figure(fig, tmp_path / "phase_diagram")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    text = svg.read_text()
    assert all(label in text for label in ("residual", "shallow", "dead", "all seeds agree", X))


def test_draw_phase_diagram_log_axes_and_many_cells():
    values = [0.0, 1e-4, 1e-3, 1e-2, 1e-1]
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            X: rng.choice(values, 600),
            Y: rng.choice(values, 600),
            "seed": rng.integers(0, 4, 600),
            "phase": rng.choice(PHASE_ORDER, 600),
            "depth": rng.integers(0, 4, 600),
        }
    )
    grid = phase_grid(df, X, Y)
    fig = draw_phase_diagram(grid, X, Y)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()][0] == ZERO_LABEL
    legend = {t.get_text() for t in fig.legends[0].get_texts()}
    assert {phase_label(p) for p in PHASE_ORDER} <= legend


def sampled_table(n: int) -> pd.DataFrame:
    """n trials, each at its own point drawn log-uniformly (as Optuna draws a study's ``sample:`` axes); the
    first two labelled within a band (uncertain)."""
    rng = np.random.default_rng(3)
    return pd.DataFrame(
        {
            Y: 10 ** rng.uniform(-5, -2.5, n),
            X: 10 ** rng.uniform(-6, -3, n),
            "seed": 0,
            "phase": rng.choice(["fully_connected", "locally_connected", "dead"], n),
            "depth": rng.integers(0, 4, n),
            "uncertain": [True, True] + [False] * (n - 2),
        }
    )


def test_sampled_axes_are_drawn_as_one_point_per_trial_not_tiles():
    df = sampled_table(30)
    grid = phase_grid(df, Y, X)
    assert len(grid) == 30  # the grid CSV: one row per point, here per trial
    fig = draw_phase_diagram(grid, Y, X)  # 30 distinct values each: read as sampled without being told
    ax = fig.axes[0]
    assert not [p for p in ax.patches if isinstance(p, Rectangle)]
    (points,) = ax.collections
    assert isinstance(points, PathCollection)
    np.testing.assert_allclose(points.get_offsets(), grid[[Y, X]].to_numpy())  # each trial at its own place
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"  # the values span decades
    assert ax.get_xlim()[0] < grid[Y].min() and ax.get_xlim()[1] > grid[Y].max()
    faces = points.get_facecolors()
    for face, (_, cell) in zip(faces, grid.iterrows()):
        if cell["uncertain"] >= 0.5:  # hollow: white inside, a ring of the phase's colour
            assert tuple(face) == (1.0, 1.0, 1.0, 1.0)
        else:
            assert tuple(face[:3]) == pytest.approx(matplotlib.colors.to_rgb(PHASE_COLOURS[cell["phase"]]))
    assert sum(tuple(f) == (1.0, 1.0, 1.0, 1.0) for f in faces) == 2
    legend = {t.get_text() for t in fig.legends[0].get_texts()}
    assert "label near a threshold" in legend and "number = depth" not in legend


def test_an_axis_is_drawn_as_points_where_the_study_samples_it_else_as_tiles():
    grid = phase_grid(sampled_table(5), Y, None)  # too few values to read as sampled by themselves
    tiles = draw_phase_diagram(grid, Y, None).axes[0]
    assert len([p for p in tiles.patches if isinstance(p, Rectangle)]) >= 5 and not tiles.collections
    points = draw_phase_diagram(grid, Y, None, sampled=[Y]).axes[0]
    assert [len(c.get_offsets()) for c in points.collections] == [5] and not points.patches
    assert "sampled" in points.get_xlabel()


def test_choose_axes_draws_a_studys_sampled_axes_and_facets_its_grid():
    study = load_study(ROOT / "search_spaces" / "best_accuracy.yaml")
    assert choose_axes(study) == ("regulators.locality", "regulators.l1", "model.steps")


# --- lifetime ------------------------------------------------------------------------------------------


def history() -> list[dict]:
    rows = []
    for epoch in range(1, 11):
        row = {"epoch": epoch, "task_loss": 1.0 / epoch, "train_accuracy": 0.1 * epoch, "test_accuracy": 0.09 * epoch}
        if epoch % 5 == 0:
            row.update(
                phase="fully_connected" if epoch == 5 else "residual",
                depth=2,
                w_depth=2,
                locality=0.3,
                w_skip_share=0.1 * epoch,
                w_density=0.05,
                w_recurrence_share=0.0,
            )
        rows.append(row)
    return rows[::-1]  # out of order on purpose


def test_lifetime_table_and_schedule_changes():
    t = lifetime_table(history())
    assert t["epoch"].tolist() == list(range(1, 11)) and t["depth"].notna().sum() == 2
    row = {
        "regulators.self": "{'kind': 'step', 'before': 0.0, 'after': 0.01, 'epoch': 4}",
        "regulators.l1": '{"kind": "linear", "start": 0, "end": 0.001, "start_epoch": 2, "end_epoch": 8}',
        "data.name": "digits",
        "data.switch_to": "digits_permuted",
        "data.switch_epoch": 8,
        "seed": 1,
        "phase": "residual",
    }
    assert schedule_changes(row) == {2: "l1 linear", 4: "self step", 8: "l1 linear, data -> digits_permuted"}
    assert schedule_changes({"regulators.l1": 1e-3}) == {}


def test_draw_lifetime_marks_changes(tmp_path):
    fig = draw_lifetime(history(), {4: "self step"}, title="trial t0")
    top = fig.axes[0]
    assert any(t.get_text() == "self step" for t in top.texts)
    labels = {t.get_text() for t in top.get_legend().get_texts()}
    assert {"depth", "fully connected", "residual"} <= labels
    png, svg = save_figure(fig, tmp_path / "lifetime")
    assert png.stat().st_size > 5000 and "self step" in svg.read_text()


def test_transitions_read_each_change_its_new_phase_and_the_epochs_it_took(tmp_path):
    def snap(epoch, phase, uncertain=0.0, width=10.0):
        return {"epoch": epoch, "phase": phase, "uncertain": uncertain, "hidden_width": width, "locality": 0.5}

    history = (
        [snap(e, "fully_connected") for e in (2, 4, 6)]
        + [{"epoch": 7, "test_accuracy": 0.9}]
        + [
            snap(8, "residual"),
            snap(10, "locally_connected", 1.0),
            snap(12, "residual"),
            snap(14, "locally_connected"),
            snap(16, "locally_connected", width=4.0),
        ]
        + [snap(e, "locally_connected") for e in (18, 20)]
    )
    moves = transitions(history, {6: "locality step", 16: "width step"})
    first, second = moves.iloc[0], moves.iloc[1]
    # settled at 14 (the label from there to the next change), not at the first snapshot that read it (10)
    assert (first["phase_before"], first["phase_after"], first["changed"], first["epochs_to_new"]) == (
        "fully_connected",
        "locally_connected",
        True,
        8,
    )
    assert first["hidden_width_before"] == 10.0 and first["hidden_width_after"] == 4.0
    assert (second["phase_before"], second["changed"]) == ("locally_connected", False) and np.isnan(second["epochs_to_new"])
    fig = draw_lifetime(history, {6: "locality step", 16: "width step"}, moves=moves)
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert "-> LC in 8" in texts and "stays LC" in texts
    assert transitions(history, {30: "after the end"}).empty


def test_pick_representatives_one_per_phase():
    df = pd.DataFrame(
        {
            "trial_id": list("abcdef"),
            "phase": ["residual", "residual", "residual", "dead", "diverged", "shallow"],
            "depth": [2, 2, 3, 0, None, 1],
            "test_accuracy": [0.5, 0.7, 0.99, 0.1, None, 0.6],
        }
    )
    picked = pick_representatives(df)
    assert picked["phase"].tolist() == ["dead", "shallow", "residual"]  # PHASE_ORDER; diverged has no W
    assert picked["trial_id"].tolist() == ["d", "f", "b"]  # residual: the usual depth 2, then the most accurate
