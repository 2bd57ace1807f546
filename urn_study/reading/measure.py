"""Everything recorded about one W of a trial: what it computes, what its |W| looks like, and both against chance.

``measure`` puts together
- the functional report (``urn_study.reading.function``): the phase, depth, widths and their margins, read by lesions
  on held-out samples; its fields are the record's top level (``phase``, ``depth``, ``widths``, ...);
- the |W| descriptors (``urn_study.reading.structure``), prefixed ``w_`` (``w_skip_share``, ``w_locality``, the
  pattern label ``w_phase``...): cheap, kept beside the phase, never deciding it;
- the null: the same on the trial's untrained W0 (``null_``), and the |W| descriptors of a shuffle of the
  pruned W that keeps every neuron's in- and out-degree (``shuffle_``).

``Measurement.summary()`` is what a trial logs at each snapshot (scalars only); ``to_dict()`` the whole record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from urn_study.layout import Layout
from urn_study.reading.function import FunctionReport, Network, Probe, Thresholds, functional_report
from urn_study.reading.structure import StructureReport, degree_preserving_shuffle, prune, structure_report

PROBE_SIZE = 1000  # held-out samples a lesion pass reads at most (a fixed, seeded subset beyond that)
# the |W| descriptors worth a null; the others (levels, widths) describe the pattern only
NULL_DESCRIPTORS = ("skip_share", "recurrence_share", "locality", "ipr", "density", "effective_depth")
FUNCTION_SCALARS = (
    "uncertain",
    "margin",
    "depth",
    "hidden_width",
    "hidden_cost",
    "recurrence_cost",
    "shortcut_cost",
    "shorter_cost",
    "keep_cost",
    "kept_units",
    "locality",
    "locality_all",
    "ipr",
    "receptive_field",
    "unplaced",
)


def probe_of(x: np.ndarray, y: np.ndarray, seed: int = 0, size: int = PROBE_SIZE) -> Probe:
    """The held-out samples a trial is measured on: all of them, or a seeded subset of ``size``."""
    if len(y) > size:
        keep = np.sort(np.random.default_rng([seed, 20191126]).choice(len(y), size, replace=False))
        x, y = x[keep], y[keep]
    return Probe(np.asarray(x, dtype=np.float64), np.asarray(y))


@dataclass
class Null:
    """The untrained network of a trial, measured once: the bar its trained W is held to."""

    function: FunctionReport
    weights: StructureReport

    def to_dict(self) -> dict:
        return {
            "phase": self.function.phase,
            "depth": self.function.depth,
            "widths": self.function.widths,
            "receptive_field": self.function.receptive_field,
            "accuracy": self.function.accuracy,
            "reference_accuracy": self.function.reference_accuracy,
            "locality_all": self.function.locality_all,
            "depth_shares": self.function.depth_shares,
            "hidden_cost": self.function.hidden_cost,
            "w_phase": self.weights.phase,
            "w_depth": self.weights.depth,
            **{f"w_{k}": getattr(self.weights, k) for k in NULL_DESCRIPTORS},
        }


def measure_null(W0: np.ndarray, layout: Layout, model: Any, probe: Probe, thresholds: Thresholds = Thresholds()) -> Null:
    """The untrained W0 (zero biases), held to random untrained networks of its shape (it is one of them)."""
    function = functional_report(Network.of(W0, None, layout, model), probe, None, thresholds)
    return Null(function, _weights_report(W0, layout, model, function.accuracy))


@dataclass
class Measurement:
    function: FunctionReport
    weights: StructureReport
    null: Null | None
    shuffle: StructureReport | None

    def summary(self) -> dict:
        """Scalars for the per-snapshot metrics: the phase, the functional figures (those that apply: no
        ``shortcut_cost`` in clamp mode), ``w_`` descriptors and, where there is a null, ``null_`` and
        ``shuffle_`` values."""
        f = self.function
        out: dict[str, Any] = {
            "phase": f.phase,
            "probe_accuracy": f.accuracy,
            **{k: float(getattr(f, k)) for k in FUNCTION_SCALARS if not np.isnan(getattr(f, k))},
        }
        out["uncertain"] = float(f.uncertain)
        out["input_relays"], out["output_relays"] = float(f.relays["input"]), float(f.relays["output"])
        out.update({f"w_{k}": float(v) for k, v in self.weights.summary().items() if k != "phase"})
        if self.null is not None:
            out["null_accuracy"] = self.null.function.accuracy
            out["null_locality_all"] = self.null.function.locality_all
            out.update({f"null_w_{k}": float(getattr(self.null.weights, k)) for k in NULL_DESCRIPTORS})
        if self.shuffle is not None:
            out.update({f"shuffle_w_{k}": float(getattr(self.shuffle, k)) for k in NULL_DESCRIPTORS})
        return out

    def to_dict(self) -> dict:
        """The whole record (JSON-able): functional fields at the top, ``w_``-prefixed descriptors, ``null``
        and ``shuffle`` as nested mappings."""
        record = self.function.to_dict()
        record.update({f"w_{k}": v for k, v in self.weights.to_dict().items()})
        record["null"] = self.null.to_dict() if self.null is not None else None
        record["shuffle"] = (
            {f"w_{k}": getattr(self.shuffle, k) for k in ("phase", *NULL_DESCRIPTORS)} if self.shuffle is not None else None
        )
        return record


def measure(
    W: np.ndarray,
    b: np.ndarray | None,
    layout: Layout,
    model: Any,
    probe: Probe,
    null: Null | None = None,
    thresholds: Thresholds = Thresholds(),
    shuffle: bool = True,
) -> Measurement:
    """The record of one W (``model``: a ModelConfig or anything with its fields)."""
    function = functional_report(Network.of(W, b, layout, model), probe, null.function if null else None, thresholds)
    weights = _weights_report(W, layout, model, function.accuracy)
    shuffled = None
    if shuffle:
        shuffled = _weights_report(degree_preserving_shuffle(prune(W), seed=0), layout, model)
    return Measurement(function, weights, null, shuffled)


def _weights_report(W: np.ndarray, layout: Layout, model, accuracy: float | None = None) -> StructureReport:
    """The |W| descriptors of one W under ``model``'s recursion (with its accuracy where one is known)."""
    return structure_report(
        W,
        layout,
        model.steps,
        model.input_mode,
        model.readout,
        model.readout_from,
        accuracy=accuracy,
        n_classes=layout.n_out,  # read only beside an accuracy
    )
