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


def kernel_counters() -> dict[str, float] | None:
    """The whole machine's context switches and CPU ticks so far (Linux ``/proc/stat``; None elsewhere):
    two readings give what happened between them, whoever did it (see ``between``)."""
    try:
        with open("/proc/stat") as f:
            lines = {fields[0]: fields[1:] for fields in map(str.split, f) if fields}
    except OSError:
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in lines["cpu"][:8])
    return {"time": time.time(), "switches": int(lines["ctxt"][0]), "busy": user + nice + system + irq + softirq,
            "kernel": system + irq + softirq, "total": user + nice + system + idle + iowait + irq + softirq + steal}


def between(before: dict | None, after: dict | None) -> dict[str, float] | None:
    """Context switches per second, and the kernel's and idle share of all CPU time, between two readings."""
    if before is None or after is None:
        return None
    ticks = max(after["total"] - before["total"], 1)
    return {"switches_per_s": (after["switches"] - before["switches"]) / max(after["time"] - before["time"], 1e-9),
            "kernel": (after["kernel"] - before["kernel"]) / ticks,
            "idle": 1 - (after["busy"] - before["busy"]) / ticks}


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
