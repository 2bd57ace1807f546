"""A TrialState on disk: arrays in one .npz (loaded without pickle), the rest as JSON with the arrays' digest.

Not the record's layout (``urn_study.artifacts``), on purpose: a checkpoint is resume state, read back only by
this module, whole or not at all. It holds what a record does not (the optimiser's moments, the Adam step, the
epoch reached) and must be written and read as one unit: one archive renamed into place, checked against its
digest, so a kill or a full disk mid-write leaves the previous checkpoint, never a mixed one. A record is read
file by file by others (numpy alone, a server's download of W without its snapshots), so it keeps one ``.npy``
per array under stable names."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

from urn_study.trial import TrialState

ARRAYS = "state.npz"
META = "state.json"


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be read back whole (truncated, corrupt, missing a file)."""


def save_state(state: TrialState, folder: str | Path) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = dict(state.arrays)
    arrays.update({f"snapshot_{epoch}": w for epoch, w in state.snapshots.items()})
    arrays.update({f"bias_{epoch}": b for epoch, b in state.bias_snapshots.items()})
    # Write then rename, so a kill mid-write never leaves a half checkpoint behind.
    with open(folder / (ARRAYS + ".tmp"), "wb") as f:
        np.savez(f, **arrays)
    (folder / (ARRAYS + ".tmp")).replace(folder / ARRAYS)
    meta = {
        "epoch": state.epoch,
        "adam_step": state.adam_step,
        "history": state.history,
        "diverged_at": state.diverged_at,
        "seconds": state.seconds,
        "sha256": _digest(folder / ARRAYS),
    }
    tmp = folder / (META + ".tmp")
    tmp.write_text(json.dumps(meta))
    tmp.replace(folder / META)


def load_state(folder: str | Path) -> TrialState:
    """The state saved in ``folder``; CheckpointError if any part of it is missing or damaged (a copy cut short
    by a full disk, a file overwritten): the arrays must match the digest written with them."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / META).read_text())
        if "sha256" in meta and meta["sha256"] != _digest(folder / ARRAYS):
            raise CheckpointError(f"checkpoint {folder}: {ARRAYS} does not match the digest saved with it")
        with np.load(folder / ARRAYS, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"checkpoint {folder}: cannot be read ({type(err).__name__}: {err})") from None
    snapshots = {int(name.split("_", 1)[1]): arrays.pop(name) for name in list(arrays) if name.startswith("snapshot_")}
    biases = {int(name.split("_", 1)[1]): arrays.pop(name) for name in list(arrays) if name.startswith("bias_")}
    return TrialState(
        epoch=meta["epoch"],
        arrays=arrays,
        adam_step=meta["adam_step"],
        history=meta["history"],
        snapshots=snapshots,
        diverged_at=meta["diverged_at"],
        seconds=meta["seconds"],
        bias_snapshots=biases,
    )


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()
