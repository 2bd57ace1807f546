"""Sweeps through Ray Tune: checks before Ray starts, smoke runs of every study file, a multi-node sweep over
HTTP with fractional GPUs, a retried trial and an interrupted sweep resumed, Optuna, and the UI."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import psutil
import pytest

from urn_study import cli, tracking
from urn_study.config import ConfigError, to_flat
from urn_study.study import load_study, with_gpus

ROOT = Path(__file__).resolve().parents[1]
STUDY_FILES = sorted((ROOT / "search_spaces").glob("*.yaml"))

TINY = """\
# Question: a tiny study for the sweep tests.
# Run: urn-study sweep tiny.yaml
name: tiny
base:
  data.name: nlgp
  data.side: 8
  data.n_samples: 200
  train.epochs: 2
  train.batch_size: 50
  train.snapshot_every: 1
  train.checkpoint_every: 1
grid:
  regulators.locality: [0, 1.0e-3]
  regulators.l1: [0, 1.0e-4, 1.0e-3, 1.0e-2]
seeds: [0]
"""


def write(folder: Path, text: str, name: str = "tiny.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def finished_runs(uri: str, study: str) -> dict[str, list]:
    """trial id -> its runs (all statuses) in the study's experiment."""
    client = tracking.client(uri)
    experiment = client.get_experiment_by_name(study)
    assert experiment is not None, f"no experiment {study!r}"
    out: dict[str, list] = {}
    for run in tracking.trial_runs(uri, experiment.experiment_id):
        out.setdefault(run.data.tags[tracking.TRIAL_TAG], []).append(run)
    return out


def assert_each_trial_once(uri: str, study, epochs: int) -> dict[str, object]:
    """Every trial of the study has exactly one run, FINISHED, with its params, every epoch's metrics
    once, phase and depth tags, and its artifacts. Returns trial id -> run."""
    client = tracking.client(uri)
    runs = finished_runs(uri, study.name)
    assert sorted(runs) == sorted(t.trial_id for t in study.trials())
    out = {}
    for trial in study.trials():
        (run,) = runs[trial.trial_id]
        assert run.info.status == "FINISHED", trial.trial_id
        assert run.info.run_name == trial.trial_id
        assert run.data.params == {k: (json.dumps(v) if isinstance(v, dict) else str(v)) for k, v in to_flat(trial.config).items()}
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "task_loss")]
        assert sorted(steps) == list(range(1, epochs + 1)), (trial.trial_id, steps)
        assert "test_accuracy" in run.data.metrics and run.data.tags.get("phase") and "depth" in run.data.tags
        names = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"W.npy", "W_heatmap.png", "layout.json", "structure.json", "snapshots"} <= names
        out[trial.trial_id] = run
    return out


# --- checked before Ray starts --------------------------------------------------------------------------


def test_bad_study_is_one_line_before_ray(results, tmp_path, capsys):
    import ray

    path = write(tmp_path, TINY.replace("regulators.l1:", "regulators.l11:"))
    assert cli.main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(path) in err and "grid.regulators.l11" in err
    assert not ray.is_initialized()


def test_a_report_that_cannot_be_drawn_costs_one_warning_line_not_the_sweep(results, tmp_path, capsys):
    from urn_study.commands import sweep_report

    study = load_study(write(tmp_path, TINY))
    uri = tracking.resolve_tracking_uri()
    experiment = tracking.ensure_experiment(uri, study.name)
    parent = tracking.open_sweep_run(uri, experiment, study.name, "tiny-sweep", {})
    sweep_report(study, uri, parent, "tiny-sweep")  # no trial finished: nothing to draw
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning" in err and f"urn-study phase {study.path}" in err
    assert tracking.client(uri).get_run(parent).data.metrics == {}


def test_bad_inputs_are_said_before_ray_is_imported(results, tmp_path):
    """Importing Ray alone takes seconds: a malformed study or option is said without it."""
    good, bad = write(tmp_path, TINY), write(tmp_path, TINY.replace("regulators.l1:", "regulators.l11:"), "bad.yaml")
    code = textwrap.dedent("""\
        import sys
        from urn_study import cli
        codes = [cli.main(argv.split()) for argv in sys.argv[1:]]
        print(*codes, sorted(name for name in sys.modules if name.split(".")[0] == "ray"))""")
    proc = subprocess.run(
        [sys.executable, "-c", code, f"sweep {bad}", f"sweep {good} --searcher optuna", f"sweep {good} --max-concurrent 0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.split() == ["2", "2", "2", "[]"], proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 3 and "grid.regulators.l11" in proc.stderr


def test_unreachable_tracking_server_is_said_before_ray(results, tmp_path, capsys, net):
    import ray

    uri = f"http://127.0.0.1:{net.free_port()}"
    assert cli.main(["sweep", str(write(tmp_path, TINY)), "--tracking-uri", uri]) == 2
    assert "not reachable" in capsys.readouterr().err
    assert not ray.is_initialized()


@pytest.mark.parametrize("resources, key", [("{cpu: 64}", "resources.cpu"), ("{gpu: 0.25}", "resources.gpu")])
def test_trials_bigger_than_local_ray_are_refused_before_it_starts(results, tmp_path, capsys, resources, key, monkeypatch):
    import ray

    from urn_study.sweep import inputs

    monkeypatch.setattr(inputs, "_local_gpus", lambda: 0)  # this machine's GPUs, whatever it has
    path = write(tmp_path, TINY + f"resources: {resources}\n")
    assert cli.main(["sweep", str(path), "--num-cpus", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(path) in err and f"{key}:" in err, err
    assert not ray.is_initialized() and not (results / "sweeps").exists()


@pytest.mark.parametrize("value, says", [("-1", "got -1"), ("1.5", "got 1.5"), ("nan", "got nan"), ("inf", "got inf")])
def test_a_bad_gpus_per_trial_is_one_line_before_ray(results, tmp_path, capsys, value, says):
    import ray

    assert cli.main(["sweep", str(write(tmp_path, TINY)), f"--gpus-per-trial={value}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--gpus-per-trial: a fraction of one GPU (0 to 1) or whole GPUs" in err and says in err
    assert not ray.is_initialized() and not results.exists()


def test_gpus_per_trial_is_refused_where_local_ray_has_no_gpu_or_the_study_pins_the_cpu(results, tmp_path, capsys, monkeypatch):
    import ray

    from urn_study.sweep import inputs

    monkeypatch.setattr(inputs, "_local_gpus", lambda: 0)  # this machine's GPUs, whatever it has
    path = write(tmp_path, TINY)
    assert cli.main(["sweep", str(path), "--gpus-per-trial", "0.25"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err == "urn-study: error: --gpus-per-trial: a trial asks for 0.25 GPU, local Ray has 0 (run on a cluster with --address)"
    ), err
    pinned = write(tmp_path, TINY.replace("  data.name: nlgp\n", "  data.name: nlgp\n  train.device: cpu\n"), "cpu.yaml")
    assert cli.main(["sweep", str(pinned), "--gpus-per-trial", "1", "--address", "auto"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--gpus-per-trial:" in err and "train.device: cpu" in err, err
    # 0 takes a study's GPU request away: the sweep that would be refused here gets past the check
    gpu_study = load_study(write(tmp_path, TINY + "resources: {gpu: 0.5}\n", "gpu.yaml"))
    inputs.check_local_resources(with_gpus(gpu_study, 0), num_cpus=2, gpus_flag=True)
    assert not ray.is_initialized() and not results.exists()


def test_resume_needs_an_earlier_sweep(results, tmp_path, capsys):
    assert cli.main(["sweep", str(write(tmp_path, TINY)), "--resume"]) == 2
    assert "no earlier sweep" in capsys.readouterr().err


def test_resume_by_sweep_id_and_of_a_changed_study(results, tmp_path, capsys):
    """Without Ray: the records two sweeps left, found by id or as the latest; a study whose trials changed since is
    refused in one line, and so is an id that is not this study's."""
    from urn_study.sweep.inputs import check_inputs
    from urn_study.sweep.records import SweepRecord, new_record, save_record

    path = write(tmp_path, TINY)
    study = load_study(path)
    uri = tracking.resolve_tracking_uri()
    first = new_record(study, "grid", uri, None)
    save_record(first)
    second = SweepRecord(
        **{**first.__dict__, "sweep_id": first.sweep_id + "-b", "created": first.created + "~", "searcher": "boundary"}
    )
    save_record(second)
    assert check_inputs(path, resume=first.sweep_id).record.sweep_id == first.sweep_id
    latest = check_inputs(path, resume="latest")
    assert latest.record.sweep_id == second.sweep_id and latest.searcher == "boundary"  # the record's searcher
    other = write(tmp_path, TINY.replace("name: tiny", "name: other"), "other.yaml")
    assert cli.main(["sweep", str(other), "--resume", first.sweep_id]) == 2
    assert f"sweep {first.sweep_id!r} belongs to study 'tiny'" in capsys.readouterr().err
    path.write_text(TINY.replace("train.epochs: 2", "train.epochs: 3"))  # the same study, other trials
    assert cli.main(["sweep", str(path), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the study changed since sweep" in err and second.sweep_id in err


def test_optuna_needs_sampled_axes_and_one_trial_per_worker(tmp_path):
    from urn_study.sweep.inputs import check_searcher

    check_searcher(load_study(write(tmp_path, TINY)), "grid")
    with pytest.raises(ConfigError, match=r"tiny.yaml: sample: .*optuna") as info:
        check_searcher(load_study(write(tmp_path, TINY)), "optuna")
    assert "add e.g. `sample: {" in str(info.value) and "samples:" in str(info.value)  # says what to add
    for smoke in (False, True):  # the shipped study with sampled axes passes
        check_searcher(load_study(ROOT / "search_spaces" / "best_accuracy.yaml", smoke=smoke), "optuna")
    sampled = TINY + "sample:\n  regulators.width: {loguniform: [1.0e-5, 1.0e-3]}\n"
    check_searcher(load_study(write(tmp_path, sampled)), "optuna")
    with pytest.raises(ConfigError, match=r"tiny.yaml: trials_per_worker: must be 1 or auto with --searcher optuna"):
        check_searcher(load_study(write(tmp_path, sampled + "trials_per_worker: 2\n")), "optuna")
    check_searcher(load_study(write(tmp_path, sampled + "trials_per_worker: 1\n")), "optuna")


def test_the_sweep_chooses_its_packing_once_says_it_and_a_resume_keeps_it(results, tmp_path, monkeypatch):
    """auto: chosen from the Ray the sweep runs on (8 trials of one shape on 2 CPUs: 4 a pack), written to the sweep's
    record and printed; its resume packs the same way whatever Ray it finds, so the packs' checkpoints are found
    again. A sweep recorded before the choice was packed by the study's number, or one."""
    import io

    from urn_study.sweep import driver
    from urn_study.sweep.records import PENDING, find_record, new_record, save_record

    study = load_study(write(tmp_path, TINY))
    monkeypatch.setattr(driver.ray, "cluster_resources", lambda: {"CPU": 2.0})
    record = new_record(study, "grid", tracking.resolve_tracking_uri(), None)
    assert record.trials_per_worker == PENDING
    out = io.StringIO()
    assert driver._packing(study, record, "grid", out) == 4
    assert "packing: up to 4 trials of one shape train together (auto: S = 18 on CPU" in out.getvalue()
    assert out.getvalue().rstrip().endswith(": 2 Tune trials")
    assert find_record(study, record.sweep_id).trials_per_worker == "4"  # saved
    monkeypatch.setattr(driver.ray, "cluster_resources", lambda: {"CPU": 8.0})  # resumed on a bigger Ray
    out = io.StringIO()
    assert driver._packing(study, find_record(study, record.sweep_id), "grid", out) == 4
    assert "(as the sweep started)" in out.getvalue()
    record.trials_per_worker = ""  # a record written before the choice was recorded
    assert driver._packing(study, record, "grid", io.StringIO()) == 1
    out = io.StringIO()
    assert driver._packing(study, new_record(study, "boundary", record.tracking_uri, None), "boundary", out) == 1
    assert "packing: one trial at a time (auto: the searcher asks for one trial at a time)" in out.getvalue()
    save_record(record)


def test_best_trial_line_names_the_best_finished_trial_by_the_studys_metric_and_mode():
    import dataclasses

    from urn_study.sweep.driver import best_line, format_summary

    study = load_study(ROOT / "search_spaces" / "best_accuracy.yaml", smoke=True)
    axes = {"model.steps": "3", "regulators.locality": "0.00031", "regulators.l1": "2.5e-06"}

    def row(trial, metric, status="FINISHED", phase="fully_connected", **values):
        return {"trial_id": trial, "status": status, "metric": metric, "phase": phase, "depth": 2, **axes, **values}

    rows = [
        row("a", 0.91),
        row("b", 0.97, **{"regulators.locality": "0.0012"}),
        row("c", 0.99, status="RUNNING"),
        row("d", 0.999, phase="diverged"),
        row("e", None),
        row("f", 0.97),
        row("g", 0.20, phase="dead"),
    ]
    assert best_line(rows, study) == (
        "best trial (highest test_accuracy): b, 0.970 at model.steps=3, "
        "regulators.locality=0.0012, regulators.l1=2.5e-06 (fully_connected, depth 2)"
    )
    assert format_summary(rows, study).splitlines()[-1] == best_line(rows, study)
    lowest = best_line(rows, dataclasses.replace(study, mode="min"))
    assert lowest.startswith("best trial (lowest test_accuracy): g, 0.200 at") and lowest.endswith("(dead, depth 2)")
    assert best_line([row("a", 0.5, status="RUNNING")], study) == ""


def test_boundary_search_needs_an_axis_to_bisect_and_one_trial_per_worker(tmp_path):
    from urn_study.sweep.inputs import check_searcher

    check_searcher(load_study(write(tmp_path, TINY)), "boundary")
    with pytest.raises(ConfigError, match=r"tiny.yaml: trials_per_worker: must be 1 or auto with --searcher boundary"):
        check_searcher(load_study(write(tmp_path, TINY + "trials_per_worker: 2\n")), "boundary")
    with pytest.raises(ConfigError, match=r"tiny.yaml: sample: --searcher boundary"):
        check_searcher(load_study(write(tmp_path, TINY + "sample:\n  regulators.width: {uniform: [0, 1]}\n")), "boundary")
    steps = TINY.replace("grid:\n", "grid:\n  regulators.self: [0, {kind: step, before: 0, after: 0.1, epoch: 1}]\n")
    with pytest.raises(ConfigError, match=r"grid.regulators.self: the boundary search takes only plain values"):
        check_searcher(load_study(write(tmp_path, steps)), "boundary")
    names = re.sub(r"grid:\n(  .*\n)+", "grid:\n  data.name: [digits, digits_permuted]\n", TINY)
    with pytest.raises(ConfigError, match=r"refine.axes: a list of grid axes .*no axis of numbers"):
        check_searcher(load_study(write(tmp_path, names)), "boundary")


def test_progress_counts_urn_trials_and_estimates_time_left():
    from urn_study.sweep.progress import Progress

    def trial(status, ids, epoch=0):
        return SimpleNamespace(status=status, config={"pack": ids}, last_result={"epoch": epoch})

    progress = Progress("s", total_trials=6, epochs=10)
    trials = [trial("TERMINATED", ["a", "b"]), trial("RUNNING", ["c"], 5), trial("ERROR", ["d"]), trial("PENDING", ["e", "f"])]
    trials[0].last_result["urn_summary"] = "[]"  # the final report: finished, not stopped
    assert progress.counts(trials) == {"done": 2, "running": 1, "failed": 1, "epochs": 35.0}
    progress.first_epochs = 0.0
    progress.start -= 35  # 35 epochs in 35 s: the 25 left take 25 s
    line = progress.line(trials)
    assert "2/6 done, 1 running, 1 failed, 2 waiting" in line and "35/60 epochs" in line and "~0:25 left" in line
    search = Progress("s", total_trials=6, epochs=10, budget=True)  # a boundary search: a budget, not a count
    search.first_epochs, search.start = 0.0, search.start - 35
    assert "2/at most 6 done, 1 running, 1 failed, 2 more at most" in search.line(trials)
    assert "2/3 done" in search.line(trials[:3], final=True)  # it stopped before its budget: what ran is the whole


def test_the_driver_writes_the_study_table_in_batches_of_ended_trials(results):
    from urn_study.config import parse_config
    from urn_study.sweep.table_keeper import TableKeeper
    from urn_study.tracking.study_table import TABLE_FILE, read_table

    uri = tracking.resolve_tracking_uri()
    experiment = tracking.ensure_experiment(uri, "tiny")
    parent = tracking.open_sweep_run(uri, experiment, "tiny", "tiny-s", {})
    table = Path(tracking.client(uri).get_run(parent).info.artifact_uri.removeprefix("file://")) / TABLE_FILE
    keeper = TableKeeper(uri, experiment, "tiny-s", parent, every_trials=3, every_s=3600)
    ended = SimpleNamespace(config={"pack": [{}, {}]})  # a Tune trial training a pack of two URN trials
    for n in range(3):
        tracking.TrialRecord.open(uri, experiment, parent, "tiny", "tiny-s", f"tiny-{n:04d}", parse_config({}))
    keeper.on_trial_complete(0, [], SimpleNamespace(config={}))
    assert not table.exists()  # one trial ended: not a batch yet
    keeper.on_trial_error(0, [], ended)
    frame, meta = read_table(table)  # three: written, with every run of the sweep
    assert sorted(frame["tag:urn.trial_id"]) == ["tiny-0000", "tiny-0001", "tiny-0002"] and meta["sweep"] == "tiny-s"
    tracking.TrialRecord.open(uri, experiment, parent, "tiny", "tiny-s", "tiny-0003", parse_config({}))
    keeper.on_step_end(0, [])
    assert len(read_table(table)[0]) == 3  # nothing ended since: not written again
    keeper.every_s = 0.0
    keeper.on_trial_complete(0, [], SimpleNamespace(config={}))
    assert len(read_table(table)[0]) == 4  # the time's up for the one that ended


def test_pack_reporter_sends_one_report_per_epoch_and_one_checkpoint_folder_per_trial(monkeypatch, tmp_path):
    """run_trials' per-trial callbacks -> one tune.report per epoch (here: REPORT_EVERY_S = 0); at checkpoint
    epochs but the last a folder per trial; a diverged trial stops being waited for."""
    from urn_study.checkpoint import load_state
    from urn_study.sweep import trainable
    from urn_study.trial import TrialState

    sent = []

    def report(metrics, checkpoint=None):
        folders = sorted(p.name for p in Path(checkpoint.path).iterdir()) if checkpoint else None
        states = {name: load_state(Path(checkpoint.path) / name).epoch for name in folders} if folders else None
        sent.append((metrics["epoch"], metrics["test_accuracy"], folders, states))

    monkeypatch.setattr(trainable.tune, "report", report)
    monkeypatch.setattr(trainable, "REPORT_EVERY_S", 0.0)
    logged = []
    records = [SimpleNamespace(log_epoch=lambda e, m, k=k: logged.append((k, e))) for k in range(2)]
    train = SimpleNamespace(checkpoint_every=2, epochs=3)
    reporter = trainable.PackReporter(["a", "b"], records, train, "test_accuracy")
    reports, checkpoints = reporter.reports(), reporter.checkpoints()
    state = lambda e: TrialState(epoch=e, arrays={"W": [[0.0]]}, adam_step=e)  # noqa: E731
    reports[0](1, {"task_loss": 1.0, "test_accuracy": 0.5})
    assert sent == []  # waits for b
    reports[1](1, {"task_loss": 1.0, "test_accuracy": 0.7})
    assert sent == [(1, pytest.approx(0.6), None, None)]
    reports[0](2, {"task_loss": 1.0, "test_accuracy": 0.6})
    reports[1](2, {"task_loss": float("nan"), "diverged": 1.0})  # b diverges at a checkpoint epoch
    assert len(sent) == 1  # a checkpoint epoch: waits for both folders
    checkpoints[0](state(2))
    checkpoints[1](state(2))
    assert sent[-1] == (2, pytest.approx(0.65), ["a", "b"], {"a": 2, "b": 2})
    reports[0](3, {"task_loss": 1.0, "test_accuracy": 0.8})  # b no longer reports
    checkpoints[0](state(3))  # the last epoch: no checkpoint (the records are written next)
    checkpoints[1](state(2))
    assert sent[-1] == (3, pytest.approx(0.75), None, None)  # b: its last finite figure
    reporter.flush()
    assert len(sent) == 3
    assert logged == [(0, 1), (1, 1), (0, 2), (1, 2), (0, 3)]


def test_a_member_whose_record_fails_leaves_the_others_recorded_and_the_pack_to_be_retried(monkeypatch):
    """One trial's record refused by the store: the pack's other trials are still written, then the Tune trial
    fails naming that one (Tune retries it; the recorded members are skipped there, as records[i].finished)."""
    from urn_study.config import parse_config
    from urn_study.sweep import trainable

    monkeypatch.setattr(trainable.tune, "report", lambda metrics, checkpoint=None: None)
    monkeypatch.setattr(trainable.tune, "get_checkpoint", lambda: None)

    class Record:
        def __init__(self, broken: bool):
            self.broken, self.finished, self.result = broken, False, None

        def log_epoch(self, epoch, metrics):
            pass

        def finish(self, result):
            if self.broken:
                raise RuntimeError("the store said no")
            self.finished, self.result = True, result

    members = [
        (
            f"t-{seed}",
            parse_config(
                {
                    "seed": seed,
                    "data.name": "nlgp",
                    "data.side": 8,
                    "data.n_samples": 200,
                    "train.epochs": 1,
                    "train.batch_size": 50,
                }
            ),
        )
        for seed in range(3)
    ]
    records = [Record(broken=seed == 1) for seed in range(3)]
    with pytest.raises(RuntimeError, match=r"^the record of t-1 \(the store said no\) failed; the pack's other"):
        trainable._train(members, records, [0, 1, 2], "test_accuracy", [])
    assert [r.finished for r in records] == [True, False, True]
    assert [r.result.config.seed for r in (records[0], records[2])] == [0, 2]  # each its own trial


def test_a_member_whose_training_fails_is_failed_alone_and_its_retry_trains_it_alone(monkeypatch, tmp_path):
    """Member t-1's reading raises at epoch 2: t-0 and t-2 train on and are recorded, t-1's run is failed with its
    error, the Tune trial fails naming it; Tune's checkpoints kept coming with every member's folder (t-1's: its
    state before it failed), and the retry trains t-1 alone from there."""
    import shutil

    from urn_study import trial
    from urn_study.checkpoint import load_state
    from urn_study.config import parse_config
    from urn_study.sweep import trainable

    stored = []  # Tune's copies of the pack's checkpoints, as its storage keeps them

    def report(metrics, checkpoint=None):
        if checkpoint is not None:
            stored.append(tmp_path / f"checkpoint_{len(stored):06d}")
            shutil.copytree(checkpoint.path, stored[-1])

    monkeypatch.setattr(trainable.tune, "report", report)
    monkeypatch.setattr(trainable.tune, "get_checkpoint", lambda: None)
    real, readings = trial._measure, []

    def measure(batch, k, w, b, final):
        if batch.configs[k].seed == 1:
            readings.append(k)
            if len(readings) == 2:
                raise ValueError("no reading at epoch 2")
        return real(batch, k, w, b, final)

    monkeypatch.setattr(trial, "_measure", measure)

    class Record:
        def __init__(self):
            self.finished, self.result, self.failed, self.epochs, self.tags = False, None, [], [], {}

        def log_epoch(self, epoch, metrics):
            if epoch > max(self.epochs, default=0):  # as a run: an epoch it has is not logged again
                self.epochs.append(epoch)

        def set_tags(self, tags):
            self.tags.update(tags)

        def finish(self, result):
            self.finished, self.result = True, result

        def fail(self, error=None):
            self.failed.append(error)

    config = {
        "data.name": "nlgp",
        "data.side": 8,
        "data.n_samples": 200,
        "train.batch_size": 50,
        "train.epochs": 4,
        "train.snapshot_every": 1,
        "train.checkpoint_every": 1,
    }
    members = [(f"t-{seed}", parse_config({**config, "seed": seed})) for seed in range(3)]
    records = [Record() for _ in members]
    with pytest.raises(RuntimeError, match=r"^t-1 \(ValueError: no reading at epoch 2\) failed in training; the pack's other"):
        trainable._train(members, records, [0, 1, 2], "test_accuracy", [])
    assert [r.finished for r in records] == [True, False, True]
    assert [r.failed for r in records] == [[], ["ValueError: no reading at epoch 2"], []]
    assert records[1].epochs == [1]  # its epochs before it failed
    # a checkpoint at each epoch but the last, each with every member's folder; t-1's is its epoch-1 state
    assert len(stored) == 3
    assert all(sorted(p.name for p in folder.iterdir()) == ["t-0", "t-1", "t-2"] for folder in stored)
    assert [load_state(folder / "t-1").epoch for folder in stored] == [1, 1, 1]
    assert [load_state(stored[-1] / t).epoch for t in ("t-0", "t-2")] == [3, 3]

    monkeypatch.setattr(trial, "_measure", real)  # the retry: Tune gives it the pack's latest checkpoint
    monkeypatch.setattr(trainable.tune, "get_checkpoint", lambda: trainable.tune.Checkpoint.from_directory(str(stored[-1])))
    todo = [i for i, r in enumerate(records) if not r.finished]
    assert todo == [1]
    trainable._train(members, records, todo, "test_accuracy", [])
    assert records[1].finished and records[1].tags["urn.resumed_from_epoch"] == "1"
    assert records[1].epochs == [1, 2, 3, 4] and records[1].result.metrics["epochs"] == 4
    assert records[1].result.config.seed == 1 and records[1].result.error is None


def test_a_member_whose_checkpoint_fails_does_not_hold_the_packs_checkpoints_but_a_full_disk_ends_the_pack(monkeypatch):
    """b's save raises at epoch 1: that checkpoint goes without b (run_trials fails b, whose last report says so
    and is not logged); the next ones wait for no report of b but still take its folder. A full disk is no
    member's own failure: PackError, which ends the pack."""
    from urn_study.sweep import trainable
    from urn_study.trial import PackError, TrialState

    sent, logged, broken = [], [], {"b": "the folder said no"}
    monkeypatch.setattr(
        trainable.tune,
        "report",
        lambda metrics, checkpoint=None: sent.append(sorted(os.listdir(checkpoint.path)) if checkpoint else None),
    )
    real_save = trainable.save_state

    def save_state(state, folder):
        if folder.name in broken:
            (folder / "half").mkdir(parents=True)
            raise OSError(broken.pop(folder.name))
        real_save(state, folder)

    monkeypatch.setattr(trainable, "save_state", save_state)
    records = [SimpleNamespace(log_epoch=lambda e, m, k=k: logged.append((k, e))) for k in range(2)]
    reporter = trainable.PackReporter(["a", "b"], records, SimpleNamespace(checkpoint_every=1, epochs=4), "test_accuracy")
    reports, checkpoints = reporter.reports(), reporter.checkpoints()
    state = TrialState(epoch=1, arrays={"W": [[0.0]]}, adam_step=1)
    reports[0](1, {"task_loss": 1.0, "test_accuracy": 0.5})
    reports[1](1, {"task_loss": 1.0, "test_accuracy": 0.7})
    checkpoints[0](state)
    with pytest.raises(OSError, match="the folder said no"):
        checkpoints[1](state)
    assert sent == [["a"]]  # without b's half folder
    reports[1](1, {"task_loss": 1.0, "failed": 1.0})  # run_trials: b is out
    reports[0](2, {"task_loss": 1.0, "test_accuracy": 0.6})
    checkpoints[0](state)
    checkpoints[1](state)  # b's state before it failed
    assert sent == [["a"], ["a", "b"]]
    reports[0](3, {"task_loss": 1.0, "test_accuracy": 0.6})
    checkpoints[0](state)
    broken["b"] = "[Errno 28] No space left on device"
    with pytest.raises(PackError, match="No space left on device"):
        checkpoints[1](state)
    assert logged == [(0, 1), (1, 1), (0, 2), (0, 3)]


def test_pack_reporter_reports_to_tune_at_checkpoints_only_while_they_come_often(monkeypatch):
    """Each tune.report waits on Tune's loop: between checkpoints only an epoch after REPORT_EVERY_S goes."""
    from urn_study.sweep import trainable
    from urn_study.trial import TrialState

    sent, clock = [], [0.0]
    monkeypatch.setattr(
        trainable.tune, "report", lambda metrics, checkpoint=None: sent.append((metrics["epoch"], checkpoint is not None))
    )
    logged = []
    record = SimpleNamespace(log_epoch=lambda e, m: logged.append(e))
    reporter = trainable.PackReporter(
        ["a"], [record], SimpleNamespace(checkpoint_every=5, epochs=12), "test_accuracy", clock=lambda: clock[0]
    )
    report, checkpoint = reporter.reports()[0], reporter.checkpoints()[0]
    for epoch in range(1, 13):
        clock[0] = epoch * 2.0  # 2 s per epoch
        report(epoch, {"test_accuracy": 0.5, "task_loss": 1.0})
        if epoch % 5 == 0 or epoch == 12:
            checkpoint(TrialState(epoch=epoch, arrays={"W": [[0.0]]}, adam_step=epoch))
    # checkpoints at 5 and 10, the last epoch without; between them nothing (2 s per epoch: never 10 s)
    assert sent == [(5, True), (10, True), (12, False)]
    assert logged == list(range(1, 13))  # MLflow gets every epoch
    clock[0] = 0.0
    reporter = trainable.PackReporter(
        ["a"], [record], SimpleNamespace(checkpoint_every=50, epochs=50), "test_accuracy", clock=lambda: clock[0]
    )
    sent.clear()
    for epoch in range(1, 13):
        clock[0] = epoch * 3.0
        reporter.reports()[0](epoch, {"test_accuracy": 0.5, "task_loss": 1.0})
    assert sent == [(4, False), (8, False), (12, False)]  # rare checkpoints: progress every ~10 s


def test_a_local_ray_that_misses_rays_start_up_wait_is_killed_and_started_again(monkeypatch, capsys):
    """Ray gives a new node a fixed 30 s: on a busy machine a start can miss it. What that half-started node left
    running is killed, and Ray started again; after the last try, one line (a ConfigError: exit 2, no traceback)."""
    from urn_study.sweep import driver

    left, tries = [], []

    def init(**kwargs):  # Ray's failure as Ray raises it, after starting its processes
        left.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"]))
        tries.append(kwargs["address"])
        if len(tries) < 3:
            raise Exception(
                "The current node timed out during startup. This could happen because some of the "
                "raylet failed to startup or the GCS has become overloaded."
            )

    monkeypatch.setattr(driver.ray, "init", init)
    monkeypatch.setattr(driver.ray, "shutdown", lambda: None)
    driver._start_local(1, tries=3)
    assert tries == ["local"] * 3
    assert [p.wait(timeout=30) is not None for p in left[:2]] == [True, True]  # killed, not left behind
    assert left[2].poll() is None  # the node that started is kept
    left[2].kill()
    err = capsys.readouterr().err
    assert err.count("starting it again") == 2 and "(3 of 3)" in err, err
    tries.clear()
    with pytest.raises(ConfigError, match="local Ray did not start: .* 2 times"):
        driver._start_local(1, tries=2)
    for p in left[3:]:
        assert p.wait(timeout=30) is not None


def test_the_record_opens_while_ray_starts_and_either_failing_leaves_nothing_running(results, tmp_path, monkeypatch):
    """The study's store is opened in a thread while Ray starts (each waits for the other here: run one after the
    other, they would time out). Ray that does not start: its error, the sweep's run ended FAILED. A store that
    fails: its error, Ray stopped again, no sweep record left."""
    import threading

    from urn_study.sweep import driver

    study = write(tmp_path, TINY)
    store_open, ray_up, calls = threading.Event(), threading.Event(), []
    ensure = tracking.ensure_experiment

    def ensure_experiment(*args):
        calls.append(("store", threading.current_thread() is threading.main_thread()))
        store_open.set()
        assert ray_up.wait(timeout=60), "Ray did not start while the store was opened"
        if fail == "store":
            raise ConfigError("the store refused")
        return ensure(*args)

    def start_ray(address, num_cpus):
        calls.append(("ray", threading.current_thread() is threading.main_thread()))
        ray_up.set()
        assert store_open.wait(timeout=60), "the store was not opened while Ray started"
        if fail == "ray":
            raise driver.RayStartError("local Ray did not start")
        return True

    shutdowns = []
    monkeypatch.setattr(driver.tracking, "ensure_experiment", ensure_experiment)
    monkeypatch.setattr(driver, "start_ray", start_ray)
    monkeypatch.setattr(driver.ray, "shutdown", lambda: shutdowns.append(1))

    fail = "ray"
    with pytest.raises(ConfigError, match="local Ray did not start"):
        driver.run_sweep(study)
    assert sorted(calls) == [("ray", True), ("store", False)] and shutdowns == []
    client = tracking.client(tracking.resolve_tracking_uri())
    [sweep_run] = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert sweep_run.info.status == "FAILED"

    fail, records = "store", sorted((results / "sweeps").glob("*.json"))
    store_open.clear(), ray_up.clear(), calls.clear()
    with pytest.raises(ConfigError, match="the store refused"):
        driver.run_sweep(study)
    assert sorted(calls) == [("ray", True), ("store", False)] and shutdowns == [1]
    assert sorted((results / "sweeps").glob("*.json")) == records  # no record of the refused sweep


def test_a_trials_warnings_reach_the_drivers_terminal_with_its_next_report(monkeypatch, capsys):
    """Workers' logs stay out of the driver's terminal, but what the project's own loggers warn of inside a trial (a
    store that stops taking metrics) rides on the trial's next report, once, and Progress prints it with the trial."""
    import logging

    from urn_study.sweep import trainable
    from urn_study.sweep.progress import Progress

    sent = []
    monkeypatch.setattr(trainable.tune, "report", lambda metrics, checkpoint=None: sent.append(metrics))
    monkeypatch.setattr(trainable, "REPORT_EVERY_S", 0.0)
    record = SimpleNamespace(log_epoch=lambda e, m: None)
    reporter = trainable.PackReporter(["a"], [record], SimpleNamespace(checkpoint_every=50, epochs=3), "test_accuracy")
    logging.getLogger("urn_study").addHandler(trainable.RELAY)  # as train_pack does
    try:
        logging.getLogger("urn_study.tracking").warning("the store stopped taking metrics: %s", "connection refused")
        logging.getLogger("urn_study.tracking").info("not a warning")
        reporter.reports()[0](1, {"test_accuracy": 0.5})
        reporter.reports()[0](2, {"test_accuracy": 0.5})
    finally:
        logging.getLogger("urn_study").removeHandler(trainable.RELAY)
    assert [m.get(trainable.LOG_KEY) for m in sent] == ["warning: the store stopped taking metrics: connection refused", None]
    trial = SimpleNamespace(trial_id="0001", config={"pack": ["quick-0003"]}, status="RUNNING", last_result={})
    for result in sent:
        Progress("s", total_trials=1, epochs=3).on_trial_result(0, [trial], trial, result)
    out = capsys.readouterr().out
    assert out.count("stopped taking metrics") == 1 and "quick-0003" in out, out


# --- sweeps ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="class")
def local_ray():
    """One local Ray for a class of sweeps: a sweep run while connected uses it (and leaves it up)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.mark.slow
class TestSmoke:
    def test_quickstart_smoke_through_the_cli_with_its_own_ray(self, results, capsys):
        path = ROOT / "search_spaces" / "quickstart.yaml"
        assert cli.main(["sweep", str(path), "--smoke", "--num-cpus", "2"]) == 0
        self.check(path, capsys.readouterr().out)
        # the sweep's run: its study file from the repository, its summary and its phase report
        study = load_study(path, smoke=True)
        client = tracking.client(tracking.resolve_tracking_uri())
        [sweep] = client.search_runs([client.get_experiment_by_name(study.name).experiment_id], "tags.`urn.role` = 'sweep'")
        assert sweep.data.params["study_file"] == "search_spaces/quickstart.yaml"
        assert sweep.data.tags["mlflow.source.name"] == "search_spaces/quickstart.yaml"
        counts = {k: v for k, v in sweep.data.metrics.items() if k.startswith("trials_")}
        assert sum(counts.values()) + sweep.data.metrics["diverged"] == len(study.trials()) == sweep.data.metrics["trials"]
        files = {a.path for a in client.list_artifacts(sweep.info.run_id, "phase")}
        assert {"phase/phase_diagram.png", "phase/gallery.png", "phase/phase_grid.csv"} <= files
        # and its study table, which a load without the local cache reads: the frame of MLflow's search
        from analysis.runs import load_study_runs

        plain = load_study_runs(study.name, use_cache=False, use_tables=False)
        assert {a.path for a in client.list_artifacts(sweep.info.run_id)} >= {"study_table.parquet"}
        pd.testing.assert_frame_equal(load_study_runs(study.name, use_cache=False), plain)
        assert len(plain) == len(study.trials())

    # quickstart and best_accuracy run in their own tests above (the CLI with its own Ray; Optuna)
    @pytest.mark.parametrize(
        "path", [p for p in STUDY_FILES if p.name not in ("quickstart.yaml", "best_accuracy.yaml")], ids=lambda p: p.name
    )
    def test_every_other_study_file_runs_in_smoke_form(self, local_ray, results, path, capsys):
        assert cli.main(["sweep", str(path), "--smoke"]) == 0
        self.check(path, capsys.readouterr().out)

    def test_structure_smoke_with_the_boundary_searcher(self, local_ray, results, tmp_path, capsys):
        """The coarse grid, then the trials where the phase changes, each run tagged with its round; `phase` then
        writes the brackets and the map of the points."""
        path = ROOT / "search_spaces" / "structure.yaml"
        assert cli.main(["sweep", str(path), "--smoke", "--searcher", "boundary"]) == 0
        out = capsys.readouterr().out
        study = load_study(path, smoke=True)
        runs = finished_runs(tracking.resolve_tracking_uri(), study.name)
        ids = sorted(t for t in runs if "-b" in t)
        assert ids[:2] == ["structure-smoke-b0000", "structure-smoke-b0001"] and len(ids) <= study.boundary_search().budget
        rounds = [int(runs[t][0].data.tags["urn.round"]) for t in ids]
        assert rounds[:2] == [0, 0] and "phases:" in out
        assert cli.main(["phase", str(path), "--smoke", "--out", str(tmp_path / "fig")]) == 0
        assert "boundary search:" in capsys.readouterr().out and (tmp_path / "fig" / "boundaries.csv").is_file()

    def test_best_accuracy_smoke_with_optuna_ends_with_its_best_trial(self, local_ray, results, tmp_path, capsys):
        """The shipped Optuna study end to end: Optuna draws the strengths, the sweep ends with its best trial (as
        the MLflow records have it), and `phase` gives one row per trial."""
        path = ROOT / "search_spaces" / "best_accuracy.yaml"
        assert cli.main(["sweep", str(path), "--smoke", "--searcher", "optuna"]) == 0
        out = capsys.readouterr().out
        study = load_study(path, smoke=True)
        runs = {t: r for t, (r,) in finished_runs(tracking.resolve_tracking_uri(), study.name).items()}
        assert sorted(runs) == [f"best_accuracy-smoke-o000{n}" for n in range(study.samples)]
        best_id = max(sorted(runs), key=lambda t: runs[t].data.metrics["test_accuracy"])  # the first of equals
        best = runs[best_id]
        line = next(x for x in out.splitlines() if x.startswith("best trial"))
        values = ", ".join(f"{k}={float(best.data.params[k]):g}" for k in study.axes)
        assert line == (
            f"best trial (highest test_accuracy): {best_id}, {best.data.metrics['test_accuracy']:.3f} at "
            f"{values} ({best.data.tags['phase']}, depth {best.data.tags['depth']})"
        )
        assert cli.main(["phase", str(path), "--smoke", "--out", str(tmp_path / "fig")]) == 0
        grid = (tmp_path / "fig" / "phase_grid.csv").read_text().splitlines()
        assert len(grid) == 1 + study.samples  # a header, then one row per sampled point

    @staticmethod
    def check(path: Path, out: str) -> None:
        study = load_study(path, smoke=True)
        assert f"{len(study.trials())}/{len(study.trials())} done" in out and "phases:" in out
        uri = tracking.resolve_tracking_uri()
        assert_each_trial_once(uri, study, max(t.config.train.epochs for t in study.trials()))


@pytest.mark.slow
def test_multinode_sweep_logs_over_http_and_packs_four_trials_per_gpu(results, tmp_path, ray_cluster, mlflow_server, capsys):
    cluster, nodes = ray_cluster
    # the study asks for no GPU: --gpus-per-trial gives each trial a quarter of one; one trial per Tune trial
    path = write(tmp_path, TINY + "trials_per_worker: 1\n")
    code = cli.main(["sweep", str(path), "--address", cluster.address, "--tracking-uri", mlflow_server, "--gpus-per-trial", "0.25"])
    out = capsys.readouterr().out
    assert code == 0, out
    study = load_study(path)
    runs = assert_each_trial_once(mlflow_server, study, epochs=2)
    # two GPU nodes, four trials at a time on each: 8 trials ran together on 2 (fake) GPUs
    assert "at most 8 ran at once" in out, out
    by_node: dict[str, list] = {}
    for run in runs.values():
        tags = run.data.tags
        assert json.loads(tags["urn.resources"]) == [{"CPU": 1.0, "GPU": 0.25}]
        assert json.loads(tags["urn.gpu_ids"]) == ["0"]
        assert tags["urn.device"] == "cpu"  # picked inside the trial: fake GPUs have no CUDA
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
        by_node.setdefault(tags["urn.node_id"], []).append(run)
    assert sorted(by_node) == sorted(n.node_id for n in nodes)
    assert sorted(len(v) for v in by_node.values()) == [4, 4]
    client = tracking.client(mlflow_server)
    (parent,) = [
        r for r in client.search_runs([runs["tiny-0000"].info.experiment_id]) if r.data.tags.get(tracking.ROLE_TAG) == "sweep"
    ]
    assert parent.info.status == "FINISHED"
    assert all(r.data.tags[tracking.PARENT_TAG] == parent.info.run_id for r in runs.values())


# --- the UI -----------------------------------------------------------------------------------------------


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of sockets listening on ``port`` (from /proc/net/tcp{,6})."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:  # 0A = LISTEN
                found.add(address)
    return found


@pytest.mark.slow
def test_ui_serves_the_local_store_on_loopback_only(results, tmp_path, net, wait):
    port = net.free_port()
    env = {**os.environ, "URN_RESULTS_DIR": str(results)}
    log = open(tmp_path / "ui.log", "wb")
    ui = subprocess.Popen(
        [sys.executable, "-m", "urn_study.cli", "ui", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        net.wait_http(f"http://127.0.0.1:{port}/health", process=ui)
        # the server alone: MLflow's job runner (7 processes importing MLflow) is not started beside it
        started = [" ".join(p.cmdline()) for p in psutil.Process(ui.pid).children(recursive=True)]
        assert started and not [c for c in started if "mlflow.server.jobs" in c or "huey" in c], started
        addresses = _listening_addresses(port)
        if Path("/proc/net/tcp").exists():
            assert addresses == {"0100007F"}, addresses  # 127.0.0.1, nothing else
        assert (results / "mlflow.db").exists()
        ui.send_signal(signal.SIGINT)  # what Ctrl-C does: the server's whole group stops
        assert ui.wait(timeout=30) == 0
        wait(lambda: not _listening_addresses(port), f"nothing listening on port {port}", timeout=15, interval=0.2)
    finally:
        net.stop_group(ui)
        log.close()
    assert re.search(r"http://127\.0\.0\.1:\d+", (tmp_path / "ui.log").read_text())
