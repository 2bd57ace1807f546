"""Neuron geometry of a URN (spec section 2): positions and wiring costs of every neuron.

Index blocks: inputs ``[0, n_in)``, hidden ``[n_in, n_in + n_hidden)``, outputs the last ``n_out``.
``distances[i, j]`` is the wiring cost of the edge j -> i used by the locality regulator and by the
locality metric; it already includes the output rule (``uniform``/``center``/``free``). A saved layout
(``layout.json``) holds the positions and the rule only: the distances are computed again on load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HIDDEN_LAYOUTS = ("lattice", "random")
OUTPUT_POSITIONS = ("uniform", "center", "free")


@dataclass(frozen=True, eq=False)
class Layout:
    n_in: int
    n_hidden: int
    n_out: int
    lattice_shape: tuple[int, ...]
    periodic: bool
    positions: np.ndarray  # (S, dim) coordinates; outputs sit at the lattice centre for drawing
    distances: np.ndarray  # (S, S) wiring cost of edge j -> i
    output_position: str = "uniform"

    @property
    def size(self) -> int:
        return self.n_in + self.n_hidden + self.n_out

    @property
    def inputs(self) -> slice:
        return slice(0, self.n_in)

    @property
    def hidden(self) -> slice:
        return slice(self.n_in, self.n_in + self.n_hidden)

    @property
    def outputs(self) -> slice:
        return slice(self.n_in + self.n_hidden, self.size)

    def block_of(self) -> np.ndarray:
        """Per-neuron block label: 0 input, 1 hidden, 2 output."""
        return np.repeat([0, 1, 2], [self.n_in, self.n_hidden, self.n_out])

    def to_dict(self) -> dict:
        return {
            "n_in": self.n_in,
            "n_hidden": self.n_hidden,
            "n_out": self.n_out,
            "lattice_shape": list(self.lattice_shape),
            "periodic": self.periodic,
            "output_position": self.output_position,
            "positions": self.positions.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Layout":
        n_in, n_hidden = int(d["n_in"]), int(d["n_hidden"])
        shape, periodic = tuple(int(s) for s in d["lattice_shape"]), bool(d["periodic"])
        positions = np.asarray(d["positions"], dtype=np.float64)
        rule = d.get("output_position", "uniform")
        if "distances" in d:  # layouts saved before the distances were left out
            distances = np.asarray(d["distances"], dtype=np.float64)
        else:
            distances = wiring_distances(positions, n_in, n_hidden, shape, periodic, rule)
        return cls(n_in, n_hidden, int(d["n_out"]), shape, periodic, positions, distances, rule)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> "Layout":
        return cls.from_dict(json.loads(Path(path).read_text()))


def lattice_positions(shape: tuple[int, ...]) -> np.ndarray:
    """Integer coordinates of a lattice, row-major (the order features are flattened in)."""
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1)


def pairwise_distances(a: np.ndarray, b: np.ndarray, shape: tuple[int, ...], periodic: bool) -> np.ndarray:
    """Euclidean distances between rows of a and b; on a ring/torus, by the nearest image."""
    diff = np.abs(a[:, None, :] - b[None, :, :])
    if periodic:
        sides = np.asarray(shape, dtype=np.float64)
        diff = np.minimum(diff, sides - diff)
    return np.sqrt((diff**2).sum(-1))


def make_layout(
    lattice_shape: tuple[int, ...],
    n_out: int,
    hidden_channels: int = 1,
    hidden_layout: str = "lattice",
    output_position: str = "uniform",
    periodic: bool = False,
    seed: int = 0,
) -> Layout:
    """Place inputs on the data's lattice, hidden neurons as channel copies or at random, outputs by rule."""
    if hidden_layout not in HIDDEN_LAYOUTS:
        raise ValueError(f"hidden_layout must be one of {HIDDEN_LAYOUTS}, got {hidden_layout!r}")
    if output_position not in OUTPUT_POSITIONS:
        raise ValueError(f"output_position must be one of {OUTPUT_POSITIONS}, got {output_position!r}")
    lattice_shape = tuple(int(s) for s in lattice_shape)
    inputs = lattice_positions(lattice_shape)
    n_in = len(inputs)
    if hidden_layout == "lattice":
        hidden = np.tile(inputs, (hidden_channels, 1))
    else:
        rng = np.random.default_rng(seed)
        upper = np.asarray(lattice_shape, dtype=np.float64) - 1.0
        hidden = rng.uniform(0.0, 1.0, size=(hidden_channels * n_in, len(lattice_shape))) * upper
    centre = inputs.mean(axis=0, keepdims=True)
    outputs = np.repeat(centre, n_out, axis=0)
    positions = np.concatenate([inputs, hidden, outputs])
    distances = wiring_distances(positions, n_in, len(hidden), lattice_shape, periodic, output_position)
    return Layout(n_in, len(hidden), n_out, lattice_shape, periodic, positions, distances, output_position)


def wiring_distances(
    positions: np.ndarray, n_in: int, n_hidden: int, lattice_shape: tuple[int, ...], periodic: bool, output_position: str
) -> np.ndarray:
    """The (S, S) wiring costs of neurons at ``positions`` (inputs, hidden, outputs), outputs by their rule."""
    distances = pairwise_distances(positions, positions, lattice_shape, periodic)
    out = slice(n_in + n_hidden, len(positions))
    if output_position == "uniform":
        inputs = positions[:n_in]
        lattice_d = pairwise_distances(inputs, inputs, lattice_shape, periodic)
        mean_d = lattice_d[~np.eye(n_in, dtype=bool)].mean() if n_in > 1 else 0.0
        distances[out, :] = mean_d
        distances[:, out] = mean_d
    elif output_position == "free":
        distances[out, :] = 0.0
        distances[:, out] = 0.0
    return distances
