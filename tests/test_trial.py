"""One trial end to end on digits: the claims of the core issue, measured on real training."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from urn_study.config import parse_config
from urn_study.trial import run_trial

DIGITS_2_STEPS = {"data.name": "digits", "model.steps": 2, "train.epochs": 30, "regulators.l1": 1e-4}


def _train(**overrides):
    history = []
    config = parse_config({**DIGITS_2_STEPS, **{k.replace("__", "."): v for k, v in overrides.items()}})
    result = run_trial(config, report=lambda epoch, m: history.append((epoch, m)))
    return result, history


@pytest.fixture(scope="module")
def locality_off():
    return _train(regulators__locality=0.0)


@pytest.fixture(scope="module")
def locality_strong():
    return _train(regulators__locality=1e-3)


def test_locality_decides_between_fully_and_locally_connected(locality_off, locality_strong):
    off, strong = locality_off[0].metrics, locality_strong[0].metrics
    assert off["phase"] in ("fully_connected", "shallow"), off
    assert strong["phase"] == "locally_connected", strong
    assert off["test_accuracy"] >= 0.9 and strong["test_accuracy"] >= 0.9
    assert strong["locality"] > off["locality"] + 0.3
    assert strong["density"] < off["density"]


def test_reports_every_epoch_with_losses_regulators_accuracies_and_snapshot_structure(locality_strong):
    result, history = locality_strong
    assert [epoch for epoch, _ in history] == list(range(1, 31))
    for _, m in history:
        for key in ("task_loss", "loss", "train_accuracy", "test_accuracy", "reg_l1", "reg_locality", "reg_self"):
            assert math.isfinite(m[key])
        assert m["loss"] == pytest.approx(m["task_loss"] + sum(m[f"reg_{r}"] for r in ("l1", "l2", "locality", "width", "self")))
    snapshot_epochs = [epoch for epoch, m in history if "phase" in m]
    assert snapshot_epochs == [5, 10, 15, 20, 25, 30]
    assert sorted(result.snapshots) == snapshot_epochs
    np.testing.assert_array_equal(result.snapshots[30], result.weights)
    assert result.weights.shape == (result.layout.size, result.layout.size) == (138, 138)


def test_self_connection_cost_concentrates_walks_on_all_steps():
    """Input written once, read at step 3: without a self cost some walk weight waits (identity
    carrying); with it, the walks take three hops."""
    free, _ = _train(model__steps=3, regulators__self=0.0)
    costly, _ = _train(model__steps=3, regulators__self=1e-2)
    assert free.metrics["hop_spectrum"][3] < 0.99
    assert free.metrics["skip_share"] > 0.01
    assert costly.metrics["hop_spectrum"][3] > 0.999
    assert costly.metrics["skip_share"] < 0.001
    assert costly.metrics["test_accuracy"] >= 0.9


def test_trial_is_deterministic_in_its_seed():
    a, _ = _train(train__epochs=2)
    b, _ = _train(train__epochs=2)
    c, _ = _train(train__epochs=2, seed=1)
    np.testing.assert_array_equal(a.weights, b.weights)
    assert not np.array_equal(a.weights, c.weights)


def test_geometry_switch_mid_training_changes_the_data():
    result, history = _train(train__epochs=4, train__snapshot_every=1, data__switch_to="digits_permuted",
                             data__switch_epoch=2)
    acc = [m["test_accuracy"] for _, m in history]
    assert acc[2] < acc[1] - 0.2  # the network trained on digits meets scrambled pixels


def test_cli_json_output(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "urn_study.cli", "train", "--set", "train.epochs=2", "--set", "model.steps=2",
         "--json", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, check=True,
    )
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("test_accuracy", "phase", "depth", "widths", "locality", "ipr", "skip_share", "hop_spectrum",
                "density", "seconds"):
        assert key in summary
    assert "epoch   1/2" in proc.stderr and "epoch   2/2" in proc.stderr  # progress while it trains
    assert np.load(tmp_path / "out" / "W.npy", allow_pickle=False).shape == (138, 138)


def test_diverging_trial_ends_with_phase_diverged_and_keeps_its_record():
    result, history = _train(model__steps=40, model__init_scale=10.0, model__activation="identity", train__epochs=3)
    assert result.metrics["phase"] == "diverged"
    assert result.metrics["diverged_at_epoch"] == 1
    assert history == [(1, {"task_loss": pytest.approx(float("nan"), nan_ok=True), "diverged": 1.0})]
