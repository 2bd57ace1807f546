"""A refined study's records read back into the search's plan: brackets from a table whose values came back from
MLflow as strings, and the map drawn from them."""

import math

import pandas as pd

from analysis.boundaries import boundary_table, draw_boundary_map, plan_of, refined_rows
from analysis.phase import save_figure
from urn_study.boundary import Refine

GRID = {"regulators.locality": [0, 1e-4, 1e-3], "model.steps": [2, 3]}


def _runs():
    rows = []
    for number, (locality, steps, seed, phase, margin) in enumerate(
        [
            (0, 2, 0, "fully_connected", 3.0),
            (1e-4, 2, 0, "residual", 0.4),
            (1e-4, 2, 1, "residual", 2.0),
            (1e-3, 2, 0, "residual", 5.0),
            (5.5e-5, 2, 0, "fully_connected", 2.5),
            (7.4e-5, 2, 0, "residual", 1.5),
            (0, 3, 0, "residual", 2.0),
            (1e-4, 3, 0, "residual", 2.0),
            (1e-3, 3, 0, "dead", 4.0),
            (3.2e-4, 3, 0, "diverged", float("nan")),
        ]
    ):
        rows.append(
            {
                "trial_id": f"s-b{number:04d}",
                "regulators.locality": str(locality),
                "model.steps": str(steps),
                "seed": seed,
                "phase": phase,
                "margin": margin,
                "depth": 2,
            }
        )
    rows.append({"trial_id": "s-0003", "regulators.locality": "0", "model.steps": "2", "seed": 0, "phase": "dead"})
    return pd.DataFrame(rows)


def test_records_give_the_brackets_of_each_line(tmp_path):
    runs = _runs()
    refined = refined_rows(runs)
    assert refined.sum() == 10 and not refined.iloc[-1]  # the grid sweep's trial is not the search's
    plan = plan_of(runs[refined], GRID, [0, 1], Refine(axes=("regulators.locality",), budget=50))
    table = boundary_table(plan).sort_values(["model.steps", "low"]).reset_index(drop=True)
    assert table[["model.steps", "low", "high", "phase_low", "phase_high"]].values.tolist() == [
        [2, 5.5e-5, 7.4e-5, "fully_connected", "residual"],
        [3, 1e-4, 1e-3, "residual", "dead"],
    ]
    assert not table["located"].any() and math.isclose(table["ratio"][0], 7.4e-5 / 5.5e-5)
    assert (3.2e-4, 3) not in plan.results  # a diverged trial has no label to place
    fig = draw_boundary_map(plan, "regulators.locality", None, "model.steps", title="s")
    assert [ax.get_title() for ax in fig.axes[:2]] == ["model.steps = 2", "model.steps = 3"]
    assert fig.axes[0].get_xscale() == "log"
    (png,) = save_figure(fig, tmp_path / "map", formats=("png",))
    assert png.stat().st_size > 5000
