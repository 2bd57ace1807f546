"""Adam for a trial batch's parameters: torch's fused Adam update, its one kernel called directly.

Not ``torch.optim.Adam`` itself, for two costs a trial pays and its result does not need:
- constructing a ``torch.optim`` optimiser (and its first ``step()``) imports torch's compiler, ``torch._dynamo``:
  about 1.9 s of CPU in every fresh process that trains, more than a small trial's whole training, paid by every
  Ray worker of a sweep;
- the Python of ``step()`` around the kernel (hooks, checks, grouping the tensors by device and type) costs about
  0.25 ms per training step, where it runs cold after the products (S = 522: 0.55 against 0.27 ms; S = 202: 0.37
  against 0.12 ms of one thread's CPU time).

The update is torch's own fused Adam (``torch.optim.adam._fused_adam``, which makes these same two calls), and the
state has ``torch.optim.Adam.state``'s layout (``step`` on the parameters' device, as fused Adam keeps it;
``exp_avg``, ``exp_avg_sq``), which checkpoints read and write. Where the fused kernel does not run (a device other
than CPU and CUDA), ``torch.optim.Adam`` steps on that same state. ``tests/test_gradients.py`` holds the result to
unfused ``torch.optim.Adam``.
"""

from __future__ import annotations

from typing import Iterable

import torch

FUSED_DEVICES = ("cpu", "cuda")


class Adam:
    """Adam (no weight decay, no amsgrad) over ``params``; ``lr`` may change between steps."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = list(params)
        self.lr, self.betas, self.eps = lr, betas, eps
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}
        self.fused = all(p.device.type in FUSED_DEVICES for p in self.params)
        self._torch: torch.optim.Adam | None = None  # torch's own, built only where the fused kernel does not run

    def step(self) -> None:
        """One update from each parameter's ``.grad`` (a parameter without one is left as it is)."""
        params = [p for p in self.params if p.grad is not None]
        if not params:
            return
        if not self.fused:
            self._torch_step()
            return
        for p in params:
            if p not in self.state:
                self.state[p] = {
                    "step": torch.zeros((), dtype=torch.float32, device=p.device),
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                }
        states = [self.state[p] for p in params]
        steps = [s["step"] for s in states]
        torch._foreach_add_(steps, 1)
        beta1, beta2 = self.betas
        torch._fused_adam_(
            params,
            [p.grad for p in params],
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [],
            steps,
            lr=self.lr,
            beta1=beta1,
            beta2=beta2,
            weight_decay=0.0,
            eps=self.eps,
            amsgrad=False,
            maximize=False,
        )

    def _torch_step(self) -> None:
        if self._torch is None:
            self._torch = torch.optim.Adam(self.params, lr=self.lr, betas=self.betas, eps=self.eps)
            self._torch.state.update(self.state)  # a resumed state, loaded before the first step
            self.state = self._torch.state  # one state: what torch's steps change, checkpoints read
        for group in self._torch.param_groups:
            group["lr"] = self.lr
        self._torch.step()
