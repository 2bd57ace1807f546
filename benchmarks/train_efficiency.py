"""Training efficiency: FLOP/s of URN training against torch's own matmul peak at the same shapes.

    .venv/bin/python benchmarks/train_efficiency.py           # S ~ 200, 512, 1024, 2000: under a minute on 2 cores
    .venv/bin/python benchmarks/train_efficiency.py --smoke   # seconds
    .venv/bin/python benchmarks/train_efficiency.py --trials 8 --sizes 200   # K trials as one batch

Timed: whole epochs of the trial's own training loop (``urn_study.trial._train_epoch``): forward, backward,
Adam and all five regulators on, cosine learning rate, on digits with ``hidden_channels`` picked so that
S = 64 (1 + c) + 10 lies near each size asked for. Epoch metrics and structure snapshots are not timed.

FLOPs are the matmuls' (2 m k n for (m,k) x (k,n)), per trial and minibatch of b samples, T steps. Step t
multiplies (b, m_t) x (m_t, r_t): m_1 = n_in (h_0 is zero outside the inputs), m_t = S after; r_T = n_out
(only the outputs are read at step T), r_t = S before. Backward: the gradient of W at every step, the
gradient of the state at steps 2..T (h_0 is data). So per step 2 b m_t r_t forward, as much again for W's
gradient and for the state's (t >= 2): backward about twice the forward. Two counts are printed:
    performed: exactly those products. ratio = performed FLOP/s / torch's FLOP/s on the very same products
               (torch.mm for K = 1, torch.bmm for K > 1, full batch size, back to back, same device):
               the share of training time that runs at matmul speed.
    dense:     (3T - 1) * 2 b S^2, as if every step used all of W. dense ratio = torch's time for the dense
               products / training time: training against the matmul bound of the plain dense URN step
               (above 1 where skipping the zero inputs and unread outputs saves more than the overhead costs).
The elementwise work (activation, loss, regulators, Adam) is O(b S + S^2) per step and counts as overhead.
Every figure is the median of ``--repeats`` runs: the machine may be shared, so repeat on a busy one.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, median_seconds  # noqa: E402

from urn_study.config import parse_config  # noqa: E402
from urn_study.trial import _Batch, _train_epoch  # noqa: E402

REGULATORS_ON = {f"regulators.{name}": 1e-5 for name in ("l1", "l2", "locality", "width", "self")}
EPOCHS = 100_000  # the cosine schedule's length: the timed epochs never reach its end


def digits_channels(size: int) -> int:
    """hidden_channels that brings digits' S = 64 (1 + c) + 10 nearest to ``size``."""
    return max(1, round((size - 74) / 64))


def make_batch(size: int, trials: int, batch_size: int, steps: int) -> _Batch:
    configs = [parse_config({"seed": k, "data.name": "digits", "model.hidden_channels": digits_channels(size),
                             "model.steps": steps, "train.batch_size": batch_size, "train.epochs": EPOCHS,
                             "train.snapshot_every": EPOCHS, **REGULATORS_ON})
               for k in range(trials)]
    batch = _Batch(configs)
    batch.data_for_epoch(0)
    return batch


def products(batch: _Batch, dense: bool = False) -> Counter:
    """The matmuls of one epoch, per trial: (m, k, n) -> how many (m,k) x (k,n) products."""
    size, n_in, n_out, steps = batch.model.size, batch.model.n_in, batch.model.n_out, batch.model.steps
    samples, batch_size = batch.x_train.shape[1], batch.configs[0].train.batch_size
    shapes: Counter = Counter()
    for b in (min(batch_size, samples - start) for start in range(0, samples, batch_size)):
        for t in range(1, steps + 1):
            inner = size if dense or t > 1 else n_in
            rows = size if dense or t < steps else n_out
            shapes[(b, inner, rows)] += 1  # forward
            shapes[(rows, b, inner)] += 1  # gradient of W
            if t > 1:
                shapes[(b, rows, inner)] += 1  # gradient of the state
    return shapes


def flops(shapes: Counter, trials: int) -> float:
    return trials * sum(2.0 * m * k * n * count for (m, k, n), count in shapes.items())


def epoch_seconds(batch: _Batch, repeats: int) -> float:
    """Median seconds of one training epoch (see ``median_seconds``)."""
    alive = [True] * len(batch.configs)
    epochs = iter(range(EPOCHS))
    return median_seconds(lambda: _train_epoch(batch, next(epochs), alive), batch.device, repeats)


def matmul_seconds(shapes: Counter, trials: int, device: torch.device, repeats: int) -> float:
    """Seconds torch needs for these products, one after another: torch.mm for one trial, else torch.bmm."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    operands = {(m, k, n): (torch.randn(trials, m, k, generator=gen).to(device),
                            torch.randn(trials, k, n, generator=gen).to(device)) for m, k, n in shapes}
    if trials == 1:
        operands = {shape: (a[0], b[0]) for shape, (a, b) in operands.items()}
    mm = torch.mm if trials == 1 else torch.bmm

    def run() -> None:
        for shape, count in shapes.items():
            a, b = operands[shape]
            for _ in range(count):
                mm(a, b)

    return median_seconds(run, device, repeats)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 512, 1024, 2000])
    parser.add_argument("--trials", type=int, default=1, help="K trials trained as one batch")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3, help="T, the URN's recursion steps")
    parser.add_argument("--repeats", type=int, default=5, help="timings per figure; medians reported")
    parser.add_argument("--smoke", action="store_true", help="one small size, two repeats: seconds")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.repeats = [200], 2

    batches = (make_batch(size, args.trials, args.batch_size, args.steps) for size in args.sizes)
    batch = next(batches)
    print("train_efficiency |", describe(batch.device))
    print(f"K = {args.trials} trial(s) per batch, B = {args.batch_size}, T = {args.steps}, all five regulators on, "
          f"digits ({batch.x_train.shape[1]} training samples); medians of {args.repeats}")
    print(f"{'S':>5} {'ms/step':>8} {'GFLOP/s':>8} {'mm GFLOP/s':>10} {'ratio':>6}   "
          f"{'dense GFLOP/s':>13} {'mm GFLOP/s':>10} {'dense ratio':>11}")
    while batch is not None:
        seconds = epoch_seconds(batch, args.repeats)
        steps = -(-batch.x_train.shape[1] // args.batch_size)
        row = f"{batch.model.size:>5} {seconds / steps * 1e3:>8.2f}"
        for dense, widths in ((False, (8, 10, 6)), (True, (13, 10, 11))):
            shapes = products(batch, dense)
            work = flops(shapes, args.trials)
            matmul = matmul_seconds(shapes, args.trials, batch.device, args.repeats)
            figures = (work / seconds / 1e9, work / matmul / 1e9, matmul / seconds)
            row += "".join(f" {x:>{w}.{2 if w in (6, 11) else 1}f}" for x, w in zip(figures, widths)) + "  "
        print(row, flush=True)
        batch = next(batches, None)


if __name__ == "__main__":
    main()
