"""Reading the emerged structure of a URN from its weights (spec section 5). Pure numpy.

``structure_report`` runs these steps on W (W[i, j] = edge j -> i) and the neuron layout:

1. ``prune``: keep the strongest edges carrying ``keep_share`` of sum |W|; every metric below uses the
   pruned W, so small weights never decide the phase.
2. ``hop_spectrum``: input -> output walks on |W| (diagonal steps are waits, off-diagonal steps hops),
   binned by hop count. Effective depth, skip share and the dead test come from it.
3. ``edge_flow`` / ``structural_edges``: the walk weight through each off-diagonal edge. The
   *structural graph* keeps the edges carrying at least ``flow_floor`` of the strongest flow into their
   target and of the strongest flow out of their source. Reason: global pruning leaves thousands of weak
   edges when W has a noise floor (a trained W always has one), and a single weak back edge would merge a
   layered network into one strongly connected component; such edges carry orders of magnitude less
   flow than the edges at their ends. On a clean W every edge on a walk passes.
4. ``feedback_edges``: the cycles of the structural graph are broken at their weakest flow (a greedy
   feedback arc set inside strongly connected components). The recurrence share is the walk weight lost
   without those edges; levels, widths and depth are longest hop paths on the remaining DAG, counting only
   walks the dynamics can make in ``steps`` (``neuron_levels``).
5. Locality and IPR of the receptive fields that active neurons draw from the input lattice.
6. ``classify``: the phase, in the spec's order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np

from urn_study.layout import Layout

PHASES = ("dead", "recurrent", "shallow", "residual", "locally_connected", "fully_connected")
INPUT_MODES = ("once", "clamp")
READOUTS = ("last", "all")


@dataclass(frozen=True)
class Thresholds:
    keep_share: float = 0.99  # pruning keeps the strongest edges carrying this share of sum|W|
    skip_threshold: float = 0.25  # residual if skip/wait share of walk weight above this
    locality_threshold: float = 0.5  # locally connected if mean locality at or above this
    recurrence_threshold: float = 0.25
    dead_weight: float = 1e-12  # total I->O walk weight at or below this = dead
    chance_margin: float = 0.02  # accuracy <= 1/n_classes + margin = dead
    # structural edge: flow >= this share of the strongest flow at both its ends; planted layered edges
    # sit at >= 0.18, noise edges of a residual net at about (noise / weight) x (gain of a level)
    flow_floor: float = 0.1


@dataclass(frozen=True)
class HopSpectrum:
    p: np.ndarray  # (steps + 1,) share of I->O walk weight with k hops
    pure_share: np.ndarray  # (steps + 1,) share of walk weight with k hops and no wait
    total_weight: float  # sum of the weights of all counted I->O walks


@dataclass
class StructureReport:
    phase: str
    depth: int  # layered depth: max level of the active outputs (0 if dead)
    effective_depth: int  # dominant hop count of the walk weight
    widths: list[int]  # active neurons per level 0..depth (inputs at 0, outputs included)
    hop_spectrum: list[float]
    skip_share: float
    recurrence_share: float
    locality: float
    ipr: float
    receptive_field: float  # mean extent per lattice axis of the level-1 neurons' input fields
    density: float  # pruned edges / S^2
    level_density: list[float]  # share of possible edges present between levels l and l + 1
    active_neurons: int
    total_weight: float
    levels: list[int]  # per neuron, -1 inactive

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> dict:
        """The scalar fields only, for logging as metrics."""
        return {k: v for k, v in asdict(self).items() if not isinstance(v, list)}


# --- pruning and walks ---------------------------------------------------------------------


def prune(W: np.ndarray, keep_share: float = 0.99) -> np.ndarray:
    """A copy of W keeping the strongest edges that carry ``keep_share`` of sum |W| (ties at the cut kept)."""
    W = np.array(W, dtype=np.float64)
    magnitudes = np.sort(np.abs(W).ravel())[::-1]
    total = magnitudes.sum()
    if total == 0.0 or keep_share >= 1.0:
        return W
    n_keep = min(int(np.searchsorted(np.cumsum(magnitudes), keep_share * total)) + 1, magnitudes.size)
    W[np.abs(W) < magnitudes[n_keep - 1]] = 0.0
    return W


def degree_preserving_shuffle(W: np.ndarray, seed: int = 0) -> np.ndarray:
    """A random rewiring of W's nonzero edges that keeps every neuron's in- and out-degree: the edges' targets
    stay, their sources are dealt out again at random (a configuration-model shuffle; an edge drawn twice
    adds up). Each neuron keeps its incoming weights; what is lost is which neuron sends them."""
    W = np.asarray(W, dtype=np.float64)
    rows, cols = np.nonzero(W)
    shuffled = np.zeros_like(W)
    sources = cols[np.random.default_rng(seed).permutation(len(cols))]
    np.add.at(shuffled, (rows, sources), W[rows, cols])
    return shuffled


def walk_lengths(steps: int, input_mode: str = "once", readout: str = "last", readout_from: int = 1) -> np.ndarray:
    """Mask over lengths 0..steps of the I->O walks that reach a read-out.

    once/last: exactly ``steps``; once/all: ``readout_from..steps``; clamp (either read-out): ``1..steps``,
    since the input is written again at every step and a walk may start at any of them.
    """
    if input_mode not in INPUT_MODES or readout not in READOUTS:
        raise ValueError(f"input_mode must be in {INPUT_MODES} and readout in {READOUTS}, got {input_mode!r} and {readout!r}")
    lengths = np.zeros(steps + 1, dtype=bool)
    if input_mode == "clamp":
        lengths[1:] = True
    elif readout == "all":
        lengths[max(readout_from, 1) :] = True
    else:
        lengths[steps] = True
    return lengths


def walk_matrix(W: np.ndarray, layout: Layout, input_mode: str = "once") -> np.ndarray:
    """|W|, with the rows into the inputs zeroed in clamp mode: the input is overwritten, so no walk goes through it."""
    A = np.abs(np.asarray(W, dtype=np.float64))
    if input_mode == "clamp":
        A[layout.inputs, :] = 0.0
    return A


def hop_spectrum(
    W_abs: np.ndarray, layout: Layout, steps: int, input_mode: str = "once", readout: str = "last", readout_from: int = 1
) -> HopSpectrum:
    """Walk weight of I->O walks binned by hops, with v_t^k = D v_{t-1}^k + N v_{t-1}^{k-1} summed over inputs.

    D = |diag W| (waits), N = |offdiag W| (hops); a walk's weight is the product of |W| along it.
    """
    A = walk_matrix(W_abs, layout, input_mode)
    waits = np.diag(A).copy()
    hops = A - np.diag(waits)
    lengths = walk_lengths(steps, input_mode, readout, readout_from)
    v = np.zeros((steps + 1, layout.size))  # v[k]: weight arriving at each neuron after k hops
    v[0, layout.inputs] = 1.0
    by_hops, pure = np.zeros(steps + 1), np.zeros(steps + 1)
    for t in range(1, steps + 1):
        moved = v * waits
        moved[1:] += v[:-1] @ hops.T
        v = moved
        if lengths[t]:
            at_outputs = v[:, layout.outputs].sum(axis=1)
            by_hops += at_outputs
            pure[t] += at_outputs[t]
    total = float(by_hops.sum())
    if total <= 0.0:
        return HopSpectrum(np.zeros(steps + 1), np.zeros(steps + 1), 0.0)
    return HopSpectrum(by_hops / total, pure / total, total)


def total_walk_weight(A: np.ndarray, layout: Layout, lengths: np.ndarray) -> float:
    """Sum of the weights of all I->O walks of the allowed lengths on the walk matrix A."""
    v = np.zeros(layout.size)
    v[layout.inputs] = 1.0
    total = 0.0
    for t in range(1, len(lengths)):
        v = A @ v
        if lengths[t]:
            total += v[layout.outputs].sum()
    return float(total)


class EdgeFlow(NamedTuple):
    hops: np.ndarray  # (S, S) [i, j]: weight of the allowed I->O walks through the hop j -> i, once per use
    starts: np.ndarray  # (S,) weight of the walks starting at each neuron (inputs only)
    ends: np.ndarray  # (S,) weight of the walks ending at each neuron (outputs only)


def edge_flow(A: np.ndarray, layout: Layout, lengths: np.ndarray) -> EdgeFlow:
    """Walk weight through every hop (diagonal 0), and where walks start and end.

    With f_b = A^b 1_I and g_a = (A^T)^a 1_O, a walk of length L using the edge at step b + 1 contributes
    g_a[i] A_ij f_b[j] with a + b + 1 = L, so hops = A * (G^T C F) with C[a, b] = [a + b + 1 allowed].
    """
    steps = len(lengths) - 1
    F, G = np.zeros((steps + 1, layout.size)), np.zeros((steps + 1, layout.size))
    F[0, layout.inputs] = 1.0
    G[0, layout.outputs] = 1.0
    for s in range(1, steps + 1):
        F[s] = A @ F[s - 1]
        G[s] = A.T @ G[s - 1]
    allowed = np.zeros(2 * steps + 1)
    allowed[: steps + 1] = lengths
    a, b = np.indices((steps, steps))
    hops = A * (G[:steps].T @ allowed[a + b + 1] @ F[:steps])
    np.fill_diagonal(hops, 0.0)
    starts = np.where(layout.block_of() == 0, lengths @ G, 0.0)
    ends = np.where(layout.block_of() == 2, lengths @ F, 0.0)
    return EdgeFlow(hops, starts, ends)


def structural_edges(flow: EdgeFlow, flow_floor: float = 0.1) -> np.ndarray:
    """Hops (bool, [i, j] = j -> i) carrying >= flow_floor of the strongest flow into i and out of j.

    The start of the walks at an input counts as a flow into it, their end at an output as a flow out of
    it: a weak edge from an output back to an input is then measured against the walks that really
    enter that input and leave that output, not against other weak edges.
    """
    strongest_in = np.maximum(flow.hops.max(axis=1), flow.starts)[:, None]
    strongest_out = np.maximum(flow.hops.max(axis=0), flow.ends)[None, :]
    return (flow.hops > 0.0) & (flow.hops >= flow_floor * np.maximum(strongest_in, strongest_out))


# --- graph: cycles, activity, levels -------------------------------------------------------


def cycle_edges(adj: np.ndarray) -> np.ndarray:
    """Edges (adj[i, j] = j -> i, no self-loops) inside a strongly connected component of size > 1."""
    reach = adj.astype(bool).copy()  # reach[i, j]: a path of >= 1 hops from j to i
    while True:
        closed = reach | ((reach.astype(np.float32) @ reach.astype(np.float32)) > 0)
        if np.array_equal(closed, reach):
            break
        reach = closed
    return adj & reach.T  # j -> i lies on a cycle iff i reaches j


def feedback_edges(weights: np.ndarray) -> np.ndarray:
    """Cycle edges to leave out: a small, weak set whose removal makes the graph acyclic.

    weights[i, j] > 0 marks the edge j -> i with its strength. Only edges inside strongly connected
    components are candidates; among them, the backward edges of the greedy order of Eades, Lin & Smyth
    (1993, weighted: sinks last, sources first, else the node with the largest out - in weight) are
    removed. Removing every edge of a component instead would let one weak back edge delete a whole
    layered path; a greedy order drops the weak edge that closes the loop.
    """
    adj = np.asarray(weights) > 0
    np.fill_diagonal(adj, False)
    cyclic = cycle_edges(adj)
    if not cyclic.any():
        return cyclic
    w = np.where(cyclic, np.abs(weights), 0.0)
    remaining = cyclic.any(axis=0) | cyclic.any(axis=1)
    in_w, out_w = w.sum(axis=1), w.sum(axis=0)
    in_n, out_n = cyclic.sum(axis=1), cyclic.sum(axis=0)
    head, tail = [], []
    while remaining.any():
        sinks = np.flatnonzero(remaining & (out_n == 0))
        sources = np.flatnonzero(remaining & (in_n == 0) & (out_n > 0))
        if len(sinks) == 0 and len(sources) == 0:
            sources = [np.flatnonzero(remaining)[np.argmax((out_w - in_w)[remaining])]]
        tail.extend(sinks)
        head.extend(sources)
        done = np.concatenate([sinks, sources]).astype(int)
        remaining[done] = False
        in_w -= w[:, done].sum(axis=1)
        out_w -= w[done, :].sum(axis=0)
        in_n -= cyclic[:, done].sum(axis=1)
        out_n -= cyclic[done, :].sum(axis=0)
    position = np.zeros(len(adj), dtype=int)
    position[np.array(head + tail[::-1], dtype=int)] = np.arange(len(head) + len(tail))
    return cyclic & (position[:, None] < position[None, :])


def _reachable(adj: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Neurons reached from the source mask along edges adj[i, j] = j -> i."""
    reached = sources.copy()
    while True:
        grown = reached | adj[:, reached].any(axis=1)
        if np.array_equal(grown, reached):
            return reached
        reached = grown


def _acyclic_hops(W_graph: np.ndarray) -> np.ndarray:
    """The nonzero off-diagonal edges of W_graph without its feedback edges (a DAG)."""
    adj = np.asarray(W_graph) != 0
    np.fill_diagonal(adj, False)
    return adj & ~feedback_edges(np.abs(np.asarray(W_graph, dtype=np.float64)))


def _longest_paths(dag: np.ndarray, layout: Layout) -> np.ndarray:
    """Longest hop path from any input to each neuron on some I -> O path of the DAG; -1 elsewhere."""
    is_input, is_output = (layout.block_of() == b for b in (0, 2))
    active = _reachable(dag, is_input) & _reachable(dag.T, is_output)
    dag = dag & active[:, None] & active[None, :]
    levels = np.where(active & is_input, 0, -1)
    for _ in range(layout.size + 1):  # longest paths on a DAG settle within S rounds
        longer = np.where(dag & (levels[None, :] >= 0), levels[None, :] + 1, -1).max(axis=1)
        raised = np.maximum(levels, longer)
        if np.array_equal(raised, levels):
            break
        levels = raised
    return levels


def _timed_levels(dag: np.ndarray, waits: np.ndarray, layout: Layout, lengths: np.ndarray) -> np.ndarray:
    """Largest hop count after which an allowed I -> O walk (hops on the DAG, waits where waits) visits each neuron."""
    steps = len(lengths) - 1
    hop = dag.astype(np.float64)
    at = np.zeros((steps + 1, steps + 1, layout.size), dtype=bool)  # at[t, k]: visited at step t after k hops
    at[0, 0, layout.inputs] = True
    for t in range(1, steps + 1):
        at[t] = at[t - 1] & waits
        at[t, 1:] |= (at[t - 1, :-1] @ hop.T) > 0
    finish = np.zeros((steps + 1, layout.size), dtype=bool)  # finish[r]: an output is reached in exactly r steps
    finish[0, layout.outputs] = True
    for r in range(1, steps + 1):
        finish[r] = (finish[r - 1] & waits) | ((finish[r - 1] @ hop) > 0)
    levels = np.full(layout.size, -1)
    for t in range(steps + 1):
        ends = np.zeros(layout.size, dtype=bool)
        for length in np.flatnonzero(lengths[t:]) + t:
            ends |= finish[length - t]
        hops = np.where(at[t] & ends, np.arange(steps + 1)[:, None], -1).max(axis=0)
        levels = np.maximum(levels, hops)
    return levels


def neuron_levels(
    W_pruned: np.ndarray,
    layout: Layout,
    steps: int | None = None,
    input_mode: str = "once",
    readout: str = "last",
    readout_from: int = 1,
) -> np.ndarray:
    """Per neuron, the longest hop path from any input over the nonzero off-diagonal edges of W; -1 if inactive.

    Feedback edges (``feedback_edges``, weighted by |W|) are left out, so paths run on a DAG. Without
    ``steps``: active = reachable from I and reaching O; inputs start at 0 and rise when fed by active
    neurons. With ``steps``: only walks the dynamics can make count (allowed lengths, waits on the nonzero
    diagonal), so no level exceeds ``steps``; on a layered W both agree, on a dense unstructured W the
    plain longest path is a meaningless chain through all neurons. ``structure_report`` passes the
    structural graph already cut at its feedback edges, with the waits on the diagonal.
    """
    dag = _acyclic_hops(W_pruned)
    if steps is None:
        return _longest_paths(dag, layout)
    waits = np.diag(walk_matrix(W_pruned, layout, input_mode)) != 0
    return _timed_levels(dag, waits, layout, walk_lengths(steps, input_mode, readout, readout_from))


def neuron_order(levels) -> np.ndarray:
    """A permutation ordering neurons by level, inactive (-1) last; stable within a level (for heatmaps)."""
    levels = np.asarray(levels)
    key = np.where(levels < 0, levels.max(initial=0) + 1, levels)
    return np.argsort(key, kind="stable")


def level_blocks(levels: Any) -> list[tuple[int, int, int]]:
    """(level, start, stop) runs of the neuron order: the blocks the heatmap is divided into (-1 = inactive)."""
    levels = np.asarray(levels, dtype=int)
    ordered = levels[neuron_order(levels)]
    blocks, start = [], 0
    for i in range(1, len(ordered) + 1):
        if i == len(ordered) or ordered[i] != ordered[start]:
            blocks.append((int(ordered[start]), start, i))
            start = i
    return blocks


def ordered_by_level(W: np.ndarray, levels: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """What a heatmap of W shows: (W with rows and columns in ``neuron_order(levels)``, the levels used (all 0
    when ``levels`` is None or does not fit W), the largest finite |W| to scale colours by (1 if none or 0))."""
    size = W.shape[0]
    if levels is None or len(levels) != size:
        levels = np.zeros(size, dtype=int)
    order = neuron_order(levels)
    shown = W[np.ix_(order, order)]
    finite = shown[np.isfinite(shown)]
    scale = float(np.max(np.abs(finite))) if finite.size else 1.0
    return shown, np.asarray(levels), scale if scale > 0 else 1.0


# --- receptive fields ----------------------------------------------------------------------


def receptive_field_locality(W_pruned: np.ndarray, layout: Layout, receivers: np.ndarray) -> tuple[float, float]:
    """(locality, ipr) of the input weights w_j = |W_ij| of the receiver neurons, weighted by sum w.

    Spread is the weighted second moment around the centroid, sum_{j,k} w_j w_k d_jk^2 / (2 (sum w)^2),
    with d the lattice distance (nearest image if periodic). Its mean under a random permutation of the
    input positions is ((sum w)^2 - sum w^2) mean(d^2) / (2 (sum w)^2); locality = 1 - spread / that.
    Squared distances, not plain ones: a 3x3 field on the 8x8 lattice then scores 0.87 rather than 0.57,
    clear of the 0.5 threshold. Receivers with one input (0/0) are left out of the locality; if every
    receiver has one, locality = 1 (point fields); with no receivers both are 0.
    """
    rows = np.flatnonzero(receivers)
    w = np.abs(W_pruned[rows][:, layout.inputs])
    fed_inputs = np.flatnonzero(rows < layout.n_in)
    w[fed_inputs, rows[fed_inputs]] = 0.0  # an input fed by inputs: its own value is no part of its field
    w = w[w.sum(axis=1) > 0]
    if len(w) == 0:
        return 0.0, 0.0
    mass = w.sum(axis=1)
    squares = (w**2).sum(axis=1)
    ipr = float(np.average((w**4).sum(axis=1) / squares**2, weights=mass))
    multi = (w > 0).sum(axis=1) >= 2
    if not multi.any():
        return 1.0, ipr
    d2 = layout.distances[layout.inputs, layout.inputs] ** 2
    mean_d2 = d2[~np.eye(layout.n_in, dtype=bool)].mean()
    spread = ((w[multi] @ d2) * w[multi]).sum(axis=1)
    shuffled = (mass[multi] ** 2 - squares[multi]) * mean_d2
    locality = float(np.average(1.0 - spread / shuffled, weights=mass[multi]))
    return locality, ipr


def _axis_extent(coords: np.ndarray, side: int, periodic: bool) -> int:
    """Sites spanned by integer coordinates on one axis; on a ring, the shortest arc covering them."""
    sites = np.unique(coords.astype(int))
    if not periodic or len(sites) == 1:
        return int(sites[-1] - sites[0] + 1)
    gaps = np.diff(np.append(sites, sites[0] + side))
    return int(side - gaps.max() + 1)


def receptive_field_extent(in_edges: np.ndarray, layout: Layout) -> float:
    """Mean over rows of in_edges (bool, (R, n_in)) of the per-axis extent of the inputs marked, averaged over axes."""
    coords = layout.positions[layout.inputs]
    extents = []
    for row in in_edges:
        if row.any():
            extents.append(
                np.mean([_axis_extent(coords[row, ax], side, layout.periodic) for ax, side in enumerate(layout.lattice_shape)])
            )
    return float(np.mean(extents)) if extents else 0.0


# --- the report ----------------------------------------------------------------------------


def classify(
    total_weight: float,
    recurrence_share: float,
    effective_depth: int,
    skip_share: float,
    locality: float,
    accuracy: float | None = None,
    n_classes: int | None = None,
    thresholds: Thresholds = Thresholds(),
) -> str:
    """The phase, decided in the spec's order."""
    at_chance = accuracy is not None and n_classes and accuracy <= 1.0 / n_classes + thresholds.chance_margin
    if total_weight <= thresholds.dead_weight or at_chance:
        return "dead"
    if recurrence_share > thresholds.recurrence_threshold:
        return "recurrent"
    if effective_depth == 1:
        return "shallow"
    if skip_share > thresholds.skip_threshold:
        return "residual"
    if locality >= thresholds.locality_threshold:
        return "locally_connected"
    return "fully_connected"


def recurrence_share(A: np.ndarray, feedback: np.ndarray, layout: Layout, lengths: np.ndarray) -> float:
    """Share of the walk weight on A that uses one of the ``feedback`` edges (0 when there is no walk)."""
    total = total_walk_weight(A, layout, lengths)
    if total <= 0.0:
        return 0.0
    acyclic = np.where(feedback, 0.0, A)
    return float(np.clip(1.0 - total_walk_weight(acyclic, layout, lengths) / total, 0.0, 1.0))


def _level_density(structural: np.ndarray, levels: np.ndarray, depth: int) -> list[float]:
    shares = []
    for level in range(depth):
        src, dst = levels == level, levels == level + 1
        possible = src.sum() * dst.sum()
        shares.append(float(structural[np.ix_(dst, src)].sum() / possible) if possible else 0.0)
    return shares


def structure_report(
    W: np.ndarray,
    layout: Layout,
    steps: int,
    input_mode: str = "once",
    readout: str = "last",
    readout_from: int = 1,
    accuracy: float | None = None,
    n_classes: int | None = None,
    thresholds: Thresholds = Thresholds(),
) -> StructureReport:
    """All structure metrics of W and its phase (see the module docstring for the steps)."""
    pruned = prune(W, thresholds.keep_share)
    spectrum = hop_spectrum(pruned, layout, steps, input_mode, readout, readout_from)
    lengths = walk_lengths(steps, input_mode, readout, readout_from)
    A = walk_matrix(pruned, layout, input_mode)
    flow = edge_flow(A, layout, lengths)
    structural = structural_edges(flow, thresholds.flow_floor)

    graph = np.where(structural, flow.hops, 0.0)
    feedback = feedback_edges(graph)
    recurrence = recurrence_share(A, feedback, layout, lengths)
    dag = np.where(feedback, 0.0, graph) + np.diag(np.diag(A))  # the waits ride on the diagonal
    levels = neuron_levels(dag, layout, steps, input_mode, readout, readout_from)
    out_levels = levels[layout.outputs]
    effective_depth = int(np.argmax(spectrum.p)) if spectrum.total_weight > 0.0 else 0
    skip_share = float(1.0 - spectrum.pure_share[effective_depth]) if spectrum.total_weight > 0.0 else 0.0

    receivers = (levels > 0) & structural[:, layout.inputs].any(axis=1)
    locality, ipr = receptive_field_locality(pruned, layout, receivers)
    first_level = levels == 1
    receptive_field = receptive_field_extent(structural[first_level][:, layout.inputs], layout)

    phase = classify(spectrum.total_weight, recurrence, effective_depth, skip_share, locality, accuracy, n_classes, thresholds)
    depth = int(out_levels.max()) if phase != "dead" and (out_levels >= 0).any() else 0
    widths = [int((levels == level).sum()) for level in range(depth + 1)] if depth > 0 else []
    return StructureReport(
        phase=phase,
        depth=depth,
        effective_depth=effective_depth,
        widths=widths,
        hop_spectrum=[float(x) for x in spectrum.p],
        skip_share=skip_share,
        recurrence_share=recurrence,
        locality=locality,
        ipr=ipr,
        receptive_field=receptive_field,
        density=float(np.count_nonzero(pruned) / pruned.size),
        level_density=_level_density(structural, levels, depth),
        active_neurons=int((levels >= 0).sum()),
        total_weight=spectrum.total_weight,
        levels=[int(x) for x in levels],
    )
