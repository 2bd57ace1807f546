"""A sweep's identity, what ``--resume`` finds again: its record (a JSON file in urn_results/sweeps/) and the lock
that lets one driver run it at a time."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from urn_study.config import ConfigError
from urn_study.study import Study, results_dir


@dataclass
class SweepRecord:
    sweep_id: str
    study: str
    study_file: str
    fingerprint: str
    searcher: str
    tracking_uri: str
    storage: str  # Ray results: a folder or a URI every node can reach
    created: str
    results: str = ""  # the results folder it was written in: paths under it move with a copied folder
    # trials per Tune trial, chosen when the sweep starts (PENDING until then) and kept for its resumes; "": a record
    # written before the choice was recorded
    trials_per_worker: str = ""


PENDING = "pending"


def _records_dir() -> Path:
    return results_dir() / "sweeps"


def new_record(study: Study, searcher: str, tracking_uri: str, storage: str | None) -> SweepRecord:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    sweep_id = f"{study.name}-{stamp}"
    n = 1
    while (_records_dir() / f"{sweep_id}.json").exists():  # two sweeps started in the same second
        n += 1
        sweep_id = f"{study.name}-{stamp}-{n}"
    return SweepRecord(
        sweep_id,
        study.name,
        str(study.path.resolve()),
        study.fingerprint(),
        searcher,
        tracking_uri,
        storage or str(results_dir() / "ray"),
        time.strftime("%Y-%m-%d %H:%M:%S"),
        str(results_dir()),
        PENDING,
    )


def save_record(record: SweepRecord) -> None:
    _records_dir().mkdir(parents=True, exist_ok=True)
    path = _records_dir() / f"{record.sweep_id}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(record), indent=1))
    tmp.replace(path)  # a full disk or a kill never leaves half a record


def read_record(path: Path) -> SweepRecord:
    """A sweep record; ConfigError naming the file if it is not one. A record written in another results folder
    (this one is a copy) has its paths under that folder moved here."""
    try:
        data = json.loads(path.read_text())
        record = SweepRecord(**data)
        if not all(isinstance(v, str) for v in asdict(record).values()):
            raise TypeError("a value is not text")
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as err:
        raise ConfigError(f"{path}: not a sweep record ({type(err).__name__}: {str(err)[:120]})") from None
    here = str(results_dir())
    if record.results and record.results != here:
        old = record.results.rstrip("/")
        record.storage = here + record.storage[len(old) :] if record.storage.startswith(old + "/") else record.storage
        prefix = f"sqlite:///{old}/"
        if record.tracking_uri.startswith(prefix):
            record.tracking_uri = f"sqlite:///{here}/{record.tracking_uri[len(prefix) :]}"
        record.results = here
    return record


def find_record(study: Study, which: str = "latest") -> SweepRecord:
    """The sweep to resume: by id, or the latest one of this study. Files in the records folder that are not
    sweep records are passed over with a warning (one broken file never blocks every study's resume)."""
    where = f"{study.path}: --resume"
    if which != "latest":
        path = _records_dir() / f"{which}.json"
        if not path.is_file():
            raise ConfigError(f"{where}: no sweep {which!r} in {_records_dir()}")
        record = read_record(path)
        if record.study != study.name:
            raise ConfigError(f"{where}: sweep {which!r} belongs to study {record.study!r}, not {study.name!r}")
    else:
        records = []
        for path in sorted(_records_dir().glob("*.json")):
            try:
                records.append(read_record(path))
            except ConfigError as err:
                print(f"urn-study: warning: skipped {err}", file=sys.stderr)
        records = [r for r in records if r.study == study.name]
        if not records:
            raise ConfigError(f"{where}: no earlier sweep of {study.name!r} in {_records_dir()}")
        record = max(records, key=lambda r: (r.created, r.sweep_id))
    if record.fingerprint != study.fingerprint():
        raise ConfigError(
            f"{where}: the study changed since sweep {record.sweep_id} started (its trials differ); start a new sweep instead"
        )
    return record


class SweepLock:
    """One driver per sweep: held (an exclusive lock on ``sweeps/<id>.lock``) from start to end, so a second
    ``--resume`` of a sweep that is running says so instead of training and logging its trials twice. The
    lock ends with the process, however it ends."""

    def __init__(self, sweep_id: str):
        self.path = _records_dir() / f"{sweep_id}.lock"
        self.file = None

    def __enter__(self) -> "SweepLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise ConfigError(
                f"sweep {self.path.stem} is running now ({holder}); wait for it to end, or stop it and resume once"
            ) from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"pid {os.getpid()} on {os.uname().nodename}")
        self.file.flush()
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()  # releases the lock; the file stays (removing it would race a waiting driver)
