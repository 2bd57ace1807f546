"""K trials trained together as one batch (``trials_per_worker``) are K independent trials: each matches
itself trained alone, a diverging one does not disturb the others, and a resumed batch continues exactly."""

import math

import numpy as np
import pytest

from urn_study.checkpoint import load_state, save_state
from urn_study.config import parse_config
from urn_study.trial import TrialState, run_trial, run_trials

SMALL = {
    "data.name": "digits",
    "model.hidden_channels": 1,
    "model.steps": 3,
    "model.input_mode": "once",
    "model.readout": "last",
    "train.epochs": 4,
    "train.snapshot_every": 2,
    "train.checkpoint_every": 2,
}

# One group (same shape and training settings), everything per trial different: seed, data, regulators.
MIXED = [
    {"seed": 0, "regulators.l1": 1e-4, "regulators.locality": 1e-3},
    {
        "seed": 1,
        "data.name": "digits_permuted",
        "regulators.width": 1e-3,
        "regulators.l2": 1e-3,
        "regulators.locality": {"kind": "linear", "start": 0.0, "end": 1e-3, "start_epoch": 0, "end_epoch": 3},
    },
    {
        "seed": 2,
        "model.init_scale": 0.1,
        "regulators.self": {"kind": "step", "before": 0.0, "after": 1e-2, "epoch": 2},
        "regulators.locality_alpha": 2.0,
    },
]


def _configs(trials):
    return [parse_config({**SMALL, **t}) for t in trials]


def _run(configs, resumes=None, checkpoint_dir=None):
    histories = [[] for _ in configs]
    reports = [lambda epoch, m, h=h: h.append((epoch, m)) for h in histories]
    checkpoints = None
    if checkpoint_dir is not None:
        checkpoints = [
            lambda state, k=k: save_state(state, checkpoint_dir / f"trial{k}" / f"epoch{state.epoch}") for k in range(len(configs))
        ]
    return run_trials(configs, reports, checkpoints, resumes), histories


def _assert_same_trial(got, want, rtol=1e-4, atol=1e-6):
    """Same trial up to float rounding: weights, snapshots and every reported figure."""
    np.testing.assert_allclose(got.weights, want.weights, rtol=rtol, atol=atol)
    np.testing.assert_allclose(got.bias, want.bias, rtol=rtol, atol=atol)
    assert sorted(got.snapshots) == sorted(want.snapshots)
    for epoch in want.snapshots:
        np.testing.assert_allclose(got.snapshots[epoch], want.snapshots[epoch], rtol=rtol, atol=atol)
    assert [m["epoch"] for m in got.history] == [m["epoch"] for m in want.history]
    for g, w in zip(got.history, want.history):
        assert g.keys() == w.keys()
        for key, value in w.items():
            if isinstance(value, float) and "accuracy" in key:
                assert g[key] == pytest.approx(value, abs=3e-3), key  # one sample may flip on a rounding
            elif isinstance(value, float):
                assert g[key] == pytest.approx(value, rel=1e-3, abs=1e-6), key
            elif key in ("phase", "depth", "widths"):
                assert g[key] == value, key
    assert got.metrics["phase"] == want.metrics["phase"]


def test_trials_trained_together_match_each_trial_alone():
    configs = _configs(MIXED)
    together, histories = _run(configs)
    for config, result, history in zip(configs, together, histories):
        alone = run_trial(config)
        _assert_same_trial(result, alone)
        assert [m for _, m in history] == [{k: v for k, v in m.items() if k != "epoch"} for m in result.history]
    # the trials really differ (no trial's state leaked into another)
    assert not np.allclose(together[0].weights, together[1].weights)
    assert together[1].history[-1]["strength_locality"] == pytest.approx(1e-3)
    assert together[2].history[0]["strength_self"] == 0.0
    assert together[2].history[-1]["strength_self"] == pytest.approx(1e-2)


def test_packed_trials_match_alone_with_the_input_clamped_and_every_step_read():
    """The default model (clamp, readout all): the loss sums T readouts, whose rounding differences reach a
    few 1e-6 on weights of 1e-4 (Adam scales small gradients up): compared with atol 1e-5."""
    configs = [parse_config({**SMALL, **t, "model.input_mode": "clamp", "model.readout": "all"}) for t in MIXED[:2]]
    together, _ = _run(configs)
    for config, result in zip(configs, together):
        _assert_same_trial(result, run_trial(config), atol=1e-5)


def test_a_diverging_trial_is_marked_and_the_others_train_on_unchanged():
    # init_scale 1e30: the second step overflows float32, so the loss is NaN from the first batch on
    trials = [MIXED[0], {"seed": 5, "model.init_scale": 1e30}, MIXED[1]]
    configs = _configs(trials)
    together, histories = _run(configs)
    bad = together[1]
    assert bad.metrics["phase"] == "diverged" and bad.metrics["diverged_at_epoch"] == 1
    assert math.isnan(bad.metrics["test_accuracy"])
    assert [epoch for epoch, _ in histories[1]] == [1]  # reported once, then silent
    assert histories[1][0][1]["diverged"] == 1.0
    for k in (0, 2):
        assert together[k].metrics["phase"] != "diverged"
        assert [epoch for epoch, _ in histories[k]] == [1, 2, 3, 4]
        _assert_same_trial(together[k], run_trial(configs[k]))


@pytest.mark.parametrize("trials", [MIXED[:1], MIXED], ids=["K=1", "K=3"])
def test_resuming_from_a_checkpoint_gives_the_uninterrupted_run(trials, tmp_path):
    configs = _configs(trials)
    uninterrupted, _ = _run(configs, checkpoint_dir=tmp_path)
    # a worker killed after epoch 2: a fresh process loads the epoch-2 checkpoints and goes on
    resumes = [load_state(tmp_path / f"trial{k}" / "epoch2") for k in range(len(configs))]
    assert all(state.epoch == 2 for state in resumes)
    resumed, histories = _run(configs, resumes=resumes)
    for got, want, history in zip(resumed, uninterrupted, histories):
        assert [epoch for epoch, _ in history] == [3, 4]  # only the epochs not yet done are trained and reported
        _assert_same_trial(got, want, rtol=1e-6, atol=1e-7)


def test_a_pack_with_a_diverged_trial_resumes_to_the_uninterrupted_run(tmp_path):
    """The diverged trial's checkpoint stopped counting at its divergence (epoch 1): the pack still resumes
    from where the others stood (epoch 2), and every result is the uninterrupted one."""
    configs = _configs([MIXED[0], {"seed": 5, "model.init_scale": 1e30}])
    saves = []  # (trial, the pack's checkpoint number)
    checkpoints = [
        lambda state, k=k: saves.append(k) or save_state(state, tmp_path / f"trial{k}" / f"save{saves.count(k)}") for k in range(2)
    ]
    uninterrupted = run_trials(configs, checkpoints=checkpoints)
    resumes = [load_state(tmp_path / f"trial{k}" / "save1") for k in range(2)]  # after epoch 2 of 4
    assert [state.epoch for state in resumes] == [2, 1] and resumes[1].diverged_at == 1
    resumed, histories = _run(configs, resumes=resumes)
    assert [epoch for epoch, _ in histories[0]] == [3, 4] and histories[1] == []
    _assert_same_trial(resumed[0], uninterrupted[0], rtol=1e-6, atol=1e-7)
    assert resumed[1].metrics["phase"] == "diverged" and resumed[1].metrics["epochs"] == 1
    assert resumed[1].metrics["diverged_at_epoch"] == uninterrupted[1].metrics["diverged_at_epoch"] == 1


def test_trials_that_cannot_share_a_batch_are_refused():
    with pytest.raises(ValueError, match="must share"):
        run_trials(_configs([{"seed": 0}, {"seed": 1, "model.steps": 2}]))
    with pytest.raises(ValueError, match="must share"):
        run_trials(_configs([{"seed": 0}, {"seed": 1, "train.lr": 0.1}]))
    with pytest.raises(ValueError, match="data of one shape"):
        run_trials(_configs([{"seed": 0}, {"seed": 1, "data.name": "nlgp", "data.side": 64}]))
    starts = [TrialState(epoch=1, arrays={}, adam_step=0), TrialState(epoch=2, arrays={}, adam_step=0)]
    with pytest.raises(ValueError, match="same number of epochs"):
        run_trials(_configs(MIXED[:2]), resumes=starts)


def _assert_close_record(got, want, where: str = "") -> None:
    """Two JSON records equal but for float rounding: numbers to 3e-3 (a held-out sample may flip on a rounding,
    1/450 of an accuracy), text, flags and the shape of lists and mappings exactly."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for key in want:
            _assert_close_record(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            _assert_close_record(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(got, bool):
        assert got == pytest.approx(want, rel=1e-3, abs=3e-3, nan_ok=True), where
    else:
        assert got == want, where


def test_a_shipped_studys_default_pack_records_each_trial_as_it_trains_alone(tmp_path):
    """structure.yaml's smoke trials packed as `urn-study sweep` packs them by default on one worker: each member's
    metrics and the files its MLflow run stores (urn_study.artifacts) are those of the trial trained alone, seed for
    seed, to float rounding."""
    import json
    from pathlib import Path

    from urn_study import packing
    from urn_study.artifacts import write_artifacts
    from urn_study.study import load_study, pack_trials

    study = load_study(Path(__file__).resolve().parents[1] / "search_spaces" / "structure.yaml", smoke=True)
    chosen = packing.choose(study.trials_per_worker, [t.config for t in study.trials()], slots=1)
    [pack] = pack_trials(study.trials(), chosen.per_pack)
    assert len(pack) == len(study.trials()) == 2
    for trial, packed in zip(pack, run_trials([t.config for t in pack])):
        alone = run_trial(trial.config)
        assert packed.metrics["phase"] == alone.metrics["phase"] and packed.metrics["depth"] == alone.metrics["depth"]
        _assert_close_record(
            {k: v for k, v in packed.metrics.items() if k != "seconds"},
            {k: v for k, v in alone.metrics.items() if k != "seconds"},
            trial.trial_id,
        )
        files = {}
        for name, result in (("packed", packed), ("alone", alone)):
            folder = tmp_path / name / trial.trial_id
            files[name] = {p.relative_to(folder).as_posix(): p for p in write_artifacts(result, folder)}
        assert files["packed"].keys() == files["alone"].keys()
        for name, path in files["alone"].items():
            other = files["packed"][name]
            if name.endswith(".npy"):
                np.testing.assert_allclose(np.load(other), np.load(path), rtol=1e-4, atol=1e-6, err_msg=name)
            elif name.endswith(".json"):
                _assert_close_record(json.loads(other.read_text()), json.loads(path.read_text()), name)
    # the two members really are two trials (their own seeds and strengths), not one trained twice
    assert pack[0].config.regulators.locality != pack[1].config.regulators.locality


NLGP = {
    "data.name": "nlgp",
    "data.side": 8,
    "data.n_samples": 200,
    "train.batch_size": 50,
    "train.epochs": 4,
    "train.snapshot_every": 1,
    "train.checkpoint_every": 1,
}


def _reading_raises(monkeypatch, seed: int, epoch: int) -> None:
    """Trial ``seed``'s reading raises at ``epoch`` (snapshot_every 1: its epoch-th reading)."""
    from urn_study import trial

    real, readings = trial._measure, []

    def measure(batch, k, w, b, final):
        if batch.configs[k].seed == seed:
            readings.append(k)
            if len(readings) == epoch:
                raise ValueError(f"no reading of seed {seed}")
        return real(batch, k, w, b, final)

    monkeypatch.setattr(trial, "_measure", measure)


def test_a_member_whose_own_work_raises_fails_alone_and_the_others_train_on_unchanged(monkeypatch):
    """Member 1's reading raises at epoch 2: it is out of the pack with its error, members 0 and 2 are the pack
    without the failure, and every member's checkpoint keeps coming (member 1's: its state before it failed, from
    which it trains on to its uninterrupted result)."""
    configs = [parse_config({**NLGP, "seed": seed}) for seed in range(3)]
    clean, clean_histories = _run(configs)
    saved = []  # (trial, epoch of the call, the state's epoch, the state)
    done = {"epoch": 0}  # the epoch of the latest report: the epoch each checkpoint is called at
    checkpoints = [lambda state, k=k: saved.append((k, done["epoch"], state.epoch, state)) for k in range(3)]
    _reading_raises(monkeypatch, seed=1, epoch=2)
    histories = [[] for _ in configs]
    reports = [lambda epoch, m, h=h: (h.append((epoch, m)), done.update(epoch=epoch)) for h in histories]
    results = run_trials(configs, reports, checkpoints)
    for k in (0, 2):
        assert results[k].error is None
        _assert_same_trial(results[k], clean[k], rtol=1e-6, atol=1e-7)
        assert histories[k] == clean_histories[k]
    assert results[1].error == "ValueError: no reading of seed 1"
    assert results[1].metrics["phase"] == "failed"
    assert [e for e, _ in histories[1]] == [1, 2]  # its epoch-1 report, then the one that tells it failed
    assert histories[1][1][1]["failed"] == 1.0
    # every epoch, a checkpoint of each trial; trial 1's from epoch 2 on is the state it had before it failed
    assert [(k, e) for k, e, _, _ in saved] == [(k, e) for e in range(1, 5) for k in range(3)]
    assert [s for k, _, s, _ in saved if k == 1] == [1, 1, 1, 1]
    assert [s for k, _, s, _ in saved if k != 1] == [e for e in range(1, 5) for _ in (0, 2)]
    kept = next(state for k, e, _, state in saved if (k, e) == (1, 4))
    assert [m["epoch"] for m in kept.history] == [1] and sorted(kept.snapshots) == [1]
    monkeypatch.undo()
    [retried] = run_trials([configs[1]], resumes=[kept])
    _assert_same_trial(retried, clean[1])


def test_a_single_trial_whose_reading_raises_still_raises(monkeypatch):
    """Alone, a trial's failure is never turned into a result: run_trial raises the error itself."""
    _reading_raises(monkeypatch, seed=0, epoch=2)
    with pytest.raises(ValueError, match="^no reading of seed 0$"):
        run_trial(parse_config({**NLGP, "seed": 0}))
