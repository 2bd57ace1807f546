"""The URN computes exactly what an explicit layered network computes when W is set to it."""

import numpy as np
import pytest
import torch

from urn_study.model import URN, initial_weights, pick_device
from urn_study.regulators import linear_cost, regulator_penalty, regulator_values, waits


def _mlp_in_urn(widths: list[int], seed: int = 0):
    """Embed an MLP with layer widths [n_in, h1, ..., n_out] into one URN W and bias."""
    rng = np.random.default_rng(seed)
    offsets = np.cumsum([0] + widths)
    size = offsets[-1]
    W, b = np.zeros((size, size)), np.zeros(size)
    layers = []
    for i in range(len(widths) - 1):
        w = rng.normal(size=(widths[i + 1], widths[i]))
        bias = rng.normal(size=widths[i + 1])
        W[offsets[i + 1] : offsets[i + 2], offsets[i] : offsets[i + 1]] = w
        b[offsets[i + 1] : offsets[i + 2]] = bias
        layers.append((w, bias))
    return W, b, layers


def _mlp(x: np.ndarray, layers, phi) -> np.ndarray:
    h = x
    for i, (w, bias) in enumerate(layers):
        h = h @ w.T + bias
        if i < len(layers) - 1:
            h = phi(h)
    return h


@pytest.mark.parametrize("activation,phi", [("relu", lambda a: np.maximum(a, 0)), ("tanh", np.tanh), ("identity", lambda a: a)])
@pytest.mark.parametrize("widths", [[5, 7, 3], [6, 4, 5, 2], [4, 3, 3, 3, 2]])
def test_urn_equals_explicit_layered_network(widths, activation, phi):
    W, b, layers = _mlp_in_urn(widths)
    steps = len(widths) - 1
    model = URN(torch.tensor(W)[None], widths[0], widths[-1], steps, activation=activation).double()
    with torch.no_grad():
        model.b.copy_(torch.tensor(b)[None])
    x = np.random.default_rng(1).normal(size=(11, widths[0]))
    got = model(torch.tensor(x)[None])[-1, 0].detach().numpy()
    np.testing.assert_allclose(got, _mlp(x, layers, phi), rtol=1e-10, atol=1e-10)


def test_clamp_mode_reinjects_input_and_readout_all_returns_each_step():
    W, b, layers = _mlp_in_urn([4, 3, 2])
    model = URN(torch.tensor(W)[None], 4, 2, steps=4, input_mode="clamp", readout="all", readout_from=2).double()
    with torch.no_grad():
        model.b.copy_(torch.tensor(b)[None])
    x = np.random.default_rng(2).normal(size=(5, 4))
    out = model(torch.tensor(x)[None]).detach()
    assert out.shape == (3, 1, 5, 2)  # steps 2, 3, 4
    expected = _mlp(x, layers, lambda a: np.maximum(a, 0))
    for step_out in out:  # with the input clamped, the 2-layer answer holds at every step from 2 on
        np.testing.assert_allclose(step_out[0].numpy(), expected, rtol=1e-10)


def test_once_mode_forgets_input_after_first_step():
    W, b, _ = _mlp_in_urn([4, 3, 2])
    model = URN(torch.tensor(W)[None], 4, 2, steps=3).double()  # depth 2 network, read at step 3
    x = torch.tensor(np.random.default_rng(3).normal(size=(5, 4)))[None]
    # nothing carries the signal a third step: output only sees the (zero) bias path
    assert torch.allclose(model(x)[-1], torch.zeros(1, 5, 2, dtype=torch.float64))


def test_stacked_trials_do_not_mix():
    w = initial_weights([0, 1, 2], 20, 0.3)
    model = URN(w, 8, 4, steps=3)
    x = torch.randn(3, 6, 8)
    out = model(x)[-1]
    for k in range(3):
        single = URN(w[k : k + 1], 8, 4, steps=3)
        torch.testing.assert_close(single(x[k : k + 1])[-1][0], out[k])


def test_initial_weights_are_seeded_dense_and_scaled():
    a, b = initial_weights([5], 50, 0.05), initial_weights([5], 50, 0.05)
    assert torch.equal(a, b)
    assert not torch.equal(a, initial_weights([6], 50, 0.05))
    assert (a != 0).float().mean() > 0.99
    assert abs(a.std().item() - 0.05) < 0.005


def test_regulator_values_by_hand():
    W = torch.tensor([[[1.0, -2.0], [0.0, 3.0]]])
    d = torch.tensor([[[0.0, 2.0], [2.0, 0.0]]])
    v = regulator_values(W, d)
    assert v["l1"].item() == 6.0
    assert v["l2"].item() == 14.0
    assert v["locality"].item() == 4.0  # only the off-diagonal -2 costs distance 2
    assert v["self"].item() == 4.0
    # neuron 0: column (1, 0) and row (1, -2); neuron 1: column (-2, 3) and row (0, 3)
    expected_width = np.sqrt(1 + 0 + 1 + 4) + np.sqrt(4 + 9 + 0 + 9)
    assert v["width"].item() == pytest.approx(expected_width, rel=1e-5)
    strengths = {name: torch.tensor([s]) for name, s in {"l1": 0.1, "l2": 0.01, "locality": 0.5, "width": 0.2, "self": 1.0}.items()}
    penalty = regulator_penalty(W, linear_cost(d, strengths), strengths, set(strengths))
    expected = 0.1 * 6 + 0.01 * 14 + 0.5 * 4 + 0.2 * expected_width + 1.0 * 4
    assert penalty.item() == pytest.approx(expected, rel=1e-5)


def test_self_priced_on_waits_takes_the_block_of_the_outputs():
    W = torch.arange(16.0).view(1, 4, 4) - 8.0  # S = 4, the last two neurons are outputs
    mask = waits(4, 2, "waits")
    assert regulator_values(W, torch.zeros(1, 4, 4))["self"].item() == 8 + 3 + 2 + 7  # |W_ii| alone
    # the diagonal and the outputs' off-diagonal pair W[2, 3] = 3, W[3, 2] = 6
    assert regulator_values(W, torch.zeros(1, 4, 4), mask)["self"].item() == 8 + 3 + 2 + 7 + 3 + 6
    assert torch.equal(waits(4, 2, "diagonal"), torch.eye(4))


@pytest.mark.parametrize("gpu", [True, False], ids=["a-machine-with-a-gpu", "a-machine-without"])
def test_device_is_chosen_at_run_time(monkeypatch, gpu):
    """``auto`` takes the GPU where the process sees one and the CPU where not; asking for CUDA where none is visible
    is one line naming the key; ``cpu`` is the CPU even beside a GPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    assert pick_device("auto") == torch.device("cuda" if gpu else "cpu")
    assert pick_device("cpu") == torch.device("cpu")
    if gpu:
        assert pick_device("cuda") == torch.device("cuda")
    else:
        with pytest.raises(RuntimeError, match="train.device is 'cuda' but no CUDA device is visible"):
            pick_device("cuda")


@pytest.mark.parametrize(
    "hidden_layout,output_position,periodic",
    [("lattice", "uniform", False), ("lattice", "center", True), ("random", "free", False)],
)
def test_saved_layout_keeps_positions_and_gives_back_the_same_distances(tmp_path, hidden_layout, output_position, periodic):
    from urn_study.layout import Layout, make_layout

    layout = make_layout((8, 8), 10, 3, hidden_layout, output_position, periodic, seed=4)
    layout.save(tmp_path / "layout.json")
    back = Layout.load(tmp_path / "layout.json")
    assert "distances" not in (tmp_path / "layout.json").read_text()  # S x S numbers would be most of the file
    assert (back.n_in, back.n_hidden, back.n_out, back.periodic, back.output_position) == (64, 192, 10, periodic, output_position)
    np.testing.assert_array_equal(back.positions, layout.positions)
    np.testing.assert_array_equal(back.distances, layout.distances)
