"""What ``urn-study sweep`` is given, checked before Ray is imported (that alone takes seconds): the study file, the
sweep record to resume, the searcher, the numbers on the command line, the tracking store and the Ray storage.
Every mistake is one line (ConfigError) naming the file and key or the option."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from urn_study import tracking
from urn_study.config import ConfigError
from urn_study.packing import AUTO
from urn_study.study import Study, check_data_files, load_study, with_gpus
from urn_study.sweep.records import SweepRecord, find_record, new_record

SEARCHERS = ("grid", "optuna", "boundary")
REPORT_EVERY_S = 10.0  # between checkpoint epochs, an epoch is reported to Tune (progress) this often at most


@dataclass(frozen=True)
class SweepInputs:
    """A sweep's inputs, every one checked."""

    study: Study
    record: SweepRecord
    searcher: str
    smoke: bool = False
    address: str | None = None
    max_concurrent: int | None = None
    resume: str | None = None
    num_cpus: int | None = None
    stall_timeout_s: float = 1800.0


def check_inputs(
    study_path: str | Path,
    smoke: bool = False,
    address: str | None = None,
    tracking_uri: str | None = None,
    searcher: str = "grid",
    max_concurrent: int | None = None,
    resume: str | None = None,
    storage: str | None = None,
    num_cpus: int | None = None,
    stall_timeout_s: float = 1800.0,
    gpus_per_trial: float | None = None,
) -> SweepInputs:
    """The study loaded and every input checked (a resumed sweep takes its searcher and store from its record);
    raises ConfigError at the first mistake. ``gpus_per_trial`` replaces the study's resources.gpu."""
    study = load_study(study_path, smoke=smoke)
    if gpus_per_trial is not None:
        study = with_gpus(study, gpus_per_trial)
    if resume:
        record = find_record(study, resume)
        searcher = record.searcher
        record.tracking_uri = tracking.resolve_tracking_uri(tracking_uri or record.tracking_uri)
    else:
        record = new_record(study, searcher, tracking.resolve_tracking_uri(tracking_uri), storage)
    check_searcher(study, searcher)
    check_data_files(study)
    if max_concurrent is not None and max_concurrent < 1:
        raise ConfigError(f"--max-concurrent: must be at least 1, got {max_concurrent}")
    if num_cpus is not None and num_cpus < 1:
        raise ConfigError(f"--num-cpus: must be at least 1, got {num_cpus}")
    if not stall_timeout_s > REPORT_EVERY_S:
        raise ConfigError(
            f"--stall-timeout: must be more than {REPORT_EVERY_S:g} s (trials report that often at most), got {stall_timeout_s:g}"
        )
    if not address:
        check_local_resources(study, num_cpus, gpus_flag=gpus_per_trial is not None)
    tracking.check_tracking(record.tracking_uri)
    check_storage(record.storage)
    return SweepInputs(study, record, searcher, smoke, address, max_concurrent, resume, num_cpus, stall_timeout_s)


def check_searcher(study: Study, searcher: str) -> None:
    """Errors a searcher would only meet inside Ray, raised before it starts (one line, file and key)."""
    where = str(study.path)
    if searcher not in SEARCHERS:
        raise ConfigError(f"--searcher {searcher!r}: one of {', '.join(SEARCHERS)}")
    if searcher == "boundary":
        if study.trials_per_worker not in (1, AUTO):
            raise ConfigError(
                f"{where}: trials_per_worker: must be 1 or auto with --searcher boundary "
                f"(got {study.trials_per_worker}); packs are for grids"
            )
        if study.sample:
            raise ConfigError(f"{where}: sample: --searcher boundary refines grid axes; sampled axes are for optuna")
        for key, values in study.grid.items():
            if any(not isinstance(v, (int, float, str, bool)) for v in values):
                raise ConfigError(f"{where}: grid.{key}: the boundary search takes only plain values (no schedules)")
        study.boundary_search()  # a study without an axis to bisect says so here
    if searcher == "optuna":
        if study.trials_per_worker not in (1, AUTO):
            raise ConfigError(
                f"{where}: trials_per_worker: must be 1 or auto with --searcher optuna "
                f"(got {study.trials_per_worker}); packs are for grids"
            )
        if not study.sample:
            raise ConfigError(
                f"{where}: sample: --searcher optuna needs sampled axes, none given: add e.g. "
                "`sample: {regulators.l1: {loguniform: [1.0e-6, 1.0e-3]}}` and `samples: 40` (trials), "
                "as search_spaces/best_accuracy.yaml does"
            )
        for key, values in study.grid.items():
            if any(not isinstance(v, (int, float, str, bool)) for v in values):
                raise ConfigError(f"{where}: grid.{key}: optuna takes only plain values (no schedules) as choices")


def check_storage(storage: str) -> None:
    """A local results folder for Ray must be writable before anything starts (a URI is checked by Ray)."""
    if "://" in storage and not storage.startswith("file://"):
        return
    folder = Path(storage.removeprefix("file://"))
    probe = folder / f".urn-probe-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"--storage {storage}: Ray cannot write its results there ({err.strerror or err})") from None


def check_local_resources(study: Study, num_cpus: int | None, gpus_flag: bool = False) -> None:
    """On local Ray a trial bigger than the machine would wait forever: say so before Ray starts. (On a
    cluster, given by --address, nodes may still be added by the autoscaler.) ``gpus_flag``: the GPUs a trial
    asks for come from --gpus-per-trial, not the study file."""
    where = f"{study.path}: resources"
    ray = sys.modules.get("ray")  # a Ray this process has joined already (not imported: none joined)
    if ray is not None and ray.is_initialized():
        total = ray.cluster_resources()
        cpus, gpus, source = total.get("CPU", 0.0), total.get("GPU", 0.0), "the connected Ray"
    else:
        cpus = float(num_cpus if num_cpus is not None else os.cpu_count() or 1)
        gpus = float(_local_gpus()) if study.resources.gpu > 0 else 0.0
        source = "local Ray" + (" (--num-cpus)" if num_cpus is not None else "")
    if study.resources.cpu > cpus:
        raise ConfigError(f"{where}.cpu: a trial asks for {study.resources.cpu:g} CPUs, {source} has {cpus:g}")
    if study.resources.gpu > gpus:
        asked = f"a trial asks for {study.resources.gpu:g} GPU, {source} has {gpus:g} (run on a cluster with --address"
        if gpus_flag:
            raise ConfigError(f"--gpus-per-trial: {asked})")
        raise ConfigError(f"{where}.gpu: {asked}, or set resources.gpu: 0)")


def _local_gpus() -> int:
    import torch

    return torch.cuda.device_count()
