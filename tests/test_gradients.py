"""The hand-written gradients of the training hot path: the regulators' closed form equals autograd through
the regulator penalty, the URN's backward passes torch's numerical gradient check, and the trial's training
steps equal the same training written plainly (autograd, torch.optim.Adam unfused)."""

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from urn_study.adam import Adam
from urn_study.config import REGULATORS, parse_config
from urn_study.model import ACTIVATIONS, URN, initial_weights
from urn_study.regulators import add_regulator_gradient, linear_cost, regulator_penalty, waits
from urn_study.trial import _Batch, _train_epoch

NAMES = REGULATORS  # every regulator the config knows: a new one joins the check by itself


@pytest.mark.parametrize(
    "active",
    [set(c) for r in range(1, len(NAMES) + 1) for c in itertools.combinations(NAMES, r)],
    ids=lambda a: "+".join(sorted(a)),
)
def test_closed_form_regulator_gradient_equals_autograd(active):
    gen = torch.Generator().manual_seed(len(active))
    k, s = 3, 13
    W = torch.randn(k, s, s, generator=gen, dtype=torch.float64)
    W[0, 1, 2] = W[1, 4, 4] = 0.0  # |W| at 0: both sides take the subgradient 0
    distances = torch.rand(k, s, s, generator=gen, dtype=torch.float64)
    strengths = {
        n: (torch.rand(k, generator=gen, dtype=torch.float64) if n in active else torch.zeros(k, dtype=torch.float64))
        for n in NAMES
    }
    strengths["l1"][2] = 0.0  # a trial with a regulator off while another has it on
    mask = torch.stack([waits(s, 3, "waits"), waits(s, 3, "diagonal"), waits(s, 3, "waits")]).double()
    cost = linear_cost(distances, strengths, mask)
    leaf = W.clone().requires_grad_()
    regulator_penalty(leaf, cost, strengths, active).sum().backward()
    grad = torch.full_like(W, 0.5)  # accumulates onto what is there (the task loss's gradient)
    add_regulator_gradient(grad, W, cost, strengths, active)
    torch.testing.assert_close(grad - 0.5, leaf.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize(
    "input_mode,readout,steps",
    [("once", "last", 1), ("once", "last", 2), ("once", "last", 3), ("clamp", "all", 3), ("once", "all", 4)],
)
def test_urn_gradients_pass_the_numerical_check(activation, input_mode, readout, steps):
    model = URN(initial_weights([0, 1], 9, 0.5).double(), 3, 2, steps, input_mode, readout, 1, activation).double()
    x = torch.randn(2, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def logits(W, b):
        return torch.func.functional_call(model, {"W": W, "b": b}, (x,))

    W = model.W.detach().clone().requires_grad_()
    b = torch.randn(2, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(3)).requires_grad_()
    assert torch.autograd.gradcheck(logits, (W, b))


def test_the_input_is_data_and_asking_for_its_gradient_is_refused():
    model = URN(initial_weights([0], 9, 0.5), 3, 2, 2)
    with pytest.raises(ValueError, match="input x is data"):
        model(torch.randn(1, 4, 3, requires_grad=True))


# Every regulator on in some trial, each at its own strength, one off in one trial, both scopes of `self`.
PACK = [
    {"seed": 0, "regulators.l1": 1e-3, "regulators.locality": 1e-3, "regulators.width": 1e-2, "regulators.self": 1e-2},
    {
        "seed": 1,
        "regulators.l2": 1e-2,
        "regulators.locality": 2e-3,
        "regulators.locality_alpha": 2.0,
        "regulators.self": 1e-2,
        "regulators.self_scope": "waits",
    },
    {
        "seed": 2,
        "model.init_scale": 0.1,
        "regulators.l1": 1e-3,
        "regulators.l2": 1e-3,
        "regulators.width": 1e-3,
        "regulators.self": {"kind": "step", "before": 0.0, "after": 1e-2, "epoch": 1},
    },
]
STEP_EPOCHS = 2


def _plain_training(batch, configs):
    """The training of ``_train_epoch`` written plainly: the dense URN through autograd (concatenations, no
    hand-written backward, every product over all of W), each regulator from its definition through autograd,
    torch.optim.Adam unfused, the cosine learning rate. float64 on the CPU; returns W, b and Adam's state."""
    first = configs[0]
    W = torch.tensor(batch.initial, dtype=torch.float64).requires_grad_()
    b = torch.zeros(W.shape[:2], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([W, b], lr=first.train.lr, foreach=False, fused=False)
    x_all, y_all = batch.x_train.cpu().double(), batch.y_train.cpu()
    n_in, n_out, size, steps = x_all.shape[-1], batch.layouts[0].n_out, W.shape[-1], first.model.steps
    n_act = size - n_out
    phi = {"relu": torch.relu, "tanh": torch.tanh, "identity": lambda a: a}[first.model.activation]
    # strengths and wiring costs rounded to float32 as the trial holds them (Adam magnifies their rounding)
    distances = torch.tensor(np.stack([lay.distances for lay in batch.layouts]), dtype=torch.float32)
    wiring = [(distances[k] ** torch.tensor(c.regulators.locality_alpha)).double() for k, c in enumerate(configs)]
    waits_masks = torch.zeros_like(W)
    for k, c in enumerate(configs):
        waits_masks[k] = torch.eye(size, dtype=torch.float64)
        if c.regulators.self_scope == "waits":
            waits_masks[k, n_act:, n_act:] = 1.0
    n, rows = x_all.shape[1], torch.arange(len(configs)).unsqueeze(1)
    for epoch in range(STEP_EPOCHS):
        order = torch.tensor(np.stack([np.random.default_rng([c.seed, epoch]).permutation(n) for c in configs]))
        for start in range(0, n, first.train.batch_size):
            idx = order[:, start : start + first.train.batch_size]
            x, y = x_all[rows, idx], y_all[rows, idx]
            h = torch.cat([x, x.new_zeros(*x.shape[:2], size - n_in)], dim=-1)
            readouts = []
            for t in range(1, steps + 1):
                a = h @ W.transpose(1, 2) + b.unsqueeze(1)
                if t == steps or (first.model.readout == "all" and t >= first.model.readout_from):
                    readouts.append(a[..., n_act:])
                h = torch.cat([phi(a[..., :n_act]), a[..., n_act:]], dim=-1)
                if first.model.input_mode == "clamp":
                    h = torch.cat([x, h[..., n_in:]], dim=-1)
            loss = sum(
                torch.nn.functional.cross_entropy(logits[k], y[k]) / len(readouts)
                for logits in readouts
                for k in range(len(configs))
            )
            for k, c in enumerate(configs):
                s = {name: float(np.float32(c.regulators.schedule(name).at(epoch))) for name in NAMES}
                w = W[k]
                loss = loss + (
                    s["l1"] * w.abs().sum()
                    + s["l2"] * (w**2).sum()
                    + s["locality"] * (w.abs() * wiring[k]).sum()
                    + s["width"] * torch.sqrt((w**2).sum(0) + (w**2).sum(1) + 1e-12).sum()
                    + s["self"] * (w.abs() * waits_masks[k]).sum()
                )
            for group in optimizer.param_groups:
                progress = epoch + start / n
                group["lr"] = first.train.lr * 0.5 * (1 + math.cos(math.pi * progress / first.train.epochs))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return W.detach(), b.detach(), optimizer.state[W], optimizer.state[b]


def _double(batch):
    """The trial's batch in float64 (so that the comparison is not drowned in float32 rounding, which Adam
    magnifies on small gradients)."""
    batch.model.double()
    batch.costs, batch.waits = batch.costs.double(), batch.waits.double()
    batch.data_for_epoch(0)
    batch.x_train, batch.x_test = batch.x_train.double(), batch.x_test.double()
    return batch


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(
                not torch.cuda.is_available(), reason="no CUDA device here: the CUDA path of the training step runs where one is"
            ),
        ),
    ],
)
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("input_mode,readout", [("clamp", "all"), ("once", "last")])
def test_training_steps_equal_plain_autograd_and_unfused_adam(device, activation, input_mode, readout):
    """The trial's own epochs (hand-written backward, closed-form regulators, fused Adam) against
    ``_plain_training``: K = 3 trials, every regulator, several steps (3 per epoch), float64."""
    configs = [
        parse_config(
            {
                "data.name": "digits",
                "model.hidden_channels": 1,
                "model.steps": 3,
                "model.activation": activation,
                "model.input_mode": input_mode,
                "model.readout": readout,
                "train.batch_size": 512,
                "train.epochs": STEP_EPOCHS + 1,
                "train.device": device,
                **t,
            }
        )
        for t in PACK
    ]
    batch = _double(_Batch(configs))
    for epoch in range(STEP_EPOCHS):
        _train_epoch(batch, epoch, [True] * len(configs))
    W, b, W_moments, b_moments = _plain_training(batch, configs)
    assert not torch.allclose(W, torch.tensor(batch.initial, dtype=torch.float64), atol=1e-3)  # it trained
    torch.testing.assert_close(batch.model.W.detach().cpu(), W, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(batch.model.b.detach().cpu(), b, rtol=1e-9, atol=1e-12)
    state = batch.optimizer.state
    for param, moments in ((batch.model.W, W_moments), (batch.model.b, b_moments)):
        assert int(state[param]["step"]) == int(moments["step"]) == STEP_EPOCHS * 3
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(state[param][key].cpu(), moments[key], rtol=1e-9, atol=1e-15)


def test_adams_fallback_steps_as_the_fused_kernel_from_a_loaded_state():
    """Where the fused kernel does not run (a device other than CPU and CUDA), torch's own Adam steps on the same
    state: here forced on the CPU, from a state loaded before the first step (a resume), against the fused path."""
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(2, 5, 5, generator=gen, dtype=torch.float64)
    grads = [torch.randn(2, 5, 5, generator=gen, dtype=torch.float64) for _ in range(4)]
    loaded = {"step": torch.tensor(3.0), "exp_avg": 0.1 * grads[0], "exp_avg_sq": grads[1] ** 2}
    results = []
    for fused in (True, False):
        w = start.clone().requires_grad_()
        adam = Adam([w], lr=0.01)
        adam.fused = fused
        adam.state[w] = {key: value.clone() for key, value in loaded.items()}
        for k, g in enumerate(grads):
            adam.lr = 0.01 / (k + 1)  # changed between steps, as the schedule does
            w.grad = g.clone()
            adam.step()
        results.append((w.detach(), adam.state[w]))
    (w_fused, fused_state), (w_torch, torch_state) = results
    assert not torch.equal(w_fused, start)
    torch.testing.assert_close(w_torch, w_fused, rtol=1e-12, atol=1e-15)
    assert int(torch_state["step"]) == int(fused_state["step"]) == 3 + len(grads)
    for key in ("exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(torch_state[key], fused_state[key], rtol=1e-12, atol=1e-15)


def test_a_process_that_trains_does_not_import_torchs_compiler():
    """torch.optim's optimisers import torch._dynamo when built (about 1.9 s of CPU in every fresh trial process):
    a trial's training does without it."""
    code = (
        "import sys\n"
        "from urn_study.config import parse_config\n"
        "from urn_study.trial import run_trial\n"
        "run_trial(parse_config({'data.name': 'nlgp', 'data.side': 8, 'data.n_samples': 100, 'train.epochs': 2}))\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "False"
