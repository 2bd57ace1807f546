"""Measures against a numeric axis: the table's means and spreads per series, and the figure drawn from it."""

import numpy as np
import pandas as pd
import pytest

from analysis.phase import save_figure
from analysis.trends import draw_trends, trend_table


def _runs():
    rows = []
    for gain in (0.01, 1.0, 10.0):
        for steps in (2, 3):
            for seed in (0, 1):
                rows.append(
                    {
                        "data.gain": gain,
                        "model.steps": steps,
                        "seed": seed,
                        "phase": "fully_connected",
                        "ipr": 0.03 + 0.01 * gain * steps + 0.002 * seed,
                        "w_ipr": 0.05,
                        "null_w_ipr": 0.029,
                        "test_accuracy": 0.9,
                    }
                )
    rows.append({"data.gain": 10.0, "model.steps": 2, "seed": 2, "phase": "diverged", "ipr": 99.0})
    rows.append({"data.gain": 10.0, "model.steps": 2, "seed": 3, "phase": "dead", "ipr": 0.0})
    return pd.DataFrame(rows)


def test_trend_table_gives_mean_spread_and_count_per_series_and_point():
    table = trend_table(_runs(), "data.gain", ("model.steps", None))
    assert len(table) == 6  # 3 gains x 2 steps; the diverged and the dead trial left out
    row = table[(table["data.gain"] == 10.0) & (table["model.steps"] == 2)].iloc[0]
    assert row["ipr_mean"] == pytest.approx(0.03 + 0.2 + 0.001)
    assert row["ipr_sd"] == pytest.approx(np.std([0.0, 0.002], ddof=1))
    assert row["ipr_n"] == 2 and row["null_w_ipr_mean"] == pytest.approx(0.029)
    assert "locality_mean" not in table.columns  # not recorded: no column


def test_draw_trends_one_panel_per_measure_with_the_null(tmp_path):
    table = trend_table(_runs(), "data.gain", ("model.steps",))
    fig = draw_trends(table, "data.gain", ("model.steps",), title="gain")
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["IPR of the kept fields", "IPR of the |W| fields", "test accuracy"]
    labels = [t.get_text() for t in visible[0].get_legend().get_texts()]
    assert labels == ["model.steps=2", "model.steps=3"]
    assert any(line.get_linestyle() == "--" for line in visible[1].get_lines())  # the untrained W0's IPR
    assert visible[0].get_xscale() == "log"
    (png,) = save_figure(fig, tmp_path / "trends", formats=("png",))
    assert png.stat().st_size > 5000
    with pytest.raises(ValueError, match="none of"):
        draw_trends(table, "data.gain", columns=("hidden_width",))
