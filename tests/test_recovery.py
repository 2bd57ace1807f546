"""Faults that used to lose or corrupt a sweep (issue 18), each injected for real: a damaged checkpoint, a broken
or foreign file among the sweep records, a copied results folder, a second driver of a running sweep, drivers
creating one fresh store, SIGTERM and SIGINT to the driver, a frozen worker, a full disk, a driver killed in the
middle of a boundary or Optuna search, checkpoint folders left by killed workers, an unwritable results folder
(pickles planted in the results storage: test_faults.py, after its killed driver). Trials that must be hit
mid-training wait at a named epoch behind a gate (``URN_PAUSE_AT``) that the test opens once its fault is in place:
no time window."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from dataclasses import asdict
from pathlib import Path

import pytest

from urn_study import cli, tracking
from urn_study.checkpoint import ARRAYS, CheckpointError, load_state, save_state
from urn_study.study import load_study
from urn_study.sweep import records, resume, trainable
from urn_study.trial import TrialState

STUDY = """\
# Question: a small study for the recovery tests.
# Run: urn-study sweep {name}.yaml
name: {name}
base:
  data.name: digits
  model.steps: 2
  train.epochs: 8
  train.batch_size: 32
  train.snapshot_every: 4
  train.checkpoint_every: 2
seeds: {seeds}
max_failures: 3
"""


def write_study(folder: Path, name: str, seeds: str = "[0]") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(STUDY.format(name=name, seeds=seeds))
    return path


def each_trial_once(uri: str, study_path: Path, epochs: int = 8) -> dict:
    """Every trial: one run, FINISHED, each epoch logged once."""
    study = load_study(study_path)
    runs = runs_of(uri, study.name)
    assert sorted(runs) == sorted(t.trial_id for t in study.trials())
    for trial_id, found in runs.items():
        assert [r.info.status for r in found] == ["FINISHED"], trial_id
        steps = sorted(m.step for m in tracking.client(uri).get_metric_history(found[0].info.run_id, "task_loss"))
        assert steps == list(range(1, epochs + 1)), trial_id
    return {t: found[0] for t, found in runs.items()}


# --- checkpoints ------------------------------------------------------------------------------------------


def test_a_damaged_checkpoint_is_one_error_naming_it(tmp_path):
    import numpy as np

    save_state(TrialState(epoch=2, arrays={"W": np.eye(3, dtype=np.float32)}, adam_step=5), tmp_path)
    data = (tmp_path / ARRAYS).read_bytes()
    (tmp_path / ARRAYS).write_bytes(data[: len(data) // 2])  # a copy cut short
    with pytest.raises(CheckpointError, match=str(tmp_path)):
        load_state(tmp_path)
    (tmp_path / ARRAYS).unlink()
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_state(tmp_path)


def test_checkpoint_folders_of_dead_workers_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{trainable.CHECKPOINT_PREFIX}{dead.pid}-abc"
    live = tmp_path / f"{trainable.CHECKPOINT_PREFIX}{os.getpid()}-def"
    other = tmp_path / "unrelated"
    for folder in (stale, live, other):
        (folder / "trial").mkdir(parents=True)
    assert trainable.remove_stale_checkpoints(str(tmp_path)) == [str(stale)]
    assert not stale.exists() and live.exists() and other.exists()


@pytest.mark.slow
def test_a_damaged_newest_checkpoint_resumes_from_the_one_before(results, tmp_path, monkeypatch, wait):
    """The worker is killed while it waits after its checkpoint of epoch 4, whose arrays the test has cut short:
    the retry goes on from epoch 2's checkpoint (Tune keeps two) and the trial finishes, each epoch once."""
    monkeypatch.setenv(tracking.FLUSH_ENV, "0")
    gate = tmp_path / "gate"
    gate.mkdir()
    monkeypatch.setenv(trainable.PAUSE_ENV, f"4:{gate}")
    path = write_study(tmp_path, "damaged")
    ray_dir = results / "ray"

    done: list = []

    def fault() -> None:
        try:
            paused = wait(lambda: list(gate.glob("*.paused")), "the trial paused at epoch 4")
            newest = sorted(ray_dir.glob("*/damaged-0000_*/checkpoint_*"))[-1]
            arrays = newest / "damaged-0000" / ARRAYS
            arrays.write_bytes(arrays.read_bytes()[:100])
            os.kill(int(paused[0].read_text()), signal.SIGKILL)
            done.append(newest.name)
        finally:
            (gate / "go").touch()  # the retry passes epoch 4 without waiting

    thread = threading.Thread(target=fault, daemon=True)
    thread.start()
    assert cli.main(["sweep", str(path), "--num-cpus", "1"]) == 0
    thread.join(timeout=60)
    assert done, "the fault was never injected"
    run = each_trial_once(tracking.resolve_tracking_uri(), path)["damaged-0000"]
    assert run.data.tags[tracking.ATTEMPTS_TAG] == "2"
    assert run.data.tags["urn.resumed_from_epoch"] == "2"
    assert run.data.tags["urn.skipped_checkpoints"] == done[0]


def test_the_checkpoints_of_a_sweeps_earlier_runs_are_found_by_trial_newest_first(tmp_path):
    def checkpoint(run: str, folder: str, name: str, member: str, epoch: int) -> str:
        path = tmp_path / run / folder / name
        (path / member).mkdir(parents=True)
        (path / member / "state.json").write_text(json.dumps({"epoch": epoch}))
        return str(path)

    first = checkpoint("s-1", "s_x-0000_e172e_00000", "checkpoint_000001", "s_x-0000", 4)
    older = checkpoint("s-1", "s_x-0000_e172e_00000", "checkpoint_000000", "s_x-0000", 2)
    later = checkpoint("s-1-resumed-20260101-000000", "s_x-0000_1b92d_00000", "checkpoint_000000", "s_x-0000", 6)
    pack = checkpoint("s-1", "s_x-0001+3_e172e_00001", "checkpoint_000000", "s_x-0001", 2)
    checkpoint("s-2", "s_x-0000_aaaaa_00000", "checkpoint_000000", "s_x-0000", 8)  # another sweep's
    found = resume.checkpoints_of(str(tmp_path), "s-1")
    assert found == {"s_x-0000": [later, first, older], "s_x-0001+3": [pack]}


# --- sweep records -------------------------------------------------------------------------------------------


def _record(results: Path, study_path: Path, sweep_id: str, created: str) -> records.SweepRecord:
    study = load_study(study_path)
    return records.SweepRecord(
        sweep_id,
        study.name,
        str(study_path),
        study.fingerprint(),
        "grid",
        f"sqlite:///{results}/mlflow.db",
        str(results / "ray"),
        created,
        str(results),
    )


def test_broken_and_foreign_files_among_sweep_records_are_passed_over_with_a_warning(results, tmp_path, capsys):
    path = write_study(tmp_path, "records")
    folder = results / "sweeps"
    folder.mkdir(parents=True)
    good = _record(results, path, "records-1", "2026-01-01 10:00:00")
    (folder / "records-1.json").write_text(json.dumps(asdict(good)))
    (folder / "broken.json").write_text('{"sweep_id": "records-2", "stu')
    (folder / "foreign.json").write_text(json.dumps({"name": "something else", "version": 3}))
    (folder / "list.json").write_text("[1, 2]")
    assert records.find_record(load_study(path)) == good
    err = capsys.readouterr().err
    for name in ("broken.json", "foreign.json", "list.json"):
        assert f"skipped {folder / name}: not a sweep record" in err
    assert "Traceback" not in err


def test_a_copied_results_folder_resumes_into_its_own_store_and_storage(results, tmp_path, monkeypatch):
    path = write_study(tmp_path, "copied")
    original = tmp_path / "original"
    record = _record(original, path, "copied-1", "2026-01-01 10:00:00")
    (results / "sweeps").mkdir(parents=True)
    (results / "sweeps" / "copied-1.json").write_text(json.dumps(asdict(record)))
    found = records.find_record(load_study(path), "copied-1")
    assert found.tracking_uri == f"sqlite:///{results}/mlflow.db"
    assert found.storage == str(results / "ray") and found.results == str(results)
    assert str(original) not in json.dumps(asdict(found))


def test_a_second_driver_of_a_running_sweep_is_refused_in_one_line(results, tmp_path, capsys, wait):
    """Two --resume of one sweep at once trained and logged its trials twice: the second now stops before Ray."""
    path = write_study(tmp_path, "twice")
    record = _record(results, path, "twice-1", "2026-01-01 10:00:00")
    (results / "sweeps").mkdir(parents=True)
    (results / "sweeps" / "twice-1.json").write_text(json.dumps(asdict(record)))
    gate = tmp_path / "release"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import pathlib, time
        from urn_study.sweep.records import SweepLock
        with SweepLock("twice-1"):
            pathlib.Path({str(tmp_path / "held")!r}).touch()
            while not pathlib.Path({str(gate)!r}).exists():
                time.sleep(0.05)
        """),
        ],
        env={**os.environ, "URN_RESULTS_DIR": str(results)},
    )
    try:
        wait(lambda: (tmp_path / "held").exists(), "the first driver to hold the sweep", process=holder)
        assert cli.main(["sweep", str(path), "--resume", "twice-1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"sweep twice-1 is running now (pid {holder.pid}" in err[0]
        assert not list((results / "ray").iterdir()) and not (results / "mlflow.db").exists()  # before Ray, MLflow
    finally:
        gate.touch()
        holder.wait(timeout=60)
    with records.SweepLock("twice-1"):  # released when its holder ended
        pass


def test_an_unwritable_results_storage_is_one_line_before_anything_starts(results, tmp_path, capsys):
    path = write_study(tmp_path, "storage")
    assert cli.main(["sweep", str(path), "--storage", "/proc/urn-results"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--storage /proc/urn-results: Ray cannot write its results there" in err[0]
    assert not (results / "sweeps").exists() and not (results / "mlflow.db").exists()


CREATE = """\
import pathlib, sys, time
from urn_study import tracking
uri, name, gate = sys.argv[1:]
pathlib.Path(gate, name).touch()
while not pathlib.Path(gate, "go").exists():  # all at once
    time.sleep(0.01)
print(tracking.ensure_experiment(uri, "shared"))
"""


def test_drivers_creating_one_fresh_store_at_once_all_get_the_one_experiment(tmp_path, wait):
    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    (tmp_path / "fresh").mkdir()
    gate = tmp_path / "gate"
    gate.mkdir()
    drivers = [
        subprocess.Popen(
            [sys.executable, "-c", CREATE, uri, f"d{i}", str(gate)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for i in range(3)
    ]
    wait(lambda: len(list(gate.iterdir())) == len(drivers), "every driver at the gate")
    (gate / "go").touch()
    outputs = [d.communicate(timeout=120) for d in drivers]
    assert [d.returncode for d in drivers] == [0, 0, 0], [err[-500:] for _, err in outputs]
    assert len({out.strip() for out, _ in outputs}) == 1


# --- signals to the driver ---------------------------------------------------------------------------------


def test_sigint_and_sigterm_stop_tune_through_its_own_stop_and_a_second_one_at_once():
    """What the driver does with SIGINT and SIGTERM while Tune runs (its SIGUSR1 handler: set the stop and
    reset itself); SIGINT's whole path through a sweep is the test below with SIGTERM."""
    from urn_study.sweep.driver import _Interrupts

    stopped: list = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: stopped.append(signum))
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            stopped.clear()
            with _Interrupts() as stop:
                os.kill(os.getpid(), sig)
                assert stop.signal == sig and stopped == [signal.SIGUSR1]
                with pytest.raises(KeyboardInterrupt):
                    os.kill(os.getpid(), sig)
            assert signal.getsignal(sig) is not stop._handle  # handed back
    finally:
        signal.signal(signal.SIGUSR1, previous)


@pytest.mark.slow
def test_a_stopped_driver_says_how_to_resume_and_exits_with_the_signals_code(results, tmp_path, wait):
    """SIGTERM ended in SIGABRT with a native Ray trace (and SIGINT in exit 1 with Tune's restore hint). Now the
    sweep stops, prints one line ending in our --resume command and exits 128 + the signal; the resume finishes
    every trial once."""
    sig = signal.SIGTERM
    gate = tmp_path / "gate"
    gate.mkdir()
    path = write_study(tmp_path, f"stop{sig.value}", seeds="[0, 1]")
    log_path = tmp_path / "driver.log"
    with open(log_path, "wb") as log:
        driver = subprocess.Popen(
            [sys.executable, "-m", "urn_study.cli", "sweep", str(path), "--num-cpus", "1"],
            cwd=tmp_path,
            env={**os.environ, "URN_RESULTS_DIR": str(results), trainable.PAUSE_ENV: f"2:{gate}"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait(lambda: list(gate.glob("*.paused")), "the first trial paused at epoch 2", process=driver)
            driver.send_signal(sig)
            (gate / "go").touch()  # the paused trial may go on while Tune stops (it need not wait for Tune's kill)
            code = driver.wait(timeout=120)
        finally:
            (gate / "go").touch()
            if driver.poll() is None:
                os.killpg(driver.pid, signal.SIGKILL)
                driver.wait(timeout=60)
    text = log_path.read_text()
    assert code == 128 + sig.value, text[-3000:]
    last = text.strip().splitlines()[-1]
    assert last.startswith(f"stopped by {sig.name}:") and last.endswith(f"--resume {last.rsplit(' ', 1)[-1]}")
    assert "Tuner.restore" not in text and "Traceback" not in text and "SIGABRT" not in text
    # a few lines, all ours: no warning of Ray's (its token authentication, its missing result files)
    ours = re.compile(r"starting sweep |  MLflow: |  packing: |\[\d+:\d\d\] |stopped by ")
    assert all(ours.match(line) for line in text.strip().splitlines()), text[-3000:]
    assert cli.main(["sweep", str(path), "--resume"]) == 0
    each_trial_once(tracking.resolve_tracking_uri(), path)


# --- a frozen worker -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_frozen_worker_is_stopped_and_its_trial_retried_from_its_checkpoint(results, tmp_path, monkeypatch, capsys, wait):
    """SIGSTOP left the sweep waiting for ever, its progress line silent. The test stops the worker while it waits
    at epoch 2 (after its checkpoint) and then opens the gate, which the stopped process cannot pass: nothing
    more comes from it, so after --stall-timeout (11 s) the driver kills it and Tune retries it from epoch 2."""
    monkeypatch.setenv(tracking.FLUSH_ENV, "0")
    gate = tmp_path / "gate"
    gate.mkdir()
    monkeypatch.setenv(trainable.PAUSE_ENV, f"2:{gate}")
    path = write_study(tmp_path, "frozen")
    stopped: list = []

    def freeze() -> None:
        try:
            paused = wait(lambda: list(gate.glob("*.paused")), "the trial paused at epoch 2")
            pid = int(paused[0].read_text())
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        finally:
            (gate / "go").touch()

    thread = threading.Thread(target=freeze, daemon=True)
    thread.start()
    assert cli.main(["sweep", str(path), "--num-cpus", "1", "--stall-timeout", "11"]) == 0
    thread.join(timeout=60)
    assert stopped, "the worker was never stopped"
    out = capsys.readouterr().out
    assert "frozen-0000 has reported nothing for" in out and f"its process {stopped[0]} is stopped" in out
    run = each_trial_once(tracking.resolve_tracking_uri(), path)["frozen-0000"]
    assert run.data.tags[tracking.ATTEMPTS_TAG] == "2" and run.data.tags["urn.resumed_from_epoch"] == "2"


# --- a full disk -----------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MB tmpfs as the results folder (needs root: skipped, with the reason, where mounting is refused)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip() or mounted.returncode})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.slow
def test_a_full_disk_stops_the_sweep_in_a_few_lines_and_the_resume_finishes_it(tmp_path, small_disk, monkeypatch, capsys):
    """On a 6 MB results disk the sweep used to print 3,000 lines and 30 tracebacks, and its resume (Tune's state
    cut short) started a bogus trial for ever. Now: one line naming the full disk and the resume command, no
    trace; once there is room, --resume trains every trial that had not finished, each recorded once."""
    monkeypatch.setenv("URN_RESULTS_DIR", str(small_disk))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = tmp_path / "full.yaml"
    path.write_text(
        STUDY.format(name="full", seeds="[0]").replace("train.epochs: 8", "train.epochs: 10")
        + "grid:\n  regulators.locality: [0, 3.0e-4, 1.0e-3, 3.0e-3]\n  regulators.l1: [0, 1.0e-3]\n"
    )
    assert cli.main(["sweep", str(path), "--num-cpus", "1"]) == 1
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "Traceback" not in text and len(text.splitlines()) < 40, text[-3000:]
    [line] = [line for line in captured.out.splitlines() if line.startswith("stopped: the disk is full")]
    assert "No space left on device" in line or "database or disk is full" in line
    assert line.endswith("--resume " + line.rsplit(" ", 1)[-1]) and "full-" in line.rsplit(" ", 1)[-1]

    subprocess.run(["mount", "-o", "remount,size=300m", str(small_disk)], check=True)
    assert cli.main(["sweep", str(path), "--resume", "--num-cpus", "1"]) == 0
    each_trial_once(tracking.resolve_tracking_uri(), path, epochs=10)


# --- the adaptive searchers, their driver killed and resumed ------------------------------------------------------


def kill_driver_midway(study_path: Path, results: Path, tmp_path: Path, searcher: str, first: str, second: str, wait) -> None:
    """Run the sweep in a driver process whose trials wait at epoch 1: ``first`` is let through (it finishes),
    and once ``second`` waits there, the driver and all of Ray are killed (SIGKILL)."""
    gate = tmp_path / "gate"
    gate.mkdir()
    log_path = tmp_path / "driver.log"
    with open(log_path, "wb") as log:
        driver = subprocess.Popen(
            [sys.executable, "-m", "urn_study.cli", "sweep", str(study_path), "--searcher", searcher, "--num-cpus", "1"],
            cwd=tmp_path,
            env={**os.environ, "URN_RESULTS_DIR": str(results), trainable.PAUSE_ENV: f"1:{gate}"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait(lambda: (gate / f"{first}.paused").exists(), f"{first} at the gate", process=driver)
            (gate / f"{first}.go").touch()
            wait(lambda: (gate / f"{second}.paused").exists(), f"{second} at the gate", process=driver)
        finally:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(timeout=60)


def runs_of(uri: str, study: str) -> dict[str, list]:
    experiment = tracking.client(uri).get_experiment_by_name(study)
    out: dict[str, list] = {}
    for run in tracking.trial_runs(uri, experiment.experiment_id):
        out.setdefault(run.data.tags[tracking.TRIAL_TAG], []).append(run)
    return out


TWO_EPOCHS = """\
name: {name}
base: {{data.name: digits, model.steps: 2, train.epochs: 2, train.batch_size: 64, train.snapshot_every: 1,
       train.checkpoint_every: 1}}
"""


@pytest.mark.slow
def test_a_boundary_search_resumes_from_its_records_after_its_driver_is_killed(results, tmp_path, wait):
    """The search's state is rebuilt from the sweep's MLflow runs (no Tune state is read back): the finished trial
    is not run again, the one cut short goes on under its own number from its checkpoint, and the search ends."""
    path = tmp_path / "bsearch.yaml"
    path.write_text(
        TWO_EPOCHS.format(name="bsearch") + "grid:\n  regulators.locality: [0, 1.0e-3, 1.0e-2]\n"
        "seeds: [0, 1, 2]\nrefine: {budget: 9}\n"
    )
    kill_driver_midway(path, results, tmp_path, "boundary", "bsearch-b0000", "bsearch-b0001", wait)
    uri = tracking.resolve_tracking_uri()
    before = runs_of(uri, "bsearch")
    assert [r.info.status for r in before["bsearch-b0000"]] == ["FINISHED"]
    assert cli.main(["sweep", str(path), "--resume", "--num-cpus", "1"]) == 0
    after = runs_of(uri, "bsearch")
    assert all(len(found) == 1 and found[0].info.status == "FINISHED" for found in after.values()), after
    assert after["bsearch-b0000"][0].info.end_time == before["bsearch-b0000"][0].info.end_time
    cut_short = after["bsearch-b0001"][0]
    assert cut_short.info.run_id == before["bsearch-b0001"][0].info.run_id
    assert cut_short.data.tags["urn.resumed_from_epoch"] == "1" and cut_short.data.tags[tracking.ATTEMPTS_TAG] == "2"
    # every coarse point once with its first seed, the numbers without a gap or a repeat
    points = sorted((float(r[0].data.params["regulators.locality"]), int(r[0].data.params["seed"])) for r in after.values())
    assert len(set(points)) == len(points) and {(0.0, 0), (1e-3, 0), (1e-2, 0)} <= set(points)
    assert sorted(after) == [f"bsearch-b{n:04d}" for n in range(len(after))] and len(after) <= 9


@pytest.mark.slow
def test_an_optuna_sweep_keeps_its_study_on_disk_and_resumes_its_unfinished_trial_under_its_own_number(results, tmp_path, wait):
    """Optuna samples the study's axis (its study in results/optuna.db); its driver killed while the second
    trial waits, the resume finishes that trial under its own number and point, and samples the third."""
    import optuna

    path = tmp_path / "osearch.yaml"
    path.write_text(TWO_EPOCHS.format(name="osearch") + "sample:\n  regulators.l1: {loguniform: [1.0e-5, 1.0e-2]}\nsamples: 3\n")
    kill_driver_midway(path, results, tmp_path, "optuna", "osearch-o0000", "osearch-o0001", wait)
    uri = tracking.resolve_tracking_uri()
    before = runs_of(uri, "osearch")
    assert cli.main(["sweep", str(path), "--resume", "--num-cpus", "1"]) == 0
    after = runs_of(uri, "osearch")
    assert sorted(after) == ["osearch-o0000", "osearch-o0001", "osearch-o0002"]
    assert all(len(found) == 1 and found[0].info.status == "FINISHED" for found in after.values())
    again = after["osearch-o0001"][0]
    assert again.info.run_id == before["osearch-o0001"][0].info.run_id  # the same trial, the same point
    assert again.data.params["regulators.l1"] == before["osearch-o0001"][0].data.params["regulators.l1"]
    assert again.data.tags["urn.resumed_from_epoch"] == "1"
    l1 = [float(found[0].data.params["regulators.l1"]) for found in after.values()]
    assert all(1e-5 <= v <= 1e-2 for v in l1) and len(set(l1)) == 3  # sampled from the study's range
    storage = f"sqlite:///{results / 'optuna.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    assert summary.study_name.startswith("osearch-")
    states = [t.state for t in optuna.load_study(study_name=summary.study_name, storage=storage).trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 3 and optuna.trial.TrialState.RUNNING not in states


def test_a_copied_store_whose_artifacts_lie_in_the_original_folder_is_refused_in_one_line(results, tmp_path, capsys):
    """MLflow keeps each experiment's artifact folder as an absolute path: a copied folder's runs would write
    into the original's. Said before anything starts, and nothing is written."""
    import mlflow

    path = write_study(tmp_path, "moved")
    original = tmp_path / "original" / "mlartifacts" / "moved"
    mlflow.MlflowClient(tracking.resolve_tracking_uri()).create_experiment("moved", artifact_location=original.as_uri())
    assert cli.main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"keeps its artifacts in {original}, outside {results}" in err[0], err
    assert not original.exists() and not list((results / "sweeps").glob("*.json"))  # no run, no sweep record
