"""The Unstructured Recursive Network (spec section 1), batched over K independent trials.

One dense S x S weight matrix W applied T times to a single state h. The leading dimension K stacks
trials of the same shape, so several trials train as one computation (``trials_per_worker``); a
single trial is simply K = 1. Trials never mix: every operation is per k.
"""

from __future__ import annotations

import torch
from torch import nn

# phi applied in place (to a slice of the pre-activation, which becomes the state)
ACTIVATIONS = {"relu": torch.relu_, "tanh": torch.tanh_, "identity": lambda a: a}
# d phi / d a from phi's output h, one per activation (a new activation without its backward is a KeyError,
# never a silent identity); each returns a new tensor
BACKWARDS = {
    "relu": lambda grad, h: torch.ops.aten.threshold_backward(grad, h, 0),  # relu's own backward: grad where h > 0
    "tanh": lambda grad, h: torch.ops.aten.tanh_backward(grad, h),  # grad * (1 - h^2)
    "identity": lambda grad, h: grad.clone(),
}


class URN(nn.Module):
    """K stacked URNs. W[k, i, j] is trial k's connection from neuron j to neuron i."""

    def __init__(
        self,
        initial_weights: torch.Tensor,  # (K, S, S)
        n_in: int,
        n_out: int,
        steps: int,
        input_mode: str = "once",
        readout: str = "last",
        readout_from: int = 1,
        activation: str = "relu",
    ):
        super().__init__()
        k, s, _ = initial_weights.shape
        self.W = nn.Parameter(initial_weights.clone())
        self.b = nn.Parameter(torch.zeros(k, s, dtype=initial_weights.dtype, device=initial_weights.device))
        self.n_in, self.n_out, self.steps = n_in, n_out, steps
        self.input_mode, self.readout, self.readout_from = input_mode, readout, readout_from
        self.activation = activation

    @property
    def size(self) -> int:
        return self.W.shape[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (K, B, n_in) -> logits (R, K, B, n_out), one entry per read-out step (R = 1 for `last`).

        Two products shrink to the part of W that can change the result: h_0 = [x, 0, ..., 0] needs only
        W's input columns, and at step T only the (linear) outputs are read, so only W's output rows.
        x is data: no gradient flows to it.
        """
        if x.requires_grad:
            raise ValueError("the URN's input x is data: it gets no gradient (detach it)")
        return _Recursion.apply(self.W, self.b, x, *self.settings)

    @property
    def settings(self) -> tuple:
        return self.steps, self.n_out, self.input_mode, self.readout, self.readout_from, self.activation

    @torch.no_grad()
    def forward_keeping_states(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Training's forward without autograd: the logits and the states ``set_gradients`` needs."""
        return recursion_forward(self.W, self.b, x, *self.settings)

    @torch.no_grad()
    def set_gradients(self, states: list[torch.Tensor], grad_logits: torch.Tensor) -> None:
        """W.grad and b.grad from the logits' gradient (new tensors: W.grad takes over the one the products
        wrote, no copy)."""
        self.W.grad, self.b.grad = recursion_backward(self.W, states, grad_logits, *self.settings)


class _Recursion(torch.autograd.Function):
    """The T steps through autograd (``recursion_forward`` and ``recursion_backward``), for callers that want
    the URN as an ordinary differentiable function. Training calls the two directly (``trial._train_step``)."""

    @staticmethod
    def forward(ctx, W, b, x, steps, n_out, input_mode, readout, readout_from, activation):
        settings = steps, n_out, input_mode, readout, readout_from, activation
        logits, states = recursion_forward(W, b, x, *settings)
        ctx.save_for_backward(W, *states)
        ctx.settings = settings
        return logits

    @staticmethod
    def backward(ctx, grad_logits):
        W, *states = ctx.saved_tensors
        grad_W, grad_b = recursion_backward(W, states, grad_logits, *ctx.settings)
        return grad_W, grad_b, None, None, None, None, None, None, None


def recursion_forward(
    W: torch.Tensor,
    b: torch.Tensor,
    x: torch.Tensor,
    steps: int,
    n_out: int,
    input_mode: str,
    readout: str,
    readout_from: int,
    activation: str,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The T steps, with h = phi(a) on inputs and hidden, h = a on the outputs, and in `clamp` mode h = x on the
    inputs. Returns the logits (R, K, B, n_out) and the states h_0 = x, ..., h_{T-1} that ``recursion_backward``
    needs. No autograd: the caller decides (``_Recursion``, or training's own step)."""
    n_in, n_act = x.shape[-1], W.shape[-1] - n_out  # inputs and hidden go through phi; outputs stay linear
    bias = b.unsqueeze(1)
    h, weights, states, readouts = x, W[:, :, :n_in], [x], []
    for t in range(1, steps + 1):
        if t == steps:
            readouts.append(torch.baddbmm(bias[..., n_act:], h, weights[:, n_act:].transpose(1, 2)))
            break
        h = torch.baddbmm(bias, h, weights.transpose(1, 2))
        if readout == "all" and t >= readout_from:
            readouts.append(h[..., n_act:])  # the outputs are linear: phi below leaves them
        ACTIVATIONS[activation](h[..., :n_act])
        if input_mode == "clamp":
            h[..., :n_in] = x
        states.append(h)
        weights = W
    return torch.stack(readouts), states


def recursion_backward(
    W: torch.Tensor,
    states: list[torch.Tensor],
    grad_logits: torch.Tensor,
    steps: int,
    n_out: int,
    input_mode: str,
    readout: str,
    readout_from: int,
    activation: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """W's and b's gradients from the logits' (``recursion_forward``'s states, h_0 = x first), written by hand.

    By hand for speed: autograd would give W's gradient as one (K, S, S) tensor per use of W, the two
    sliced uses (input columns at step 1, output rows at step T) each zero-filled to full size, then add
    them up: about five passes over (K, S, S) per training step besides the products. Here every product
    for W's gradient writes into one tensor (the first full one without reading it, the others adding
    in place, as the matrix product itself does). The activation works in place on the pre-activation.
    """
    n_in, n_act = states[0].shape[-1], W.shape[-1] - n_out
    grad_b = W.new_zeros(W.shape[:2])
    # (rows, columns of W, gradient of that step's pre-activation, the state it multiplied)
    products = [(slice(n_act, None), slice(None, n_in) if steps == 1 else slice(None), grad_logits[-1], states[-1])]
    grad_b[:, n_act:].add_(grad_logits[-1].sum(dim=1))  # in place on the view (``+=`` would copy it back too)
    grad_h = torch.bmm(grad_logits[-1], W[:, n_act:]) if steps > 1 else None
    for t in range(steps - 1, 0, -1):
        grad_a = BACKWARDS[activation](grad_h, states[t])
        outputs = grad_a[..., n_act:]  # linear: the state's gradient itself, plus this step's readout's
        if readout == "all" and t >= readout_from:
            torch.add(grad_h[..., n_act:], grad_logits[t - readout_from], out=outputs)
        else:
            outputs.copy_(grad_h[..., n_act:])
        if input_mode == "clamp":
            grad_a[..., :n_in] = 0.0
        grad_b += grad_a.sum(dim=1)
        products.append((slice(None), slice(None, n_in) if t == 1 else slice(None), grad_a, states[t - 1]))
        if t > 1:
            grad_h = torch.bmm(grad_a, W)
    full = [(g, h) for rows, cols, g, h in products if rows == cols == slice(None)]
    if full:
        grad_W = torch.bmm(full[0][0].transpose(1, 2), full[0][1])
        for g, h in full[1:]:
            grad_W.baddbmm_(g.transpose(1, 2), h)
    else:  # T <= 2: W's gradient is zero outside the input columns and output rows
        grad_W = torch.zeros_like(W)
    for rows, cols, g, h in products:
        if not rows == cols == slice(None):
            grad_W[:, rows, cols].baddbmm_(g.transpose(1, 2), h)
    return grad_W, grad_b


def initial_weights(seeds: list[int], size: int, scale: float) -> torch.Tensor:
    """Dense i.i.d. normal W per trial, each from its own seed (nothing layered is built in)."""
    mats = [torch.randn(size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float32) * scale for seed in seeds]
    return torch.stack(mats)


def pick_device(requested: str = "auto") -> torch.device:
    """``auto``: CUDA where present, else CPU."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but no CUDA device is visible")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)
