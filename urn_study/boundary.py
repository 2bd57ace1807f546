"""Where a study's phase changes: the plan of an adaptive boundary search. Pure: no Ray, no MLflow.

The search starts from the study's coarse grid, each point with ``start_seeds`` seeds. Then, on every line of
the grid along a refined axis (the other axes held at one of their grid values), wherever two neighbouring points
read different phases, it adds the point half-way between them in log space, until the bracket is within the
tolerance (high / low <= ``tolerance``) or the trial budget is spent. A point's label is the majority of its
seeds' labels. Every point starts with ``start_seeds``; the points that decide where a boundary is, the two ends
of every bracket and the lowest and highest coarse point of every line (where a change that the first seed alone
missed shows), get seeds until one label holds the majority of ``max_seeds`` (two agreeing of three), as a dense
grid's majority of every seed would have it; a point far from a boundary keeps the seeds it started with. The
label's margin (``urn_study.reading.function``: below 1, the label lies within a band of its thresholds) orders
the work: of a bracket's two ends, one read clearly waits while the other, uncertain, gets its seeds, which may
move the bracket away from it. A clear reading by one seed does not stand for the others' (a seed can read
clearly on its own side of a boundary the other seeds have crossed), so it never replaces their majority.

The evidence along a line is pooled seed by seed: a seed that read one label at two points of a line reads it
between them too (its label there is *implied*, and costs no trial), as long as that seed's own labels along the
line have never gone back to a label they had left (then nothing is implied from it on that line). Seeds are run
in the study's order, the first whose label at the point is not known first, and one at a time as far as the
majority allows: at a point half-way between two others, the seeds that read one label at both ends already
vote, and a trial is needed only of those that changed in between. Near a boundary where seeds disagree, this
gives the same majority as running every seed at every point (the dense grid's label) at a fraction of the
trials (``benchmarks/boundary_search.py`` counts both and checks the implied labels against trained ones).

Categorical axes (data, steps) are never bisected: each of their values is a line of its own. Zero on a
refined axis stands one log step below its smallest positive value (``zero_position``, where the phase diagrams
draw it); a bracket [0, high] is located once high is within the tolerance of that step.

``BoundaryPlan`` is driven from outside: ``next_trials()`` gives what to run now (several brackets refine at
once), ``record()`` takes each result as it comes, in any order; ``done`` says when nothing is left.
"""

from __future__ import annotations

import itertools
import math
import statistics
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
        self.zero_at = {axis: zero_position(self.grid[axis]) for axis in self.refine.axes}
        self._index: dict | None = None  # (axis, rest of the point) -> seed -> [(value, label)], built on demand

    # --- the state -------------------------------------------------------------------------------

    def record(self, point: Point, seed: int, phase: str | None, margin: float = math.nan) -> None:
        """A finished trial's phase and margin (None: the trial failed, its point keeps its other seeds)."""
        self.pending.discard((point, seed))
        if phase is None:
            self.failed.add((point, seed))
            return
        self.results.setdefault(point, {})[seed] = (phase, float(margin))
        self._index = None

    def known(self, point: Point) -> dict[int, str]:
        """Seed -> label at the point: the seeds run there, and those whose label is implied by their own labels on
        both sides of it along a line (see the module's docstring)."""
        out = {seed: phase for seed, (phase, _) in self.results.get(point, {}).items()}
        for seed in self.seeds[: self.refine.max_seeds]:
            if seed not in out:
                implied = self.implied(point, seed)
                if implied is not None:
                    out[seed] = implied
        return out

    def implied(self, point: Point, seed: int) -> str | None:
        """The label a seed reads at a point it has not run at, where its nearest labels on either side along a
        line of a refined axis agree (and the seed's labels along that line never went back); else None."""
        index = self._line_index()
        labels = set()
        for axis in self.refine.axes:
            a = self.keys.index(axis)
            if not self._on_grid_line(point, axis):
                continue
            seen = index.get((axis, point[:a] + point[a + 1 :]), {}).get(seed)
            if not seen:
                continue
            value = float(point[a])
            below = [label for v, label in seen if v < value]
            above = [label for v, label in seen if v > value]
            if below and above and below[-1] == above[0]:
                labels.add(below[-1])
        return labels.pop() if len(labels) == 1 else None

    def _line_index(self) -> dict:
        """(axis, the point's other values) -> seed -> its labels along the line in order, for the seeds whose
        labels there form one run per label (a seed that went back to a label it had left implies nothing)."""
        if self._index is not None:
            return self._index
        index: dict = {}
        for axis in self.refine.axes:
            a = self.keys.index(axis)
            for point, outcomes in self.results.items():
                if not self._on_grid_line(point, axis):
                    continue
                line = index.setdefault((axis, point[:a] + point[a + 1 :]), {})
                for seed, (phase, _) in outcomes.items():
                    line.setdefault(seed, []).append((float(point[a]), phase))
        for line in index.values():
            for seed in list(line):
                seen = sorted(line[seed])
                runs = [label for i, (_, label) in enumerate(seen) if i == 0 or seen[i - 1][1] != label]
                if len(runs) == len(set(runs)):
                    line[seed] = seen
                else:
                    del line[seed]
        self._index = index
        return index

    def label(self, point: Point) -> str | None:
        """The majority label over the point's known seeds (ties: the first in sorted order), or None (no trial
        has finished there)."""
        if not self.results.get(point):
            return None
        counts = Counter(self.known(point).values())
        return sorted(counts, key=lambda p: (-counts[p], p))[0]

    def ambiguous(self, point: Point) -> bool:
        """Its seeds disagree (those run and those implied), or one of its labels lies within a band of its
        thresholds."""
        margins = [m for _, m in self.results.get(point, {}).values() if not math.isnan(m)]
        return len(set(self.known(point).values())) > 1 or any(m < 1.0 for m in margins)

    def seeds_of(self, point: Point) -> list[int]:
        """The seeds issued for a point, in order."""
        return [i.seed for i in self.issued if i.point == point]

    def busy(self, point: Point) -> bool:
        return any(p == point for p, _ in self.pending)

    def missing_seeds(self, point: Point) -> int:
        """The trials an end of a bracket still needs for its label to be the majority of ``max_seeds`` seeds (run
        or implied; two agreeing of three), or for every seed to be known: the dense grid's label, seed by seed."""
        known = self.known(point)
        lead = max(Counter(known.values()).values(), default=0)
        majority = self.refine.max_seeds // 2 + 1
        accounted = set(self.seeds_of(point)) | set(known)
        return max(0, min(self.refine.max_seeds - len(accounted), majority - lead))

    def settled(self, point: Point) -> bool:
        """As a bracket's end its label will not change: nothing pending, and it has the seeds it needs."""
        if self.busy(point) or self.label(point) is None:
            return False
        return self.missing_seeds(point) == 0

    @property
    def done(self) -> bool:
        return not self.pending and not self._proposals()

    # --- what to run -----------------------------------------------------------------------------

    def next_trials(self) -> list[Issued]:
        """The trials to start now (marked pending), within the budget: the coarse grid first, then the seeds the
        ends of each bracket need, then the midpoint of each bracket whose two ends are settled."""
        room = self.refine.budget - len(self.issued)
        new = []
        for point, seed, round_ in self._proposals()[: max(room, 0)]:
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
        out = [(p, s, 0) for p in coarse for s in self.seeds[: self.refine.start_seeds]]
        if out:
            return out
        ends: dict[Point, bool] = {}  # an end of a bracket -> whether it waits for the other end
        for segment in self.segments():
            low, high = self._point_at(segment, segment.low), self._point_at(segment, segment.high)
            for end, other in ((low, high), (high, low)):
                waits = not self.ambiguous(end) and self.ambiguous(other) and not self.settled(other)
                ends[end] = ends.get(end, True) and waits
        for point in self._line_extremes():  # a change that the first seed alone missed shows between them
            ends[point] = False
        for point, waits in sorted(ends.items(), key=str):
            if not waits and not self.busy(point):
                round_ = self._round(point)
                out += [(point, seed, round_) for seed in self._seeds_to_run(point, self.missing_seeds(point))]
        wanted = set()
        for segment in self.segments(settled_only=True):
            if segment.located:
                continue
            point = self._midpoint(segment)
            if point is None or point in wanted or any(i.point == point for i in self.issued):
                continue
            wanted.add(point)
            round_ = 1 + max(self._round(self._point_at(segment, v)) for v in (segment.low, segment.high))
            out += [(point, seed, round_) for seed in self._seeds_to_run(point, max(1, self.refine.start_seeds))]
        return out

    def _line_extremes(self) -> set[Point]:
        """The lowest and the highest coarse point of every line along a refined axis."""
        out = set()
        for point in itertools.product(*self.grid.values()):
            for axis in self.refine.axes:
                values = [float(v) for v in self.grid[axis]]
                if float(point[self.keys.index(axis)]) in (min(values), max(values)):
                    out.add(point)
        return out

    def _seeds_to_run(self, point: Point, n: int) -> list[int]:
        """The next ``n`` seeds for a point, in the study's order: first those whose label there is not known, then
        those whose label is only implied, then new ones."""
        issued, known = set(self.seeds_of(point)), self.known(point)
        unknown = [s for s in self.seeds if s not in issued and s not in known]
        implied = [s for s in self.seeds if s not in issued and s in known]
        out = (unknown + implied)[:n]
        while len(out) < n:
            out.append(self._next_seed([*issued, *out]))
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
                    lines.setdefault(point[:a] + point[a + 1 :], []).append(point)
            for rest, points in lines.items():
                points.sort(key=lambda p: float(p[a]))
                for lo, hi in zip(points, points[1:]):
                    if self.label(lo) == self.label(hi):
                        continue
                    if settled_only and any(float(lo[a]) < float(p[a]) < float(hi[a]) and p[:a] + p[a + 1 :] == rest for p in busy):
                        continue
                    low, high = float(lo[a]), float(hi[a])
                    line = tuple((k, v) for k, v in zip(self.keys[:a] + self.keys[a + 1 :], rest))
                    out.append(Segment(axis, line, low, high, self.label(lo), self.label(hi), self._located(axis, low, high)))
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
        return {
            "results": [
                [list(p), seed, phase, margin] for p, seeds in self.results.items() for seed, (phase, margin) in seeds.items()
            ],
            "issued": [[i.number, list(i.point), i.seed, i.round] for i in self.issued],
            "pending": [[list(p), seed] for p, seed in sorted(self.pending, key=str)],
            "failed": [[list(p), seed] for p, seed in sorted(self.failed, key=str)],
        }

    def restore_state(self, state: dict) -> None:
        self.results = {}
        for point, seed, phase, margin in state["results"]:
            self.results.setdefault(tuple(point), {})[seed] = (phase, margin)
        self.issued = [Issued(n, tuple(p), seed, r) for n, p, seed, r in state["issued"]]
        self.pending = {(tuple(p), seed) for p, seed in state["pending"]}
        self.failed = {(tuple(p), seed) for p, seed in state["failed"]}
        self._index = None


def zero_position(values: Iterable[Any]) -> float:
    """Where 0 stands on a log axis of numbers >= 0: one log step (the median of the steps between the positive
    values, at least half a decade) below the smallest positive value. The phase diagrams draw it there
    (``analysis.phase.axis_scale``) and the boundary search bisects down to it."""
    positive = sorted(float(v) for v in values if float(v) > 0)
    if not positive:
        return 1.0
    logs = [math.log10(v) for v in positive]
    step = statistics.median(b - a for a, b in zip(logs, logs[1:])) if len(logs) > 1 else 1.0
    return 10 ** (logs[0] - max(step, 0.5))


def _midvalue(low: float, high: float) -> float:
    """The geometric mean, to three significant digits (configs stay readable)."""
    return float(f"{math.sqrt(low * high):.3g}")


def _same_type(value: Any, coarse: list) -> Any:
    """A new value of an axis whose coarse values are numbers stays a number of the same kind where it can."""
    if isinstance(value, float) and all(isinstance(v, int) and not isinstance(v, bool) for v in coarse) and value.is_integer():
        return int(value)
    return value
