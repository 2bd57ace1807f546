"""The files a trial leaves: one layout on disk, written by a sweep's MLflow record and by ``urn-study train --out``.

- ``W.npy``, ``b.npy``: the trained network; ``W0.npy``: its untrained W (b0 = 0), the null of every measure;
- ``snapshots/epoch_0005.npy`` and ``snapshots/epoch_0005_b.npy``: W and b along training;
- ``layout.json`` (neuron positions and blocks), ``config.json`` (every config key, dotted);
- ``structure.json``: the record of the final W (``urn_study.reading.measure``: what it computes, its |W|
  descriptors, the null); ``history.json``: the per-epoch metrics; ``W_heatmap.png``: |W| ordered by level.

``W``, ``b``, ``layout.json`` and ``config.json`` are enough to run the network again with numpy alone (the ten
lines in the README, "One trial"; ``tests/test_trial.py`` runs them on a saved trial). ``tests/test_tracking.py``
checks that a sweep's run and ``train --out`` of one config hold the same files and arrays. A checkpoint
(``urn_study.checkpoint``) is another kind of thing, resume state, and keeps its own format for that reason.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from urn_study.config import to_flat

WEIGHTS, BIAS, INITIAL = "W.npy", "b.npy", "W0.npy"
LAYOUT, STRUCTURE, HISTORY, CONFIG, HEATMAP = "layout.json", "structure.json", "history.json", "config.json", "W_heatmap.png"
SNAPSHOTS = "snapshots"  # snapshots/epoch_0005.npy (W) and snapshots/epoch_0005_b.npy (b)


def snapshot_names(epoch: int) -> tuple[str, str]:
    """The W and b files of the snapshot at ``epoch``, under ``SNAPSHOTS``."""
    return f"epoch_{int(epoch):04d}.npy", f"epoch_{int(epoch):04d}_b.npy"


def write_artifacts(result, folder: Path, title: str = "") -> list[Path]:
    """A TrialResult's arrays, layout, reports and heatmap as files under ``folder``; returns them."""
    from urn_study.reading.weight_image import weight_image

    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / WEIGHTS, np.asarray(result.weights))
    np.save(folder / BIAS, np.asarray(result.bias))
    if result.initial_weights is not None:
        np.save(folder / INITIAL, np.asarray(result.initial_weights))
    (folder / SNAPSHOTS).mkdir(exist_ok=True)
    for epoch, w in sorted(result.snapshots.items()):
        w_name, b_name = snapshot_names(epoch)
        np.save(folder / SNAPSHOTS / w_name, np.asarray(w))
        if epoch in result.bias_snapshots:
            np.save(folder / SNAPSHOTS / b_name, np.asarray(result.bias_snapshots[epoch]))
    result.layout.save(folder / LAYOUT)
    (folder / STRUCTURE).write_text(json.dumps(result.structure, indent=1, default=json_default))
    (folder / HISTORY).write_text(json.dumps(result.history, default=json_default))
    (folder / CONFIG).write_text(json.dumps(to_flat(result.config), indent=1))
    levels = result.structure.get("levels")
    phase = result.metrics.get("phase", "")
    image = weight_image(result.weights, levels, layout=result.layout, title=f"{title}  {phase}".strip())
    image.save(folder / HEATMAP, compress_level=1)  # fastest zlib level: 0.03 s, not 0.04, at S ~ 1000
    return sorted(p for p in folder.rglob("*") if p.is_file())


def snapshot_images(result) -> list[tuple[int, Any]]:
    """(epoch, heatmap) of each snapshot of W, its neurons in the final W's level order (so one neuron stays on one
    row from epoch to epoch): what the MLflow UI steps through."""
    from urn_study.reading.weight_image import weight_image

    levels = result.structure.get("levels")
    return [
        (int(epoch), weight_image(w, levels, layout=result.layout, title=f"epoch {epoch}"))
        for epoch, w in sorted(result.snapshots.items())
    ]


def json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)
