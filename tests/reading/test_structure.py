"""Unit checks of the structure metrics on tiny hand-made W whose answers are computed by hand."""

import json

import numpy as np
import pytest

from urn_study.layout import make_layout
from urn_study.reading.structure import (
    feedback_edges,
    hop_spectrum,
    neuron_levels,
    neuron_order,
    prune,
    receptive_field_extent,
    receptive_field_locality,
    structure_report,
)

A_, B_, C_, D_, E_ = 2.0, 3.0, 1.0, 0.5, 0.5  # I->H, H->O, I->O, H wait, I wait


@pytest.fixture
def chain():
    """Three neurons I, H, O (one each): I->H->O, a skip I->O, waits on H and on I."""
    layout = make_layout((1,), n_out=1)
    W = np.zeros((3, 3))
    W[1, 0], W[2, 1], W[2, 0], W[1, 1], W[0, 0] = A_, -B_, C_, D_, E_
    return W, layout


def test_prune_keeps_the_strongest_edges_carrying_the_share():
    W = np.array([[10.0, -5.0], [3.0, 1.0]])
    assert np.array_equal(prune(W, 0.9), [[10.0, -5.0], [3.0, 0.0]])  # 18 of 20 reached with three edges
    assert np.array_equal(prune(W, 0.5), [[10.0, 0.0], [0.0, 0.0]])
    assert np.array_equal(prune(W, 0.99), W)
    assert W[1, 1] == 1.0  # a copy: the input is untouched


def test_prune_share_on_a_random_matrix():
    W = np.random.default_rng(0).normal(size=(40, 40))
    kept = prune(W, 0.9)
    share = np.abs(kept).sum() / np.abs(W).sum()
    assert 0.9 <= share < 0.9 + np.abs(W).max() / np.abs(W).sum()
    assert np.abs(kept[kept != 0]).min() >= np.abs(W[kept == 0]).max()


def test_hop_spectrum_once_last_by_hand(chain):
    W, layout = chain
    two = hop_spectrum(W, layout, steps=2)  # walks: I->H->O (a b, 2 hops), wait on I then I->O (e c, 1 hop)
    assert two.total_weight == pytest.approx(A_ * B_ + E_ * C_)
    assert two.p == pytest.approx([0.0, 0.5 / 6.5, 6.0 / 6.5])
    assert two.pure_share == pytest.approx([0.0, 0.0, 6.0 / 6.5])
    three = hop_spectrum(W, layout, steps=3)  # a d b + e a b (2 hops, 1 wait), e e c (1 hop, 2 waits)
    assert three.total_weight == pytest.approx(6.25)
    assert three.p == pytest.approx([0.0, 0.25 / 6.25, 6.0 / 6.25, 0.0])
    assert three.pure_share == pytest.approx([0.0] * 4)


def test_hop_spectrum_clamp_and_readout_all_by_hand(chain):
    W, layout = chain
    clamp = hop_spectrum(W, layout, steps=3, input_mode="clamp")  # no wait on I; lengths 1..3: c, a b, a d b
    assert clamp.total_weight == pytest.approx(1.0 + 6.0 + 3.0)
    assert clamp.p == pytest.approx([0.0, 0.1, 0.9, 0.0])
    assert clamp.pure_share == pytest.approx([0.0, 0.1, 0.6, 0.0])
    every = hop_spectrum(W, layout, steps=3, readout="all", readout_from=2)  # lengths 2 and 3 of once mode
    assert every.total_weight == pytest.approx(6.5 + 6.25)
    assert every.p == pytest.approx([0.0, 0.75 / 12.75, 12.0 / 12.75, 0.0])


def test_report_on_the_chain(chain):
    W, layout = chain
    report = structure_report(W, layout, steps=2)
    assert report.effective_depth == 2
    assert report.skip_share == pytest.approx(0.5 / 6.5)
    assert report.levels == [0, 1, 2] and report.widths == [1, 1, 1] and report.depth == 2
    assert report.locality == 1.0 and report.phase == "locally_connected"  # a point field counts as local


def test_locality_of_two_neighbours_is_exact():
    layout = make_layout((10,), n_out=1)  # inputs 0..9, hidden 10..19, output 20
    W = np.zeros((layout.size, layout.size))
    W[13, 3], W[13, 4] = 1.0, 2.0
    d2 = layout.distances[:10, :10] ** 2
    locality, ipr = receptive_field_locality(W, layout, np.isin(np.arange(layout.size), [13]))
    assert locality == pytest.approx(1.0 - 1.0 / d2[~np.eye(10, dtype=bool)].mean())
    assert ipr == pytest.approx((1 + 16) / 25)


def test_locality_local_field_near_one_dense_random_near_zero():
    layout = make_layout((8, 8), n_out=2)
    receivers = np.zeros(layout.size, dtype=bool)
    receivers[64:128] = True
    rng = np.random.default_rng(0)
    dense = np.zeros((layout.size, layout.size))
    dense[64:128, :64] = rng.normal(size=(64, 64))
    locality, ipr = receptive_field_locality(dense, layout, receivers)
    assert abs(locality) < 0.05 and ipr < 0.05
    local = np.zeros_like(dense)
    for site in range(64):
        row, col = divmod(site, 8)
        for r in range(max(row - 1, 0), min(row + 2, 8)):
            for c in range(max(col - 1, 0), min(col + 2, 8)):
                local[64 + site, 8 * r + c] = rng.uniform(0.5, 1.5)
    locality, _ = receptive_field_locality(local, layout, receivers)
    assert locality > 0.8
    single = np.zeros_like(dense)
    single[64:128, :64] = np.eye(64)
    assert receptive_field_locality(single, layout, receivers) == (1.0, 1.0)  # point fields
    assert receptive_field_locality(single, layout, np.zeros(layout.size, dtype=bool)) == (0.0, 0.0)


def test_receptive_field_extent_plain_and_periodic():
    ring = make_layout((8,), n_out=1, periodic=True)
    chain = make_layout((8,), n_out=1)
    fields = np.zeros((2, 8), dtype=bool)
    fields[0, [7, 0, 1]] = True  # wraps round the ring
    fields[1, [2, 4]] = True
    assert receptive_field_extent(fields, ring) == pytest.approx((3 + 3) / 2)
    assert receptive_field_extent(fields, chain) == pytest.approx((8 + 3) / 2)
    grid = make_layout((4, 4), n_out=1)
    square = np.zeros((1, 16), dtype=bool)
    square[0, [0, 1, 4, 6]] = True  # rows 0..1 (2 sites), columns 0..2 (3 sites)
    assert receptive_field_extent(square, grid) == pytest.approx(2.5)


def test_feedback_edges_break_a_cycle_at_its_weakest_edge():
    weights = np.zeros((4, 4))
    weights[1, 0], weights[2, 1], weights[0, 2], weights[3, 2] = 5.0, 4.0, 0.1, 3.0  # 0->1->2->0 and 2->3
    expected = np.zeros((4, 4), dtype=bool)
    expected[0, 2] = True
    assert np.array_equal(feedback_edges(weights), expected)
    weights[0, 2] = 0.0
    assert not feedback_edges(weights).any()


def test_neuron_levels_inputs_fed_by_inputs_and_inactive_neurons():
    layout = make_layout((3,), n_out=1)  # inputs 0..2, hidden 3..5, output 6
    W = np.zeros((7, 7))
    W[1, 0] = W[3, 1] = W[6, 3] = W[6, 2] = 1.0  # 0 -> 1 -> 3 -> 6 and 2 -> 6
    W[4, 0] = 1.0  # 4 never reaches the output
    W[0, 3] = 0.01  # a weak back edge: the cycle 0 -> 1 -> 3 -> 0 breaks there
    assert neuron_levels(W, layout).tolist() == [0, 1, 0, 2, -1, -1, 3]
    assert neuron_order([2, -1, 0, 1]).tolist() == [2, 3, 0, 1]


def test_timed_levels_never_exceed_the_steps():
    layout = make_layout((4, 4), n_out=2, hidden_channels=2)
    W = np.random.default_rng(1).normal(size=(layout.size, layout.size))
    plain = neuron_levels(prune(W), layout)
    timed = neuron_levels(prune(W), layout, steps=3)
    assert plain.max() > 3 >= timed.max()  # a dense W has long chains no walk of 3 steps can follow
    report = structure_report(W, layout, steps=3)
    assert report.depth <= 3 and report.phase == "fully_connected"


def test_report_is_json_and_summary_is_scalar(chain):
    W, layout = chain
    report = structure_report(W, layout, steps=2, accuracy=0.9, n_classes=2)
    text = json.dumps(report.to_dict())
    assert json.loads(text)["widths"] == [1, 1, 1]
    summary = report.summary()
    assert {"phase", "depth", "effective_depth", "skip_share", "locality", "density"} <= set(summary)
    assert all(type(v) in (str, int, float) for v in summary.values())
    assert all(type(v) in (str, int, float, list) for v in report.to_dict().values())
