"""A trial's |W| as a PNG drawn straight to pixels: the heatmap every MLflow run carries (``W_heatmap.png``).

The same picture as ``analysis.plots.draw_weight_heatmap`` (neurons ordered by level, level boundaries as
green lines, magma colours from 0 to max |W|), without matplotlib: drawing and saving it take ~0.05 s, not
~0.15 s, at S ~ 1000, and a trial's worker never imports matplotlib (~0.6 s), which counts when a GPU waits
on the CPU between short trials. Notebooks and galleries keep the matplotlib version (axes, signed W).

Above ``side`` pixels a pixel shows the largest |W| of the block of weights it covers, so a single strong
weight stays visible however large S is; below it each weight is a square of whole pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from urn_study.reading.structure import level_blocks, ordered_by_level

# matplotlib's "magma" at 17 evenly spaced points (linear between them: within 2.3 / 255 of it)
MAGMA = (
    "000004",
    "0a0822",
    "1d1147",
    "36106b",
    "51127c",
    "6a1c81",
    "832681",
    "9c2e7f",
    "b73779",
    "d0416f",
    "e75263",
    "f56b5c",
    "fc8961",
    "fea772",
    "fec488",
    "fde2a3",
    "fcfdbf",
)
LINE = (77, 172, 38)  # level boundaries: the matplotlib version's #4dac26
BACKGROUND, INK = (255, 255, 255), (0, 0, 0)
MARGIN_LEFT, MARGIN_TOP, MARGIN_BOTTOM, BAR_GAP, BAR_WIDTH, MARGIN_RIGHT = 34, 26, 34, 10, 14, 52


def _table() -> np.ndarray:
    anchors = np.array([[int(h[i : i + 2], 16) for i in (0, 2, 4)] for h in MAGMA], dtype=float)
    steps = np.linspace(0.0, 1.0, 256)
    positions = np.linspace(0.0, 1.0, len(MAGMA))
    return np.rint(np.stack([np.interp(steps, positions, anchors[:, k]) for k in range(3)], axis=1)).astype(np.uint8)


TABLE = _table()  # 256 colours, as matplotlib's colormaps have


def magma(values: np.ndarray) -> np.ndarray:
    """RGB (uint8, shape + (3,)) of values in [0, 1] on the magma scale (NaN as 0)."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0)
    return TABLE[np.rint(np.clip(values, 0.0, 1.0) * 255).astype(np.uint8)]


def pooled(A: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """``A`` (n x n) at about ``side`` pixels a side: block maxima if n > side, else each entry repeated
    into a square of whole pixels. Returns the pixels and the pixels per entry."""
    n = A.shape[0]
    if n > side:
        starts = (np.arange(side) * n) // side  # strictly increasing: every block holds at least one entry
        return np.maximum.reduceat(np.maximum.reduceat(A, starts, axis=0), starts, axis=1), side / n
    repeat = max(1, side // n)
    return np.repeat(np.repeat(A, repeat, axis=0), repeat, axis=1), float(repeat)


def weight_image(W: np.ndarray, levels: Any = None, layout: Any = None, title: str = "", side: int = 480) -> Image.Image:
    """|W| with rows (to) and columns (from) ordered by ``neuron_order(levels)``, as an RGB image.

    ``levels``: per neuron, -1 inactive (from the structure report); None keeps index order. ``layout`` (a
    Layout) adds the block sizes to the caption.
    """
    shown, levels, scale = ordered_by_level(np.abs(np.asarray(W, dtype=np.float32)), levels)
    pixels, per_entry = pooled(np.where(np.isfinite(shown), shown, np.float32(0.0)), side)
    n = pixels.shape[0]

    width = MARGIN_LEFT + n + BAR_GAP + BAR_WIDTH + MARGIN_RIGHT
    image = Image.new("RGB", (width, MARGIN_TOP + n + MARGIN_BOTTOM), BACKGROUND)
    image.paste(Image.fromarray(magma(pixels / scale)), (MARGIN_LEFT, MARGIN_TOP))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=11)

    blocks = level_blocks(levels)
    for _, start, _stop in blocks[1:]:
        at = int(round(start * per_entry))
        draw.line([(MARGIN_LEFT + at, MARGIN_TOP), (MARGIN_LEFT + at, MARGIN_TOP + n - 1)], fill=LINE)
        draw.line([(MARGIN_LEFT, MARGIN_TOP + at), (MARGIN_LEFT + n - 1, MARGIN_TOP + at)], fill=LINE)
    if len(blocks) > 1:
        last_x = last_y = -100.0
        for level, start, stop in blocks:
            centre = (start + stop) / 2 * per_entry
            name = "off" if level < 0 else f"L{level}"
            if centre - last_x >= 24:  # labels of narrow blocks would overlap: the first of them is kept
                draw.text((MARGIN_LEFT + centre, MARGIN_TOP + n + 3), name, fill=INK, font=font, anchor="mt")
                last_x = centre
            if centre - last_y >= 14:
                draw.text((MARGIN_LEFT - 4, MARGIN_TOP + centre), name, fill=INK, font=font, anchor="rm")
                last_y = centre

    bar_left = MARGIN_LEFT + n + BAR_GAP
    ramp = magma(np.linspace(1.0, 0.0, n))[:, None, :].repeat(BAR_WIDTH, axis=1)
    image.paste(Image.fromarray(ramp), (bar_left, MARGIN_TOP))
    draw.text((bar_left + BAR_WIDTH + 3, MARGIN_TOP), f"{scale:.3g}", fill=INK, font=font, anchor="lt")
    draw.text((bar_left + BAR_WIDTH + 3, MARGIN_TOP + n), "0", fill=INK, font=font, anchor="lb")
    draw.text((bar_left + BAR_WIDTH + 3, MARGIN_TOP + n // 2), "|W|", fill=INK, font=font, anchor="lm")

    caption = "rows: to, columns: from neuron, by level"
    if layout is not None:
        caption += f" (in {layout.n_in}, hidden {layout.n_hidden}, out {layout.n_out})"
    draw.text((MARGIN_LEFT, MARGIN_TOP + n + 17), caption, fill=INK, font=font, anchor="lt")
    if title:
        draw.text((MARGIN_LEFT, MARGIN_TOP // 2), title, fill=INK, font=font, anchor="lm")
    return image
