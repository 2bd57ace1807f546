"""How well an emerged structure matches the planted teacher of the ``teacher`` data (spec section 4).

The teacher (``urn_study.data``) has ``depth`` weight layers: depth - 1 locally connected levels on the
input lattice, each neuron seeing ``receptive_field`` sites per lattice axis, then a dense readout. Its
``widths`` count the neurons per level with the inputs first and the outputs last, as the reports' do.

What the score compares, and why: the functional depth (``urn_study.reading.function``) and the field of the
neurons that carry the task at level 1, against the teacher's. The widths are reported but left out of the
score: the teacher's levels are as wide as the lattice, which any layered network on the lattice matches
(a dense MLP scored 1 on them), so they tell nothing about recovery. The field is scored between the
teacher's (1) and the whole lattice's (0), the field of a dense network. A network that does not do the
task (``dead``) recovers nothing.

The nulls beside each score: the trial's untrained W0, read the same way, and a dense MLP of the same size
(depth 2, every field the whole lattice). A setting *recovers the teacher* when its score beats both.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from urn_study.layout import Layout
from urn_study.reading.planted import neighbourhoods
from urn_study.reading.structure import receptive_field_extent


def widths_score(emerged: list[int], teacher: list[int]) -> float:
    """1 - mean relative width error over levels; a level present on one side only counts as error 1."""
    n = max(len(emerged), len(teacher))
    if n == 0:
        return 1.0
    errors = [
        min(1.0, abs(emerged[i] - teacher[i]) / max(teacher[i], 1)) if i < len(emerged) and i < len(teacher) else 1.0
        for i in range(n)
    ]
    return float(np.clip(1.0 - np.mean(errors), 0.0, 1.0))


def whole_lattice_field(layout: Layout) -> float:
    """The field extent of a neuron that sees every site: a dense network's."""
    return receptive_field_extent(np.ones((1, layout.n_in), dtype=bool), layout)


def teacher_receptive_field(layout: Layout, receptive_field: int, depth: int) -> float:
    """The teacher's level-1 field as ``receptive_field_extent`` would measure it on this layout.

    Fields are clipped at the lattice border (zero padding), so a perfect copy of an r = 3 teacher on
    an 8x8 grid measures 2.75, not 3. A depth-1 teacher's level 1 is the dense readout: the whole lattice.
    """
    if depth <= 1:
        return whole_lattice_field(layout)
    fields = neighbourhoods(layout.lattice_shape, receptive_field, layout.periodic)
    mask = np.zeros((len(fields), layout.n_in), dtype=bool)
    for row, field in zip(mask, fields):
        row[field] = True
    return receptive_field_extent(mask, layout)


def recovery_score(record: dict, layout: Layout, teacher: dict) -> dict:
    """Depth and level-1 field of a record (``phase``, ``depth``, ``widths``, ``receptive_field``) against the
    teacher's (``depth``, ``receptive_field``, ``widths``); ``recovery`` = mean of depth_match and field_score."""
    teacher_depth = int(teacher["depth"])
    teacher_field = teacher_receptive_field(layout, int(teacher["receptive_field"]), teacher_depth)
    dense_field = whole_lattice_field(layout)
    alive = record.get("phase") not in ("dead", "diverged")
    depth = int(record["depth"]) if alive else 0
    field = float(record.get("receptive_field") or 0.0) if alive else 0.0
    field_error = abs(field - teacher_field)
    spread = abs(dense_field - teacher_field)
    field_score = float(np.clip(1.0 - field_error / spread, 0.0, 1.0)) if spread > 0 else float(field_error == 0)
    depth_match = int(alive and depth == teacher_depth)
    return {
        "depth_match": depth_match,
        "depth_error": abs(depth - teacher_depth),
        "widths_score": widths_score(list(record["widths"]), list(teacher["widths"])) if alive else 0.0,
        "receptive_field": field,
        "receptive_field_error": field_error,
        "field_score": field_score if alive else 0.0,
        "recovery": float(np.mean([depth_match, field_score])) if alive else 0.0,
    }


def dense_mlp_record(layout: Layout) -> dict:
    """What a dense two-layer MLP of this layout's size reads as: depth 2, every field the whole lattice."""
    return {
        "phase": "fully_connected",
        "depth": 2,
        "widths": [layout.n_in, layout.n_hidden, layout.n_out],
        "receptive_field": whole_lattice_field(layout),
    }


def recovery_with_nulls(record: dict, layout: Layout, teacher: dict) -> dict[str, Any]:
    """The trial's recovery figures, the same for its untrained W0 (``record["null"]``, read functionally)
    and for a dense MLP of the same size, and ``recovery_margin`` = recovery - the better null."""
    out = recovery_score(record, layout, teacher)
    untrained = recovery_score(record.get("null") or {"phase": "dead", "depth": 0, "widths": []}, layout, teacher)
    mlp = recovery_score(dense_mlp_record(layout), layout, teacher)
    out["recovery_null_untrained"] = untrained["recovery"]
    out["recovery_null_mlp"] = mlp["recovery"]
    out["recovery_margin"] = out["recovery"] - max(untrained["recovery"], mlp["recovery"])
    out["teacher_depth"] = int(teacher["depth"])
    out["teacher_receptive_field"] = int(teacher["receptive_field"])
    return out
