"""The functional reading (urn_study.reading.function) on networks built here by hand, held out from the tuning.

The builders below are this file's own (not urn_study/reading/planted.py, on which the thresholds were tuned): a
1D chain of inputs, hidden neurons at random positions, a few outputs; each network is run on Gaussian
samples and labelled by its own predictions (``Probe.self_labelled``): the task is what it computes, so a
lesion that changes the predictions costs accuracy. Every hidden neuron gets a bias that centres its input,
so it is active on about half the samples: a planted neuron is never dead on the probe.
"""

from types import SimpleNamespace

import numpy as np
import pytest

from urn_study.data import DataConfig, load_dataset
from urn_study.layout import make_layout
from urn_study.model import initial_weights
from urn_study.reading.function import Network, Probe, Thresholds, functional_report, run, trace

LAYOUT = make_layout((12,), n_out=3, hidden_channels=3, hidden_layout="random", seed=4)  # 12 + 36 + 3
INPUTS = np.arange(12)
OUTPUTS = np.arange(48, 51)


def hidden(first: int, count: int) -> np.ndarray:
    return 12 + np.arange(first, first + count)


class Builder:
    """W and b of a URN built level by level; ``connect`` adds dense random edges and centres the targets."""

    def __init__(self, seed: int, layout=LAYOUT, samples: int = 3000):
        self.rng = np.random.default_rng(seed)
        self.layout = layout
        self.W = np.zeros((layout.size, layout.size))
        self.b = np.zeros(layout.size)
        self.x = self.rng.normal(size=(samples, layout.n_in))

    def connect(self, targets, sources, gain: float = 1.0) -> "Builder":
        weights = self.rng.normal(size=(len(targets), len(sources))) / np.sqrt(len(sources))
        self.W[np.ix_(targets, sources)] += gain * weights
        return self

    def wait(self, neurons) -> "Builder":
        self.W[neurons, neurons] = 1.0
        return self

    def centre(self, steps: int, mode: str = "once") -> "Builder":
        """Biases that put each hidden neuron's median pre-activation at zero at the first step it receives a
        signal (steps 1 .. steps - 1), so that it is active on about half the samples."""
        hid = np.arange(self.layout.n_in, self.layout.n_in + self.layout.n_hidden)
        done = np.zeros(len(hid), dtype=bool)
        for t in range(1, steps):
            pre = self._pre_activations(self.network(t, mode))[:, hid]
            now = ~done & (np.ptp(pre, axis=0) > 0)
            self.b[hid[now]] -= np.median(pre[:, now], axis=0)
            done |= now
        return self.balance(steps, mode)

    def balance(self, steps: int, mode: str = "once") -> "Builder":
        """Output biases that make every class's mean logit zero at the readout, so that a constant (the
        hidden neurons' biases passed on, accumulated by waiting outputs) decides no sample. The outputs feed
        nothing here, so the logits move linearly with their biases: two runs give the gain."""
        outputs = self.layout.outputs
        self.b[outputs] = 0.0
        base = run(self.network(steps, mode), self.x).mean(axis=0)
        self.b[outputs] = 1.0
        gain = run(self.network(steps, mode), self.x).mean(axis=0) - base
        self.b[outputs] = -base / gain
        return self

    def _pre_activations(self, net: Network) -> np.ndarray:
        tr = trace(net, self.x)
        return tr.states[-1] @ net.W.T + net.b

    def network(self, steps: int, mode: str = "once") -> Network:
        model = SimpleNamespace(steps=steps, input_mode=mode, readout="last", readout_from=1, activation="relu")
        return Network.of(self.W, self.b, self.layout, model)

    def report(self, steps: int, mode: str = "once", noise: float = 0.0, **kwargs):
        net = self.network(steps, mode)
        if noise:
            scale = noise * np.abs(self.W[self.W != 0]).mean()
            net = Network(net.W + self.rng.normal(0.0, scale, net.W.shape), net.b, net.layout, steps, mode)
        return functional_report(net, Probe.self_labelled(net, self.x), **kwargs)


def mlp(seed: int, widths: list[int]) -> tuple[Builder, list[np.ndarray]]:
    """Inputs -> hidden levels of the given widths -> outputs, dense between consecutive levels."""
    build = Builder(seed)
    levels, first = [INPUTS], 0
    for width in widths:
        levels.append(hidden(first, width))
        first += width
    levels.append(OUTPUTS)
    for sources, targets in zip(levels[:-1], levels[1:]):
        build.connect(targets, sources)
    return build, levels


@pytest.mark.parametrize("seed", [0, 1])
def test_a_two_layer_mlp_run_for_four_steps_reads_depth_two(seed):
    for holding in ("outputs", "hidden"):  # once mode: the two spare steps are waits, on the outputs or on H
        build, levels = mlp(seed, [8])
        report = build.wait(OUTPUTS if holding == "outputs" else levels[1]).centre(4).report(4)
        assert (report.phase, report.depth, report.carrying_depths) == ("fully_connected", 2, [2]), holding
        assert report.widths == [12, 8, 3] and report.block_widths["hidden"] == [0, 8, 0], holding
    build, _ = mlp(seed, [8])
    clamped = build.centre(4, "clamp").report(4, "clamp")  # the input written at every step: no wait needed
    assert (clamped.phase, clamped.depth, clamped.widths) == ("fully_connected", 2, [12, 8, 3])


@pytest.mark.parametrize("seed", [0, 1])
def test_a_three_level_mlp_reads_depth_three(seed):
    build, _ = mlp(seed, [10, 6])
    report = build.centre(3).report(3)
    assert (report.phase, report.depth, report.widths) == ("fully_connected", 3, [12, 10, 6, 3])
    assert report.relays == {"input": 0, "output": 0} and report.hidden_width == 16
    assert report.shortcut_cost == 0.0  # no walk shorter than T to cut
    longer = mlp(seed, [10, 6])[0].wait(OUTPUTS).centre(5).report(5)  # two steps more, held on the outputs
    assert (longer.phase, longer.depth, longer.widths) == ("fully_connected", 3, [12, 10, 6, 3])


@pytest.mark.parametrize("seed", [0, 1])
def test_an_mlp_plus_a_skip_that_carries_part_of_the_task_reads_residual(seed):
    build, _ = mlp(seed, [8])
    build.connect(OUTPUTS, INPUTS, gain=0.7).wait(OUTPUTS)  # x -> outputs at step 1, held to step 2
    report = build.centre(2).report(2)
    assert report.phase == "residual" and report.carrying_depths == [1, 2] and report.depth == 2
    assert min(report.depth_removal_cost[1], report.depth_removal_cost[2]) > 0.05  # each path is needed
    assert report.shortcut_cost > 0.05 and report.shorter_cost > 0.05  # cut for real (gates recomputed) and frozen
    assert not report.uncertain


@pytest.mark.parametrize("seed", [0, 1])
def test_a_pure_delay_is_not_residual(seed):
    build, levels = mlp(seed, [8])
    build.wait(levels[1])  # x -> H at step 1, H holds at step 2, H -> outputs at step 3
    report = build.centre(3).report(3)
    assert (report.phase, report.depth, report.carrying_depths) == ("fully_connected", 2, [2])
    assert report.widths == [12, 8, 3]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_hidden_block_that_carries_nothing_reads_shallow_with_hidden_width_zero(seed):
    build = Builder(seed)
    build.connect(OUTPUTS, INPUTS).wait(OUTPUTS)  # the task: a linear readout, held one step
    busy = hidden(0, 20)
    build.connect(busy, INPUTS).connect(OUTPUTS, busy, gain=1e-4)  # active hidden neurons, nothing to the outputs
    report = build.centre(2).report(2)
    assert (report.phase, report.depth, report.hidden_width) == ("shallow", 1, 0)
    assert report.widths == [12, 3] and report.hidden_cost <= 0.002


@pytest.mark.parametrize("seed", [0, 1])
def test_symmetric_lateral_edges_that_carry_nothing_do_not_make_it_recurrent(seed):
    build, levels = mlp(seed, [8])
    build.wait(levels[1])
    pairs = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)]
    for i, j in pairs:  # strong symmetric input <-> input edges ...
        build.W[i, j] = build.W[j, i] = 1.5
    build.centre(3)
    build.b[INPUTS] = -100.0  # ... onto inputs that never fire after the data left them: nothing passes
    report = build.balance(3).report(3)
    assert report.phase == "fully_connected" and report.depth == 2
    assert report.recurrence_cost == 0.0 and report.returning_edges == 0


def recurrent(seed: int, channels: int = 6) -> Builder:
    """Pixels -> A_c at step 1, A_c -> B_c -> A_c (a loop), outputs read A_c at step 4."""
    build = Builder(seed)
    a, bb = hidden(0, channels), hidden(channels, channels)
    build.connect(a, INPUTS)
    build.W[bb, a] = 1.0
    build.W[a, bb] = 1.0
    build.connect(OUTPUTS, a)
    return build


@pytest.mark.parametrize("seed", [0, 1])
def test_a_signal_that_comes_back_reads_recurrent(seed):
    report = recurrent(seed).centre(2).report(4)
    assert report.phase == "recurrent" and report.recurrence_cost > 0.3 and not report.uncertain


def locally_connected(seed: int, field: int) -> Builder:
    """Level 1: hidden neuron k sees ``field`` neighbouring pixels around site k; a dense readout."""
    build = Builder(seed, layout=make_layout((12,), n_out=3, hidden_channels=3))
    level = hidden(0, 12)
    for k, neuron in enumerate(level):
        sites = np.clip(np.arange(k - field // 2, k - field // 2 + field), 0, 11)
        build.connect([neuron], np.unique(sites))
    build.connect(OUTPUTS, level)
    return build


def test_local_fields_read_locally_connected_and_dense_ones_fully_connected():
    local = locally_connected(2, 3).centre(2).report(2)
    assert (local.phase, local.depth) == ("locally_connected", 2) and local.locality > 0.7
    assert local.receptive_field < 3.5
    dense = locally_connected(2, 12).centre(2).report(2)
    assert dense.phase == "fully_connected" and dense.locality < 0.3


@pytest.mark.parametrize("noise", [1e-3, 1e-2])
def test_small_noise_keeps_the_reading(noise):
    build, _ = mlp(3, [10, 6])
    report = build.centre(3).report(3, noise=noise)
    assert (report.phase, report.depth) == ("fully_connected", 3)
    assert report.widths[2] == 6 and abs(report.widths[1] - 10) <= 1
    skip, _ = mlp(4, [8])
    skip.connect(OUTPUTS, INPUTS, gain=0.7).wait(OUTPUTS)
    assert skip.centre(2).report(2, noise=noise).phase == "residual"


@pytest.mark.parametrize("scale", [0.05, 0.1])
@pytest.mark.parametrize("mode", ["once", "clamp"])
@pytest.mark.parametrize("data", ["digits", "nlgp", "teacher"])
def test_untrained_networks_get_no_architecture_label(scale, mode, data):
    cfg = DataConfig(name=data, dims=2 if data == "nlgp" else 1, side=8 if data == "nlgp" else 16)
    for seed in range(3):
        dataset = load_dataset(cfg, seed)
        layout = make_layout(dataset.lattice_shape, dataset.n_classes, periodic=dataset.periodic)
        probe = Probe(dataset.x_test, dataset.y_test)
        for steps in (2, 5):
            W0 = initial_weights([seed], layout.size, scale)[0].numpy()
            model = SimpleNamespace(steps=steps, input_mode=mode, readout="last", readout_from=1, activation="relu")
            report = functional_report(Network.of(W0, None, layout, model), probe)
            assert report.phase == "dead", (seed, steps, report.accuracy, report.reference_accuracy)
            assert report.depth == 0 and report.widths == []


def test_a_trained_network_is_measured_against_its_own_untrained_network():
    build, _ = mlp(5, [8])
    net = build.centre(2).network(2)
    probe = Probe.self_labelled(net, build.x)
    as_good = functional_report(net, probe)
    null = functional_report(net, probe)  # a "W0" that already does the task: nothing was learned over it
    assert as_good.phase == "fully_connected"
    assert functional_report(net, probe, null=null).phase == "dead"


def test_labels_near_a_threshold_are_uncertain():
    build, _ = mlp(6, [8])
    build.connect(OUTPUTS, INPUTS, gain=0.7).wait(OUTPUTS)
    net = build.centre(2).network(2)
    probe = Probe.self_labelled(net, build.x)
    clear = functional_report(net, probe)
    cost = clear.depth_removal_cost[1]  # the skip's cost: put the tolerance right on it
    near = functional_report(net, probe, thresholds=Thresholds(cost=cost))
    assert not clear.uncertain and near.uncertain
    assert near.decisions["second depth"]["margin"] < 1.0


def test_lesion_runs_match_a_hand_computation():
    """run() with a mean ablation against the same network written out by hand (T = 2, once)."""
    build, levels = mlp(7, [4])
    net = build.centre(2).network(2)
    x = build.x[:50]
    h1 = np.maximum(x @ net.W[np.ix_(levels[1], INPUTS)].T + net.b[levels[1]], 0.0)
    expected = h1 @ net.W[np.ix_(OUTPUTS, levels[1])].T + net.b[OUTPUTS]
    assert np.allclose(run(net, x), expected)
    masks = np.zeros((1, 3, net.layout.size), dtype=bool)
    masks[0, 1, levels[1][0]] = True
    means = np.zeros((3, net.layout.size))
    means[1, levels[1][0]] = 0.25
    h1_lesioned = h1.copy()
    h1_lesioned[:, 0] = 0.25
    assert np.allclose(run(net, x, masks, means)[0], h1_lesioned @ net.W[np.ix_(OUTPUTS, levels[1])].T + net.b[OUTPUTS])


def test_depth_split_adds_up_to_the_logits():
    build, _ = mlp(8, [6, 4])
    build.connect(OUTPUTS, INPUTS, gain=0.5).wait(OUTPUTS).wait(hidden(0, 6))
    for mode in ("once", "clamp"):
        net = build.centre(4, mode).network(4, mode)
        tr = trace(net, build.x[:200])
        assert np.allclose(tr.depth_logits.sum(axis=0) + tr.bias_logits, tr.logits)
        assert np.allclose(tr.logits, run(net, build.x[:200]), rtol=1e-4, atol=1e-5)  # run() is float32


def _walk_sum_returning(net: Network, x: np.ndarray, origin: int) -> np.ndarray:
    """The logits' part on walks that come back to ``origin``, by enumerating every walk (tiny networks only).

    A walk starts from the data (at t = 0 on an input; at every step before T in clamp mode) or from a bias
    (entering neuron k at step t), then takes one edge a step, each weight times the gate of the neuron it
    lands on (intact run; none at the readout). It comes back when it reaches ``origin`` (a bias entering it
    counts; the data written on an input do not), moves on to other neurons, and reaches ``origin`` again."""
    from itertools import product

    tr = trace(net, x)
    T, S, lay = net.steps, net.layout.size, net.layout
    first_output = lay.n_in + lay.n_hidden
    sources = [(0, j, x[:, j], False) for j in range(lay.n_in)]
    if net.clamp:
        sources += [(t, j, x[:, j], False) for t in range(1, T) for j in range(lay.n_in)]
    for t in range(1, T + 1):
        gate = tr.gates[t] if t < T else np.ones_like(tr.gates[0])
        sources += [(t, k, net.b[k] * gate[:, k], True) for k in range(S)]
    total = np.zeros((len(x), lay.n_out))
    for start, first, value0, is_bias in sources:
        for rest in product(range(S), repeat=T - start):
            path = (first, *rest)
            if path[-1] < first_output:
                continue
            visits = [k for k, p in enumerate(path) if p == origin and (k > 0 or is_bias)]
            if not any(any(p != origin for p in path[a + 1 : b]) for a, b in zip(visits, visits[1:])):
                continue
            value = value0.copy()
            for k in range(1, len(path)):
                t = start + k
                value = value * net.W[path[k], path[k - 1]] * (tr.gates[t][:, path[k]] if t < T else 1.0)
            total[:, path[-1] - first_output] += value
    return total


@pytest.mark.parametrize("mode", ["once", "clamp"])
def test_returned_signals_match_an_enumeration_of_walks(mode):
    from urn_study.reading.function import returned_logits

    layout = make_layout((2,), n_out=1, hidden_channels=1)  # 2 inputs, 2 hidden, 1 output: S = 5
    rng = np.random.default_rng(3)
    model = SimpleNamespace(steps=4, input_mode=mode, readout="last", readout_from=1, activation="relu")
    net = Network.of(rng.normal(size=(5, 5)), rng.normal(size=5) * 0.3, layout, model)
    x = rng.normal(size=(40, 2))
    tr = trace(net, x)
    origins = np.arange(2, 5) if mode == "clamp" else np.arange(5)  # clamped inputs hold the data
    returned = returned_logits(net, tr, origins)
    assert np.abs(returned).max() > 1e-3  # there is something to find
    for k, origin in enumerate(origins):
        assert np.allclose(returned[k], _walk_sum_returning(net, x, origin)), origin
