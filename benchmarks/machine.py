"""The machine a benchmark ran on, printed above its figures so numbers are never read without it."""
from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Callable

import torch


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe(device: torch.device) -> str:
    """One line: date, CPU model, cores, torch threads, torch version, device."""
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return (f"{time.strftime('%Y-%m-%d %H:%M')} | {cpu_model()} | {os.cpu_count()} cores, torch threads "
            f"{torch.get_num_threads()} | torch {torch.__version__} | device {device} ({where}) | "
            f"load average {os.getloadavg()[0]:.1f}")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(run: Callable[[], None], device: torch.device, repeats: int, min_seconds: float = 0.2) -> float:
    """Median over ``repeats`` of the seconds one ``run()`` takes; each repeat loops ``run`` for about
    ``min_seconds`` so that short calls are timed over many. The machine is shared, hence the median."""
    run()
    sync(device)
    start = time.perf_counter()
    run()
    sync(device)
    calls = max(1, int(min_seconds / max(time.perf_counter() - start, 1e-9)))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            run()
        sync(device)
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)


def timed_trial(config) -> tuple[float, float, int, float]:
    """One ``run_trial(config)`` in this process, its result dropped: its (start, end) wall-clock times
    (``time.time``), torch's threads and the trial's own ``seconds`` (its training loop). The plain worker of
    sweep_overhead.py, here so that a spawned pool worker can import it by name."""
    from urn_study.trial import run_trial

    start = time.time()
    result = run_trial(config)
    return start, time.time(), torch.get_num_threads(), float(result.metrics["seconds"])
