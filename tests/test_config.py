"""Typed configuration: dotted keys, schedules, and errors that name the key."""

import subprocess
import sys

import pytest

from urn_study.config import ConfigError, Schedule, all_keys, change_epochs, load_config, parse_config, to_flat


def test_dotted_and_nested_keys_build_the_same_config():
    dotted = parse_config({"model.steps": 4, "regulators.l1": 1e-4, "data.name": "nlgp", "seed": 3})
    nested = parse_config({"model": {"steps": 4}, "regulators": {"l1": 1e-4}, "data": {"name": "nlgp"}, "seed": 3})
    assert dotted == nested
    assert dotted.model.steps == 4 and dotted.regulators.l1 == 1e-4 and dotted.seed == 3


def test_every_required_key_exists():
    required = [
        "seed",
        "data.name",
        "model.steps",
        "model.input_mode",
        "model.readout",
        "model.activation",
        "model.hidden_channels",
        "model.hidden_layout",
        "model.output_position",
        "model.init_scale",
        "regulators.l1",
        "regulators.l2",
        "regulators.locality",
        "regulators.locality_alpha",
        "regulators.width",
        "regulators.self",
        "train.epochs",
        "train.batch_size",
        "train.lr",
        "train.snapshot_every",
    ]
    assert set(required) <= set(all_keys())


@pytest.mark.parametrize(
    "mapping,fragment",
    [
        ({"model.stepz": 3}, "unknown key 'model.stepz' (did you mean 'model.steps'?)"),
        ({"model.steps": "three"}, "model.steps: expected an integer"),
        ({"model.steps": 2.5}, "model.steps: expected an integer"),
        ({"train.lr": True}, "train.lr: expected a number"),
        ({"regulators.self": "lots"}, "regulators.self: expected a number"),
        ({"model.input_mode": "twice"}, "model.input_mode: must be one of once, clamp"),
        ({"model.steps": 0}, "model.steps: must be at least 1"),
        ({"regulators.l1": -1.0}, "regulators.l1: strength must be >= 0"),
        ({"model.readout_from": 5, "model.steps": 3}, "model.readout_from"),
        ({"regulators.l1": {"kind": "ramp"}}, "regulators.l1.kind"),
        ({"regulators.l1": {"kind": "step", "before": 0}}, "regulators.l1: a step schedule needs after, epoch"),
        ({"regulators.l1": {"kind": "step", "before": 0, "after": 1, "epoch": 2, "end": 3}}, "regulators.l1.end"),
        ({"data.name": "cifar"}, "data.name"),
    ],
)
def test_bad_values_name_the_key(mapping, fragment):
    with pytest.raises(ConfigError) as err:
        parse_config(mapping, source="my.yaml")
    assert str(err.value).startswith("my.yaml: ")
    assert fragment in str(err.value)


def test_schedules():
    cfg = parse_config(
        {
            "regulators.l1": {"kind": "linear", "start": 0.0, "end": 1.0, "start_epoch": 10, "end_epoch": 20},
            "regulators.self": {"kind": "step", "before": 0.0, "after": 0.5, "epoch": 5},
            "regulators.l2": 0.1,
        }
    )
    l1 = cfg.regulators.schedule("l1")
    assert [l1.at(e) for e in (0, 10, 15, 20, 30)] == [0.0, 0.0, 0.5, 1.0, 1.0]
    sc = cfg.regulators.schedule("self")
    assert (sc.at(4), sc.at(5)) == (0.0, 0.5) and sc.change_epochs() == [5]
    assert cfg.regulators.schedule("l2") == Schedule(value=0.1)


def test_a_step_can_end_and_the_trial_lists_where_its_pressures_change():
    cfg = parse_config(
        {
            "regulators.locality": {"kind": "step", "before": 0.0, "after": 1e-3, "epoch": 10, "until": 20},
            "data.switch_to": "digits_permuted",
            "data.switch_epoch": 20,
            "data.switch_back_epoch": 30,
            "train.epochs": 40,
        }
    )
    loc = cfg.regulators.schedule("locality")
    assert [loc.at(e) for e in (9, 10, 19, 20, 39)] == [0.0, 1e-3, 1e-3, 0.0, 0.0]
    assert change_epochs(cfg) == [10, 20, 30]
    assert [cfg.data.switched_at(e) for e in (19, 20, 29, 30)] == [False, True, True, False]
    assert parse_config(to_flat(cfg)) == cfg  # until survives the round trip
    with pytest.raises(ConfigError, match="until: must be after epoch"):
        parse_config({"regulators.l1": {"kind": "step", "before": 0.0, "after": 1.0, "epoch": 5, "until": 5}})
    with pytest.raises(ConfigError, match="until: unknown for a linear"):
        parse_config({"regulators.l1": {"kind": "linear", "start": 0, "end": 1, "start_epoch": 1, "end_epoch": 2, "until": 3}})


def test_restarted_learning_rate_starts_again_at_every_change():
    from urn_study.trial import learning_rate

    train = parse_config({"train.epochs": 40, "train.lr": 0.02, "train.lr_schedule": "restart"}).train
    assert learning_rate(train, [20], 0.0) == pytest.approx(0.02)
    assert learning_rate(train, [20], 10.0) == pytest.approx(0.01)  # half way through the first stretch
    assert learning_rate(train, [20], 19.999) == pytest.approx(0.0, abs=1e-6)
    assert learning_rate(train, [20], 20.0) == pytest.approx(0.02)  # full rate again where the pressure changes
    assert learning_rate(train, [20], 30.0) == pytest.approx(0.01)
    train.lr_schedule = "cosine"
    assert learning_rate(train, [20], 20.0) == pytest.approx(0.01)  # one cosine: half spent at mid-training
    train.lr_schedule = "constant"
    assert learning_rate(train, [20], 39.0) == 0.02


def test_to_flat_round_trips():
    cfg = parse_config({"model.steps": 5, "regulators.self": {"kind": "step", "before": 0.0, "after": 0.5, "epoch": 5}})
    flat = to_flat(cfg)
    assert set(flat) == set(all_keys())
    assert parse_config(flat) == cfg


def test_yaml_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  steps: 2\nregulators.l1: 0.001\n")
    cfg = load_config(path, ["model.steps=4", "model.activation=tanh"])
    assert (cfg.model.steps, cfg.regulators.l1, cfg.model.activation) == (4, 0.001, "tanh")
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.yaml")
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(path)
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(None, ["model.steps"])


def laughs(levels: int = 6, width: int = 9) -> str:
    """A "billion laughs" in YAML: each list holds the one before it ``width`` times (width**levels values)."""
    items = ["&l0 [" + ", ".join(["lol"] * width) + "]"]
    items += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "[" + ", ".join(items) + "]"


def test_yaml_aliases_expanding_past_the_budget_are_one_line(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(f"model.steps: {laughs()}\n")  # 9**6 values: 9**9 would take gigabytes to print
    with pytest.raises(ConfigError, match=r"^\S*bomb\.yaml: its aliases \(\*name\) would add [\d,]+ values \(at most 10,000\)"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"^--set model\.steps: its aliases"):
        load_config(None, [f"model.steps={laughs()}"])
    path.write_text("model.steps: &a [1, *a]\n")  # an alias inside its own value: no end to it
    with pytest.raises(ConfigError, match=r"bomb\.yaml: an alias \(\*name\) refers to a value that holds it"):
        load_config(path)
    path.write_text("model.steps: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match=r"bomb\.yaml: values nested too deeply"):
        load_config(path)
    path.write_text("regulators.l1: &strength 0.001\nregulators.l2: *strength\n")  # aliases within the budget
    assert load_config(path).regulators.l2 == 0.001


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--set", "model.stepz=3"], "model.stepz"),
        (["--set", "train.epochs=many"], "train.epochs"),
        (["/no/such/config.yaml"], "/no/such/config.yaml"),
        (["--threads", "0"], "--threads"),
    ],
)
def test_cli_bad_config_is_one_line_without_traceback(args, fragment):
    proc = subprocess.run([sys.executable, "-m", "urn_study.cli", "train", *args], capture_output=True, text=True)
    assert proc.returncode == 2
    assert fragment in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("seed", [-1, 1.0e30, 2**64])
def test_a_seed_outside_the_generators_range_is_one_line(seed):
    with pytest.raises(ConfigError, match=r"^seed: must lie in 0 \.\. 2\*\*32 - 1"):
        parse_config({"seed": seed})
