"""How many trials a sweep packs into one worker (urn_study.packing): the study's number, else chosen from the
trials' size and the device, never leaving workers idle, and one at a time for the searchers that ask so."""

from pathlib import Path

import pytest

from urn_study import packing
from urn_study.config import parse_config
from urn_study.study import load_study, pack_trials

ROOT = Path(__file__).resolve().parents[1]


def digits(n: int, channels: int = 1, **extra) -> list:
    """``n`` digits trials of one shape, S = 64 (1 + channels) + 10."""
    return [parse_config({"seed": i, "data.name": "digits", "model.hidden_channels": channels, **extra}) for i in range(n)]


def test_network_size_is_the_layout_the_trial_builds():
    from urn_study.trial import _Batch

    for config in (digits(1, channels=2)[0], parse_config({"data.name": "nlgp", "data.side": 16, "data.dims": 1})):
        assert packing.network_size(config) == _Batch([config]).layouts[0].size


def test_a_number_in_the_study_wins_and_searchers_of_one_trial_get_one_under_auto():
    trials = digits(40)
    assert packing.choose(3, trials, slots=2).per_pack == 3
    assert packing.choose(1, trials, slots=2).per_pack == 1
    assert packing.choose("auto", trials, slots=2, one_at_a_time=True).per_pack == 1
    assert "one trial at a time" in packing.choose("auto", trials, slots=2, one_at_a_time=True).reason


@pytest.mark.parametrize("channels, expected", [(1, 8), (2, 8), (5, 2), (7, 1), (15, 1)])
def test_on_cpus_the_pack_shrinks_as_the_network_grows(channels, expected):
    """benchmarks/README.md: K = 8 gains 2x and more at S = 138 and 202; at S ~ 1000 the products outweigh the
    step's fixed cost, and one trial a worker loses nothing."""
    chosen = packing.choose("auto", digits(100, channels), slots=2)
    assert chosen.per_pack == expected, chosen
    assert f"S = {64 * (1 + channels) + 10}" in chosen.reason


@pytest.mark.parametrize("n, slots, expected", [(2, 2, 1), (3, 2, 2), (4, 2, 2), (15, 2, 8), (2, 1, 2), (5, 8, 1)])
def test_packs_are_never_fewer_than_the_workers_that_can_run_them(n, slots, expected):
    chosen = packing.choose("auto", digits(n), slots=slots)
    assert chosen.per_pack == expected, chosen
    assert len(pack_trials(load_study_of(digits(n)), chosen.per_pack)) >= min(n, slots)


def load_study_of(configs: list) -> list:
    from urn_study.study import StudyTrial

    return [StudyTrial(f"t-{i:04d}", {}, c) for i, c in enumerate(configs)]


def test_on_a_gpu_the_pack_is_bounded_by_its_memory_and_the_cpu_that_reads_the_trials():
    trials = digits(1000)
    per_trial = packing.trial_bytes(trials[0])
    big = packing.choose("auto", trials, slots=1, gpu_bytes=80 * 2**30)
    assert big.per_pack == packing.GPU_MAX_PER_PACK == 64
    small = packing.choose("auto", trials, slots=1, gpu_bytes=10 * per_trial)
    assert small.per_pack == 5 and "memory" in small.reason  # half of the GPU share
    assert packing.choose("auto", trials[:20], slots=4, gpu_bytes=80 * 2**30).per_pack == 5


def test_a_pack_never_exceeds_what_one_batch_may_take():
    from urn_study.trial import MAX_TRAINING_GIB

    assert packing.MAX_PACK_GIB == MAX_TRAINING_GIB
    big = [
        parse_config({"seed": i, "data.name": "nlgp", "data.dims": 2, "data.side": 32, "model.hidden_channels": 2})
        for i in range(200)
    ]  # S = 3074
    chosen = packing.choose("auto", big, slots=1, gpu_bytes=10**15)
    assert 1 < chosen.per_pack < packing.GPU_MAX_PER_PACK and "memory" in chosen.reason
    assert (
        chosen.per_pack * packing.trial_bytes(big[0])
        <= MAX_TRAINING_GIB * 2**30
        < (chosen.per_pack + 1) * packing.trial_bytes(big[0])
    )


def test_the_shipped_grid_studies_pack_on_two_cores():
    """What `urn-study sweep` does with the shipped studies on this machine's two cores: the digits studies pack 8
    trials of one shape, the nlgp study of 100 sites (S = 202 at T = 2) too; their smoke forms pack as many as
    leave no core idle."""
    structure = load_study(ROOT / "search_spaces" / "structure.yaml")
    chosen = packing.choose(structure.trials_per_worker, [t.config for t in structure.trials()], slots=2)
    assert chosen.per_pack == 8
    packs = pack_trials(structure.trials(), chosen.per_pack)
    assert len(packs) == 22 and {len({packing.network_size(t.config) for t in p}) for p in packs} == {1}
    smoke = load_study(ROOT / "search_spaces" / "quickstart.yaml", smoke=True)
    assert packing.choose(smoke.trials_per_worker, [t.config for t in smoke.trials()], slots=2).per_pack == 1
    assert packing.choose(smoke.trials_per_worker, [t.config for t in smoke.trials()], slots=1).per_pack == 2
