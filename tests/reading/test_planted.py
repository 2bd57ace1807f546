"""The classifier on planted structures: the planted phase, depth and widths come back, clean and noisy.

Noise (``add_noise``, std = scale * mean |nonzero W|), measured over seeds 0..3 of the cases below:
- fully connected nets keep phase and widths up to 1e-1 (every noise edge between consecutive levels
  lands on a planted pair, the others carry no walk of the right length); seed 0 breaks at 3e-1.
- locally connected nets keep them up to 3e-2 and break at 5e-2 (3 levels, r = 2) to 1e-1 (all): the
  noise in the receptive fields drags the locality under 0.5 (widths still right).
- residual nets keep them up to 2e-2 and break at 3e-2 (two hidden levels on the grid) to 5e-2 (all):
  identity carrying lets walks use any weak edge between hidden neurons of one level, |W| walk sums
  grow with the layer gain, and such an edge starts to count as structure, adding a level.
The tests below use 1e-3 and 1e-2; ``test_heavy_noise_breaks_the_classification`` pins the breaking side.
"""

from types import SimpleNamespace

import numpy as np
import pytest

from urn_study.layout import make_layout
from urn_study.reading.function import Network, Probe, functional_report
from urn_study.reading.planted import (
    add_noise,
    plant_dead,
    plant_fully_connected,
    plant_locally_connected,
    plant_recurrent,
    plant_residual,
    plant_shallow,
    recurrent_steps,
)
from urn_study.reading.recovery import recovery_score, recovery_with_nulls
from urn_study.reading.structure import structure_report

GRID = make_layout((8, 8), n_out=10, hidden_channels=2)
CHAIN = make_layout((16,), n_out=4, hidden_channels=3)
RING = make_layout((16,), n_out=2, hidden_channels=2, periodic=True)
NOISE = [0.0, 1e-3, 1e-2]

# name: (layout, builder, steps, phase, widths)
PLANTED = {
    "fc_grid_1": (GRID, lambda s: plant_fully_connected(GRID, [20], s), 2, "fully_connected", [64, 20, 10]),
    "fc_grid_2": (GRID, lambda s: plant_fully_connected(GRID, [30, 12], s), 3, "fully_connected", [64, 30, 12, 10]),
    "fc_chain_2": (CHAIN, lambda s: plant_fully_connected(CHAIN, [10, 6], s), 3, "fully_connected", [16, 10, 6, 4]),
    "lc_grid_d2_r3": (GRID, lambda s: plant_locally_connected(GRID, 2, 3, s), 2, "locally_connected", [64, 64, 10]),
    "lc_grid_d3_r2": (GRID, lambda s: plant_locally_connected(GRID, 3, 2, s), 3, "locally_connected", [64, 64, 64, 10]),
    "lc_chain_d4_r3": (CHAIN, lambda s: plant_locally_connected(CHAIN, 4, 3, s), 4, "locally_connected", [16, 16, 16, 16, 4]),
    "lc_ring_d3_r5": (RING, lambda s: plant_locally_connected(RING, 3, 5, s), 3, "locally_connected", [16, 16, 16, 2]),
    "res_grid_1": (GRID, lambda s: plant_residual(GRID, [24], s), 4, "residual", [64, 24, 10]),
    "res_grid_2": (GRID, lambda s: plant_residual(GRID, [20, 12], s), 5, "residual", [64, 20, 12, 10]),
    "res_grid_2_long": (GRID, lambda s: plant_residual(GRID, [20, 12], s), 8, "residual", [64, 20, 12, 10]),
    "res_chain_3": (CHAIN, lambda s: plant_residual(CHAIN, [8, 6, 5], s), 6, "residual", [16, 8, 6, 5, 4]),
}


@pytest.mark.parametrize("noise", NOISE)
@pytest.mark.parametrize("name", PLANTED)
def test_planted_phase_depth_and_widths_come_back(name, noise):
    layout, build, steps, phase, widths = PLANTED[name]
    for seed in (0, 1):
        W = add_noise(build(seed), noise, seed=10 + seed) if noise else build(seed)
        report = structure_report(W, layout, steps)
        assert (report.phase, report.depth, report.widths) == (phase, len(widths) - 1, widths), f"seed {seed}"
        assert report.recurrence_share < 0.05
        assert report.active_neurons == sum(widths)


def test_planted_details_clean():
    fc = structure_report(plant_fully_connected(GRID, [30, 12]), GRID, 3)
    assert fc.effective_depth == 3 and fc.skip_share == pytest.approx(0.0, abs=1e-12)
    assert fc.hop_spectrum == pytest.approx([0, 0, 0, 1]) and abs(fc.locality) < 0.05
    assert fc.level_density == pytest.approx([1.0, 1.0, 1.0], abs=0.05)
    lc = structure_report(plant_locally_connected(GRID, 2, 3), GRID, 2)
    assert lc.locality > 0.8 and lc.receptive_field == pytest.approx(2.75)  # 3 sites, 2 at the border
    assert lc.level_density[0] == pytest.approx(22**2 / 64**2)  # 3x3 fields clipped at the border: 22 per axis
    res = structure_report(plant_residual(GRID, [20, 12]), GRID, 5)
    assert res.effective_depth >= 2 and res.skip_share > 0.9  # every walk of 5 steps waits twice
    assert sum(p > 0.05 for p in res.hop_spectrum) >= 2  # the skips spread the weight over hop counts


def test_residual_with_steps_equal_to_depth_still_skips():
    report = structure_report(plant_residual(GRID, [20, 12]), GRID, 3)
    assert report.phase == "residual" and report.depth == 3
    assert 0.25 < report.skip_share < 1.0  # the plain 3-hop walks carry the rest


def test_input_mode_and_readout_variants():
    W = plant_fully_connected(GRID, [20])
    for kwargs in ({"input_mode": "clamp"}, {"readout": "all", "readout_from": 1}):
        report = structure_report(W, GRID, 4, **kwargs)
        assert (report.phase, report.depth, report.widths) == ("fully_connected", 2, [64, 20, 10])
    # input written once and read at step 4: a 2-hop net without waits has no walk of 4 steps
    assert structure_report(W, GRID, 4).phase == "dead"
    assert structure_report(plant_residual(GRID, [20, 12]), GRID, 5, input_mode="clamp").phase == "residual"


@pytest.mark.parametrize("noise", NOISE)
def test_shallow(noise):
    direct = add_noise(plant_shallow(GRID), noise) if noise else plant_shallow(GRID)
    report = structure_report(direct, GRID, 1)
    assert (report.phase, report.depth, report.widths) == ("shallow", 1, [64, 10])
    waiting = plant_shallow(CHAIN, input_waits=True)  # once mode, 2 steps: wait on the input, then hop
    report = structure_report(waiting, CHAIN, 2)
    assert (report.phase, report.depth, report.effective_depth) == ("shallow", 1, 1)
    assert report.skip_share == pytest.approx(1.0)


def test_dead():
    report = structure_report(plant_dead(GRID, [20]), GRID, 2)
    assert (report.phase, report.depth, report.widths, report.total_weight) == ("dead", 0, [], 0.0)
    W = plant_fully_connected(GRID, [20])
    assert structure_report(W, GRID, 2, accuracy=0.11, n_classes=10).phase == "dead"  # at chance
    assert structure_report(W, GRID, 2, accuracy=0.5, n_classes=10).phase == "fully_connected"


@pytest.mark.parametrize("noise", NOISE)
@pytest.mark.parametrize("cycle_length", [2, 4])
def test_recurrent(cycle_length, noise):
    W = plant_recurrent(GRID, cycle_length, seed=cycle_length)
    W = add_noise(W, noise) if noise else W
    report = structure_report(W, GRID, recurrent_steps(cycle_length))
    assert report.phase == "recurrent" and report.recurrence_share > 0.8
    no_lap = structure_report(W, GRID, recurrent_steps(cycle_length, laps=0))  # walks pass the cycle once
    assert no_lap.recurrence_share < 0.05 and no_lap.phase != "recurrent"


def test_heavy_noise_breaks_the_classification():
    for name, scale in (("lc_grid_d2_r3", 0.1), ("res_grid_2", 0.1), ("res_grid_2_long", 3e-2)):
        layout, build, steps, phase, widths = PLANTED[name]
        report = structure_report(add_noise(build(0), scale, seed=10), layout, steps)
        assert (report.phase, report.widths) != (phase, widths), name


def _teacher(layout, depth: int, r: int) -> dict:
    """The ground truth as urn_study.data writes it for the teacher data."""
    return {"depth": depth, "receptive_field": r, "widths": [layout.n_in] * depth + [layout.n_out], "dims": 1}


def _functional(W, layout, steps: int) -> dict:
    """The functional record of a planted W (zero biases), on Gaussian samples labelled by its own outputs."""
    model = SimpleNamespace(steps=steps, input_mode="once", readout="last", readout_from=1, activation="relu")
    net = Network.of(W, None, layout, model)
    x = np.random.default_rng(0).normal(size=(2000, layout.n_in))
    return functional_report(net, Probe.self_labelled(net, x)).to_dict()


def test_recovery_of_a_planted_teacher():
    layout = make_layout((16,), n_out=2, hidden_channels=2)
    teacher = _teacher(layout, 3, 3)
    record = _functional(plant_locally_connected(layout, 3, 3), layout, 3)
    score = recovery_with_nulls(record, layout, teacher)
    assert record["phase"] == "locally_connected" and record["depth"] == 3
    assert score["depth_match"] == 1 and score["receptive_field"] == pytest.approx(2.875, abs=0.2)
    assert score["recovery"] > 0.95
    assert score["recovery_null_mlp"] == 0.0 and score["recovery_null_untrained"] == 0.0  # depth 2, dense; dead
    assert score["recovery_margin"] == pytest.approx(score["recovery"])


def test_recovery_of_a_wrong_structure():
    layout = make_layout((16,), n_out=2, hidden_channels=2)
    teacher = _teacher(layout, 2, 3)
    W = plant_fully_connected(layout, [8])
    score = recovery_with_nulls(_functional(W, layout, 2), layout, teacher)
    assert score["depth_match"] == 1 and score["receptive_field"] > 12  # the right depth, dense fields
    assert score["field_score"] < 0.2 and score["recovery"] < 0.6
    assert score["recovery_null_mlp"] == 0.5 and score["recovery_margin"] < 0.1  # no better than a dense MLP
    dead = recovery_score({"phase": "dead", "depth": 0, "widths": []}, layout, teacher)
    assert dead["recovery"] == 0.0
