"""One trial end to end on digits: the claims of the core issue, measured on real training."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from urn_study.config import parse_config
from urn_study.trial import run_trial

# input written once, read at the last step: the paper's setting, in which the claims below were made
DIGITS_2_STEPS = {
    "data.name": "digits",
    "model.steps": 2,
    "model.input_mode": "once",
    "model.readout": "last",
    "train.epochs": 30,
    "regulators.l1": 1e-4,
}


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


def test_locality_makes_the_fields_that_carry_the_task_local(locality_off, locality_strong):
    """Measured on the neurons the lesions keep, against the trial's own untrained W0. At T = 2 the wiring cost
    also makes the inputs hold their pixel (a wait costs nothing) and a linear skip carries part of the task
    beside the local layer: residual, not plain locally connected (docs/results.md)."""
    off, strong = locality_off[0].metrics, locality_strong[0].metrics
    assert off["phase"] in ("fully_connected", "shallow"), off
    assert strong["phase"] in ("locally_connected", "residual"), strong
    assert off["test_accuracy"] >= 0.9 and strong["test_accuracy"] >= 0.9
    assert strong["locality"] > off["locality"] + 0.2
    assert strong["locality"] > strong["null_locality_all"] + 0.2 > off["locality"]
    assert strong["w_density"] < off["w_density"]
    assert off["null_phase"] == strong["null_phase"] == "dead"


def test_reports_every_epoch_with_losses_regulators_accuracies_and_snapshot_structure(locality_strong):
    result, history = locality_strong
    assert [epoch for epoch, _ in history] == list(range(1, 31))
    for _, m in history:
        for key in ("task_loss", "loss", "train_accuracy", "test_accuracy", "reg_l1", "reg_locality", "reg_self"):
            assert math.isfinite(m[key])
        assert m["loss"] == pytest.approx(m["task_loss"] + sum(m[f"reg_{r}"] for r in ("l1", "l2", "locality", "width", "self")))
    # the regulators' figures against their formulas on the final W, in numpy (l1 = 1e-4, locality = 1e-3, alpha = 1)
    last, absw = history[-1][1], np.abs(result.weights.astype(np.float64))
    assert last["reg_l1"] == pytest.approx(1e-4 * absw.sum(), rel=1e-4)
    assert last["reg_locality"] == pytest.approx(1e-3 * (absw * result.layout.distances).sum(), rel=1e-4)
    assert last["reg_l2"] == last["reg_width"] == last["reg_self"] == 0.0
    snapshot_epochs = [epoch for epoch, m in history if "phase" in m]
    assert snapshot_epochs == [5, 10, 15, 20, 25, 30]
    assert sorted(result.snapshots) == snapshot_epochs
    np.testing.assert_array_equal(result.snapshots[30], result.weights)
    assert result.weights.shape == (result.layout.size, result.layout.size) == (138, 138)


def test_self_connection_cost_concentrates_walks_on_all_steps():
    """Input written once, read at step 3: without a self cost some |W| walk weight waits (identity
    carrying); with it, the walks take three hops. Either way the task is carried at depth 3 alone."""
    free, _ = _train(model__steps=3, regulators__self=0.0)
    costly, _ = _train(model__steps=3, regulators__self=1e-2)
    assert free.metrics["w_hop_spectrum"][3] < 0.99
    assert free.metrics["w_skip_share"] > 0.01
    assert costly.metrics["w_hop_spectrum"][3] > 0.999
    assert costly.metrics["w_skip_share"] < 0.001
    assert costly.metrics["test_accuracy"] >= 0.9
    assert free.metrics["carrying_depths"] == costly.metrics["carrying_depths"] == [3]


def test_trial_is_deterministic_in_its_seed():
    a, _ = _train(train__epochs=2)
    b, _ = _train(train__epochs=2)
    c, _ = _train(train__epochs=2, seed=1)
    np.testing.assert_array_equal(a.weights, b.weights)
    assert not np.array_equal(a.weights, c.weights)


def test_geometry_switch_mid_training_changes_the_data():
    result, history = _train(train__epochs=4, train__snapshot_every=1, data__switch_to="digits_permuted", data__switch_epoch=2)
    acc = [m["test_accuracy"] for _, m in history]
    assert acc[2] < acc[1] - 0.2  # the network trained on digits meets scrambled pixels


def test_geometry_switched_back_returns_the_original_data():
    result, history = _train(
        train__epochs=6,
        train__snapshot_every=1,
        data__switch_to="digits_permuted",
        data__switch_epoch=2,
        data__switch_back_epoch=4,
        train__lr_schedule="restart",
    )
    acc = [m["test_accuracy"] for _, m in history]
    assert acc[2] < acc[1] - 0.2 and acc[4] > acc[3] + 0.1  # scrambled at epoch 2, back at 4


def test_cli_trains_a_small_network_on_one_thread_for_torch_and_numpy():
    """Every thread beyond one only slows a small network, by 5x on a busy 2-core machine (benchmarks/README.md)."""
    code = (
        "import sys, threadpoolctl, torch\nfrom urn_study import cli\ncli.main(sys.argv[1:])\n"
        "print(torch.get_num_threads(), *{p['num_threads'] for p in threadpoolctl.threadpool_info() "
        "if p['user_api'] == 'blas'})"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "train", "--set", "train.epochs=1", "--set", "model.steps=2"],
        env={**os.environ, "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"},  # both start at 2
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.splitlines()[-1].split() == ["1", "1"], proc.stdout


def test_threads_of_one_trial_follow_its_size_and_the_idle_cores():
    from urn_study.cli import default_threads

    assert default_threads(138, cores=16, load=0.0) == 1  # digits
    assert default_threads(1570, cores=16, load=0.3) == 16  # MNIST with one hidden copy, an idle machine
    assert default_threads(1570, cores=16, load=5.6) == 10
    assert default_threads(1570, cores=2, load=15.0) == 1


def test_cli_json_output_and_a_folder_numpy_alone_can_run(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "urn_study.cli",
            "train",
            "--set",
            "train.epochs=2",
            "--set",
            "model.steps=2",
            "--set",
            "train.snapshot_every=1",
            "--json",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in (
        "test_accuracy",
        "phase",
        "uncertain",
        "margin",
        "depth",
        "widths",
        "block_widths",
        "locality",
        "w_skip_share",
        "w_hop_spectrum",
        "null_accuracy",
        "seconds",
    ):
        assert key in summary
    assert summary["null"]["phase"] == "dead" and 0.0 <= summary["null"]["accuracy"] <= 1.0
    assert set(summary["block_widths"]) == {"input", "hidden", "output"}
    assert "epoch   1/2" in proc.stderr and "epoch   2/2" in proc.stderr  # progress while it trains
    out = tmp_path / "out"
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {
        "W.npy",
        "b.npy",
        "W0.npy",
        "layout.json",
        "config.json",
        "history.json",
        "structure.json",
        "W_heatmap.png",
        "snapshots/epoch_0002.npy",
        "snapshots/epoch_0002_b.npy",
    } <= names
    history = json.loads((out / "history.json").read_text())
    snapshots = sorted(int(p.stem.split("_")[1]) for p in (out / "snapshots").glob("epoch_????.npy"))
    assert [h["epoch"] for h in history if "phase" in h] == snapshots  # the phase at every snapshot, with its epoch
    # the network again, from the folder with numpy alone, on the trial's own test samples
    layout, config = json.loads((out / "layout.json").read_text()), json.loads((out / "config.json").read_text())
    W, b = np.load(out / "W.npy"), np.load(out / "b.npy")
    from urn_study.data import DataConfig, load_dataset

    data = load_dataset(DataConfig(name=config["data.name"]), config["seed"])
    h = np.zeros((len(data.x_test), len(W)))
    h[:, : layout["n_in"]] = data.x_test
    for _ in range(config["model.steps"]):
        a = h @ W.T + b
        h = np.maximum(a, 0.0)
        h[:, -layout["n_out"] :] = a[:, -layout["n_out"] :]  # outputs stay linear
        if config["model.input_mode"] == "clamp":
            h[:, : layout["n_in"]] = data.x_test  # the input written again at every step
    accuracy = (a[:, -layout["n_out"] :].argmax(axis=1) == data.y_test).mean()
    assert accuracy == pytest.approx(summary["test_accuracy"], abs=1.5 / len(data.y_test))


def test_diverging_trial_ends_with_phase_diverged_and_keeps_its_record():
    result, history = _train(model__steps=40, model__init_scale=10.0, model__activation="identity", train__epochs=3)
    assert result.metrics["phase"] == "diverged"
    assert result.metrics["diverged_at_epoch"] == 1
    assert history == [(1, {"task_loss": pytest.approx(float("nan"), nan_ok=True), "diverged": 1.0})]


LIFETIME = {
    **DIGITS_2_STEPS,
    "train.epochs": 30,
    "train.snapshot_every": 5,
    "train.lr_schedule": "restart",
    "regulators.self": 3e-2,
    "regulators.self_scope": "waits",
    "regulators.locality": {"kind": "step", "before": 0, "after": 1e-3, "epoch": 10},
    "data.switch_to": "digits_permuted",
    "data.switch_epoch": 20,
}


def _snapshots(overrides):
    result = run_trial(parse_config({**LIFETIME, **overrides}))
    return {h["epoch"]: h for h in result.history if "phase" in h}


@pytest.fixture(scope="module")
def lifetime():
    return _snapshots({})


def test_a_lifetime_changes_phase_when_its_pressures_change(lifetime):
    """The mechanism of lifetime.yaml, short: fully connected, locally connected from the wiring cost on, fully
    connected again once the pixels are scrambled (the neurons cannot follow them), each read by lesions."""
    phases = {e: (h["phase"], h["uncertain"]) for e, h in lifetime.items()}
    assert [phases[e] for e in (10, 20, 30)] == [("fully_connected", 0.0), ("locally_connected", 0.0), ("fully_connected", 0.0)], (
        phases
    )


def test_without_pricing_the_outputs_waits_a_linear_skip_outlives_the_wiring_cost(lifetime):
    """What makes the lifetime flexible: with self priced on the diagonal only, the network that trained without a
    cost keeps a linear readout carried to the last step through another output once the cost arrives. Cutting the
    walks shorter than T for real (shortcut_cost) then costs accuracy; with the outputs' waits priced, nothing."""
    diagonal = _snapshots({"regulators.self_scope": "diagonal", "train.epochs": 20, "data.switch_to": ""})
    assert max(diagonal[e]["shortcut_cost"] for e in (15, 20)) > 0.015, diagonal
    assert all(lifetime[e]["shortcut_cost"] == 0.0 for e in (15, 20))


def test_a_training_that_blows_up_is_diverged_not_a_phase():
    """lr 1e4: the task loss reaches 1e13 and more with every weight finite; it is not a network to label."""
    result, history = _train(train__lr=1e4, train__epochs=3, train__snapshot_every=1)
    assert result.metrics["phase"] == "diverged", [m.get("task_loss") for _, m in history]
    assert history[-1][1]["task_loss"] > 100 * math.log(10) and history[-1][1]["diverged"] == 1.0


def test_a_training_too_big_for_memory_is_refused_before_it_allocates():
    from urn_study.config import ConfigError

    with pytest.raises(ConfigError, match=r"model.steps 1000000 x train.batch_size 128 x 138 neurons needs about \d+ GiB"):
        run_trial(parse_config({**DIGITS_2_STEPS, "model.steps": 1000000}))
    with pytest.raises(ConfigError, match=r"^200002 neurons need about \d+ GiB"):  # the S x S of a ring of 100,000
        run_trial(parse_config({"data.name": "nlgp", "data.side": 100000, "data.n_samples": 4}))


def test_a_network_too_big_for_memory_is_refused_before_its_data_are_generated(monkeypatch):
    """A ring of 100,000 sites: its 2,000 samples (6 GiB to generate) are allowed, its 200,002 neurons are not."""
    from urn_study import trial
    from urn_study.config import ConfigError

    monkeypatch.setattr(trial, "load_dataset", lambda *args: pytest.fail("the data were loaded"))
    config = parse_config({"data.name": "nlgp", "data.side": 100000})
    with pytest.raises(ConfigError, match=r"^200002 neurons need about \d+ GiB for their weights alone \(at most 16\)"):
        run_trial(config)


@pytest.mark.parametrize("hidden_layout,output_position", [("random", "free"), ("lattice", "center")])
def test_hidden_layout_and_output_rule_in_training(hidden_layout, output_position):
    """The wiring cost a trial pays, against the rule written out in numpy from the saved positions: Euclidean
    distance on digits' (open) 8 x 8 lattice; `free` outputs cost nothing to wire, `center` ones their distance
    from the lattice's centre. Random hidden neurons sit off the lattice's points."""
    result, history = _train(
        train__epochs=2, regulators__locality=1e-3, model__hidden_layout=hidden_layout, model__output_position=output_position
    )
    layout, absw = result.layout, np.abs(result.weights.astype(np.float64))
    positions = layout.positions
    distance = np.sqrt(((positions[:, None, :] - positions[None, :, :]) ** 2).sum(-1))
    if output_position == "free":
        distance[-10:, :] = distance[:, -10:] = 0.0
    assert history[-1][1]["reg_locality"] == pytest.approx(1e-3 * (absw * distance).sum(), rel=1e-4)
    hidden = positions[64:128]
    on_lattice = np.all(hidden == np.round(hidden), axis=1)
    assert on_lattice.all() if hidden_layout == "lattice" else not on_lattice.any()
    assert result.metrics["test_accuracy"] > 0.5  # it trains (chance: 0.1)


def test_constant_learning_rate_does_not_depend_on_the_length_of_training():
    """Under `constant` the first epoch is the same whatever the number of epochs; under the cosine it is not (the
    decay is spread over the whole training)."""

    def first_epoch(schedule: str, epochs: int) -> np.ndarray:
        result, _ = _train(train__epochs=epochs, train__snapshot_every=1, train__lr_schedule=schedule)
        return result.snapshots[1]

    np.testing.assert_array_equal(first_epoch("constant", 2), first_epoch("constant", 3))
    assert not np.array_equal(first_epoch("cosine", 2), first_epoch("cosine", 3))
