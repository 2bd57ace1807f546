"""Hand-made structures embedded in a URN's W, with known phase, depth and widths.

Every builder returns a float64 (S, S) W for a ``Layout`` (W[i, j] = edge j -> i). Weights have random
signs and magnitudes uniform in [0.5, 1.5] / sqrt(fan_in), bounded away from zero so that small noise
stays below every planted weight. Levels: inputs are level 0, outputs the last level.
"""

from __future__ import annotations

import numpy as np

from urn_study.layout import Layout


def _signed(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    magnitudes = rng.uniform(0.5, 1.5, size=shape) / np.sqrt(fan_in)
    return magnitudes * rng.choice([-1.0, 1.0], size=shape)


def _connect_dense(W: np.ndarray, rng: np.random.Generator, targets: np.ndarray, sources: np.ndarray) -> None:
    W[np.ix_(targets, sources)] = _signed(rng, (len(targets), len(sources)), len(sources))


def _indices(block: slice) -> np.ndarray:
    return np.arange(block.start, block.stop)


def hidden_levels(layout: Layout, hidden_widths: list[int], rng: np.random.Generator) -> list[np.ndarray]:
    """Distinct hidden neurons for each hidden level, drawn at random (sorted within a level)."""
    if sum(hidden_widths) > layout.n_hidden:
        raise ValueError(
            f"hidden widths {hidden_widths} need {sum(hidden_widths)} hidden neurons, the layout has {layout.n_hidden}"
        )
    chosen = layout.n_in + rng.permutation(layout.n_hidden)[: sum(hidden_widths)]
    bounds = np.cumsum([0, *hidden_widths])
    return [np.sort(chosen[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:])]


def _layered(layout: Layout, hidden_widths: list[int], rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
    """A dense layered net inputs -> hidden levels -> outputs, and its levels as index arrays."""
    levels = [_indices(layout.inputs), *hidden_levels(layout, hidden_widths, rng), _indices(layout.outputs)]
    W = np.zeros((layout.size, layout.size))
    for sources, targets in zip(levels[:-1], levels[1:]):
        _connect_dense(W, rng, targets, sources)
    return W, levels


def plant_fully_connected(layout: Layout, hidden_widths: list[int], seed: int = 0) -> np.ndarray:
    """Dense between consecutive levels: depth len(hidden_widths) + 1, widths [n_in, *hidden_widths, n_out]."""
    return _layered(layout, hidden_widths, np.random.default_rng(seed))[0]


def neighbourhoods(shape: tuple[int, ...], r: int, periodic: bool) -> list[np.ndarray]:
    """For each site (row-major), the flat indices of its r-per-axis neighbourhood.

    Offsets per axis are arange(r) - r // 2, as in the teacher data; off-lattice sites wrap if periodic,
    else they are dropped.
    """
    sites = np.indices(shape).reshape(len(shape), -1).T
    offsets = np.indices((r,) * len(shape)).reshape(len(shape), -1).T - r // 2
    sides = np.asarray(shape)
    fields = []
    for site in sites:
        around = site + offsets
        if periodic:
            around = around % sides
        else:
            around = around[np.all((around >= 0) & (around < sides), axis=1)]
        fields.append(np.unique(np.ravel_multi_index(tuple(around.T), shape)))
    return fields


def plant_locally_connected(layout: Layout, depth: int, receptive_field: int, seed: int = 0) -> np.ndarray:
    """depth - 1 local levels on the lattice, then a dense readout; widths [n_in] * depth + [n_out].

    Level l (1 <= l < depth) is hidden channel l - 1; each of its neurons receives from the
    ``receptive_field``-per-axis neighbourhood of its own site in level l - 1. Needs the ``lattice``
    hidden layout with at least depth - 1 channels.
    """
    if layout.n_hidden < (depth - 1) * layout.n_in:
        raise ValueError(f"depth {depth} needs {depth - 1} hidden channels, the layout has {layout.n_hidden // layout.n_in}")
    rng = np.random.default_rng(seed)
    W = np.zeros((layout.size, layout.size))
    fields = neighbourhoods(layout.lattice_shape, receptive_field, layout.periodic)
    previous = _indices(layout.inputs)
    for level in range(1, depth):
        current = layout.n_in * level + np.arange(layout.n_in)
        for site, field in enumerate(fields):
            W[current[site], previous[field]] = _signed(rng, (len(field),), len(field))
        previous = current
    _connect_dense(W, rng, _indices(layout.outputs), previous)
    return W


def plant_residual(layout: Layout, hidden_widths: list[int], seed: int = 0) -> np.ndarray:
    """A dense layered net plus identity carrying: self-loops of weight 1 on every hidden neuron, and skip
    edges from each level to the level two above (inputs -> level 2, ...).

    With input written once and steps above the layered depth, every I->O walk has to wait on a hidden
    neuron, and walks with fewer hops (skips) carry weight too. Layered depth len(hidden_widths) + 1.
    """
    rng = np.random.default_rng(seed)
    W, levels = _layered(layout, hidden_widths, rng)
    for neurons in levels[1:-1]:
        W[neurons, neurons] = 1.0
    for sources, targets in zip(levels[:-2], levels[2:]):
        _connect_dense(W, rng, targets, sources)
    return W


def plant_shallow(layout: Layout, input_waits: bool = False, seed: int = 0) -> np.ndarray:
    """Inputs -> outputs directly; with ``input_waits`` the inputs also keep themselves (self-loops of 1),
    so in ``once`` mode walks of any length exist (wait on the input, then one hop)."""
    rng = np.random.default_rng(seed)
    W = np.zeros((layout.size, layout.size))
    _connect_dense(W, rng, _indices(layout.outputs), _indices(layout.inputs))
    if input_waits:
        inputs = _indices(layout.inputs)
        W[inputs, inputs] = 1.0
    return W


def plant_dead(layout: Layout, hidden_widths: list[int], seed: int = 0) -> np.ndarray:
    """A layered net whose last level was cut from the outputs: no input reaches an output."""
    W = plant_fully_connected(layout, hidden_widths, seed)
    W[layout.outputs, :] = 0.0
    return W


def plant_recurrent(layout: Layout, cycle_length: int = 3, seed: int = 0) -> np.ndarray:
    """Inputs -> c_0 -> c_1 -> ... -> c_{n-1} -> c_0 (a cycle of n hidden neurons), c_{n-1} -> outputs.

    Walks have n + 1 + m n hops for m laps; run it for ``recurrent_steps(n)`` steps in ``once`` mode.
    """
    rng = np.random.default_rng(seed)
    cycle = np.concatenate(hidden_levels(layout, [1] * cycle_length, rng))
    W = np.zeros((layout.size, layout.size))
    _connect_dense(W, rng, cycle[:1], _indices(layout.inputs))
    W[np.roll(cycle, -1), cycle] = _signed(rng, (cycle_length,), 1)
    _connect_dense(W, rng, _indices(layout.outputs), cycle[-1:])
    return W


def recurrent_steps(cycle_length: int, laps: int = 1) -> int:
    """Steps at which every I->O walk of ``plant_recurrent`` (once mode, read at the end) makes ``laps`` laps."""
    return cycle_length * (laps + 1) + 1


def add_noise(W: np.ndarray, scale: float, seed: int = 0) -> np.ndarray:
    """W plus i.i.d. normal noise on every entry, std = scale * mean |nonzero W|."""
    W = np.asarray(W, dtype=np.float64)
    nonzero = np.abs(W[W != 0])
    std = scale * (nonzero.mean() if nonzero.size else 1.0)
    return W + np.random.default_rng(seed).normal(0.0, std, size=W.shape)
