"""The regulator terms of the single loss (spec section 3), per trial of a stacked batch.

All five take W of shape (K, S, S) and return one value per trial (K,), unscaled; the trial multiplies
them by each trial's strength at the current epoch (see ``Schedule``).
"""

from __future__ import annotations

import torch

from urn_study.config import REGULATORS, TrialConfig


def wiring_costs(distances: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """d_ij ** alpha per trial: distances (K, S, S), alpha (K,)."""
    return distances.clamp_min(0.0) ** alpha.view(-1, 1, 1)


def waits(size: int, n_out: int, scope: str = "diagonal") -> torch.Tensor:
    """The connections the ``self`` regulator prices, as an (S, S) 0/1 mask. ``diagonal`` (the spec): the
    self-connections W_ii. ``waits``: also every connection among the linear outputs (the last n_out), which the
    functional depth counts as waits too (a hop between outputs adds no layer): without it, a network priced off
    its self-connections carries a step-1 linear readout to the last step through another output instead."""
    mask = torch.eye(size)
    if scope == "waits":
        mask[size - n_out :, size - n_out :] = 1.0
    return mask


def regulator_values(W: torch.Tensor, costs: torch.Tensor, waits: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Unscaled value of every regulator for each trial: name -> (K,). ``waits``: the mask of ``self`` per trial
    (K, S, S) or shared (S, S); the diagonal when None."""
    absw = W.abs()
    # Group norm over neuron j: its outgoing column and incoming row together (W_jj counted twice).
    neuron_norms = torch.sqrt((W**2).sum(dim=1) + (W**2).sum(dim=2) + 1e-12)
    return {
        "l1": absw.sum(dim=(1, 2)),
        "l2": (W**2).sum(dim=(1, 2)),
        "locality": (absw * costs).sum(dim=(1, 2)),
        "width": neuron_norms.sum(dim=1),
        "self": torch.diagonal(absw, dim1=1, dim2=2).sum(dim=1) if waits is None else (absw * waits).sum(dim=(1, 2)),
    }


def strengths_at(configs: list[TrialConfig], epoch: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Each regulator's strength per trial at this epoch: name -> (K,)."""
    return {
        name: torch.tensor([c.regulators.schedule(name).at(epoch) for c in configs], dtype=torch.float32, device=device)
        for name in REGULATORS
    }


def linear_cost(costs: torch.Tensor, strengths: dict[str, torch.Tensor], waits: torch.Tensor | None = None) -> torch.Tensor:
    """l1, locality and self are all sum |W| * c_ij: one cost matrix per trial (K, S, S) for the epoch.
    ``waits``: the connections ``self`` prices (see ``waits``), the diagonal when None."""
    if waits is None:
        waits = torch.eye(costs.shape[-1], device=costs.device, dtype=costs.dtype)
    return strengths["l1"].view(-1, 1, 1) + strengths["locality"].view(-1, 1, 1) * costs + strengths["self"].view(-1, 1, 1) * waits


def regulator_penalty(W: torch.Tensor, cost: torch.Tensor, strengths: dict[str, torch.Tensor], active: set[str]) -> torch.Tensor:
    """Sum of strength * regulator per trial (K,). ``cost`` from ``linear_cost``; ``active``: regulators
    on in some trial (the others are skipped, which saves elementwise passes over W). Training uses its
    gradient in closed form (``add_regulator_gradient``); this is the definition it is tested against."""
    total = W.new_zeros(W.shape[0])
    if active & {"l1", "locality", "self"}:
        total = total + (W.abs() * cost).sum(dim=(1, 2))
    if "l2" in active:
        total = total + strengths["l2"] * (W**2).sum(dim=(1, 2))
    if "width" in active:
        norms = torch.sqrt((W**2).sum(dim=1) + (W**2).sum(dim=2) + 1e-12)
        total = total + strengths["width"] * norms.sum(dim=1)
    return total


@torch.no_grad()
def add_regulator_gradient(
    grad: torch.Tensor, W: torch.Tensor, cost: torch.Tensor, strengths: dict[str, torch.Tensor], active: set[str]
) -> None:
    """Add d(sum over trials of ``regulator_penalty``)/dW to ``grad`` in place, in closed form.

    Training needs only this gradient, not the penalty's value; autograd through the penalty costs about
    ten elementwise passes over W per step, this about four. d|W|/dW = sign(W) (0 at 0, as autograd);
    the width term of neuron n, sqrt(|column n|^2 + |row n|^2), gives W_ij (1/norm_i + 1/norm_j).
    """
    if active & {"l1", "locality", "self"}:
        grad.addcmul_(torch.sign(W), cost)
    if "width" in active:
        sq = W * W
        inv_norms = torch.rsqrt(sq.sum(dim=1) + sq.sum(dim=2) + 1e-12) * strengths["width"].view(-1, 1)
        if "l2" in active:
            inv_norms += strengths["l2"].view(-1, 1)  # added twice below: 2 * l2 * W
        grad.addcmul_(W, inv_norms.unsqueeze(1))  # W_ij / norm_j
        grad.addcmul_(W, inv_norms.unsqueeze(2))  # W_ij / norm_i
    elif "l2" in active:
        grad.addcmul_(W, 2.0 * strengths["l2"].view(-1, 1, 1))
