"""How many URN trials of one shape train together in one worker (a study's ``trials_per_worker``): the number the
study gives, or, under ``auto`` (the default), one chosen from the trials' size and the device. Pure: the caller
says how many packs can run at once and how much GPU memory a pack may take.

The CPU rule comes from ``benchmarks/trials_per_worker.py`` (benchmarks/README.md): K trials share one step's fixed
cost (about a hundred small operations through Python and autograd, ~1 ms), which outweighs the products of a small
network (S ~ 200: about 0.5 ms of matmul a trial-step) and not of a large one (S ~ 1000: ~13 ms). So a pack grows
until it holds about ``CPU_PACK_WORK`` weights (K S^2), at most ``CPU_MAX_PER_PACK``. On a GPU the products of a
few hundred small networks cost what one does; K is bounded by memory (``trial_bytes`` against half the GPU share a
trial gets, and the batch limit of ``urn_study.trial``) and by ``GPU_MAX_PER_PACK``, because reading a trial's
structure runs on the worker's CPU, one trial after another. Either way a pack never takes so many trials that
packs are fewer than the workers that can run them (a smoke run of two trials on two cores stays two packs)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from urn_study.config import TrialConfig
from urn_study.data import lattice_shape_of, n_classes_of

AUTO = "auto"
CPU_PACK_WORK = 330_000  # K S^2 of a CPU pack: 8 trials at S = 202, 2 at S = 394, 1 from S = 407 on
CPU_MAX_PER_PACK = 8  # trials_per_worker.py: K = 4 and 8 give about the same trials per hour at S = 202
GPU_MAX_PER_PACK = 64  # the worker's CPU reads 64 trials' structure while a GPU trains them in about one's time
GPU_MEMORY_SHARE = 0.5  # of the GPU share a pack gets: room for the allocator's caching and the evaluation batches
DATASET_SAMPLES = {"digits": 1797, "digits_permuted": 1797, "mnist": 70_000}  # fixed datasets' sizes
MAX_PACK_GIB = 16  # urn_study.trial.MAX_TRAINING_GIB: what one batch of trials may take


def network_size(config: TrialConfig) -> int:
    """S: inputs, hidden channels of them, outputs (the layout of ``urn_study.layout``), without loading data."""
    n_in = math.prod(lattice_shape_of(config.data))
    return n_in * (1 + config.model.hidden_channels) + n_classes_of(config.data.name)


def trial_bytes(config: TrialConfig) -> int:
    """What one trial holds while it trains: the T states of a batch kept for the backward pass (and their
    gradients), W with its gradient, Adam's two moments, the wiring costs and masks (nine S x S in all), and its
    data on the device (float32)."""
    size, steps, batch = network_size(config), config.model.steps, config.train.batch_size
    n_in = math.prod(lattice_shape_of(config.data))
    samples = DATASET_SAMPLES.get(config.data.name, config.data.n_samples)  # generated data: n_samples
    return 4 * (3 * steps * batch * size + 9 * size * size + samples * n_in)


@dataclass(frozen=True)
class Packing:
    """The trials per pack a sweep uses, and why (shown on the sweep's start line)."""

    per_pack: int
    reason: str


def choose(
    setting: int | str, configs: list[TrialConfig], slots: float, gpu_bytes: float | None = None, one_at_a_time: bool = False
) -> Packing:
    """``setting``: the study's ``trials_per_worker`` (a number wins; ``auto``: chosen here). ``configs``: the
    study's trials; ``slots``: packs that can run at once (the cluster's CPUs, or GPUs, over a trial's);
    ``gpu_bytes``: the GPU memory a pack may take (None: trials run on CPUs); ``one_at_a_time``: the searcher asks
    for one trial at a time (Optuna, the boundary search): 1 under ``auto``."""
    if setting != AUTO:
        return Packing(int(setting), "set by the study")
    if one_at_a_time:
        return Packing(1, "auto: the searcher asks for one trial at a time")
    size = max(network_size(c) for c in configs)
    per_trial = max(trial_bytes(c) for c in configs)
    by_memory = max(1, int(MAX_PACK_GIB * 2**30 // per_trial))
    if gpu_bytes is None:
        by_size = max(1, min(CPU_MAX_PER_PACK, CPU_PACK_WORK // size**2))
        why = f"S = {size} on CPU"
    else:
        by_memory = max(1, min(by_memory, int(GPU_MEMORY_SHARE * gpu_bytes // per_trial)))
        by_size = GPU_MAX_PER_PACK
        why = f"S = {size}, {per_trial / 2**20:.1f} MiB a trial, {gpu_bytes / 2**30:.1f} GiB of GPU a pack"
    by_workers = max(1, math.ceil(len(configs) / max(1.0, slots)))
    per_pack = min(by_size, by_memory, by_workers)
    limit = {by_size: "size", by_memory: "memory", by_workers: f"{len(configs)} trials on {slots:g} workers"}[per_pack]
    return Packing(per_pack, f"auto: {why}; bound by {limit}")


UNKNOWN_GPU_BYTES = 16 * 2**30  # a GPU the driver cannot see (a cluster's worker): the smallest common one's memory


def local_gpu_bytes() -> int | None:
    """Free memory of this machine's first CUDA device, or None where there is none (the trials' GPUs are on other
    nodes: the caller assumes ``UNKNOWN_GPU_BYTES``)."""
    import torch

    if not torch.cuda.is_available():
        return None
    return int(torch.cuda.mem_get_info(0)[0])
