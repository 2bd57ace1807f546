"""The boundary search's plan on synthetic phase functions (no training): it finds known boundaries within the
tolerance, in far fewer trials than a dense grid of the same resolution, whatever order results come back in."""

import json
import math
import random
from collections import Counter

import pytest

from urn_study.boundary import BoundaryPlan, Refine, zero_position

GRID = {"regulators.locality": [0, 1e-4, 3e-4, 1e-3, 3e-3], "regulators.l1": [0, 1e-3], "model.steps": [2, 3]}
TRUE = {(0, 2): 4.1e-4, (0, 3): 1.7e-3, (1e-3, 2): 2.3e-4, (1e-3, 3): 7e-5}  # (l1, steps) -> boundary in locality


def phase_of(point, seed):
    """Fully connected below the boundary, locally connected above; within a factor 1.3 of it the seeds disagree
    and the margin is below 1 (the label is uncertain)."""
    locality, l1, steps = point
    b = TRUE[(l1, steps)]
    ratio = locality / b if locality > 0 else 0.0
    margin = abs(math.log(ratio)) / math.log(1.3) if ratio > 0 else 10.0
    above = ratio >= 1.0
    if margin < 1.0 and seed % 3 == 1:
        above = not above  # one seed in three (the second) reads the other side near the boundary
    return ("locally_connected" if above else "fully_connected"), margin


def drive(plan, rng=None, fail=()):
    """Run the plan to its end, results coming back in a shuffled order, a few at a time."""
    waiting = []
    while True:
        waiting += plan.next_trials()
        if not waiting:
            assert plan.done
            return plan
        if rng:
            rng.shuffle(waiting)
        for issued in waiting[:3]:
            if issued.number in fail:
                plan.record(issued.point, issued.seed, None)
            else:
                plan.record(issued.point, issued.seed, *phase_of(issued.point, issued.seed))
        waiting = waiting[3:]


@pytest.mark.parametrize("order", [None, 1, 2])
def test_every_boundary_is_located_within_the_tolerance(order):
    plan = drive(
        BoundaryPlan(GRID, [0, 1, 2], Refine(axes=("regulators.locality",), tolerance=1.25, budget=400)),
        random.Random(order) if order else None,
    )
    segments = plan.segments()
    assert len(segments) == 4 and all(s.located for s in segments)
    for s in segments:
        line = dict(s.line)
        b = TRUE[(line["regulators.l1"], line["model.steps"])]
        assert s.low <= b * 1.3 and s.high >= b / 1.3  # the bracket holds the boundary (up to the noisy band)
        assert s.high / s.low <= 1.25 and (s.phase_low, s.phase_high) == ("fully_connected", "locally_connected")
    # a dense grid at the same resolution over the axis (factor 1.25 from the step below 1e-4 to 3e-3, and 0), three
    # seeds a point, on each of the 4 lines
    dense = (math.ceil(math.log(3e-3 / plan.zero_at["regulators.locality"]) / math.log(1.25)) + 2) * 3 * 4
    assert len(plan.issued) * 3 <= dense, (len(plan.issued), dense)


def test_the_ends_of_brackets_hold_the_majority_of_their_seeds_and_points_far_away_keep_one():
    plan = drive(BoundaryPlan(GRID, [0, 1, 2], Refine(axes=("regulators.locality",), budget=400, max_seeds=3)))
    seeds = {p: len(plan.seeds_of(p)) for p in plan.results}
    far = (1e-4, 0, 2)  # a quarter of its boundary: neither the end of a bracket nor of its line
    assert seeds[far] == 1
    extremes = [p for p in plan.results if p[0] in (0, 3e-3)]  # a change seed 0 alone missed would show there
    assert extremes and all(max(Counter(plan.known(p).values()).values()) >= 2 for p in extremes)
    ends = {plan._point_at(s, v) for s in plan.segments() for v in (s.low, s.high)}
    for end in ends:  # two of the three seeds agree, run there or implied by their own labels along the line
        true = [phase_of(end, seed)[0] for seed in (0, 1, 2)]
        known = plan.known(end)
        assert max(Counter(known.values()).values()) >= 2 and plan.label(end) == max(set(true), key=true.count)
    split = [p for p in plan.results if len({phase for phase, _ in plan.results[p].values()}) > 1]
    assert split and all(len(set(plan.seeds_of(p)) | set(plan.known(p))) == 3 for p in split)
    assert any(len(plan.results[end]) < 2 for end in ends)  # some end's majority holds with an implied label
    rounds = {i.round for i in plan.issued}
    assert min(rounds) == 0 and max(rounds) >= 3  # refinement rounds are numbered


def test_a_seed_implies_its_label_between_two_equal_ones_unless_it_went_back():
    axis = "regulators.locality"
    plan = BoundaryPlan({axis: [0, 1e-4, 1e-3]}, [0, 1, 2], Refine((axis,), budget=50))
    for value, seed, phase in [
        (0, 0, "fully_connected"),
        (1e-3, 0, "fully_connected"),
        (0, 1, "fully_connected"),
        (1e-4, 1, "residual"),
        (1e-3, 1, "fully_connected"),
    ]:
        plan.record((value,), seed, phase, 0.5)
    assert plan.implied((1e-4,), 0) == "fully_connected"  # fully connected on both sides
    assert plan.implied((3e-4,), 0) == "fully_connected"
    assert plan.implied((1e-4,), 2) is None  # never run on the line
    assert plan.implied((3e-4,), 1) is None  # seed 1 went back to a label it had left: it implies nothing
    assert plan.known((1e-4,)) == {0: "fully_connected", 1: "residual"}


def test_a_clear_end_waits_for_an_uncertain_end_that_may_move_the_bracket():
    """As on the trained locality line: one seed reads 3e-4 uncertainly as locally connected, the two others read
    it residual like 5e-4, which reads clearly: once 3e-4 holds its majority the bracket [3e-4, 5e-4] is gone, and
    5e-4 never needed a second seed."""
    axis = "regulators.locality"
    plan = BoundaryPlan({axis: [1e-4, 3e-4, 5e-4, 1e-3]}, [0, 1, 2], Refine((axis,), budget=50))
    table = {
        1e-4: ["residual"] * 3,
        3e-4: ["locally_connected", "residual", "residual"],
        5e-4: ["residual"] * 3,
        1e-3: ["residual"] * 3,
    }
    while not plan.done:
        for issued in plan.next_trials():
            value = issued.point[0]
            plan.record(issued.point, issued.seed, table[value][issued.seed], 0.1 if value == 3e-4 else 2.0)
    assert plan.seeds_of((5e-4,)) == [0] and plan.seeds_of((3e-4,)) == [0, 1, 2] and plan.segments() == []


def test_the_budget_is_never_exceeded_and_failed_trials_do_not_stall_it():
    plan = drive(BoundaryPlan(GRID, [0], Refine(axes=("regulators.locality",), budget=30)), fail={3, 17})
    assert len(plan.issued) == 30 and plan.done and len(plan.failed) == 2


def test_the_plan_state_survives_json_mid_search():
    refine = Refine(axes=("regulators.locality",), budget=400)
    plan = BoundaryPlan(GRID, [0, 1, 2], refine)
    first = plan.next_trials()
    for issued in first[:10]:
        plan.record(issued.point, issued.seed, *phase_of(issued.point, issued.seed))
    copy = BoundaryPlan(GRID, [0, 1, 2], refine)
    copy.restore_state(json.loads(json.dumps(plan.state())))
    assert copy.issued == plan.issued and copy.pending == plan.pending and copy.results == plan.results
    for issued in first[10:]:
        copy.record(issued.point, issued.seed, *phase_of(issued.point, issued.seed))
    drive(copy)
    assert all(s.located for s in copy.segments()) and len(copy.segments()) == 4


def test_refine_axes_must_be_grid_axes():
    with pytest.raises(ValueError, match="refine.axes: data.gain"):
        BoundaryPlan(GRID, [0], Refine(axes=("data.gain",)))


# (the searcher inside a real sweep, its driver killed and resumed: tests/test_recovery.py)


def test_lines_run_through_the_coarse_grid_only():
    """Two axes refined: a point added between two l1 values lies on that l1 line, and never starts a line of its
    own along locality (which would bisect between coarse points no boundary lies between)."""
    grid = {"regulators.locality": [0, 1e-4, 1e-3], "regulators.l1": [0, 1e-4, 1e-3]}
    plan = BoundaryPlan(grid, [0], Refine(axes=("regulators.locality", "regulators.l1"), budget=200, max_seeds=1))

    def phase(point):  # a boundary along l1 at 4e-4 on every locality line, none along locality
        return "fully_connected" if point[1] < 4e-4 else "shallow"

    while not plan.done:
        for issued in plan.next_trials():
            plan.record(issued.point, issued.seed, phase(issued.point), 5.0)
    assert {s.axis for s in plan.segments()} == {"regulators.l1"} and len(plan.segments()) == 3
    assert all(p[0] in grid["regulators.locality"] for p in plan.results)


# --- held-out noisy boundaries: a known P(label) curve, the noise drawn per seed ------------------------------
# Each seed of a noise draw has its own threshold, drawn from the known curve P(label above | x) = logistic(
# ln(x / b) / width): a seed reads "above" from its threshold on, so at x a fraction P(x) of seeds read it (the
# seeds' disagreement near b, as on the trained lines). A few trials anywhere read a stray third label (as one
# trained seed read "shallow" amid "residual"). The true crossing is b (P = 1/2). Each draw is searched and swept
# by a dense grid (every value a factor 1.25 apart, three seeds, majority), and both answers are held to b.

COARSE = [0, 1e-4, 3e-4, 5e-4, 1e-3, 2e-3, 3e-3]  # structure.yaml's wiring cost
CROSSINGS = [7e-5, 2.3e-4, 4.1e-4, 1.7e-3]
STRAY = 0.03  # the share of trials that read a stray label


def noisy_line(b: float, width: float, draw: int):
    rng = random.Random(f"{b} {width} {draw}")
    thresholds = {
        seed: b * math.exp(width * math.log(u / (1 - u))) for seed in range(5) for u in [min(max(rng.random(), 1e-9), 1 - 1e-9)]
    }

    def outcome(value: float, seed: int) -> tuple[str, float]:
        t = thresholds.get(seed, b)
        margin = abs(math.log(value / t)) / math.log(1.5) if value > 0 else 10.0
        if random.Random(f"{draw} {value} {seed}").random() < STRAY:
            return "shallow", 0.5
        return ("locally_connected" if value >= t else "fully_connected"), margin

    return outcome


def run_line(outcome, values, start_seeds=1, max_seeds=3, budget=400):
    axis = "regulators.locality"
    plan = BoundaryPlan(
        {axis: values}, [0, 1, 2], Refine((axis,), 1.25, budget=budget, start_seeds=start_seeds, max_seeds=max_seeds)
    )
    while not plan.done:
        for issued in plan.next_trials():
            plan.record(issued.point, issued.seed, *outcome(issued.point[0], issued.seed))
    return plan


def dense_grid(outcome, zero):
    """0, then from where 0 is drawn to the top coarse value in equal log steps of at most a factor 1.25."""
    steps = math.ceil(math.log(3e-3 / zero) / math.log(1.25))
    values = [0.0] + [float(f"{zero * (3e-3 / zero) ** (i / steps):.3g}") for i in range(steps + 1)]
    return run_line(outcome, values, start_seeds=3)


def holds(plan, b):
    """One bracket, from fully to locally connected, within the tolerance, and b within a factor 1.25 of it."""
    segments = plan.segments()
    return (
        len(segments) == 1
        and segments[0].located
        and segments[0].phase_high == "locally_connected"
        and segments[0].low / 1.25 <= b <= segments[0].high * 1.25
    )


def agree(plan, dense):
    s, d = plan.segments(), dense.segments()
    return len(s) == len(d) and all(
        (a.phase_low, a.phase_high) == (c.phase_low, c.phase_high) and a.low <= c.high and c.low <= a.high for a, c in zip(s, d)
    )


@pytest.mark.parametrize("width, located, same", [(0.1, 0.8, 0.8), (0.5, 0.25, 0.8)])
def test_noisy_boundaries_are_found_as_the_dense_grid_finds_them_in_a_quarter_of_its_trials(width, located, same):
    """Narrow noise (width 0.1: the seeds' thresholds within about a factor 1.25 of b): the search locates b within
    the tolerance in at least 80 % of the draws. Wide noise (0.5, the seeds' spread on the trained locality line):
    three seeds place b only loosely whichever way they are run, and the search must give the dense grid's answer
    in at least 80 % of the draws and locate b about as often as the grid. Either way in a quarter of the trials."""
    searched, swept, found, grid_found, same_answer = [], [], 0, 0, 0
    draws = 25
    for b in CROSSINGS:
        for draw in range(draws):
            outcome = noisy_line(b, width, draw)
            plan = run_line(outcome, COARSE)
            dense = dense_grid(outcome, plan.zero_at["regulators.locality"])
            searched.append(len(plan.issued))
            swept.append(len(dense.issued))
            found += holds(plan, b)
            grid_found += holds(dense, b)
            same_answer += agree(plan, dense)
    n = len(CROSSINGS) * draws
    print(
        f"width {width}: search {sum(searched) / n:.1f} trials, dense {sum(swept) / n:.1f}; b located by the search "
        f"{found / n:.2f}, by the grid {grid_found / n:.2f}; same answer {same_answer / n:.2f}"
    )
    assert found / n >= located and found >= grid_found - 0.1 * n
    assert same_answer / n >= same
    assert 4 * sum(searched) <= sum(swept)


def test_zero_stands_one_median_log_step_below_the_smallest_value_and_the_diagrams_draw_it_there():
    from analysis.phase import axis_scale

    for values, zero in [
        ([0, 1e-4, 3e-4, 1e-3], 10**-4.5),  # steps 0.48 and 0.52 decades: their median, 0.5
        ([0, 1e-4, 1e-3, 1e-2], 1e-5),  # a decade a step
        ([0, 1e-3, 1.5e-3, 3e-3, 1e-2], 10**-3.5),
    ]:  # steps under half a decade: half a decade
        assert zero_position(values) == pytest.approx(zero)
        assert axis_scale(values).positions[0.0] == pytest.approx(zero)
