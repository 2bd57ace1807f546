"""The Unstructured Recursive Network (spec section 1), batched over K independent trials.

One dense S x S weight matrix W applied T times to a single state h. The leading dimension K stacks
trials of the same shape, so several trials train as one computation (``trials_per_worker``); a
single trial is simply K = 1. Trials never mix: every operation is per k.
"""
from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "identity": lambda a: a}
# d phi / d a from phi's output h, one per activation (a new activation without its backward is a KeyError,
# never a silent identity)
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
        """
        n_act = self.size - self.n_out  # inputs and hidden go through phi; outputs stay linear
        bias = self.b.unsqueeze(1)
        clamped = x if self.input_mode == "clamp" else None
        h, weights = x, self.W[:, :, :self.n_in]
        readouts = []
        for t in range(1, self.steps + 1):
            if t == self.steps:
                readouts.append(torch.baddbmm(bias[..., n_act:], h, weights[:, n_act:].transpose(1, 2)))
                break
            a = torch.baddbmm(bias, h, weights.transpose(1, 2))
            if self.readout == "all" and t >= self.readout_from:
                readouts.append(a[..., n_act:])
            h, weights = _Activate.apply(a, self.activation, n_act, clamped), self.W
        return torch.stack(readouts)


class _Activate(torch.autograd.Function):
    """h = phi(a) on inputs and hidden, h = a on the outputs, and in `clamp` mode h = x on the inputs.

    Written by hand for speed: autograd through slices and a concatenation (or through masks and
    ``torch.where``) costs several passes over (K, B, S) per step; this is one pass each way plus
    small copies of the output (and clamped input) columns.
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, activation: str, n_act: int, clamped: torch.Tensor | None) -> torch.Tensor:
        h = a.clone() if activation == "identity" else ACTIVATIONS[activation](a)
        h[..., n_act:] = a[..., n_act:]
        n_clamped = 0 if clamped is None else clamped.shape[-1]
        if n_clamped:
            h[..., :n_clamped] = clamped
        ctx.save_for_backward(h)
        ctx.activation, ctx.n_act, ctx.n_clamped = activation, n_act, n_clamped
        return h

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (h,) = ctx.saved_tensors
        grad_a = BACKWARDS[ctx.activation](grad, h)
        grad_a[..., ctx.n_act:] = grad[..., ctx.n_act:]
        grad_a[..., :ctx.n_clamped] = 0.0
        return grad_a, None, None, None


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
