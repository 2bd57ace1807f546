"""Drawing a URN's weight matrix with its neurons ordered by emergent level.

A dense S x S heatmap of W is unreadable in index order; reordered by level (inputs, level 1, level 2, ...,
outputs, inactive last) a layered network shows as blocks below the diagonal, a residual one adds a
bright diagonal, a recurrent one blocks above it. Level boundaries are drawn as thin lines.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure  # not pyplot: no global state, no GUI backend (Agg when saved)

from urn_study.reading.structure import level_blocks, ordered_by_level


def draw_weight_heatmap(
    W: np.ndarray, levels: Any = None, layout: Any = None, title: str = "", signed: bool = False, ax: Axes | None = None
) -> Figure:
    """Heatmap of |W| (or signed W) with rows (to) and columns (from) ordered by ``neuron_order(levels)``.

    ``levels``: per neuron, -1 inactive (from the structure report); None keeps index order. ``layout``
    (a Layout) only adds the block sizes to the axis labels. Draws into ``ax`` if given (galleries).
    """
    shown, levels, scale = ordered_by_level(np.asarray(W, dtype=float), levels)
    if ax is None:
        fig = Figure(figsize=(5.2, 4.6))
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    if signed:
        image = ax.imshow(shown, cmap="RdBu_r", vmin=-scale, vmax=scale, interpolation="nearest")
    else:
        image = ax.imshow(np.abs(shown), cmap="magma", vmin=0, vmax=scale, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="W" if signed else "|W|")
    blocks = level_blocks(levels)
    for _, start, _stop in blocks[1:]:
        ax.axhline(start - 0.5, color="#4dac26", linewidth=0.6)
        ax.axvline(start - 0.5, color="#4dac26", linewidth=0.6)
    ticks = [(start + stop - 1) / 2 for _, start, stop in blocks]
    names = ["off" if level < 0 else f"L{level}" for level, _, _ in blocks]
    if len(blocks) > 1:
        ax.set_xticks(ticks, names, fontsize=7)
        ax.set_yticks(ticks, names, fontsize=7)
    suffix = ""
    if layout is not None:
        suffix = f" (in {layout.n_in}, hidden {layout.n_hidden}, out {layout.n_out})"
    ax.set_xlabel("from neuron, by level" + suffix, fontsize=8)
    ax.set_ylabel("to neuron, by level", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return fig
