"""Study files: every file in search_spaces/ is valid in both forms; bad files fail in one line naming file and key."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from urn_study import study as study_module
from urn_study.config import ConfigError, to_flat
from urn_study.study import load_study, pack_trials

ROOT = Path(__file__).resolve().parents[1]
STUDY_FILES = sorted((ROOT / "search_spaces").glob("*.yaml"))

TINY = """\
# Question: a tiny study for the tests.
# Run: urn-study sweep tiny.yaml
base:
  data.name: nlgp
  data.side: 8
  data.n_samples: 200
  train.epochs: 2
grid:
  regulators.locality: [0, 1.0e-3]
  regulators.l1: [0, 1.0e-4, 1.0e-3]
seeds: [0, 1]
"""


def write(tmp_path: Path, text: str, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(path: Path, smoke: bool = False) -> str:
    with pytest.raises(ConfigError) as info:
        load_study(path, smoke=smoke)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith(str(path)), message
    return message


# --- every study file of the project ---------------------------------------------------------------


def test_there_are_study_files():
    assert any(p.name == "quickstart.yaml" for p in STUDY_FILES)


@pytest.mark.parametrize("path", STUDY_FILES, ids=lambda p: p.name)
def test_study_file_is_valid_in_both_forms(path):
    full, smoke = load_study(path), load_study(path, smoke=True)
    assert full.trials() and smoke.trials()
    assert smoke.name == f"{full.name}-smoke"
    work = lambda s: sum(t.config.train.epochs for t in s.trials())  # noqa: E731
    assert work(smoke) < work(full), "the smoke block should shrink the study"
    assert len({t.trial_id for t in full.trials()}) == len(full.trials())


@pytest.mark.parametrize("path", STUDY_FILES, ids=lambda p: p.name)
def test_study_file_header_says_its_question_and_command(path):
    header = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    text = "\n".join(header)
    assert re.search(r"question", text, re.IGNORECASE), f"{path.name}: the header comment states no question"
    assert f"urn-study sweep search_spaces/{path.name}" in text, f"{path.name}: the header lacks its run command"


def test_a_shipped_study_has_sampled_axes_for_optuna():
    """`--searcher optuna` needs a study with `sample:` axes: best_accuracy.yaml samples the strengths log-uniformly
    over the structure study's range, in both forms (its smoke form draws a few)."""
    path = ROOT / "search_spaces" / "best_accuracy.yaml"
    full, smoke = load_study(path), load_study(path, smoke=True)
    for study in (full, smoke):
        assert {k: s.kind for k, s in study.sample.items()} == {"regulators.locality": "loguniform", "regulators.l1": "loguniform"}
        assert study.trials_per_worker == "auto" and study.metric == "test_accuracy" and study.mode == "max"
    assert smoke.samples < full.samples and len(smoke.trials()) == smoke.samples
    assert "--searcher optuna" in path.read_text().split("\nname:")[0]  # the header's command asks for Optuna


# --- expansion ---------------------------------------------------------------------------------------


def test_grid_times_seeds_with_stable_ids(tmp_path):
    path = write(tmp_path, TINY)
    study = load_study(path)
    trials = study.trials()
    assert len(trials) == 2 * 3 * 2
    assert [t.trial_id for t in trials[:3]] == ["study-0000", "study-0001", "study-0002"]
    # file order, last axis fastest, seeds fastest of all
    assert trials[0].point == {"regulators.locality": 0, "regulators.l1": 0, "seed": 0}
    assert trials[1].point == {"regulators.locality": 0, "regulators.l1": 0, "seed": 1}
    assert trials[2].point["regulators.l1"] == 1.0e-4
    assert trials[7].config.regulators.locality == 1.0e-3 and trials[7].config.seed == 1
    assert all(t.config.data.name == "nlgp" for t in trials)
    again = load_study(path)
    assert [(t.trial_id, to_flat(t.config)) for t in again.trials()] == [(t.trial_id, to_flat(t.config)) for t in trials]
    assert again.fingerprint() == study.fingerprint()
    assert study.axes == ["regulators.locality", "regulators.l1", "seed"]


def test_fingerprint_changes_with_the_trials(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = load_study(write(tmp_path / "a", TINY))
    assert load_study(write(tmp_path / "b", TINY)).fingerprint() == a.fingerprint()
    changed = load_study(write(tmp_path / "b", TINY.replace("train.epochs: 2", "train.epochs: 3")))
    assert changed.fingerprint() != a.fingerprint()


def test_smoke_block_overlays_base_and_axes(tmp_path):
    path = write(tmp_path, TINY + "smoke:\n  base: {train.epochs: 1}\n  grid: {regulators.l1: [0]}\n  seeds: [0]\n")
    smoke = load_study(path, smoke=True)
    assert smoke.name == "study-smoke"
    assert [t.trial_id for t in smoke.trials()] == ["study-smoke-0000", "study-smoke-0001"]
    assert {t.config.train.epochs for t in smoke.trials()} == {1}
    assert [t.point["regulators.locality"] for t in smoke.trials()] == [0, 1.0e-3]  # untouched axis kept
    assert load_study(path).trials()[0].config.train.epochs == 2


def test_smoke_form_checks_the_full_study_too(tmp_path):
    """A smoke run is where a study file gets checked: a mistake its smoke block would replace is still found."""
    path = write(tmp_path, TINY.replace("seeds: [0, 1]", "seeds: many") + "smoke:\n  seeds: [0]\n")
    assert "seeds: expected a non-empty list of integers" in error_of(path, smoke=True)


@pytest.mark.parametrize("text", ["", "# Question: nothing yet\n", "name: empty\nseeds: [0, 1]\n"])
def test_a_study_that_trains_nothing_of_its_own_is_refused(tmp_path, text):
    assert "trains nothing of its own" in error_of(write(tmp_path, text))


def test_sampled_axes_are_drawn_reproducibly_under_grid(tmp_path):
    path = write(
        tmp_path,
        TINY + "sample:\n  regulators.width: {loguniform: [1.0e-5, 1.0e-2]}\n  model.steps: {randint: [2, 5]}\nsamples: 3\n",
    )
    study = load_study(path)
    assert len(study.trials()) == 2 * 3 * 3 * 2
    widths = [t.config.regulators.width for t in study.trials()]
    assert all(1e-5 <= w <= 1e-2 for w in widths)
    assert {t.config.model.steps for t in study.trials()} <= {2, 3, 4}
    assert widths == [t.config.regulators.width for t in load_study(path).trials()]
    assert study.axes == ["regulators.locality", "regulators.l1", "regulators.width", "model.steps", "seed"]


def test_schedules_can_be_grid_values(tmp_path):
    path = write(
        tmp_path,
        TINY.replace("regulators.l1: [0, 1.0e-4, 1.0e-3]", "regulators.self: [0, {kind: step, before: 0, after: 0.01, epoch: 1}]"),
    )
    trials = load_study(path).trials()
    assert trials[2].config.regulators.self_.kind == "step"


def test_packs_group_trials_of_one_shape(tmp_path):
    text = TINY.replace("seeds: [0, 1]", "seeds: [0, 1]\ntrials_per_worker: 4").replace(
        "regulators.locality: [0, 1.0e-3]", "model.steps: [2, 3]"
    )
    study = load_study(write(tmp_path, text))
    packs = pack_trials(study.trials(), study.trials_per_worker)
    assert sorted(t.trial_id for p in packs for t in p) == sorted(t.trial_id for t in study.trials())
    assert [len(p) for p in packs] == [4, 2, 4, 2]
    for pack in packs:
        assert len({t.config.model.steps for t in pack}) == 1
    assert pack_trials(study.trials(), 1) == [[t] for t in study.trials()]


def test_resources_and_metric(tmp_path):
    study = load_study(write(tmp_path, TINY + "resources: {cpu: 0.5, gpu: 0.25}\nmetric: locality\nmode: max\n"))
    assert (study.resources.cpu, study.resources.gpu) == (0.5, 0.25)
    assert study.metric == "locality"
    assert load_study(write(tmp_path, TINY + "resources: {gpu: 2}\n", "two.yaml")).resources.gpu == 2


# --- errors: one line naming the file and the key -----------------------------------------------------


@pytest.mark.parametrize(
    "extra, key",
    [
        ("grdi: {regulators.l1: [0]}\n", "grdi"),
        ("smoke: {bse: {train.epochs: 1}}\n", "smoke.bse"),
        ("resources: {cpus: 1}\n", "resources.cpus"),
    ],
)
def test_unknown_study_key(tmp_path, extra, key):
    message = error_of(write(tmp_path, TINY + extra), smoke="smoke" in extra)
    assert f"{key}: unknown study key" in message


@pytest.mark.parametrize(
    "old, new, key, words",
    [
        ("regulators.l1: [0, 1.0e-4, 1.0e-3]", "regulators.l11: [0]", "grid.regulators.l11", "unknown config key"),
        ("data.side: 8", "data.sied: 8", "data.sied", "unknown key"),
        ("regulators.l1: [0, 1.0e-4, 1.0e-3]", "regulators.l1: [0, abc]", "regulators.l1", "expected a number"),
        ("data.side: 8", "data.side: eight", "data.side", "expected an integer"),
        ("regulators.l1: [0, 1.0e-4, 1.0e-3]", "regulators.l1: []", "grid.regulators.l1", "empty list"),
        ("regulators.l1: [0, 1.0e-4, 1.0e-3]", "regulators.l1: 0.1", "grid.regulators.l1", "expected a list"),
        ("regulators.l1: [0, 1.0e-4, 1.0e-3]", "regulators.l1: [0, 0]", "grid.regulators.l1", "listed twice"),
        ("regulators.l1: [0, 1.0e-4, 1.0e-3]", "regulators.l1: [-1]", "regulators.l1", ">= 0"),
        ("seeds: [0, 1]", "seeds: []", "seeds", "non-empty"),
        ("seeds: [0, 1]", "seeds: [0, 0]", "seeds", "twice"),
        ("regulators.l1: [0, 1.0e-4, 1.0e-3]", "seed: [0, 1]", "grid.seed", "seeds"),
    ],
)
def test_bad_axes_and_values(tmp_path, old, new, key, words):
    text = TINY.replace(old, new)
    assert text != TINY
    message = error_of(write(tmp_path, text))
    assert key in message and words in message, message


@pytest.mark.parametrize(
    "extra, key, words",
    [
        ("resources: {cpu: -1}\n", "resources.cpu", ">= 0"),
        ("resources: {gpu: -0.5}\n", "resources.gpu", ">= 0"),
        ("resources: {gpu: 1.5}\n", "resources.gpu", "fraction"),
        ("resources: {cpu: 0, gpu: 0}\n", "resources.cpu", "both are 0"),
        ("resources: {cpu: many}\n", "resources.cpu", "expected a number"),
        ("resources: 4\n", "resources", "expected a mapping"),
        ("metric: accuracy\n", "metric", "must be one of"),
        ("mode: maximize\n", "mode", "must be one of"),
        ("trials_per_worker: 0\n", "trials_per_worker", "at least 1"),
        ("trials_per_worker: many\n", "trials_per_worker", "an integer or 'auto'"),
        ("max_failures: -1\n", "max_failures", "at least 0"),
        ("samples: two\n", "samples", "expected an integer"),
        ("name: 'a b'\n", "name", "letters"),
        ("refine: {axes: [data.side]}\n", "refine.axes", "not a grid axis"),
        ("refine: {tolerance: 1.0}\n", "refine.tolerance", "above 1"),
        ("refine: {start_seeds: 3}\n", "refine.start_seeds", "at most the 2 seeds"),
        ("refine: {budget: 3}\n", "refine.budget", "at least 6"),
        ("refine: {outcome: width}\n", "refine.outcome", "must be one of"),
        ("refine: {tolerence: 1.5}\n", "refine.tolerence", "did you mean 'tolerance'"),
    ],
)
def test_bad_study_settings(tmp_path, extra, key, words):
    message = error_of(write(tmp_path, TINY + extra))
    assert f"{key}:" in message and words in message, message


def test_refine_block_and_its_defaults(tmp_path):
    study = load_study(write(tmp_path, TINY + "refine: {axes: [regulators.l1], budget: 40}\n"))
    assert study.boundary_search().axes == ("regulators.l1",) and study.boundary_search().budget == 40
    default = load_study(write(tmp_path, TINY.replace("seeds: [0, 1]", "seeds: [0, 1, 2]"), "plain.yaml")).boundary_search()
    assert default.axes == ("regulators.locality", "regulators.l1") and default.budget == 6 * 3 and default.max_seeds == 3
    steps = write(
        tmp_path, TINY.replace("grid:\n", "grid:\n  model.steps: [2, 3]\n") + "refine: {axes: [model.steps]}\n", "steps.yaml"
    )
    assert "cannot be bisected" in error_of(steps)  # integers (and names) are facets, never bisected
    assert (
        load_study(write(tmp_path, TINY + "refine: {budget: 40}\n", "a.yaml")).fingerprint()
        != load_study(write(tmp_path, TINY + "refine: {budget: 50}\n", "b.yaml")).fingerprint()
    )


@pytest.mark.parametrize(
    "spec, key, words",
    [
        ("regulators.width: {loguniform: [0, 1]}", "sample.regulators.width.loguniform", "> 0"),
        ("regulators.width: {uniform: [1, 0]}", "sample.regulators.width.uniform", "below high"),
        ("regulators.width: {normal: [0, 1]}", "sample.regulators.width", "expected one of"),
        ("regulators.width: {uniform: [0]}", "sample.regulators.width.uniform", "[low, high]"),
        ("model.steps: {uniform: [2, 4]}", "sample.model.steps.uniform", "randint"),
        ("model.activation: {uniform: [0, 1]}", "sample.model.activation.uniform", "choice"),
        ("model.activation: {choice: [relu, sigmoid]}", "model.activation", "must be one of"),
        ("regulators.widht: {uniform: [0, 1]}", "sample.regulators.widht", "unknown config key"),
        ("regulators.l1: {uniform: [0, 1]}", "sample.regulators.l1", "already a grid axis"),
    ],
)
def test_bad_sampled_axes(tmp_path, spec, key, words):
    message = error_of(write(tmp_path, TINY + f"sample:\n  {spec}\n"))
    assert key in message and words in message, message


def test_cross_key_errors_name_the_trial(tmp_path):
    text = TINY.replace("regulators.locality: [0, 1.0e-3]", "model.steps: [2, 3]\n  model.readout_from: [1, 3]")
    message = error_of(write(tmp_path, text.replace("base:\n", "base:\n  model.readout: all\n")))
    assert "trial study-0006 (model.steps=2, model.readout_from=3" in message and "model.readout_from" in message, message


def test_missing_and_unreadable_files(tmp_path):
    error_of(tmp_path / "nope.yaml")
    error_of(write(tmp_path, "base: [1, 2\n"))
    error_of(write(tmp_path, "- 1\n- 2\n", "list.yaml"))


def test_an_unreadable_data_file_is_one_line_before_a_sweep_starts(tmp_path, results, capsys):
    """Read once before the sweep starts, not failed (and retried) by every trial; reading the study itself (for
    its records) needs no data file."""
    from urn_study import cli

    path = write(tmp_path, TINY.replace("data.name: nlgp", "data.name: mnist\n  data.path: /etc/passwd"))
    assert load_study(path).name
    assert cli.main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path}: data.path: /etc/passwd: not an .npz archive" in err, err
    assert not results.exists()


def test_yaml_aliases_expanding_past_the_budget_are_refused(tmp_path):
    items = ["&l0 [0, 0, 0, 0, 0, 0, 0, 0, 0]"] + [f"&l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 6)]
    text = TINY.replace("regulators.l1: [0, 1.0e-4, 1.0e-3]", f"regulators.l1: [{', '.join(items)}]")
    sizes = [10]  # written out, list l_i holds itself and 9 copies of l_(i-1); the aliases add all but itself
    for _ in range(5):
        sizes.append(1 + 9 * sizes[-1])
    assert f"would add {sum(sizes[1:]) - 5:,} values (at most 10,000)" in error_of(write(tmp_path, text))


def test_a_study_of_too_many_trials_is_refused_before_it_is_built(tmp_path, monkeypatch):
    monkeypatch.setattr("urn_study.study._expand", lambda study: pytest.fail("the trials were built"))
    values = [round(i * 1.0e-4, 4) for i in range(40)]
    grid = f"grid: {{regulators.l1: {values}, regulators.l2: {values}, regulators.width: {values}}}\n"
    message = error_of(write(tmp_path, TINY.split("grid:")[0] + grid + "seeds: [0, 1]\n"))
    assert f"{40 * 40 * 40 * 2:,} trials" in message and "at most 100,000" in message, message
    # the smoke form is counted as it would run: its axes laid over the study's (2 x 3 from TINY)
    smoke = f"smoke:\n  grid: {{regulators.width: {values}, regulators.l2: {values}}}\n  seeds: {list(range(11))}\n"
    path = write(tmp_path, TINY + smoke)
    monkeypatch.undo()  # the full form (TINY) is built and checked first; the smoke form must not be
    full_form = study_module._expand
    monkeypatch.setattr(
        "urn_study.study._expand", lambda study: pytest.fail("the smoke trials were built") if study.smoke else full_form(study)
    )
    assert f"{2 * 3 * 40 * 40 * 11:,} trials" in error_of(path, smoke=True)
    # one axis too long for any study is refused before its values are checked one by one
    axis = f"grid: {{regulators.l1: [{', '.join(str(i) for i in range(100_001))}]}}\n"
    assert "grid.regulators.l1: 100,001 values" in error_of(write(tmp_path, TINY.split("grid:")[0] + axis))


@pytest.mark.parametrize("section", ["resources", "grid", "refine"])
def test_a_key_holding_a_newline_is_shown_quoted_in_its_one_line(tmp_path, section):
    """Found by the fuzz test (a key "\\n" under resources or grid made the message two lines)."""
    message = error_of(write(tmp_path, TINY + f'{section}:\n  "a\\nb": 1\n'))
    assert "'a\\nb'" in message, message


def test_the_question_of_a_study_file_is_its_header_in_one_line(tmp_path):
    from urn_study.study import study_question

    path = write(tmp_path, "# Question: does it\n#   emerge?\n# Run: urn-study sweep x.yaml\nname: x\n")
    assert study_question(path) == "does it emerge?"
    assert study_question(write(tmp_path, "name: x\n")) == ""
