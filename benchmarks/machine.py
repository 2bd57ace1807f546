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
    return (
        f"{time.strftime('%Y-%m-%d %H:%M')} | {cpu_model()} | {os.cpu_count()} cores, torch threads "
        f"{torch.get_num_threads()} | torch {torch.__version__} | device {device} ({where}) | "
        f"load average {os.getloadavg()[0]:.1f}"
    )


def kernel_counters() -> dict[str, float] | None:
    """The whole machine's context switches and CPU ticks so far (Linux ``/proc/stat``; None elsewhere):
    two readings give what happened between them, whoever did it (see ``between``)."""
    try:
        with open("/proc/stat") as f:
            lines = {fields[0]: fields[1:] for fields in map(str.split, f) if fields}
    except OSError:
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in lines["cpu"][:8])
    return {
        "time": time.time(),
        "switches": int(lines["ctxt"][0]),
        "busy": user + nice + system + irq + softirq,
        "kernel": system + irq + softirq,
        "total": user + nice + system + idle + iowait + irq + softirq + steal,
    }


def between(before: dict | None, after: dict | None) -> dict[str, float] | None:
    """Context switches per second, and the kernel's and idle share of all CPU time, between two readings."""
    if before is None or after is None:
        return None
    ticks = max(after["total"] - before["total"], 1)
    return {
        "switches_per_s": (after["switches"] - before["switches"]) / max(after["time"] - before["time"], 1e-9),
        "kernel": (after["kernel"] - before["kernel"]) / ticks,
        "idle": 1 - (after["busy"] - before["busy"]) / ticks,
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(
    run: Callable[[], None],
    device: torch.device,
    repeats: int,
    min_seconds: float = 0.2,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Median over ``repeats`` of the seconds one ``run()`` takes; each repeat loops ``run`` for about
    ``min_seconds`` so that short calls are timed over many. The machine is shared, hence the median.
    ``clock``: wall time, or ``time.thread_time`` (the calling thread's time on a core: with torch on one
    thread, what the run costs whatever else the machine runs)."""
    run()
    sync(device)
    start = clock()
    run()
    sync(device)
    calls = max(1, int(min_seconds / max(clock() - start, 1e-9)))
    samples = []
    for _ in range(repeats):
        start = clock()
        for _ in range(calls):
            run()
        sync(device)
        samples.append((clock() - start) / calls)
    return statistics.median(samples)


def thread_counters() -> dict[str, float] | None:
    """The calling thread's time on a core, time waiting in the run queue for one, and how often it was taken
    off its core against its will (Linux ``/proc/thread-self``; None elsewhere)."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            on_core, waiting, _ = (int(x) for x in f.read().split())
        with open("/proc/thread-self/status") as f:
            status = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return None
    return {"cpu": on_core / 1e9, "wait": waiting / 1e9, "preempted": int(status["nonvoluntary_ctxt_switches"])}


def timed_trial(config) -> dict:
    """One ``run_trial(config)`` in this thread, its result dropped: its start and end (``time.time``), torch's
    threads, the trial's own ``seconds`` (its training loop) and what the thread did meanwhile
    (``thread_counters``: seconds on a core, seconds waiting for one, times preempted; None off Linux). The
    plain worker of sweep_overhead.py, here so that a spawned pool worker can import it by name."""
    from urn_study.trial import run_trial

    before = thread_counters()
    start = time.time()
    result = run_trial(config)
    end = time.time()
    after = thread_counters()
    counts = {k: after[k] - before[k] for k in after} if before and after else None
    return {
        "start": start,
        "end": end,
        "torch_threads": torch.get_num_threads(),
        "loop": float(result.metrics["seconds"]),
        "thread": counts,
    }


def tune_trial(tune_config: dict, configs: list) -> None:
    """A Ray Tune function trainable that records nothing: ``timed_trial`` of ``configs[index]`` on one torch
    thread (as ``train_pack`` sets it), its timings as the one report. Ray's own share of sweep_overhead."""
    from ray import tune

    torch.set_num_threads(1)
    timing = timed_trial(configs[tune_config["index"]])
    thread = timing.pop("thread") or {}
    tune.report({**timing, **thread})  # flat numbers: Tune keeps them in each trial's result
