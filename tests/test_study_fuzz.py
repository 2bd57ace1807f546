"""Malformed study files, generated: every one fails in one line naming the file and the key, never with a
traceback, and the sweep command says so before Ray starts. (Hand-picked cases: tests/test_study.py.)"""

from __future__ import annotations

import math
import string
import typing
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from urn_study import cli
from urn_study.config import CHOICES, SECTIONS, ConfigError, Strength, _attr, all_keys
from urn_study.data import DATASETS
from urn_study.study import STUDY_KEYS, load_study

VALID = {
    "name": "fuzz",
    "base": {"data.name": "nlgp", "data.side": 8, "data.n_samples": 200, "train.epochs": 2},
    "grid": {"regulators.locality": [0, 1.0e-3], "regulators.l1": [0, 1.0e-4]},
    "seeds": [0],
}
CONFIG_KEYS = [k for k in all_keys() if k != "seed"]
POSITIVE_INTS = (
    "model.steps",
    "model.hidden_channels",
    "train.epochs",
    "train.batch_size",
    "train.snapshot_every",
    "train.checkpoint_every",
)
REGULATOR_KEYS = [k for k in CONFIG_KEYS if k.startswith("regulators.") and k != "regulators.locality_alpha"]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def key_type(key: str):
    section, name = key.split(".", 1)
    return typing.get_type_hints(SECTIONS[section], globalns={"Strength": Strength})[_attr(name)]


def is_number_text(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


words = st.text(string.ascii_lowercase + "_", min_size=1, max_size=12)
junk_text = st.text(min_size=0, max_size=12).filter(lambda s: not is_number_text(s))
junk_lists = st.lists(st.integers(), max_size=3)
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])


def wrong_value(key: str) -> st.SearchStrategy:
    """Values a config key can never take (type, choice or range)."""
    kind = key_type(key)
    if kind is int:
        wrong = st.one_of(
            junk_text,
            junk_lists,
            st.none(),
            st.booleans(),
            st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: not v.is_integer()),
        )
        if key in POSITIVE_INTS:
            wrong = st.one_of(wrong, st.integers(max_value=0))
        return wrong
    if kind in (float, Strength):
        wrong = st.one_of(junk_text, junk_lists, st.none(), st.booleans(), non_finite)
        if key in REGULATOR_KEYS:
            wrong = st.one_of(wrong, st.floats(max_value=-1e-9, allow_infinity=False))
        return wrong
    choices = CHOICES.get(key, DATASETS if key == "data.name" else None)
    wrong = st.one_of(st.integers(), junk_lists, st.booleans(), st.floats(allow_nan=False))
    if choices:
        wrong = st.one_of(wrong, words.filter(lambda w: w not in choices))
    return wrong


@st.composite
def malformed(draw) -> tuple[dict, str]:
    """A study mapping with one mistake, and the key its error must name."""
    study = {k: (dict(v) if isinstance(v, dict) else v) for k, v in VALID.items()}
    kind = draw(
        st.sampled_from(
            ["study_key", "config_key", "base_value", "grid_value", "grid_shape", "resources", "seeds", "setting", "data_file"]
        )
    )
    if kind == "study_key":
        key = draw(words.filter(lambda w: w not in STUDY_KEYS))
        study[key] = draw(st.integers())
        return study, key
    if kind == "config_key":
        section = draw(st.sampled_from(["base", "grid"]))
        key = f"{draw(st.sampled_from(sorted(SECTIONS)))}.{draw(words)}"
        if key in CONFIG_KEYS:
            key += "_x"
        study[section][key] = [1] if section == "grid" else 1
        return study, key
    if kind == "base_value":
        key = draw(st.sampled_from([k for k in CONFIG_KEYS if k not in ("data.path", "data.switch_to")]))
        study["base"][key] = draw(wrong_value(key))
        return study, key
    if kind == "grid_value":
        key = draw(st.sampled_from(REGULATOR_KEYS + list(POSITIVE_INTS) + ["model.activation", "data.side"]))
        values = draw(st.lists(wrong_value(key), min_size=1, max_size=3))
        study["grid"] = {key: values}
        return study, key
    if kind == "grid_shape":
        key = draw(st.sampled_from(sorted(VALID["grid"])))
        study["grid"][key] = draw(
            st.one_of(st.just([]), st.just([0, 0]), st.floats(), st.none(), st.dictionaries(words, st.integers(), max_size=2))
        )
        return study, f"grid.{key}"
    if kind == "resources":
        study["resources"] = draw(
            st.one_of(
                st.fixed_dictionaries({"cpu": st.floats(max_value=-1e-9) | non_finite | junk_text}),
                st.fixed_dictionaries({"gpu": st.floats(max_value=-1e-9) | junk_text | st.none()}),
                st.fixed_dictionaries({"gpu": st.floats(1.01, 50).filter(lambda v: not v.is_integer())}),
                st.just({"cpu": 0, "gpu": 0}),
                st.dictionaries(words.filter(lambda w: w not in ("cpu", "gpu")), st.integers(0, 4), min_size=1, max_size=2),
                st.one_of(st.integers(), junk_text, junk_lists),
            )
        )
        return study, "resources"
    if kind == "seeds":
        study["seeds"] = draw(
            st.one_of(
                st.just([]),
                st.just([1, 1]),
                st.lists(st.integers(max_value=-1), min_size=1, max_size=3),
                st.lists(junk_text, min_size=1, max_size=2),
                st.none(),
                st.floats(),
            )
        )
        return study, "seeds"
    if kind == "setting":
        key, wrong = draw(
            st.sampled_from(
                [
                    ("samples", st.integers(max_value=0) | junk_text | st.floats()),
                    ("trials_per_worker", st.integers(max_value=0) | junk_text),
                    ("max_failures", st.integers(max_value=-1) | junk_text | st.booleans()),
                    ("metric", words.filter(lambda w: w not in ("loss", "depth", "density", "ipr", "locality"))),
                    ("mode", words.filter(lambda w: w not in ("min", "max"))),
                    ("name", st.text(" /\\:*?", min_size=1, max_size=5) | st.integers() | junk_lists),
                    ("base", st.integers() | junk_lists | junk_text.filter(bool)),
                ]
            )
        )
        study[key] = draw(wrong)
        return study, key
    # mnist without its file: the check names data.path before anything loads
    study["base"] = {**study["base"], "data.name": "mnist", "data.path": f"/nonexistent/{draw(words)}.npz"}
    study["base"].pop("data.side")
    study["base"].pop("data.n_samples")
    return study, "data.path"


def one_line_error(path: Path) -> str:
    """The ConfigError of loading ``path``: one line that starts with the file's name."""
    with pytest.raises(ConfigError) as info:
        load_study(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)), message
    return message


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def test_the_unmutated_study_is_valid(folder):
    path = folder / "valid.yaml"
    path.write_text(yaml.safe_dump(VALID))
    assert len(load_study(path).trials()) == 4


@FUZZ
@given(case=malformed())
def test_each_mistake_is_one_line_naming_file_and_key(folder, case):
    study, key = case
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study, allow_unicode=True))
    message = one_line_error(path)
    assert key in message, (key, message)


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=3),
    max_leaves=10,
)


@FUZZ
@given(extra=st.dictionaries(st.sampled_from(list(STUDY_KEYS) + ["base.x", "grid"]), yaml_values, max_size=3))
def test_random_structures_never_raise_anything_but_a_one_line_config_error(folder, extra):
    path = folder / "random.yaml"
    path.write_text(yaml.safe_dump({**VALID, **extra}, allow_unicode=True))
    try:
        load_study(path)
    except ConfigError as err:
        assert "\n" not in str(err) and str(err).startswith(str(path)), str(err)


@FUZZ
@given(data=st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_random_bytes_are_a_one_line_error_or_a_study(folder, data):
    path = folder / "bytes.yaml"
    path.write_bytes(data)
    try:
        load_study(path)
    except ConfigError as err:
        assert "\n" not in str(err) and str(err).startswith(str(path)), str(err)


# --- through the command: one line, exit 2, and Ray never started ----------------------------------------


@pytest.mark.parametrize(
    "change, key",
    [
        ({"grdi": {"regulators.l1": [0]}}, "grdi"),  # unknown study key
        ({"base": {**VALID["base"], "train.epochs": "ten"}}, "train.epochs"),  # wrong type
        ({"grid": {"regulators.l1": []}}, "grid.regulators.l1"),  # empty grid
        ({"grid": {"regulators.l1": [0, -1e-3]}}, "regulators.l1"),  # negative strength
        ({"resources": {"gpu": 1.5}}, "resources.gpu"),  # impossible fraction
        ({"resources": {"cpu": 64}}, "resources.cpu"),  # more CPUs than local Ray gets (--num-cpus 2)
        ({"base": {"data.name": "mnist", "data.path": "/nonexistent/mnist.npz"}}, "data.path"),  # missing data file
        ({"base": {**VALID["base"], "regulators.width": float("nan")}}, "regulators.width"),  # not a number
    ],
)
def test_the_sweep_command_says_one_line_before_ray_starts(results, tmp_path, capsys, change, key):
    import ray

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**VALID, **change}))
    assert cli.main(["sweep", str(path), "--num-cpus", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(path) in err and key in err, err
    assert not ray.is_initialized()
    assert not results.exists() or not any(results.rglob("*.json"))  # no sweep record was written
