"""The hand-written gradients of the training hot path: the regulators' closed form equals autograd through
the regulator penalty, and the URN's activation backward passes torch's numerical gradient check."""
import itertools

import pytest
import torch

from urn_study.config import REGULATORS
from urn_study.model import ACTIVATIONS, URN, initial_weights
from urn_study.regulators import add_regulator_gradient, linear_cost, regulator_penalty, waits

NAMES = REGULATORS  # every regulator the config knows: a new one joins the check by itself


@pytest.mark.parametrize("active", [set(c) for r in range(1, len(NAMES) + 1) for c in itertools.combinations(NAMES, r)],
                         ids=lambda a: "+".join(sorted(a)))
def test_closed_form_regulator_gradient_equals_autograd(active):
    gen = torch.Generator().manual_seed(len(active))
    k, s = 3, 13
    W = torch.randn(k, s, s, generator=gen, dtype=torch.float64)
    W[0, 1, 2] = W[1, 4, 4] = 0.0  # |W| at 0: both sides take the subgradient 0
    distances = torch.rand(k, s, s, generator=gen, dtype=torch.float64)
    strengths = {n: (torch.rand(k, generator=gen, dtype=torch.float64) if n in active else torch.zeros(k, dtype=torch.float64))
                 for n in NAMES}
    strengths["l1"][2] = 0.0  # a trial with a regulator off while another has it on
    mask = torch.stack([waits(s, 3, "waits"), waits(s, 3, "diagonal"), waits(s, 3, "waits")]).double()
    cost = linear_cost(distances, strengths, mask)
    leaf = W.clone().requires_grad_()
    regulator_penalty(leaf, cost, strengths, active).sum().backward()
    grad = torch.full_like(W, 0.5)  # accumulates onto what is there (the task loss's gradient)
    add_regulator_gradient(grad, W, cost, strengths, active)
    torch.testing.assert_close(grad - 0.5, leaf.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("input_mode,readout,steps", [("once", "last", 1), ("once", "last", 3), ("clamp", "all", 3),
                                                      ("once", "all", 4)])
def test_urn_gradients_pass_the_numerical_check(activation, input_mode, readout, steps):
    model = URN(initial_weights([0, 1], 9, 0.5).double(), 3, 2, steps, input_mode, readout, 1, activation).double()
    x = torch.randn(2, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def logits(W, b):
        return torch.func.functional_call(model, {"W": W, "b": b}, (x,))

    W = model.W.detach().clone().requires_grad_()
    b = torch.randn(2, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(3)).requires_grad_()
    assert torch.autograd.gradcheck(logits, (W, b))
