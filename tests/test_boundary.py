"""The boundary search's plan on synthetic phase functions (no training): it finds known boundaries within the
tolerance, in far fewer trials than a dense grid of the same resolution, whatever order results come back in."""
import json
import math
import random

import pytest

from urn_study.boundary import BoundaryPlan, Refine

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
    plan = drive(BoundaryPlan(GRID, [0, 1, 2], Refine(axes=("regulators.locality",), tolerance=1.25, budget=400)),
                 random.Random(order) if order else None)
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


def test_uncertain_ends_get_seeds_until_a_majority_and_clear_ones_keep_one():
    plan = drive(BoundaryPlan(GRID, [0, 1, 2], Refine(axes=("regulators.locality",), budget=400, max_seeds=3)))
    seeds = {p: len(plan.seeds_of(p)) for p in plan.results}
    far = (3e-3, 0, 2)  # 7 x its boundary: margin far above 1
    assert seeds[far] == 1
    near = [p for p in plan.results if phase_of(p, 0)[1] < 1.0]  # uncertain: seeds until two of three agree
    assert near and all(seeds[p] >= 2 for p in near)
    split = [p for p in near if len({phase for phase, _ in plan.results[p].values()}) > 1]
    assert split and all(seeds[p] == 3 for p in split)  # the first two disagreed: the third decides
    rounds = {i.round for i in plan.issued}
    assert min(rounds) == 0 and max(rounds) >= 3  # refinement rounds are numbered


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
