"""How well an emerged structure matches the planted teacher of the ``teacher`` data (spec section 4).

The teacher (``urn_study.data``) has ``depth`` weight layers: depth - 1 locally connected levels on the
input lattice, each neuron seeing ``receptive_field`` sites per lattice axis, then a dense readout. Its
``widths`` count the neurons per level with the inputs first and the outputs last, as the report's do.
"""
from __future__ import annotations

import numpy as np

from analysis.planted import neighbourhoods
from analysis.structure import StructureReport, Thresholds, prune, receptive_field_extent
from urn_study.layout import Layout


def widths_score(emerged: list[int], teacher: list[int]) -> float:
    """1 - mean relative width error over levels; a level present on one side only counts as error 1."""
    n = max(len(emerged), len(teacher))
    if n == 0:
        return 1.0
    errors = [
        min(1.0, abs(emerged[l] - teacher[l]) / max(teacher[l], 1)) if l < len(emerged) and l < len(teacher) else 1.0
        for l in range(n)
    ]
    return float(np.clip(1.0 - np.mean(errors), 0.0, 1.0))


def emerged_receptive_field(W: np.ndarray, layout: Layout, levels: list[int],
                            thresholds: Thresholds = Thresholds()) -> float:
    """Mean per-axis extent of the input edges of the level-1 neurons, from W alone.

    A fallback for reports without ``receptive_field``: inputs count when their pruned |W| is at least
    ``flow_floor`` of the neuron's strongest input weight (for a level-1 neuron that is the structural
    test on its input side, since every input starts the same walk weight).
    """
    first = np.asarray(levels) == 1
    weights = np.abs(prune(W, thresholds.keep_share)[first][:, layout.inputs])
    strongest = weights.max(axis=1, keepdims=True) if len(weights) else weights
    return receptive_field_extent((weights > 0) & (weights >= thresholds.flow_floor * strongest), layout)


def teacher_receptive_field(layout: Layout, receptive_field: int, depth: int) -> float:
    """The teacher's level-1 field as ``receptive_field_extent`` would measure it on this layout.

    Fields are clipped at the lattice border (zero padding), so a perfect copy of an r = 3 teacher on
    an 8x8 grid measures 2.75, not 3. A depth-1 teacher's level 1 is the dense readout: the whole lattice.
    """
    if depth <= 1:
        return receptive_field_extent(np.ones((1, layout.n_in), dtype=bool), layout)
    fields = neighbourhoods(layout.lattice_shape, receptive_field, layout.periodic)
    mask = np.zeros((len(fields), layout.n_in), dtype=bool)
    for row, field in zip(mask, fields):
        row[field] = True
    return receptive_field_extent(mask, layout)


def recovery_score(report: StructureReport | dict, W: np.ndarray, layout: Layout, teacher: dict) -> dict:
    """Depth, widths and receptive field of the emerged structure against the teacher's; recovery in [0, 1].

    ``teacher`` holds at least ``depth``, ``receptive_field`` and ``widths`` (other keys are ignored).
    The emerged field is the report's ``receptive_field``, compared with ``teacher_receptive_field``.
    ``recovery`` is the mean of depth_match, widths_score and 1 - relative receptive-field error (clipped).
    """
    rep = report if isinstance(report, dict) else report.to_dict()
    depth, teacher_depth = int(rep["depth"]), int(teacher["depth"])
    field = rep.get("receptive_field")
    if field is None:
        field = emerged_receptive_field(W, layout, rep["levels"])
    teacher_field = teacher_receptive_field(layout, int(teacher["receptive_field"]), teacher_depth)
    field_error = abs(float(field) - teacher_field)
    parts = {
        "depth_match": int(depth == teacher_depth),
        "widths_score": widths_score(list(rep["widths"]), list(teacher["widths"])),
        "field_score": max(0.0, 1.0 - field_error / teacher_field),
    }
    return {
        "depth_match": parts["depth_match"],
        "depth_error": abs(depth - teacher_depth),
        "widths_score": parts["widths_score"],
        "receptive_field": float(field),
        "receptive_field_error": field_error,
        "recovery": float(np.mean(list(parts.values()))),
    }
