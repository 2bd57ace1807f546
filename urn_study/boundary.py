"""Where a study's phase changes: the plan of an adaptive boundary search. Pure: no Ray, no MLflow.

The search starts from the study's coarse grid, each point with ``start_seeds`` seeds. Then, on every line of
the grid along a refined axis (the other axes held at one of their grid values), wherever two neighbouring points
read different phases, it adds the point half-way between them in log space, until the bracket is within the
tolerance (high / low <= ``tolerance``) or the trial budget is spent. The two ends of a bracket decide where
the boundary is: an end whose label is near its thresholds (a margin below 1: ``urn_study.reading.function``) or whose
seeds disagree gets more seeds until one label holds the majority of ``max_seeds`` (two agreeing of three); an
end read clearly, and every point far from a boundary, keeps the ``start_seeds`` it started with. Categorical axes (data, steps) are
never bisected: each of their values is a line of its own. Zero on a refined axis stands one log step below
its smallest positive value (as the phase diagrams draw it); a bracket [0, high] is located once high is
within the tolerance of that step.

``BoundaryPlan`` is driven from outside: ``next_trials()`` gives what to run now (several brackets refine at
once), ``record()`` takes each result as it comes, in any order; ``done`` says when nothing is left.
"""
from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

Point = tuple  # the values of the study's grid axes, in grid order


@dataclass(frozen=True)
class Refine:
    """The ``refine:`` block of a study file."""

    axes: tuple[str, ...]  # grid axes bisected in log space (numbers >= 0)
    tolerance: float = 1.25  # a bracket is located when high / low <= tolerance
    budget: int = 200  # trials in all, the coarse grid's included
    start_seeds: int = 1  # seeds a point starts with
    max_seeds: int = 3  # seeds a bracket's end may get when its seeds disagree or its label is uncertain
    outcome: str = "phase"  # the label whose changes are sought: phase | depth


@dataclass(frozen=True)
class Issued:
    """One trial the plan asks for: its number (``<study>-b0007``), point, seed and the round it was added in."""

    number: int
    point: Point
    seed: int
    round: int


@dataclass(frozen=True)
class Segment:
    """Two neighbouring points of a line that read different phases: the boundary lies between them."""

    axis: str
    line: tuple  # (key, value) pairs of the other grid axes
    low: float
    high: float
    phase_low: str
    phase_high: str
    located: bool  # within the tolerance

    @property
    def ratio(self) -> float:
        return self.high / self.low if self.low > 0 else math.inf


@dataclass
class BoundaryPlan:
    grid: dict[str, list]
    seeds: list[int]  # the study's seeds: a point's first seeds, in this order
    refine: Refine
    results: dict[Point, dict[int, tuple[str, float]]] = field(default_factory=dict)  # point -> seed -> (phase, margin)
    issued: list[Issued] = field(default_factory=list)
    pending: set[tuple[Point, int]] = field(default_factory=set)
    failed: set[tuple[Point, int]] = field(default_factory=set)

    def __post_init__(self):
        self.keys = list(self.grid)
        for axis in self.refine.axes:
            if axis not in self.grid:
                raise ValueError(f"refine.axes: {axis} is not a grid axis")
        self.zero_at = {axis: _zero_position(self.grid[axis]) for axis in self.refine.axes}

    # --- the state -------------------------------------------------------------------------------

    def record(self, point: Point, seed: int, phase: str | None, margin: float = math.nan) -> None:
        """A finished trial's phase and margin (None: the trial failed, its point keeps its other seeds)."""
        self.pending.discard((point, seed))
        if phase is None:
            self.failed.add((point, seed))
            return
        self.results.setdefault(point, {})[seed] = (phase, float(margin))

    def label(self, point: Point) -> str | None:
        """The majority phase over the point's seeds (ties: the first in sorted order), or None."""
        phases = [phase for phase, _ in self.results.get(point, {}).values()]
        if not phases:
            return None
        counts = Counter(phases)
        return sorted(counts, key=lambda p: (-counts[p], p))[0]

    def ambiguous(self, point: Point) -> bool:
        """Its seeds disagree, or one of its labels lies within a band of its thresholds."""
        outcomes = list(self.results.get(point, {}).values())
        return len({p for p, _ in outcomes}) > 1 or any(m < 1.0 for _, m in outcomes if not math.isnan(m))

    def seeds_of(self, point: Point) -> list[int]:
        """The seeds issued for a point, in order."""
        return [i.seed for i in self.issued if i.point == point]

    def busy(self, point: Point) -> bool:
        return any(p == point for p, _ in self.pending)

    def wanted_seeds(self, point: Point) -> int:
        """The seeds a bracket's end needs: those it started with when it reads clearly; when it does not, enough
        for its label to be the majority of ``max_seeds`` seeds (two agreeing of three), or all of them."""
        outcomes = self.results.get(point, {})
        if not self.ambiguous(point):
            return self.refine.start_seeds
        lead = max(Counter(p for p, _ in outcomes.values()).values())
        majority = self.refine.max_seeds // 2 + 1
        return min(self.refine.max_seeds, len(self.seeds_of(point)) + max(0, majority - lead))

    def settled(self, point: Point) -> bool:
        """As a bracket's end its label will not change: nothing pending, and it has the seeds it needs."""
        if self.busy(point) or self.label(point) is None:
            return False
        return len(self.seeds_of(point)) >= self.wanted_seeds(point)

    @property
    def done(self) -> bool:
        return not self.pending and not self._proposals()

    # --- what to run -----------------------------------------------------------------------------

    def next_trials(self) -> list[Issued]:
        """The trials to start now (marked pending), within the budget: the coarse grid first, then the seeds the
        ends of each bracket need, then the midpoint of each bracket whose two ends are settled."""
        room = self.refine.budget - len(self.issued)
        new = []
        for point, seed, round_ in self._proposals()[:max(room, 0)]:
            # numbers go on from the highest (a resumed search's trials may have left gaps)
            issued = Issued(max((i.number for i in self.issued), default=-1) + 1, point, seed, round_)
            self.issued.append(issued)
            self.pending.add((point, seed))
            new.append(issued)
        return new

    def _proposals(self) -> list[tuple[Point, int, int]]:
        if len(self.issued) >= self.refine.budget:
            return []
        coarse = [p for p in itertools.product(*self.grid.values()) if not any(i.point == p for i in self.issued)]
        out = [(p, s, 0) for p in coarse for s in self.seeds[:self.refine.start_seeds]]
        if out:
            return out
        ends = {self._point_at(s, v) for s in self.segments() for v in (s.low, s.high)}
        for point in sorted(ends, key=str):
            used = self.seeds_of(point)
            if self.busy(point) or len(used) >= self.wanted_seeds(point):
                continue
            round_ = self._round(point)
            for _ in range(self.wanted_seeds(point) - len(used)):
                seed = self._next_seed(used)
                used.append(seed)
                out.append((point, seed, round_))
        wanted = set()
        for segment in self.segments(settled_only=True):
            if segment.located:
                continue
            point = self._midpoint(segment)
            if point is None or point in wanted or any(i.point == point for i in self.issued):
                continue
            wanted.add(point)
            round_ = 1 + max(self._round(self._point_at(segment, v)) for v in (segment.low, segment.high))
            out += [(point, seed, round_) for seed in self.seeds[:self.refine.start_seeds]]
        return out

    def _next_seed(self, used: list[int]) -> int:
        for seed in self.seeds:
            if seed not in used:
                return seed
        return max([*self.seeds, *used]) + 1

    def _round(self, point: Point) -> int:
        return max((i.round for i in self.issued if i.point == point), default=0)

    # --- the boundaries --------------------------------------------------------------------------

    def segments(self, settled_only: bool = False) -> list[Segment]:
        """Every bracket: on each line along each refined axis, neighbouring labelled points that differ."""
        out = []
        labelled = [p for p in self.results if self.label(p) is not None and (self.settled(p) or not settled_only)]
        busy: set[Point] = set()
        if settled_only:  # a bracket is only refined when every point of its line between its ends is settled
            busy = {p for p in self.results if not self.settled(p)} | {p for p, _ in self.pending}
        for axis in self.refine.axes:
            a = self.keys.index(axis)
            lines: dict[tuple, list[Point]] = {}
            for point in labelled:
                if self._on_grid_line(point, axis):
                    lines.setdefault(point[:a] + point[a + 1:], []).append(point)
            for rest, points in lines.items():
                points.sort(key=lambda p: float(p[a]))
                for lo, hi in zip(points, points[1:]):
                    if self.label(lo) == self.label(hi):
                        continue
                    if settled_only and any(float(lo[a]) < float(p[a]) < float(hi[a]) and p[:a] + p[a + 1:] == rest
                                            for p in busy):
                        continue
                    low, high = float(lo[a]), float(hi[a])
                    line = tuple((k, v) for k, v in zip(self.keys[:a] + self.keys[a + 1:], rest))
                    out.append(Segment(axis, line, low, high, self.label(lo), self.label(hi),
                                       self._located(axis, low, high)))
        return out

    def _on_grid_line(self, point: Point, axis: str) -> bool:
        """Whether the point lies on a line of the coarse grid along ``axis``: its other values are grid values (a
        point added between two values of another axis lies on that axis's line, not on a new line of this one)."""
        return all(value in self.grid[key] for key, value in zip(self.keys, point) if key != axis)

    def _located(self, axis: str, low: float, high: float) -> bool:
        bottom = self.zero_at[axis] if low == 0 else low
        return high <= bottom * self.refine.tolerance or _midvalue(bottom, high) in (low, high)

    def _midpoint(self, segment: Segment) -> Point | None:
        bottom = self.zero_at[segment.axis] if segment.low == 0 else segment.low
        value = _midvalue(bottom, segment.high)
        if value in (segment.low, segment.high) or value <= 0:
            return None
        return self._point_at(segment, value)

    def _point_at(self, segment: Segment, value: float) -> Point:
        values = dict(segment.line)
        values[segment.axis] = value
        return tuple(_same_type(values[k], self.grid[k]) for k in self.keys)

    # --- a record ----------------------------------------------------------------------------------

    def state(self) -> dict:
        """What the search has done, as plain JSON-able data (``restore_state`` reads it back)."""
        return {"results": [[list(p), seed, phase, margin] for p, seeds in self.results.items()
                            for seed, (phase, margin) in seeds.items()],
                "issued": [[i.number, list(i.point), i.seed, i.round] for i in self.issued],
                "pending": [[list(p), seed] for p, seed in sorted(self.pending, key=str)],
                "failed": [[list(p), seed] for p, seed in sorted(self.failed, key=str)]}

    def restore_state(self, state: dict) -> None:
        self.results = {}
        for point, seed, phase, margin in state["results"]:
            self.results.setdefault(tuple(point), {})[seed] = (phase, margin)
        self.issued = [Issued(n, tuple(p), seed, r) for n, p, seed, r in state["issued"]]
        self.pending = {(tuple(p), seed) for p, seed in state["pending"]}
        self.failed = {(tuple(p), seed) for p, seed in state["failed"]}


def _zero_position(values: Iterable[Any]) -> float:
    """Where 0 stands on the log axis: one (median) log step below the smallest positive value, at least half a
    decade (``analysis.phase.axis_scale`` draws it there)."""
    positive = sorted(float(v) for v in values if float(v) > 0)
    if not positive:
        return 1.0
    logs = [math.log10(v) for v in positive]
    steps = sorted(b - a for a, b in zip(logs, logs[1:]))
    step = steps[len(steps) // 2] if steps else 1.0
    return 10 ** (logs[0] - max(step, 0.5))


def _midvalue(low: float, high: float) -> float:
    """The geometric mean, to three significant digits (configs stay readable)."""
    return float(f"{math.sqrt(low * high):.3g}")


def _same_type(value: Any, coarse: list) -> Any:
    """A new value of an axis whose coarse values are numbers stays a number of the same kind where it can."""
    if isinstance(value, float) and all(isinstance(v, int) and not isinstance(v, bool) for v in coarse) and value.is_integer():
        return int(value)
    return value
