"""Training efficiency: FLOP/s of URN training against torch's own matmul peak at the same shapes.

    .venv/bin/python benchmarks/train_efficiency.py           # S ~ 200, 512, 1024, 2000: about a minute on 2 cores
    .venv/bin/python benchmarks/train_efficiency.py --smoke   # seconds
    .venv/bin/python benchmarks/train_efficiency.py --trials 8 --sizes 200   # K trials as one batch

Timed: whole epochs of the trial's own training loop (``urn_study.trial._train_epoch``): forward, backward,
Adam and all five regulators on, cosine learning rate, on digits with ``hidden_channels`` picked so that
S = 64 (1 + c) + 10 lies near each size asked for. Structure snapshots and epoch metrics are not timed.

FLOPs counted are the matmuls only, per trial and minibatch of b samples with T steps:
    forward        T      products (b,S) x (S,S)    2 b S^2 each
    input grad     T - 1  products (b,S) x (S,S)    (h_0 is the data: it needs no gradient)
    weight grad    T      products (S,b) x (b,S)
that is (3T - 1) * 2 b S^2, backward about twice the forward. The elementwise work (activation, loss,
regulators, Adam) is O(S^2) or O(b S) per step and counts as overhead against the ratio.

Peak: the same products, same counts, run back to back with ``torch.mm`` (K = 1) or ``torch.bmm`` (K > 1)
at the full batch size on the same device. Ratio = achieved / peak. Every figure is the median of
``--repeats`` runs: the machine may be shared, so run it on a quiet one or repeat it.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, median_seconds, sync  # noqa: E402

from urn_study.config import parse_config  # noqa: E402
from urn_study.trial import _Batch, _train_epoch  # noqa: E402

REGULATORS_ON = {f"regulators.{name}": 1e-5 for name in ("l1", "l2", "locality", "width", "self")}


def digits_channels(size: int) -> int:
    """hidden_channels that brings digits' S = 64 (1 + c) + 10 nearest to ``size``."""
    return max(1, round((size - 74) / 64))


def make_batch(size: int, trials: int, batch_size: int, steps: int, epochs: int) -> _Batch:
    configs = [parse_config({"seed": k, "data.name": "digits", "model.hidden_channels": digits_channels(size),
                             "model.steps": steps, "train.batch_size": batch_size, "train.epochs": epochs,
                             "train.snapshot_every": epochs, **REGULATORS_ON})
               for k in range(trials)]
    return _Batch(configs)


def matmul_flops(trials: int, samples: int, size: int, steps: int) -> float:
    return trials * (3 * steps - 1) * 2.0 * samples * size**2


def training_seconds(batch: _Batch, epochs: int, repeats: int) -> tuple[float, int]:
    """Median seconds of one epoch over ``repeats`` epochs (after one warm-up), and samples per epoch."""
    alive = [True] * len(batch.configs)
    _train_epoch(batch, 0, alive)
    samples = []
    for epoch in range(1, min(repeats, epochs - 1) + 1):
        sync(batch.device)
        start = time.perf_counter()
        _train_epoch(batch, epoch, alive)
        sync(batch.device)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), batch.x_train.shape[1]


def matmul_peak_seconds(trials: int, batch_size: int, size: int, steps: int, device: torch.device,
                        repeats: int) -> float:
    """Seconds torch needs for the step's products at full batch size (see the module docstring)."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    h, grad = (torch.randn(trials, batch_size, size, generator=gen).to(device) for _ in range(2))
    w = torch.randn(trials, size, size, generator=gen).to(device)
    if trials == 1:
        h, grad, w = h[0], grad[0], w[0]
        mm, t = torch.mm, (lambda x: x.t())
    else:
        mm, t = torch.bmm, (lambda x: x.transpose(1, 2))

    def products() -> None:
        for _ in range(steps):
            mm(h, t(w))  # forward
        for _ in range(steps - 1):
            mm(grad, w)  # gradient of the state
        for _ in range(steps):
            mm(t(grad), h)  # gradient of W

    return median_seconds(products, device, repeats)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 512, 1024, 2000])
    parser.add_argument("--trials", type=int, default=1, help="K trials trained as one batch")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3, help="T, the URN's recursion steps")
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs (and peak runs); medians reported")
    parser.add_argument("--smoke", action="store_true", help="one small size, two repeats: seconds")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.repeats = [200], 2

    epochs = args.repeats + 2
    first = make_batch(args.sizes[0], args.trials, args.batch_size, args.steps, epochs)
    print("train_efficiency |", describe(first.device))
    print(f"K = {args.trials} trial(s) per batch, B = {args.batch_size}, T = {args.steps}, all five regulators on; "
          f"medians of {args.repeats} epochs (training) and {args.repeats} runs (peak)")
    print(f"{'S':>5} {'samples':>7} {'ms/epoch':>9} {'ms/step':>8} {'train GFLOP/s':>14} {'mm peak GFLOP/s':>16} "
          f"{'ratio':>6}")
    for i, target in enumerate(args.sizes):
        batch = first if i == 0 else make_batch(target, args.trials, args.batch_size, args.steps, epochs)
        size = batch.model.size
        seconds, samples = training_seconds(batch, epochs, args.repeats)
        achieved = matmul_flops(args.trials, samples, size, args.steps) / seconds
        peak_s = matmul_peak_seconds(args.trials, args.batch_size, size, args.steps, batch.device, args.repeats)
        peak = matmul_flops(args.trials, args.batch_size, size, args.steps) / peak_s
        steps_per_epoch = -(-samples // args.batch_size)
        print(f"{size:>5} {samples:>7} {seconds * 1e3:>9.1f} {seconds * 1e3 / steps_per_epoch:>8.2f} "
              f"{achieved / 1e9:>14.1f} {peak / 1e9:>16.1f} {achieved / peak:>6.2f}", flush=True)
        del batch


if __name__ == "__main__":
    main()
