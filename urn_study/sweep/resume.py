"""What a resumed sweep goes on from: the sweep's MLflow runs and the checkpoints its earlier runs left in the Ray
storage (read as data: Tune's pickled experiment state is never restored)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from urn_study import tracking
from urn_study.checkpoint import META
from urn_study.sweep.records import SweepRecord


@dataclass
class Earlier:
    """What the earlier runs of a sweep left: its trial runs, which finished, and the checkpoints of the rest."""

    runs: list = field(default_factory=list)  # MLflow runs of the sweep's trials, oldest first
    checkpoints: dict = field(default_factory=dict)  # Tune trial name -> checkpoint folders, newest first
    resumed: bool = False  # a --resume (its Tune experiment is named apart from the earlier ones)

    @property
    def finished(self) -> set[str]:
        return {r.data.tags.get(tracking.TRIAL_TAG) for r in self.runs if r.info.status == "FINISHED"}


def earlier_state(record: SweepRecord, experiment_id: str) -> Earlier:
    return Earlier(
        tracking.trial_runs(record.tracking_uri, experiment_id, record.sweep_id),
        checkpoints_of(record.storage, record.sweep_id),
        resumed=True,
    )


def checkpoints_of(storage: str, sweep_id: str) -> dict[str, list[str]]:
    """Every checkpoint the sweep's runs left under ``storage`` (its first run's folder ``<sweep_id>`` and its
    resumes' ``<sweep_id>-resumed-*``), by Tune trial name, newest (highest epoch) first. Read from each
    checkpoint's JSON only: a damaged one is found out, and passed over, when a trial loads it."""
    from pyarrow import fs

    filesystem, root = fs.FileSystem.from_uri(storage if "://" in storage else str(Path(storage).resolve()))
    if "://" in storage:
        prefix = storage.rstrip("/")[: len(storage.rstrip("/")) - len(root.rstrip("/"))]
    else:
        prefix = ""

    def folders(path: str) -> list:
        try:
            return [i for i in filesystem.get_file_info(fs.FileSelector(path)) if i.type == fs.FileType.Directory]
        except OSError:
            return []

    found: dict[str, list[tuple[int, str]]] = {}
    for run in folders(root):
        if run.base_name != sweep_id and not run.base_name.startswith(f"{sweep_id}-resumed-"):
            continue
        for trial in folders(run.path):
            name = _trial_name_of(trial.base_name)
            for checkpoint in folders(trial.path):
                if checkpoint.base_name.startswith("checkpoint_"):
                    found.setdefault(name, []).append((_checkpoint_epoch(filesystem, checkpoint.path), prefix + checkpoint.path))
    return {name: [path for _, path in sorted(items, reverse=True)] for name, items in found.items()}


def _trial_name_of(dirname: str) -> str:
    """The trial name in a Tune trial folder's name (``trial_dirname``: ``<name>_<Tune's id>``, the id being
    ``<hex>_<index>`` as Tune makes them)."""
    match = re.fullmatch(r"(.+)_[0-9a-f]+_\d+", dirname)
    return match[1] if match else dirname.rsplit("_", 1)[0]


def _checkpoint_epoch(filesystem, path: str) -> int:
    """The epoch a checkpoint holds (its first trial's state.json), or -1 where it cannot be read."""
    from pyarrow import fs

    try:
        member = next(i for i in filesystem.get_file_info(fs.FileSelector(path)) if i.type == fs.FileType.Directory)
        with filesystem.open_input_stream(f"{member.path}/{META}") as stream:
            return int(json.loads(stream.read())["epoch"])
    except (StopIteration, OSError, ValueError, KeyError, TypeError):
        return -1
