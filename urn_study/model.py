"""The Unstructured Recursive Network (spec section 1), batched over K independent trials.

One dense S x S weight matrix W applied T times to a single state h. The leading dimension K stacks
trials of the same shape, so several trials train as one computation (``trials_per_worker``); a
single trial is simply K = 1. Trials never mix: every operation is per k.
"""
from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "identity": lambda a: a}


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
        self.phi = ACTIVATIONS[activation]

    @property
    def size(self) -> int:
        return self.W.shape[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (K, B, n_in) -> logits (R, K, B, n_out), one entry per read-out step (R = 1 for `last`)."""
        k, batch, _ = x.shape
        hidden_zeros = x.new_zeros(k, batch, self.size - self.n_in)
        h = torch.cat([x, hidden_zeros], dim=-1)
        n_act = self.size - self.n_out  # inputs and hidden go through phi; outputs stay linear
        weights_t = self.W.transpose(1, 2)
        readouts = []
        for t in range(1, self.steps + 1):
            a = torch.baddbmm(self.b.unsqueeze(1), h, weights_t)
            if self.input_mode == "clamp":
                h = torch.cat([x, self.phi(a[..., self.n_in:n_act]), a[..., n_act:]], dim=-1)
            else:
                h = torch.cat([self.phi(a[..., :n_act]), a[..., n_act:]], dim=-1)
            if t == self.steps or (self.readout == "all" and t >= self.readout_from):
                readouts.append(h[..., n_act:])
        return torch.stack(readouts)


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
