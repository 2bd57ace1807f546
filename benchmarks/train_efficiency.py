"""Training efficiency: FLOP/s of URN training against torch's own matmul peak at the same shapes.

    .venv/bin/python benchmarks/train_efficiency.py           # S ~ 200, 512, 1024, 2000: under a minute on 2 cores
    .venv/bin/python benchmarks/train_efficiency.py --smoke   # seconds
    .venv/bin/python benchmarks/train_efficiency.py --trials 8 --sizes 200   # K trials as one batch
    .venv/bin/python benchmarks/train_efficiency.py --cpu-clock   # one torch thread, timed by its CPU time

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
On a machine too busy for wall time (torch's threads wait on each other when another process holds a core),
``--cpu-clock`` runs torch on one thread and times both sides by that thread's CPU time.
"""

from __future__ import annotations

import argparse
import sys
import time
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
    configs = [
        parse_config(
            {
                "seed": k,
                "data.name": "digits",
                "model.hidden_channels": digits_channels(size),
                "model.steps": steps,
                "train.batch_size": batch_size,
                "train.epochs": EPOCHS,
                "train.snapshot_every": EPOCHS,
                **REGULATORS_ON,
            }
        )
        for k in range(trials)
    ]
    batch = _Batch(configs)
    batch.data_for_epoch(0)
    return batch


def products(batch: _Batch, dense: bool = False) -> Counter:
    """The matmuls of one epoch, per trial: (m, k, n) -> how many (m,k) x (k,n) products."""
    samples, batch_size = batch.x_train.shape[1], batch.configs[0].train.batch_size
    shapes: Counter = Counter()
    for b in (min(batch_size, samples - start) for start in range(0, samples, batch_size)):
        shapes += step_products(b, batch.model.size, batch.model.n_in, batch.model.n_out, batch.model.steps, dense)
    return shapes


def step_products(b: int, size: int, n_in: int, n_out: int, steps: int, dense: bool = False) -> Counter:
    """The matmuls of one training step on b samples, per trial."""
    shapes: Counter = Counter()
    for t in range(1, steps + 1):
        inner = size if dense or t > 1 else n_in
        rows = size if dense or t < steps else n_out
        shapes[(b, inner, rows)] += 1  # forward
        shapes[(rows, b, inner)] += 1  # gradient of W
        if t > 1:
            shapes[(b, rows, inner)] += 1  # gradient of the state
    return shapes


# Passes over a (K, S, S) float32 tensor per training step outside the products (a read or a write of the whole
# tensor each), all five regulators on, T >= 3. The products' own reads of W and writes of W's gradient are
# not counted (they are part of the products). See benchmarks/README.md, "The plan for a GPU".
UPDATE_PASSES = {
    # autograd's two zero-filled slice gradients (2 writes) and the two adds that sum W's three gradients
    # (3 each), then the present regulators and Adam
    "before (autograd slices, eager regulators, fused Adam)": 8 + 16 + 7,
    # sign(W) 2, grad += sign * cost 4, W * W 2, its two sums 2, the two width terms 3 each; fused Adam reads
    # W, grad and both moments and writes W and the moments: 7
    "now (hand-written backward, eager regulators, fused Adam)": 16 + 7,
    # one kernel for the regulators and Adam (reads W, grad, cost, both moments; writes W and the moments)
    # after the two sums of squares that the width needs first (torch.compile's fusion, measured on CPU)
    "fused update (regulators and Adam in one kernel)": 2 + 8,
}
GPUS = {"H100 SXM": 3.35e12, "H200": 4.8e12}  # memory bandwidth, bytes/s
GPU_FP32 = 67e12  # FLOP/s of both without tensor cores (torch's default for float32 matmuls: TF32 off)


def gpu_plan(sizes: list[int], trials: int, batch_size: int, steps: int, n_in: int = 64, n_out: int = 10) -> list[dict]:
    """Per training step of K trials: the bytes of the update's passes over W, their seconds at each GPU's
    bandwidth, the products' seconds at GPU_FP32, and the ratio that predicts (products / both)."""
    rows = []
    for size in sizes:
        matmul = flops(step_products(batch_size, size, n_in, n_out, steps), trials) / GPU_FP32
        for how, passes in UPDATE_PASSES.items():
            moved = passes * 4 * trials * size * size
            for gpu, bandwidth in GPUS.items():
                rows.append(
                    {
                        "S": size,
                        "update": how,
                        "gpu": gpu,
                        "bytes": moved,
                        "update_s": moved / bandwidth,
                        "matmul_s": matmul,
                        "ratio": matmul / (matmul + moved / bandwidth),
                    }
                )
    return rows


def flops(shapes: Counter, trials: int) -> float:
    return trials * sum(2.0 * m * k * n * count for (m, k, n), count in shapes.items())


def epoch_seconds(batch: _Batch, repeats: int, clock=time.perf_counter) -> float:
    """Median seconds of one training epoch (see ``median_seconds``)."""
    alive = [True] * len(batch.configs)
    epochs = iter(range(EPOCHS))
    return median_seconds(lambda: _train_epoch(batch, next(epochs), alive), batch.device, repeats, clock=clock)


def matmul_seconds(shapes: Counter, trials: int, device: torch.device, repeats: int, clock=time.perf_counter) -> float:
    """Seconds torch needs for these products, one after another: torch.mm for one trial, else torch.bmm."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    operands = {
        (m, k, n): (torch.randn(trials, m, k, generator=gen).to(device), torch.randn(trials, k, n, generator=gen).to(device))
        for m, k, n in shapes
    }
    if trials == 1:
        operands = {shape: (a[0], b[0]) for shape, (a, b) in operands.items()}
    mm = torch.mm if trials == 1 else torch.bmm

    def run() -> None:
        for shape, count in shapes.items():
            a, b = operands[shape]
            for _ in range(count):
                mm(a, b)

    return median_seconds(run, device, repeats, clock=clock)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 512, 1024, 2000])
    parser.add_argument("--trials", type=int, default=1, help="K trials trained as one batch")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3, help="T, the URN's recursion steps")
    parser.add_argument("--repeats", type=int, default=5, help="timings per figure; medians reported")
    parser.add_argument("--smoke", action="store_true", help="one small size, two repeats: seconds")
    parser.add_argument(
        "--gpu-plan", action="store_true", help="print the plan for a GPU on paper (no timing): S = 1034 and 1994 unless --sizes"
    )
    parser.add_argument(
        "--cpu-clock", action="store_true", help="torch on one thread, training and products timed by its CPU time (a busy machine)"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.repeats = [200], 2
    if args.gpu_plan:
        print_gpu_plan(args.sizes if argv and "--sizes" in argv else [1034, 1994], args.trials, args.batch_size, args.steps)
        return
    clock = time.perf_counter
    if args.cpu_clock:
        torch.set_num_threads(1)
        clock = time.thread_time

    batches = (make_batch(size, args.trials, args.batch_size, args.steps) for size in args.sizes)
    batch = next(batches)
    print("train_efficiency |", describe(batch.device))
    print(
        f"K = {args.trials} trial(s) per batch, B = {args.batch_size}, T = {args.steps}, all five regulators on, "
        f"digits ({batch.x_train.shape[1]} training samples); medians of {args.repeats}"
        + ("; CPU time of torch's one thread" if args.cpu_clock else "; wall time")
    )
    print(
        f"{'S':>5} {'ms/step':>8} {'GFLOP/s':>8} {'mm GFLOP/s':>10} {'ratio':>6}   "
        f"{'dense GFLOP/s':>13} {'mm GFLOP/s':>10} {'dense ratio':>11}"
    )
    while batch is not None:
        seconds = epoch_seconds(batch, args.repeats, clock)
        steps = -(-batch.x_train.shape[1] // args.batch_size)
        row = f"{batch.model.size:>5} {seconds / steps * 1e3:>8.2f}"
        for dense, widths in ((False, (8, 10, 6)), (True, (13, 10, 11))):
            shapes = products(batch, dense)
            work = flops(shapes, args.trials)
            matmul = matmul_seconds(shapes, args.trials, batch.device, args.repeats, clock)
            figures = (work / seconds / 1e9, work / matmul / 1e9, matmul / seconds)
            row += "".join(f" {x:>{w}.{2 if w in (6, 11) else 1}f}" for x, w in zip(figures, widths)) + "  "
        print(row, flush=True)
        batch = next(batches, None)


def print_gpu_plan(sizes: list[int], trials: int, batch_size: int, steps: int) -> None:
    print(
        f"train_efficiency --gpu-plan | on paper: K = {trials}, B = {batch_size}, T = {steps}, float32, products at "
        f"{GPU_FP32 / 1e12:.0f} TFLOP/s"
    )
    print(f"{'S':>5} {'GPU':>9} {'MB/step':>8} {'update us':>9} {'matmul us':>9} {'ratio':>6}  update")
    for row in gpu_plan(sizes, trials, batch_size, steps):
        print(
            f"{row['S']:>5} {row['gpu']:>9} {row['bytes'] / 1e6:>8.1f} {row['update_s'] * 1e6:>9.1f} "
            f"{row['matmul_s'] * 1e6:>9.1f} {row['ratio']:>6.2f}  {row['update']}"
        )


if __name__ == "__main__":
    main()
