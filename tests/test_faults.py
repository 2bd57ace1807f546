"""Faults during a sweep, each injected for real: a trial's worker killed, the driver killed, a node of a Ray
cluster removed, the MLflow server stopped and restarted, a diverging trial, many writers to one store.
Nothing is lost and nothing is recorded twice. (test_sweep.py also kills a worker and the driver of one
sweep together; bad input before Ray starts: test_study_fuzz.py.)"""
from __future__ import annotations

import _thread
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from urn_study import cli, tracking
from urn_study.study import load_study

# Trials of a few seconds: long enough to be hit mid-training, short enough for 2 shared cores. (32 epochs:
# training no longer waits on MLflow or on Tune every epoch, so 16 could end before a fault fired.)
DIGITS = """\
# Question: a small study for the fault tests.
# Run: urn-study sweep {name}.yaml
name: {name}
base:
  data.name: digits
  model.steps: 2
  train.epochs: {epochs}
  train.batch_size: 32
  train.snapshot_every: 4
  train.checkpoint_every: {checkpoint_every}
max_failures: 3
"""


def write_study(folder: Path, name: str, epochs: int = 32, checkpoint_every: int = 4, extra: str = "") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(DIGITS.format(name=name, epochs=epochs, checkpoint_every=checkpoint_every)
                    + textwrap.dedent(extra))
    return path


def runs_by_trial(uri: str, study: str) -> dict[str, list]:
    """trial id -> its runs, any status (empty while the experiment does not exist yet)."""
    experiment = tracking.client(uri).get_experiment_by_name(study)
    out: dict[str, list] = {}
    if experiment is not None:
        for run in tracking.trial_runs(uri, experiment.experiment_id):
            out.setdefault(run.data.tags[tracking.TRIAL_TAG], []).append(run)
    return out


def logged_epochs(uri: str, run_id: str, key: str = "task_loss") -> list[int]:
    return sorted(m.step for m in tracking.client(uri).get_metric_history(run_id, key))


def running_past(uri: str, study: str, epoch: int, node_id: str | None = None):
    """A RUNNING trial run that has logged an epoch beyond ``epoch`` (on ``node_id`` if given), or None."""
    for runs in runs_by_trial(uri, study).values():
        run = runs[0]
        if run.info.status != "RUNNING" or (node_id and run.data.tags.get("urn.node_id") != node_id):
            continue
        epochs = logged_epochs(uri, run.info.run_id)
        if epochs and max(epochs) > epoch:
            return run
    return None


@pytest.fixture(autouse=True)
def epochs_sent_at_once(monkeypatch):
    """These tests act when a trial's epochs show in its run: each epoch is sent as soon as it is queued
    (Ray's workers inherit the variable from the driver's environment)."""
    monkeypatch.setenv(tracking.FLUSH_ENV, "0")


def assert_each_trial_once(uri: str, study_path: Path, epochs: int) -> dict[str, Any]:
    """Every trial: exactly one run, FINISHED, every epoch's metrics exactly once, its artifacts."""
    study = load_study(study_path)
    runs = runs_by_trial(uri, study.name)
    assert sorted(runs) == sorted(t.trial_id for t in study.trials())
    client = tracking.client(uri)
    for trial_id, found in runs.items():
        assert len(found) == 1, (trial_id, [r.info.status for r in found])
        run = found[0]
        assert run.info.status == "FINISHED", trial_id
        last = int(run.data.metrics.get("diverged_at_epoch", epochs))
        assert logged_epochs(uri, run.info.run_id) == list(range(1, last + 1)), trial_id
        assert {"W.npy", "structure.json", "history.json"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    return {trial_id: found[0] for trial_id, found in runs.items()}


def sweep(*args: str, limit: float = 300.0) -> int:
    """``urn-study sweep ARGS`` in this process; stopped as by Ctrl-C (and failed) if it runs past ``limit``."""
    fired = []
    timer = threading.Timer(limit, lambda: (fired.append(True), _thread.interrupt_main()))
    timer.start()
    try:
        code = cli.main(["sweep", *args])
    finally:
        timer.cancel()
    assert not fired, f"the sweep ran past {limit:.0f} s"
    return code


class Fault(threading.Thread):
    """In the background (``with Fault(...)``): wait until ``ready()`` gives something, then ``act`` on it,
    once. What it did (or the error it met) is kept for ``check()``; it never outlives the ``with``."""

    def __init__(self, ready: Callable[[], Any], act: Callable[[Any], Any], timeout: float = 240.0):
        super().__init__(daemon=True)
        self.ready, self.act, self.timeout = ready, act, timeout
        self.done: Any = None
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                value = self.ready()
            except Exception:  # the store is being created: not ready yet
                value = None
            if value:
                try:
                    self.done = self.act(value)
                except BaseException as err:  # noqa: BLE001 - reported by check()
                    self.error = err
                return
            time.sleep(0.1)

    def __enter__(self) -> "Fault":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.join(timeout=120)  # an action under way (a server restarting) ends first

    def check(self) -> Any:
        if self.error is not None:
            raise self.error
        assert self.done is not None, "the fault was never injected (the sweep ended first?)"
        return self.done


def ray_started(results: Path) -> bool:
    """Tune has made its folder: the driver has set up the store (reading it earlier races its creation)."""
    return (results / "ray").is_dir()


# --- 1. a trial's worker is killed ---------------------------------------------------------------------


@pytest.mark.slow
def test_killed_worker_resumes_from_its_checkpoint_to_the_uninterrupted_result(results, tmp_path, monkeypatch):
    """The trial waits at epoch 8, after its checkpoint, behind a gate; its process is killed there, then the gate
    opens: Tune retries it from epoch 8, and it ends where the uninterrupted trial ends."""
    import torch

    from urn_study.sweep.trainable import PAUSE_ENV
    from urn_study.trial import run_trial

    gate = tmp_path / "gate"
    gate.mkdir()
    monkeypatch.setenv(PAUSE_ENV, f"8:{gate}")
    path = write_study(tmp_path, "resume", checkpoint_every=2, extra="seeds: [3]\n")
    uri = tracking.resolve_tracking_uri()

    def kill(paused: Path) -> int:
        try:
            os.kill(int(paused.read_text()), signal.SIGKILL)
        finally:
            (gate / "go").touch()  # the retry passes epoch 8
        return 8

    with Fault(lambda: (gate / "resume-0000.paused").exists() and gate / "resume-0000.paused", kill) as fault:
        assert sweep(str(path), "--num-cpus", "1") == 0
    fault.check()

    run = assert_each_trial_once(uri, path, epochs=32)["resume-0000"]
    assert run.data.tags[tracking.ATTEMPTS_TAG] == "2"
    assert run.data.tags["urn.resumed_from_epoch"] == "8"

    # the same trial, never interrupted, in this process with the thread count the worker used
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = run_trial(load_study(path).trials()[0].config)
    finally:
        torch.set_num_threads(threads)
    client = tracking.client(uri)
    w = np.load(client.download_artifacts(run.info.run_id, "W.npy", str(tmp_path)), allow_pickle=False)
    np.testing.assert_allclose(w, reference.weights, rtol=0, atol=1e-5)
    losses = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "task_loss"), key=lambda m: m.step)]
    np.testing.assert_allclose(losses, [h["task_loss"] for h in reference.history], rtol=1e-5)
    assert run.data.metrics["test_accuracy"] == pytest.approx(reference.metrics["test_accuracy"], abs=1e-6)
    assert run.data.tags["phase"] == reference.metrics["phase"]


# --- 2. the driver is killed ------------------------------------------------------------------------------


@pytest.mark.slow
def test_killed_driver_resumes_without_rerunning_or_doubling_finished_trials(results, tmp_path):
    """Trials wait at epoch 20 (of 40), after their checkpoint, behind a gate. One is let through and finishes;
    all others but one too; while that one waits, the driver is killed (SIGKILL; Ray's processes with it).
    --resume trains the rest, the finished trial untouched, the waiting one from epoch 20 in its own run."""
    from urn_study.sweep.trainable import PAUSE_ENV

    path = write_study(tmp_path, "driver", epochs=40, checkpoint_every=4,
                       extra="grid:\n  regulators.l1: [0, 1.0e-4, 1.0e-3, 1.0e-2]\nseeds: [0]\n")
    uri = tracking.resolve_tracking_uri()
    gate = tmp_path / "gate"
    gate.mkdir()
    log = open(tmp_path / "driver.log", "wb")
    driver = subprocess.Popen([sys.executable, "-m", "urn_study.cli", "sweep", str(path), "--num-cpus", "2"],
                              cwd=tmp_path, env={**os.environ, "URN_RESULTS_DIR": str(results),
                                                 PAUSE_ENV: f"20:{gate}"},
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def paused() -> list[str]:
        return sorted(p.name.removesuffix(".paused") for p in gate.glob("*.paused"))

    def one_finished() -> set[str]:
        for trial in set(paused()) - {waiting}:
            (gate / f"{trial}.go").touch()
        runs = runs_by_trial(uri, "driver")
        return {t for t, r in runs.items() if r[0].info.status == "FINISHED"}

    def wait(condition, what: str):
        deadline = time.monotonic() + 240
        while not (value := condition()):
            assert driver.poll() is None, f"the sweep ended (code {driver.returncode}) before {what}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.1)
        return value

    try:
        waiting = wait(paused, "a trial at the gate")[0]
        wait(one_finished, "another trial to finish")
    finally:
        try:
            os.killpg(driver.pid, signal.SIGKILL)  # the driver and Ray's processes
        except ProcessLookupError:
            pass
        driver.wait(timeout=60)
        log.close()

    before = {trial_id: runs[0] for trial_id, runs in runs_by_trial(uri, "driver").items()}
    finished = {t: r for t, r in before.items() if r.info.status == "FINISHED"}
    assert finished and waiting not in finished and before[waiting].info.status == "RUNNING"
    finished_epochs = {t: logged_epochs(uri, r.info.run_id) for t, r in finished.items()}

    assert sweep(str(path), "--resume", "--num-cpus", "2") == 0
    after = assert_each_trial_once(uri, path, epochs=40)
    for trial_id, run in finished.items():  # not trained, not reopened, not logged again
        again = after[trial_id]
        assert again.info.run_id == run.info.run_id and again.info.end_time == run.info.end_time
        assert again.data.tags[tracking.ATTEMPTS_TAG] == run.data.tags[tracking.ATTEMPTS_TAG]
        assert logged_epochs(uri, again.info.run_id) == finished_epochs[trial_id]
    assert after[waiting].info.run_id == before[waiting].info.run_id
    assert after[waiting].data.tags["urn.resumed_from_epoch"] == "20"
    assert int(after[waiting].data.tags[tracking.ATTEMPTS_TAG]) == 2


# --- 3. a node of a cluster is removed ---------------------------------------------------------------------


@pytest.mark.slow
def test_removed_node_trials_finish_on_another_node(results, tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    path = write_study(tmp_path, "nodes", checkpoint_every=4,
                       extra="grid:\n  regulators.l1: [0, 1.0e-4, 1.0e-3]\nseeds: [0]\n")
    uri = tracking.resolve_tracking_uri()
    # a node is declared dead after about 3 s without an answer, not Ray's default of half a minute
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 3,
                                          "health_check_timeout_ms": 1000}})
    try:
        nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        by_id = {n.node_id: n for n in nodes}

        def trial_on_a_node():
            if not ray_started(results):
                return None
            return running_past(uri, "nodes", 4)

        def remove(run):
            node_id = run.data.tags["urn.node_id"]
            on_it = sorted(t for t, r in runs_by_trial(uri, "nodes").items()
                           if r[0].info.status == "RUNNING" and r[0].data.tags.get("urn.node_id") == node_id)
            cluster.remove_node(by_id[node_id], allow_graceful=False)
            return node_id, on_it

        with Fault(trial_on_a_node, remove) as fault:
            assert sweep(str(path), "--address", cluster.address) == 0
        removed, victims = fault.check()
    finally:
        ray.shutdown()
        cluster.shutdown()
    (survivor,) = [n for n in by_id if n != removed]
    runs = assert_each_trial_once(uri, path, epochs=32)
    assert victims
    for trial_id in victims:
        tags = runs[trial_id].data.tags
        assert tags["urn.node_id"] == survivor, trial_id
        assert int(tags[tracking.ATTEMPTS_TAG]) >= 2 and int(tags["urn.resumed_from_epoch"]) >= 4


# --- 4. the MLflow server goes away and comes back ------------------------------------------------------


def start_server(folder: Path, port: int, net) -> subprocess.Popen:
    log = open(folder / "server.log", "ab")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
         f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination", str(folder / "mlartifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, cwd=folder, start_new_session=True)
    log.close()
    net.wait_http(f"http://127.0.0.1:{port}/health", process=process)
    return process


@pytest.mark.slow
def test_server_down_mid_sweep_loses_no_record_and_no_token_is_written(results, tmp_path, net, monkeypatch, capfd):
    """The server is killed while trials log and comes back seconds later: the trials train on, their
    epochs queued and sent again (MLflow's retries first; their backoff shortened here so the test waits
    less), and every record is complete.
    The token every request carried (from the environment) is in no record, result or printed line."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")  # Ray's workers inherit the driver's env
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", TOKEN)
    folder = tmp_path / "server"
    folder.mkdir()
    port = net.free_port()
    uri = f"http://127.0.0.1:{port}"
    servers = [start_server(folder, port, net)]
    path = write_study(tmp_path, "outage", checkpoint_every=4,
                       extra="grid:\n  regulators.l1: [0, 1.0e-3]\nseeds: [0]\n")

    def outage(run):
        epoch = max(logged_epochs(uri, run.info.run_id))
        os.killpg(servers[-1].pid, signal.SIGKILL)  # no goodbye: requests in flight are cut
        servers[-1].wait(timeout=30)
        down = time.monotonic()
        time.sleep(3)
        servers.append(start_server(folder, port, net))
        return epoch, time.monotonic() - down

    try:
        with Fault(lambda: ray_started(results) and running_past(uri, "outage", 2), outage) as fault:
            assert sweep(str(path), "--tracking-uri", uri, "--num-cpus", "2") == 0
        epoch, seconds_down = fault.check()
        assert epoch < 32 and seconds_down > 3  # it went down mid-training
        runs = assert_each_trial_once(uri, path, epochs=32)
        assert_no_secret_written(uri, runs, results, "".join(capfd.readouterr()), tmp_path / "downloads")
    finally:
        for server in servers:
            net.stop_group(server)


TOKEN = "tok-9f3b1c-never-written"


def assert_no_secret_written(uri: str, runs: dict, results: Path, printed: str, downloads: Path) -> None:
    """Neither TOKEN nor Ray's own cluster token is in a run's params, tags or artifacts, a file under
    ``results`` (sweep records, Ray results) or ``printed``."""
    secrets = [TOKEN]
    ray_token = Path.home() / ".ray" / "auth_token"  # where Ray keeps the token of local clusters
    if ray_token.is_file() and ray_token.read_text().strip():
        secrets.append(ray_token.read_text().strip())
    client = tracking.client(uri)
    texts = [printed]
    for run in runs.values():
        texts.append(json.dumps([run.data.params, run.data.tags, run.info.run_name]))
        folder = Path(client.download_artifacts(run.info.run_id, "", str(downloads / run.info.run_id)))
        texts += [p.read_bytes().decode("latin-1") for p in folder.rglob("*") if p.is_file()]
    texts += [p.read_bytes().decode("latin-1") for p in results.rglob("*") if p.is_file()]
    assert len(texts) > 10
    for secret in secrets:
        assert not [text[:80] for text in texts if secret in text]


def test_server_unreachable_at_start_is_one_line_before_anything_runs(results, tmp_path, capsys, net):
    import ray

    uri = f"http://127.0.0.1:{net.free_port()}"  # nothing listens there
    code = cli.main(["sweep", str(write_study(tmp_path, "early")), "--tracking-uri", uri, "--num-cpus", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and uri in err and "not reachable" in err, err
    assert not ray.is_initialized() and not (results / "ray").exists() and not (results / "sweeps").exists()


def test_server_gone_for_good_is_one_clear_error(results, net, monkeypatch):
    """Training never waits on the store: epochs queue while it is away. Past MLflow's retries (with backoff;
    here shortened) sending them fails in one line naming the server, and they stay queued."""
    from urn_study.config import parse_config

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    uri = f"http://127.0.0.1:{net.free_port()}"
    record = tracking.TrialRecord(uri, "0123abcd", "gone-0000", last_step=0, finished=False, summary={})
    start = time.monotonic()
    record.log_epoch(1, {"task_loss": 1.0, "test_accuracy": 0.5})
    assert time.monotonic() - start < 0.5  # queued, not sent
    with pytest.raises(tracking.TrackingError) as info:
        record.flush()
    assert uri in str(info.value) and "\n" not in str(info.value)
    assert record._sender.queued == 2  # kept for the next try
    with pytest.raises(tracking.TrackingError):
        record.fail()
    with pytest.raises(tracking.TrackingError):
        tracking.TrialRecord.open(uri, "1", "p", "gone", "gone-sweep", "gone-0000", parse_config({}))


# --- 5. a trial diverges ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_diverging_trial_is_recorded_as_diverged_and_the_sweep_goes_on(results, tmp_path):
    path = tmp_path / "diverge.yaml"
    path.write_text(textwrap.dedent("""\
        # Question: does a diverging trial stop the others?
        # Run: urn-study sweep diverge.yaml
        name: diverge
        base: {data.name: nlgp, data.side: 8, data.n_samples: 200, train.epochs: 3, train.batch_size: 50,
               train.snapshot_every: 1, model.steps: 40, model.activation: identity}
        grid:
          model.init_scale: [10.0, 0.05, 0.1]
        trials_per_worker: 2
        """))
    assert sweep(str(path), "--num-cpus", "2") == 0
    uri = tracking.resolve_tracking_uri()
    runs = assert_each_trial_once(uri, path, epochs=3)
    diverged = runs["diverge-0000"]
    assert diverged.data.tags["phase"] == "diverged" and diverged.data.metrics["diverged_at_epoch"] == 1
    assert diverged.data.metrics["phase_index"] == tracking.PHASE_CODES["diverged"]
    # its pack partner and the trial beside it trained to the end
    assert runs["diverge-0001"].data.tags["urn.tune_trial"] == diverged.data.tags["urn.tune_trial"]
    for trial_id in ("diverge-0001", "diverge-0002"):
        assert runs[trial_id].data.tags["phase"] != "diverged"
        assert runs[trial_id].data.metrics["epochs"] == 3


# --- 7. many writers at once to the local store -----------------------------------------------------------


WRITER = """\
import sys, time
from pathlib import Path
from urn_study import tracking
from urn_study.config import parse_config

uri, experiment, parent, trial, epochs, gate = sys.argv[1:]
record = tracking.TrialRecord.open(uri, experiment, parent, "many", "many-sweep", trial,
                                   parse_config({"seed": int(trial.rsplit("-", 1)[1])}))
Path(gate, trial).touch()
while not Path(gate, "go").exists():  # everyone writes at once
    time.sleep(0.01)
for epoch in range(1, int(epochs) + 1):
    record.log_epoch(epoch, {f"m{k:02d}": epoch + k / 100 for k in range(20)})
record.flush()
tracking.client(uri).set_terminated(record.run_id, "FINISHED")
"""


@pytest.mark.slow
def test_many_trials_logging_at_once_to_the_local_store_lose_nothing(results, tmp_path):
    writers, epochs, metrics = 6, 20, 20
    uri = tracking.resolve_tracking_uri()
    tracking.check_tracking(uri)
    experiment = tracking.ensure_experiment(uri, "many")
    parent = tracking.open_sweep_run(uri, experiment, "many", "many-sweep", {"searcher": "grid"})
    gate = tmp_path / "gate"
    gate.mkdir()
    trial_ids = [f"many-{i:04d}" for i in range(writers)]
    processes = [subprocess.Popen([sys.executable, "-c", WRITER, uri, experiment, parent, t, str(epochs), str(gate)],
                                  cwd=tmp_path, stderr=subprocess.PIPE, text=True) for t in trial_ids]
    try:
        deadline = time.monotonic() + 180
        while len(list(gate.iterdir())) < writers:
            assert time.monotonic() < deadline and all(p.poll() is None for p in processes), "writers did not start"
            time.sleep(0.1)
        (gate / "go").touch()
        errors = [p.communicate(timeout=180)[1] for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert all(p.returncode == 0 for p in processes), [e[-500:] for e in errors]
    runs = tracking.trial_runs(uri, experiment, "many-sweep")
    assert sorted(r.data.tags[tracking.TRIAL_TAG] for r in runs) == trial_ids
    client = tracking.client(uri)
    counted = 0
    for run in runs:
        assert run.info.status == "FINISHED"
        for k in range(metrics):
            history = client.get_metric_history(run.info.run_id, f"m{k:02d}")
            assert sorted((m.step, m.value) for m in history) == [(e, e + k / 100) for e in range(1, epochs + 1)]
            counted += len(history)
    assert counted == writers * epochs * metrics  # 2400 records, each once
