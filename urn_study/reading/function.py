"""What a trained URN computes, read by lesions on held-out samples: the phase comes from here.

A URN unrolled over its T steps is a T-layer network whose layers share W. ``functional_report`` runs it
with numpy on held-out samples (the *probe*) and removes parts of it to see what its outputs need.

- **Lesions are mean ablations.** A removed unit's state is replaced by its mean over the probe at that
  step (a removed edge passes its mean message), so a lesion takes away what the unit carries about the
  sample, not a constant offset that a bias could take over.
- **A lesion costs** the probe accuracy it loses, with the standard error of the paired per-sample
  difference. It *changes the outputs* when the cost exceeds ``Thresholds.cost``; a cost within its band
  of that tolerance leaves the decision *uncertain* (``Decision``).
- **Units** are the input pixels (the data written at t = 0, or at every step in ``clamp`` mode), each
  neuron between the steps (t = 1 .. T-1, removed at all of them at once) and each output read at T.
- **Depth classes.** With every neuron's gate phi(a)/a held at its value in the intact run, the logits are
  exactly a sum over walks from the data and the biases (``trace``). A walk's *depth* is 1 + the number of
  its hops (steps between two different neurons) that land on a neuron applying phi (inputs and hidden):
  waits on a self-connection and hops among the linear outputs add no layer. Removing the walks of one
  depth costs; that depth *carries* the task when the cost exceeds the tolerance. **Depth** is the largest
  carrying depth; **residual** means two depths carry it (a skip and a layered path). A pure delay (waits,
  then the same hops) is one depth: not residual.
- **Widths.** The units ordered by first-order importance (the logit variance their removal takes away,
  frozen gates); the fewest that must stay so that removing all the others together costs nothing (a real
  lesion, gates recomputed). A kept neuron sits at the level of its dominant depth class: pixels at 0, the
  outputs at the depth. Widths per level and per block: an input neuron used between the steps is an
  *input relay*, an output neuron used before the readout an *output relay*.
- **Recurrence** is a signal that leaves a neuron after a step computed it (never the data) and comes back
  to it through other neurons. The edges carrying the task at each step (``Thresholds.edge_floor``) that
  close such returns name the neurons to look at; for each, the part of the logits that came back to it is
  found exactly with the gates frozen (``returned_logits``) and removed; recurrent when that costs.
- **Shallow**: the whole hidden block can be removed at no cost.
- **Locality** of the receptive fields of the kept level-1 neurons, each pixel weighted by the functional
  weight of its edge (sqrt of the logit variance it passes, frozen gates), with the shuffle baseline of
  ``urn_study.reading.structure.receptive_field_locality``. Data with little variance at the border make even a
  random network's fields look local, so **locally connected** needs the locality above its threshold
  *and* above the untrained network's by a margin.

The reference for "does the task": chance (the probe's most common class) and the untrained network of the
trial (``null``); without one, what ``REFERENCES`` random untrained networks reach (``reference_accuracy``).
``classify`` decides the phase in the spec's order (dead, recurrent, shallow, residual, locally connected,
fully connected) and keeps every question it asked with its margin; a label that any answer leaves within
its band is ``uncertain``.
Pure numpy on saved arrays.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np

from urn_study.layout import Layout
from urn_study.reading.structure import receptive_field_extent, receptive_field_locality

BLOCKS = ("input", "hidden", "output")
REFERENCES = 32  # random untrained networks that set the bar of "does the task" when no null is given


@dataclass(frozen=True)
class Thresholds:
    cost: float = 0.01  # a lesion changes the outputs when it costs more probe accuracy than this
    cost_band: float = 0.005  # ... uncertain within max(this, 2 standard errors) of it
    alive: float = 0.02  # doing the task: accuracy above chance and the untrained reference by more than this
    # (or by 3 standard errors of the accuracy there, if more: 0.042 on 450 samples of 10 classes)
    locality: float = 0.5  # locally connected at or above this field locality ...
    locality_over_null: float = 0.2  # ... and this much above the untrained network's
    locality_band: float = 0.05  # locality within this of a threshold is uncertain
    edge_floor: float = 0.1  # an edge carries at a step when its flow is this share of the strongest at its ends
    keep: float = 0.01  # widths: the units whose removal together costs at most this can go
    depth_share: float = 0.01  # a depth carries only walks holding this share of the logits' variance
    level_share: float = 0.25  # a neuron's level: the deepest of its walks carrying this share of its importance


@dataclass(frozen=True)
class Network:
    """A URN as plain arrays: everything needed to run it (W[i, j] is the edge j -> i)."""

    W: np.ndarray
    b: np.ndarray
    layout: Layout
    steps: int
    input_mode: str = "clamp"  # as ModelConfig's default
    readout: str = "all"  # the prediction is read at step T either way (readout: all only trains earlier ones)
    readout_from: int = 1
    activation: str = "relu"

    @classmethod
    def of(cls, W: np.ndarray, b: np.ndarray | None, layout: Layout, model: Any) -> "Network":
        """From a ``ModelConfig`` (or anything with its fields); b None: zero biases."""
        bias = np.zeros(layout.size) if b is None else np.asarray(b, dtype=np.float64)
        return cls(
            np.asarray(W, dtype=np.float64),
            bias,
            layout,
            int(model.steps),
            model.input_mode,
            model.readout,
            int(model.readout_from),
            model.activation,
        )

    @property
    def clamp(self) -> bool:
        return self.input_mode == "clamp"


@dataclass(frozen=True)
class Probe:
    """Held-out samples and their labels."""

    x: np.ndarray  # (n, n_in)
    y: np.ndarray  # (n,)

    @classmethod
    def self_labelled(cls, net: Network, x: np.ndarray) -> "Probe":
        """The network's own predictions as labels: the task is what it computes (for planted networks).
        Samples whose two top logits tie (a dead layer gives every class the same logit) are left out: no
        label is defined there."""
        x = np.asarray(x, dtype=np.float64)
        logits = run(net, x)
        top = np.sort(logits, axis=-1)
        spread = np.sqrt(((logits - logits.mean(axis=-1, keepdims=True)) ** 2).mean())
        decided = top[:, -1] - top[:, -2] > 1e-6 * spread
        return cls(x[decided], logits[decided].argmax(axis=-1))


# --- running the network -----------------------------------------------------------------------


def _phi(a: np.ndarray, activation: str) -> np.ndarray:
    if activation == "relu":
        return np.maximum(a, 0.0)
    if activation == "tanh":
        return np.tanh(a)
    if activation == "identity":
        return a.copy()
    raise ValueError(f"activation must be relu, tanh or identity, got {activation!r}")


def _gate(a: np.ndarray, activation: str) -> np.ndarray:
    """phi(a) / a (phi'(0) where a = 0), so that phi(a) = gate * a exactly."""
    if activation == "relu":
        return (a > 0.0).astype(a.dtype)
    if activation == "tanh":
        safe = np.where(a == 0.0, 1.0, a)
        return np.where(a == 0.0, 1.0, np.tanh(safe) / safe)
    if activation == "identity":
        return np.ones_like(a)
    raise ValueError(f"activation must be relu, tanh or identity, got {activation!r}")


def _next_state(net: Network, a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """phi on inputs and hidden, linear outputs, inputs reset to x in clamp mode."""
    outputs = net.layout.outputs
    h = _phi(a, net.activation)
    h[..., outputs] = a[..., outputs]
    if net.clamp:
        h[..., net.layout.inputs] = x
    return h


def initial_state(net: Network, x: np.ndarray) -> np.ndarray:
    h = np.zeros((len(x), net.layout.size))
    h[:, net.layout.inputs] = x
    return h


def run(
    net: Network, x: np.ndarray, masks: np.ndarray | None = None, means: np.ndarray | None = None, weights: list | None = None
) -> np.ndarray:
    """Logits read at step T: (n, C), or (L, n, C) for L lesions, computed in float32 (half the time of
    float64; a lesion's cost compares two such runs, so their rounding is alike).

    ``masks`` (L, T + 1, S) marks the states h_t (t < T; at T the output logits) replaced by ``means[t]``.
    ``weights``: per step t = 1..T a pair (W_t, b_t) used instead of (W, b), for edge lesions.
    """
    x = np.asarray(x, dtype=np.float32)
    h = x  # h_0 is zero outside the inputs (a mean at t = 0 is zero there too): step 1 needs W's input columns
    if masks is not None:
        means = np.asarray(means, dtype=np.float32)
        h = np.where(masks[:, 0, None, net.layout.inputs], means[0][net.layout.inputs], x)
    outputs = net.layout.outputs
    for t in range(net.steps):
        W_t, b_t = weights[t] if weights is not None else (net.W, net.b)
        if t == 0:
            W_t = W_t[:, net.layout.inputs]
        if t + 1 == net.steps:  # only the outputs are read at step T: W's output rows
            W_t, b_t = W_t[outputs], b_t[outputs]
        a = h @ np.asarray(W_t, dtype=np.float32).T + np.asarray(b_t, dtype=np.float32)
        if t + 1 < net.steps:
            h = _next_state(net, a, x)
            if masks is not None:
                h = np.where(masks[:, t + 1, None, :], means[t + 1], h)
    if masks is not None:
        a = np.where(masks[:, net.steps, None, outputs], means[net.steps][outputs], a)
    return a


class Trace(NamedTuple):
    """The intact run on the probe, and what the lesion analysis needs from it."""

    states: np.ndarray  # (T, n, S): h_0 .. h_{T-1}
    logits: np.ndarray  # (n, C)
    means: np.ndarray  # (T + 1, S): mean h_t over the probe; row T holds the mean logits at the outputs
    depth_logits: np.ndarray  # (T + 1, n, C): [d] the logits' part carried by walks of depth d (frozen gates)
    bias_logits: np.ndarray  # (n, C): the part the biases start
    state_parts: np.ndarray  # (T, T + 1, n, S): [t, k] the part of h_t on walks with k hops onto phi neurons
    sensitivity: np.ndarray  # (T, n, S): |d logits / d h_t|^2 summed over classes (frozen gates)
    flows: np.ndarray  # (T + 1, S, S): [t, i, j] logit variance the edge j -> i passes at step t (t = 0 unused)
    gates: np.ndarray  # (T, n, S): phi(a_t) / a_t of each state h_t, t = 1..T-1 (row 0 unused)


def trace(net: Network, x: np.ndarray) -> Trace:
    """Run the network once, splitting every state by the hops its walks made and measuring first-order
    importances (the logit variance a mean ablation would take away, gates frozen)."""
    x = np.asarray(x, dtype=np.float64)
    T, lay = net.steps, net.layout
    S, n = lay.size, len(x)
    waits = np.diag(net.W).copy()
    hops = net.W - np.diag(waits)
    onto_phi, onto_outputs = hops.copy(), hops.copy()  # hops landing on inputs/hidden, and on outputs
    onto_phi[lay.outputs] = 0.0
    onto_outputs[: lay.n_in + lay.n_hidden] = 0.0
    states = np.zeros((T, n, S))
    gates = np.zeros((T, n, S))  # gates[t] of the state h_t (t = 1..T-1)
    parts = np.zeros((T, T + 1, n, S))
    states[0] = initial_state(net, x)
    parts[0, 0] = states[0]
    bias_part = np.zeros((n, S))
    for t in range(1, T + 1):
        prev = parts[t - 1, :t]  # after t - 1 steps a walk has made at most t - 1 hops
        a = states[t - 1] @ net.W.T + net.b
        split = np.zeros((T + 1, n, S))
        split[:t] = prev * waits + prev @ onto_outputs.T
        split[1 : t + 1] += prev @ onto_phi.T
        bias_a = bias_part @ net.W.T + net.b
        if t == T:
            break
        g = _gate(a, net.activation)
        g[:, lay.outputs] = 1.0
        if net.clamp:
            g[:, lay.inputs] = 0.0  # the data overwrite the inputs: nothing flows into them
        gates[t] = g
        states[t] = _next_state(net, a, x)
        parts[t] = split * g
        bias_part = bias_a * g
        if net.clamp:
            parts[t, 0, :, lay.inputs] = x
    logits = a[:, lay.outputs]
    depth_logits = np.zeros((T + 1, n, lay.n_out))
    depth_logits[1:] = split[:T, :, lay.outputs]  # k hops onto phi neurons = depth k + 1
    sensitivity, flows = _importances(net, states, gates)
    means = np.zeros((T + 1, S))
    means[:T] = states.mean(axis=1)
    means[T, lay.outputs] = logits.mean(axis=0)
    return Trace(states, logits, means, depth_logits, bias_a[:, lay.outputs], parts, sensitivity, flows, gates)


def _importances(net: Network, states: np.ndarray, gates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Backwards from the logits with frozen gates: |d logits / d h_t|^2 per state, and per edge and step the
    logit variance its message carries, W_ij^2 E[|d logits / d a_t[i]|^2 (h_{t-1}[j] - mean)^2]."""
    T, lay = net.steps, net.layout
    n, S = states.shape[1], lay.size
    W = net.W.astype(np.float32)  # first-order importances only rank and weigh: float32 is enough
    grad_a = np.zeros((n, lay.n_out, S), dtype=np.float32)  # d logits / d a_T: the outputs themselves
    grad_a[:, np.arange(lay.n_out), lay.n_in + lay.n_hidden + np.arange(lay.n_out)] = 1.0
    centred_sq = ((states - states.mean(axis=1, keepdims=True)) ** 2).astype(np.float32)
    sensitivity, flows = np.zeros((T, n, S)), np.zeros((T + 1, S, S))
    for t in range(T, 0, -1):
        flows[t] = net.W**2 * ((grad_a**2).sum(axis=1).T @ centred_sq[t - 1]) / n
        grad_h = grad_a @ W
        sensitivity[t - 1] = (grad_h**2).sum(axis=1)
        grad_a = grad_h * gates[t - 1][:, None, :].astype(np.float32)
    return sensitivity, flows


# --- costs and decisions ---------------------------------------------------------------------


class Cost(NamedTuple):
    value: float  # probe accuracy lost
    se: float  # standard error of the paired per-sample difference


def cost_of(intact: np.ndarray, lesioned: np.ndarray, y: np.ndarray) -> Cost:
    """Accuracy lost from logits ``intact`` (n, C) to ``lesioned`` (n, C)."""
    diff = (intact.argmax(-1) == y).astype(float) - (lesioned.argmax(-1) == y).astype(float)
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
    return Cost(float(diff.mean()), se)


@dataclass(frozen=True)
class Decision:
    """One step of the classification: a measured value against its threshold."""

    name: str
    value: float
    threshold: float
    band: float  # within this of the threshold the decision is uncertain
    inclusive: bool = False  # the threshold itself counts as above

    @property
    def above(self) -> bool:
        return self.value >= self.threshold if self.inclusive else self.value > self.threshold

    @property
    def margin(self) -> float:
        """Distance to the threshold in bands (below 1: uncertain)."""
        return abs(self.value - self.threshold) / self.band if self.band > 0 else float("inf")

    @property
    def uncertain(self) -> bool:
        return self.margin < 1.0

    def to_dict(self) -> dict:
        return {"value": self.value, "threshold": self.threshold, "band": self.band, "margin": self.margin}


def cost_decision(name: str, cost: Cost, thresholds: Thresholds) -> Decision:
    return Decision(name, cost.value, thresholds.cost, max(thresholds.cost_band, 2.0 * cost.se))


# --- the parts of the analysis ---------------------------------------------------------------


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((logits.argmax(-1) == y).mean())


def reference_accuracy(net: Network, probe: Probe, count: int = REFERENCES) -> float:
    """What chance alignment alone reaches: ``count`` random untrained networks of this shape (i.i.d. normal W,
    zero biases, fixed seeds) are run on the probe; the bar is the best of their accuracies, or their mean
    plus four standard deviations where that is higher (a network drawn like them passes it about once in
    30,000 draws; the best of 32 alone, once in 33). With zero biases a relu network's argmax does not
    depend on the scale of W, so one scale serves every init."""
    accuracies = []
    for seed in range(count):
        W = np.random.default_rng([20191126, seed]).normal(0.0, 1.0 / np.sqrt(net.layout.size), net.W.shape)
        reference = Network(
            W, np.zeros(net.layout.size), net.layout, net.steps, net.input_mode, net.readout, net.readout_from, net.activation
        )
        accuracies.append(accuracy(run(reference, probe.x), probe.y))
    return float(min(1.0, max(max(accuracies), np.mean(accuracies) + 4.0 * np.std(accuracies, ddof=1))))


def depth_costs(tr: Trace, y: np.ndarray) -> tuple[list[Cost], list[Cost], Cost]:
    """Per depth d = 0..T (0 unused): the cost of removing its walks, and of keeping them alone; and the cost
    of removing every depth below T together (frozen gates, mean ablations)."""
    parts = tr.depth_logits - tr.depth_logits.mean(axis=1, keepdims=True)
    removed = [cost_of(tr.logits, tr.logits - parts[d], y) for d in range(len(parts))]
    alone = [cost_of(tr.logits, tr.logits - parts.sum(axis=0) + parts[d], y) for d in range(len(parts))]
    shorter = cost_of(tr.logits, tr.logits - parts[:-1].sum(axis=0), y)
    return removed, alone, shorter


def depth_shares(tr: Trace) -> np.ndarray:
    """Share of the logits' variance over the probe carried by walks of each depth (label-free). The logits
    are centred over the classes first: a shift of every class alike changes no decision."""
    centred = tr.depth_logits - tr.depth_logits.mean(axis=-1, keepdims=True)
    var = centred.var(axis=1).sum(axis=-1)
    total = var.sum()
    return var / total if total > 0 else np.zeros_like(var)


class Units(NamedTuple):
    masks: np.ndarray  # (U, T + 1, S) bool: the states each unit's removal replaces
    kind: np.ndarray  # (U,) 0 pixel, 1 neuron between the steps, 2 output read at T
    neuron: np.ndarray  # (U,) the neuron's index
    importance: np.ndarray  # (U,) first-order logit variance its removal takes away


PIXEL, BETWEEN, READOUT = 0, 1, 2


def units(net: Network, tr: Trace) -> Units:
    T, lay = net.steps, net.layout
    centred_sq = (tr.states - tr.means[:T, None, :]) ** 2
    per_step = (tr.sensitivity * centred_sq).mean(axis=1)  # (T, S)
    pixel_steps = np.arange(T) if net.clamp else np.arange(1)
    between = np.arange(lay.n_in if net.clamp else 0, lay.size) if T > 1 else np.arange(0)
    outputs = np.arange(lay.n_in + lay.n_hidden, lay.size)
    neuron = np.concatenate([np.arange(lay.n_in), between, outputs])
    kind = np.repeat([PIXEL, BETWEEN, READOUT], [lay.n_in, len(between), len(outputs)])
    masks = np.zeros((len(neuron), T + 1, lay.size), dtype=bool)
    rows = np.arange(len(neuron))
    for step in pixel_steps:
        masks[rows[kind == PIXEL], step, neuron[kind == PIXEL]] = True
    for step in range(1, T):
        masks[rows[kind == BETWEEN], step, neuron[kind == BETWEEN]] = True
    masks[rows[kind == READOUT], T, outputs] = True
    importance = np.concatenate(
        [per_step[pixel_steps][:, : lay.n_in].sum(axis=0), per_step[1:T][:, between].sum(axis=0), tr.logits.var(axis=0)]
    )
    return Units(masks, kind, neuron, importance)


def kept_units(
    net: Network, tr: Trace, probe: Probe, intact: np.ndarray, u: Units, thresholds: Thresholds, batch: int = 12
) -> tuple[np.ndarray, Cost]:
    """Indices into ``u`` of the fewest units that must stay, and the cost of removing all the others.

    Units go from the least important up; the largest number whose removal together still costs at most
    the tolerance is found by a batched search (``batch`` real lesions a round), each compared with the
    ``intact`` run (``run(net, probe.x)``).
    """
    order = np.argsort(u.importance, kind="stable")
    removed = np.cumsum(u.masks[order], axis=0) > 0  # removed[m - 1]: the m least important units gone
    lo, hi = 0, len(order) + 1  # removing lo units is known to cost at most the tolerance, hi more
    best = Cost(0.0, 0.0)
    while hi - lo > 1:
        candidates = np.unique(np.linspace(lo + 1, hi - 1, num=min(batch, hi - lo - 1)).round().astype(int))
        costs = [cost_of(intact, lg, probe.y) for lg in run(net, probe.x, removed[candidates - 1], tr.means)]
        ok = [c.value <= thresholds.keep for c in costs]
        bad = ok.index(False) if False in ok else len(ok)
        if bad > 0:
            lo, best = int(candidates[bad - 1]), costs[bad - 1]
        if bad == len(ok):
            break
        hi = int(candidates[bad])
    return np.sort(order[lo:]), best


def dominant_hops(tr: Trace, share: float) -> np.ndarray:
    """(S,) per neuron, the largest number of hops onto phi neurons among the walks carrying at least
    ``share`` of its first-order importance between the steps (the longest path that matters)."""
    T = tr.states.shape[0]
    if T < 2:
        return np.zeros(tr.states.shape[2], dtype=int)
    parts = tr.state_parts[1:] - tr.state_parts[1:].mean(axis=2, keepdims=True)  # (T - 1, K, n, S)
    weight = (tr.sensitivity[1:, None] * parts**2).mean(axis=2).sum(axis=0)  # (K, S)
    total = weight.sum(axis=0)
    enough = weight >= share * np.where(total > 0, total, np.inf)
    deepest = len(weight) - 1 - np.argmax(enough[::-1], axis=0)
    return np.where(enough.any(axis=0), deepest, weight.argmax(axis=0))


def neuron_roles(u: Units, kept: np.ndarray, hops: np.ndarray, block: np.ndarray, depth: int) -> tuple[dict[int, set[int]], int]:
    """Per kept neuron, the levels of its roles; and how many kept units fit no level 0..depth.

    A pixel sits at level 0, an output read at T at ``depth``. A neuron between the steps whose walks made k
    hops onto phi neurons: an input or hidden neuron at level k (an input holding its own pixel: 0), an
    output at k + 1 (it reads stage k linearly), at ``depth`` when that is the output computed early and held.
    An input neuron can be a pixel at level 0 and a relay at level 1.
    """
    roles: dict[int, set[int]] = {}
    unplaced = 0
    for index in kept:
        i, kind, k = int(u.neuron[index]), int(u.kind[index]), int(hops[u.neuron[index]])
        if kind == PIXEL:
            level = 0
        elif kind == READOUT:
            level = depth
        elif block[i] == 2:
            level = min(k + 1, depth)
        elif k < depth and (k > 0 or block[i] == 0):
            level = k
        else:
            unplaced += 1
            continue
        roles.setdefault(i, set()).add(level)
    return roles, unplaced


def carrying_edges(tr: Trace, floor: float) -> np.ndarray:
    """(T + 1, S, S) bool: [t, i, j] when the edge j -> i carries at step t (its flow above zero and at least
    ``floor`` of the strongest flow into i and of the strongest out of j at that step)."""
    f = tr.flows
    strongest = np.maximum(f.max(axis=2, keepdims=True), f.max(axis=1, keepdims=True))
    return (f > 0.0) & (f >= floor * strongest)


def returning_edges(net: Network, carrying: np.ndarray) -> np.ndarray:
    """(T + 1, S, S) bool: the carrying edges j -> i at step t that bring back to i a signal which left it at a
    step 1 <= s <= t - 2 (a state the network computed, not the data) and went through other neurons."""
    T, S = net.steps, net.layout.size
    back = np.zeros_like(carrying)
    reach = np.zeros((S, S), dtype=bool)  # reach[j, i]: (i, s) for some 1 <= s <= t - 2 reaches (j, t - 1)
    for t in range(2, T + 1):
        back[t] = carrying[t] & reach.T
        np.fill_diagonal(back[t], False)
        # signals leaving at s = t - 1 join those already on their way; all move one step on
        reach = (carrying[t].astype(np.float32) @ (reach | np.eye(S, dtype=bool)).astype(np.float32)) > 0
        if net.clamp:
            reach[:, net.layout.inputs] = False  # the inputs hold the data at every step
    return back


def returned_logits(net: Network, tr: Trace, origins: np.ndarray) -> np.ndarray:
    """(R, n, C): per origin neuron i, the part of the logits carried by signals that came back to i, exact
    with the gates frozen.

    The run is split three ways: signal that has not reached i (A; the data and the biases start there),
    signal at i (I: arrived, or holding on i's self-connection), and signal that left i for other neurons
    (B). What B brings back into i is dropped; the logits of A + I + B are the network without returns to i.
    """
    lay, T = net.layout, net.steps
    R, n = len(origins), tr.states.shape[1]
    rows = np.arange(R)
    fresh = np.broadcast_to(tr.states[0], (R, n, lay.size)).copy()
    at_origin = np.zeros((R, n))
    left = np.zeros((R, n, lay.size))
    x = tr.states[0][:, lay.inputs]
    for t in range(1, T + 1):
        into_fresh = fresh @ net.W.T + net.b
        into_left = left @ net.W.T + at_origin[..., None] * net.W[:, origins].T[:, None, :]
        arrive = into_fresh[rows, :, origins] + at_origin * net.W[origins, origins][:, None]
        into_fresh[rows, :, origins] = 0.0  # arrived at i: held in ``at_origin``
        into_left[rows, :, origins] = 0.0  # came back to i: dropped
        if t == T:
            readout = into_fresh + into_left
            readout[rows, :, origins] += arrive
            return tr.logits - readout[..., lay.outputs]
        g = tr.gates[t]
        fresh, left, at_origin = into_fresh * g, into_left * g, arrive * g[:, origins].T
        if net.clamp:
            fresh[..., lay.inputs] = x
            left[..., lay.inputs] = 0.0
    raise ValueError("a URN needs at least one step")


def recurrence_cost(net: Network, tr: Trace, y: np.ndarray, back: np.ndarray, budget: float = 2e10) -> tuple[Cost, int]:
    """The cost of removing every signal that comes back to a neuron (each origin's returned part, mean
    ablated, summed), over the neurons that carrying edges return to (``back``), the strongest first as
    far as ``budget`` multiply-adds allow; and how many origins that was."""
    returning = np.zeros(net.layout.size)
    for t in range(len(back)):
        returning += np.where(back[t], tr.flows[t], 0.0).sum(axis=1)
    candidates = np.flatnonzero(returning > 0)
    if not len(candidates):
        return Cost(0.0, 0.0), 0
    per_origin = 4.0 * tr.states.shape[1] * net.layout.size**2 * net.steps
    room = max(4, int(budget // per_origin))
    origins = candidates[np.argsort(returning[candidates])[::-1][:room]]
    returned = np.zeros_like(tr.logits)
    for chunk in range(0, len(origins), 16):
        part = returned_logits(net, tr, origins[chunk : chunk + 16])
        returned += (part - part.mean(axis=1, keepdims=True)).sum(axis=0)
    return cost_of(tr.logits, tr.logits - returned, y), len(origins)


def shortcut_cut(net: Network) -> list:
    """Per step the (W_t, b_t) of the network without its walks shorter than T, as a real lesion (gates
    recomputed), for the input written once: before the last step no neuron with phi holds its value (its
    self-connection cut) and nothing reaches an output, so the only walks left hop onto a phi neuron at every
    step but the last. In clamp mode walks start at every step: no edge set cuts the shorter ones."""
    if net.clamp:
        raise ValueError("shortcut_cut: only with the input written once")
    lay = net.layout
    cut = net.W.copy()
    phi = np.arange(lay.n_in + lay.n_hidden)
    cut[phi, phi] = 0.0
    cut[lay.outputs] = 0.0
    bias = net.b.copy()
    bias[lay.outputs] = 0.0
    return [(cut, bias)] * (net.steps - 1) + [(net.W, net.b)]


def field_weights(net: Network, tr: Trace) -> np.ndarray:
    """(S, S) the functional weight of every edge from a pixel: sqrt of the logit variance it passes from the
    data (at step 1, or at every step in clamp mode); zero elsewhere."""
    lay = net.layout
    pixel_steps = range(1, net.steps + 1) if net.clamp else range(1, 2)
    w = np.zeros((lay.size, lay.size))
    w[:, lay.inputs] = np.sqrt(sum(tr.flows[t][:, lay.inputs] for t in pixel_steps))
    return w


# --- the report ----------------------------------------------------------------------------


@dataclass
class FunctionReport:
    phase: str
    uncertain: bool  # the answer to a question behind the phase lies within its band (margin below 1)
    margin: float  # how clearly the least clear answer behind the phase stands, in bands
    decisions: dict  # name -> {value, threshold, band, margin, question}, in the order asked
    accuracy: float
    chance: float  # accuracy of always answering the probe's most common class
    reference_accuracy: float  # what the untrained reference reaches (null, or the best random network)
    depth: int  # largest carrying depth (0 when dead)
    carrying_depths: list[int]
    widths: list[int]  # kept neurons per level 0..depth (pixels at 0, outputs at depth)
    block_widths: dict  # block -> kept neurons per level
    hidden_width: int  # kept neurons of the hidden block
    relays: dict  # input and output neurons kept between the steps, below the outputs' level
    unplaced: int  # kept neurons whose dominant depth lies outside 0..depth
    depth_shares: list[float]  # share of the logits' variance per depth 0..T (label-free)
    depth_removal_cost: list[float]
    depth_alone_cost: list[float]
    hidden_cost: float
    recurrence_cost: float
    shortcut_cost: float  # once mode: a real lesion of every walk shorter than T (``shortcut_cut``); else NaN
    shorter_cost: float  # the same walks removed with the gates frozen (depths below T together)
    returning_edges: int
    keep_cost: float  # cost of removing every unit not kept
    kept_units: int
    locality: float  # of the kept level-1 neurons' fields
    locality_all: float  # of every neuron's field, weighted by the flow it draws from the pixels (label-free)
    ipr: float
    receptive_field: float  # mean extent per lattice axis of the kept level-1 neurons' fields
    levels: list[int] = field(default_factory=list)  # per neuron, its highest level; -1 not kept

    def to_dict(self) -> dict:
        return asdict(self)


def functional_report(
    net: Network, probe: Probe, null: "FunctionReport | None" = None, thresholds: Thresholds = Thresholds()
) -> FunctionReport:
    """Lesion the network on the probe and decide its phase (see the module docstring).

    ``null``: the report of this trial's untrained network (W0) on the same probe. Its accuracy is the bar
    ``dead`` measures against (without it, ``reference_accuracy``), its field locality the bar of
    ``locally_connected``.
    """
    lay, T = net.layout, net.steps
    tr = trace(net, probe.x)
    y = probe.y
    acc = accuracy(tr.logits, y)
    chance = float(np.bincount(y).max() / len(y))
    reference = null.accuracy if null is not None else reference_accuracy(net, probe)
    bar = max(chance, reference)
    # above the bar by more than the accuracy's sampling noise there (3 standard errors) and ``alive``
    above = max(thresholds.alive, 3.0 * float(np.sqrt(bar * (1.0 - bar) / len(y))))
    alive = Decision("alive", acc - bar, above, 0.5 * above)

    removed, alone, shorter = depth_costs(tr, y)
    shares = depth_shares(tr)
    substantial = [d for d in range(len(shares)) if shares[d] >= thresholds.depth_share]
    carrying = [d for d in substantial if removed[d].value > thresholds.cost]
    redundant = not carrying
    if redundant:  # no depth is needed alone: those that do the task alone carry it
        carrying = [d for d in substantial if alone[d].value <= thresholds.cost]
    depth = max(carrying) if carrying else int(np.argmax(shares))

    hidden_mask = np.zeros((1, T + 1, lay.size), dtype=bool)
    hidden_mask[0, 1:T, lay.hidden] = True
    intact = run(net, probe.x)  # lesion runs are compared with the intact network run the same way
    hidden = cost_of(intact, run(net, probe.x, hidden_mask, tr.means)[0], y)
    back = returning_edges(net, carrying_edges(tr, thresholds.edge_floor))
    recurrence, _ = recurrence_cost(net, tr, y, back)
    shortcut = float("nan") if net.clamp else cost_of(intact, run(net, probe.x, weights=shortcut_cut(net)), y).value

    u = units(net, tr)
    kept, keep_cost = kept_units(net, tr, probe, intact, u, thresholds)
    block = lay.block_of()
    roles, unplaced = neuron_roles(u, kept, dominant_hops(tr, thresholds.level_share), block, depth)
    levels = np.full(lay.size, -1)
    for i, r in roles.items():
        levels[i] = max(r)

    fields = field_weights(net, tr)
    receivers = np.array([1 in roles.get(i, ()) for i in range(lay.size)])
    locality, ipr = receptive_field_locality(fields, lay, receivers)
    locality_all, _ = receptive_field_locality(fields, lay, fields.sum(axis=1) > 0)
    strongest = fields.max(axis=1, keepdims=True)
    in_edges = (fields > 0) & (fields >= thresholds.edge_floor * strongest)
    receptive_field = receptive_field_extent(in_edges[receivers][:, lay.inputs], lay)

    locality_decisions = [Decision("locality", locality, thresholds.locality, thresholds.locality_band, True)]
    if null is not None:
        locality_decisions.append(
            Decision(
                "locality over null", locality - null.locality_all, thresholds.locality_over_null, thresholds.locality_band, True
            )
        )
    phase, steps = classify(
        alive,
        cost_decision("recurrence", recurrence, thresholds),
        cost_decision("hidden block", hidden, thresholds),
        _residual_decision([removed[d] for d in substantial], [alone[d] for d in substantial], redundant, thresholds),
        locality_decisions,
    )
    margin = min(step.margin for step in steps)
    dead = phase == "dead"
    return FunctionReport(
        phase=phase,
        uncertain=margin < 1.0,
        margin=float(margin),
        decisions={d.name: {**d.to_dict(), "question": step.question} for step in steps for d in step.decisions},
        accuracy=acc,
        chance=chance,
        reference_accuracy=float(reference),
        depth=0 if dead else int(depth),
        carrying_depths=[] if dead else [int(d) for d in carrying],
        widths=[] if dead else [sum(1 for r in roles.values() if lv in r) for lv in range(depth + 1)],
        block_widths={
            name: [] if dead else [sum(1 for i, r in roles.items() if lv in r and block[i] == b) for lv in range(depth + 1)]
            for b, name in enumerate(BLOCKS)
        },
        hidden_width=sum(1 for i in roles if block[i] == 1),
        relays={
            name: sum(1 for i, r in roles.items() if block[i] == b and any(0 < lv < depth for lv in r))
            for b, name in ((0, "input"), (2, "output"))
        },
        unplaced=unplaced,
        depth_shares=[float(s) for s in shares],
        depth_removal_cost=[c.value for c in removed],
        depth_alone_cost=[c.value for c in alone],
        hidden_cost=hidden.value,
        recurrence_cost=recurrence.value,
        shortcut_cost=shortcut,
        shorter_cost=shorter.value,
        returning_edges=int(back.sum()),
        keep_cost=keep_cost.value,
        kept_units=len(kept),
        locality=float(locality),
        locality_all=float(locality_all),
        ipr=float(ipr),
        receptive_field=float(receptive_field),
        levels=[int(v) for v in levels],
    )


def _residual_decision(removed: list[Cost], alone: list[Cost], redundant: bool, thresholds: Thresholds) -> Decision:
    """Residual when a second depth is needed too: its removal cost against the tolerance. When no depth is
    needed alone (each could stand in for another): when a second depth also does the task alone."""
    if len(removed) < 2:
        return Decision("second depth", 0.0, thresholds.cost, thresholds.cost_band)
    if redundant:
        second = sorted(alone, key=lambda c: c.value)[1]
        return Decision("second depth alone", -second.value, -thresholds.cost, max(thresholds.cost_band, 2.0 * second.se))
    second = sorted(removed, key=lambda c: c.value, reverse=True)[1]
    return cost_decision("second depth", second, thresholds)


class Step(NamedTuple):
    """One question of the classification, answered by one or more decisions that must all be above."""

    question: str
    decisions: list[Decision]

    @property
    def yes(self) -> bool:
        return all(d.above for d in self.decisions)

    @property
    def margin(self) -> float:
        """How clearly the answer stands: a yes by its weakest decision, a no by its clearest failing one."""
        if self.yes:
            return min(d.margin for d in self.decisions)
        return max(d.margin for d in self.decisions if not d.above)


def classify(
    alive: Decision, recurrence: Decision, hidden: Decision, residual: Decision, locality: list[Decision]
) -> tuple[str, list[Step]]:
    """The phase, and the questions asked on the way to it in the spec's order (each with its answer)."""
    steps = [Step("does the task", [alive])]
    if not steps[-1].yes:
        return "dead", steps
    steps.append(Step("signal comes back", [recurrence]))
    if steps[-1].yes:
        return "recurrent", steps
    steps.append(Step("hidden block needed", [hidden]))
    if not steps[-1].yes:
        return "shallow", steps
    steps.append(Step("two depths needed", [residual]))
    if steps[-1].yes:
        return "residual", steps
    steps.append(Step("local fields", locality))
    return ("locally_connected" if steps[-1].yes else "fully_connected"), steps
