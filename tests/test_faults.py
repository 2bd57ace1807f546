"""Faults during a sweep, each injected for real: a trial's worker killed, then the driver of the same sweep (and
pickles planted for its resume), a node of a Ray cluster removed, the MLflow server stopped and restarted, a
diverging trial, many writers to one store. Nothing is lost and nothing is recorded twice. A trial that must be hit
mid-training waits at a named epoch behind a gate (``URN_PAUSE_AT``) that the test opens once its fault is in place.
(Bad input before Ray starts: test_study_fuzz.py.)"""

from __future__ import annotations

import _thread
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
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
    path.write_text(DIGITS.format(name=name, epochs=epochs, checkpoint_every=checkpoint_every) + textwrap.dedent(extra))
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
    """In the background (``with Fault(...)``): wait (``wait``, the tests' bounded poller) until ``ready()`` gives
    something, then ``act`` on it, once. What it did (or the error it met, a timeout included) is kept for
    ``check()``; it never outlives the ``with``."""

    def __init__(self, wait: Callable[..., Any], ready: Callable[[], Any], what: str, act: Callable[[Any], Any]):
        super().__init__(daemon=True)
        self.wait, self.ready, self.what, self.act = wait, ready, what, act
        self.done: Any = None
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            value = self.wait(lambda: self.stop.is_set() or self.ready(), self.what)
            if not self.stop.is_set():
                self.done = self.act(value)
        except BaseException as err:  # noqa: BLE001 - reported by check()
            self.error = err

    def __enter__(self) -> "Fault":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.join(timeout=120)  # an action under way (a server restarting) ends first

    def check(self) -> Any:
        if self.error is not None:
            raise self.error
        assert self.done is not None, f"the fault was never injected (the sweep ended before {self.what}?)"
        return self.done


def paused(gate: Path) -> list[str]:
    """The trials waiting at the gate (``URN_PAUSE_AT``), in order of their ids."""
    return sorted(p.name.removesuffix(".paused") for p in gate.glob("*.paused"))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --- 1. a trial's worker is killed, then the driver; the resume reads no pickle ------------------------------


class _Planted:
    """Unpickled, it creates ``target``: what a writer of the results storage could plant for a resume to run."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


@pytest.mark.slow
def test_killed_worker_and_killed_driver_each_trial_once_and_the_resume_unpickles_nothing(results, tmp_path, wait):
    """Four trials wait at epoch 4 (of 8), after their checkpoint, behind a gate.
    1. The first to wait has its process killed (SIGKILL), then is let through: Tune retries it from epoch 4, in its
       own run, and it ends where the same trial never interrupted ends.
    2. The others but one are let through; once the retried trial has finished, while that one waits, the driver is
       killed (SIGKILL; Ray's processes with it).
    3. Pickles are planted where Tune's restore read them (tuner.pkl, searcher and experiment state): Tune's
       restore unpickled them, so a file planted there ran on the machine that resumed.
    4. --resume trains the rest, each trial once: the finished ones untouched, the waiting one from epoch 4 in its own
       run (its checkpoint read as data), one sweep run; nothing planted runs."""
    import pickle

    import torch

    from urn_study.sweep.trainable import PAUSE_ENV
    from urn_study.trial import run_trial

    path = write_study(
        tmp_path,
        "killed",
        epochs=8,
        checkpoint_every=2,
        extra="grid:\n  regulators.locality: [0, 1.0e-3]\n  regulators.l1: [0, 1.0e-3]\nseeds: [0]\ntrials_per_worker: 1\n",
    )
    uri = tracking.resolve_tracking_uri()
    gate = tmp_path / "gate"
    gate.mkdir()
    log = open(tmp_path / "driver.log", "wb")
    driver = subprocess.Popen(
        [sys.executable, "-m", "urn_study.cli", "sweep", str(path), "--num-cpus", "2"],
        cwd=tmp_path,
        env={**os.environ, "URN_RESULTS_DIR": str(results), PAUSE_ENV: f"4:{gate}"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def victim_finished() -> bool:
        for trial in set(paused(gate)) - {waiting}:  # every other trial goes on (its slot frees one for the retry)
            (gate / f"{trial}.go").touch()
        return runs_by_trial(uri, "killed")[victim][0].info.status == "FINISHED"

    try:
        victim = wait(lambda: paused(gate), "a trial at the gate", process=driver)[0]
        os.kill(int((gate / f"{victim}.paused").read_text()), signal.SIGKILL)
        (gate / f"{victim}.go").touch()  # its retry passes the gate
        waiting = wait(lambda: [t for t in paused(gate) if t != victim], "another trial at the gate", process=driver)[0]
        wait(victim_finished, f"{victim} to finish", process=driver)
    finally:
        try:
            os.killpg(driver.pid, signal.SIGKILL)  # the driver and Ray's processes
        except ProcessLookupError:
            pass
        driver.wait(timeout=60)
        log.close()

    before = {trial_id: runs[0] for trial_id, runs in runs_by_trial(uri, "killed").items()}
    finished = {t: r for t, r in before.items() if r.info.status == "FINISHED"}
    assert victim in finished and waiting not in finished and before[waiting].info.status == "RUNNING"
    finished_epochs = {t: logged_epochs(uri, r.info.run_id) for t, r in finished.items()}

    target = tmp_path / "pwned"
    payload = pickle.dumps(_Planted(target))
    [experiment] = (results / "ray").iterdir()
    (experiment / "tuner.pkl").write_bytes(payload)
    (experiment / "searcher-state-killed.pkl").write_bytes(payload)
    for state in experiment.glob("experiment_state-*.json"):
        state.write_text(json.dumps({"trial_data": [[payload.hex(), "{}"]]}))

    assert sweep(str(path), "--resume", "--num-cpus", "2") == 0
    assert not target.exists()
    after = assert_each_trial_once(uri, path, epochs=8)
    for trial_id, run in finished.items():  # not trained, not reopened, not logged again
        again = after[trial_id]
        assert again.info.run_id == run.info.run_id and again.info.end_time == run.info.end_time
        assert again.data.tags[tracking.ATTEMPTS_TAG] == run.data.tags[tracking.ATTEMPTS_TAG]
        assert logged_epochs(uri, again.info.run_id) == finished_epochs[trial_id]
    assert after[victim].data.tags[tracking.ATTEMPTS_TAG] == "2"
    assert after[victim].data.tags["urn.resumed_from_epoch"] == "4"
    assert after[waiting].info.run_id == before[waiting].info.run_id
    assert after[waiting].data.tags["urn.resumed_from_epoch"] == "4"
    assert after[waiting].data.tags[tracking.ATTEMPTS_TAG] == "2"
    client = tracking.client(uri)
    parents = [r for r in client.search_runs([after[victim].info.experiment_id]) if r.data.tags.get(tracking.ROLE_TAG) == "sweep"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"

    # the retried trial against the same trial never interrupted, in this process with the worker's thread count
    run = after[victim]
    [config] = [t.config for t in load_study(path).trials() if t.trial_id == victim]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = run_trial(config)
    finally:
        torch.set_num_threads(threads)
    w = np.load(client.download_artifacts(run.info.run_id, "W.npy", str(tmp_path)), allow_pickle=False)
    np.testing.assert_allclose(w, reference.weights, rtol=0, atol=1e-5)
    losses = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "task_loss"), key=lambda m: m.step)]
    np.testing.assert_allclose(losses, [h["task_loss"] for h in reference.history], rtol=1e-5)
    assert run.data.metrics["test_accuracy"] == pytest.approx(reference.metrics["test_accuracy"], abs=1e-6)
    assert run.data.tags["phase"] == reference.metrics["phase"]


# --- 2. a node of a cluster is removed ---------------------------------------------------------------------


@pytest.mark.slow
def test_removed_node_trials_finish_on_another_node(results, tmp_path, monkeypatch, wait):
    """Trials wait at epoch 4 (of 8), after their checkpoint, behind a gate; the node of the first to wait is
    removed (its processes killed, no goodbye), then the gate opens: that trial finishes on the other node, from its
    checkpoint, in its own run."""
    import ray
    from ray.cluster_utils import Cluster

    from urn_study.sweep.trainable import PAUSE_ENV

    gate = tmp_path / "gate"
    gate.mkdir()
    monkeypatch.setenv(PAUSE_ENV, f"4:{gate}")  # the nodes' workers inherit it from this process
    path = write_study(
        tmp_path,
        "nodes",
        epochs=8,
        checkpoint_every=4,
        extra="grid:\n  regulators.l1: [0, 1.0e-4, 1.0e-3]\nseeds: [0]\ntrials_per_worker: 1\n",
    )
    uri = tracking.resolve_tracking_uri()
    # a node is declared dead after about 3 s without an answer, not Ray's default of half a minute
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "_system_config": {
                "health_check_period_ms": 1000,
                "health_check_failure_threshold": 3,
                "health_check_timeout_ms": 1000,
            },
        },
    )
    try:
        nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        by_id = {n.node_id: n for n in nodes}

        def remove(trials: list[str]):
            node_id = runs_by_trial(uri, "nodes")[trials[0]][0].data.tags["urn.node_id"]
            on_it = sorted(
                t
                for t, r in runs_by_trial(uri, "nodes").items()
                if r[0].info.status == "RUNNING" and r[0].data.tags.get("urn.node_id") == node_id
            )
            pid = int((gate / f"{trials[0]}.paused").read_text())
            cluster.remove_node(by_id[node_id], allow_graceful=False)
            wait(lambda: not alive(pid), f"the worker of {trials[0]} to die with its node", timeout=60)
            (gate / "go").touch()  # the others go on; the retry passes epoch 4
            return node_id, on_it, trials[0]

        with Fault(wait, lambda: paused(gate), "a trial at the gate", remove) as fault:
            assert sweep(str(path), "--address", cluster.address) == 0
        removed, victims, first = fault.check()
    finally:
        (gate / "go").touch()
        ray.shutdown()
        cluster.shutdown()
    (survivor,) = [n for n in by_id if n != removed]
    runs = assert_each_trial_once(uri, path, epochs=8)
    assert victims == [first]  # one CPU a node: the paused trial held it
    tags = runs[first].data.tags
    assert tags["urn.node_id"] == survivor
    assert int(tags[tracking.ATTEMPTS_TAG]) >= 2 and tags["urn.resumed_from_epoch"] == "4"


# --- 3. the MLflow server goes away and comes back ------------------------------------------------------


def checkpointed_epoch(results: Path, trial_id: str) -> int:
    """The epoch of a trial's newest checkpoint in Ray's results under ``results`` (0 before any). Raises
    CheckpointError for one Tune is copying in or removing."""
    from urn_study.checkpoint import load_state

    return max(
        (load_state(folder).epoch for folder in (results / "ray").glob(f"*/{trial_id}_*/checkpoint_*/{trial_id}")), default=0
    )


@pytest.mark.slow
def test_server_down_mid_sweep_loses_no_record_and_no_token_is_written(results, tmp_path, net, monkeypatch, capfd, wait):
    """Both trials wait at epoch 8 (of 16) behind a gate; the server is killed there, the gate opens, and the trials
    train on without it, their epochs queued, until both have checkpointed epoch 12; then the server comes back
    and the queued epochs are sent (MLflow's retries first; their backoff shortened here so the test waits less).
    Every record is complete. The token every request carried (from the environment) is in no record, result or
    printed line."""
    from urn_study.checkpoint import CheckpointError
    from urn_study.sweep.trainable import PAUSE_ENV

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")  # Ray's workers inherit the driver's env
    # and 3 retries (1 + 2 + 4 s) instead of 7 (up to 2 min): past them the sender's own next turn tries again
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", TOKEN)
    gate = tmp_path / "gate"
    gate.mkdir()
    monkeypatch.setenv(PAUSE_ENV, f"8:{gate}")
    folder = tmp_path / "server"
    folder.mkdir()
    port = net.free_port()
    uri = f"http://127.0.0.1:{port}"
    servers = [net.start_mlflow_server(folder, port)]
    path = write_study(
        tmp_path,
        "outage",
        epochs=16,
        checkpoint_every=4,
        extra="grid:\n  regulators.l1: [0, 1.0e-3]\nseeds: [0]\ntrials_per_worker: 1\n",
    )
    trials = ["outage-0000", "outage-0001"]

    def past(epoch: int) -> list[int] | None:
        epochs = [checkpointed_epoch(results, t) for t in trials]
        return epochs if min(epochs) >= epoch else None

    def outage(_) -> list[int]:
        os.killpg(servers[-1].pid, signal.SIGKILL)  # no goodbye: requests in flight are cut
        servers[-1].wait(timeout=30)
        (gate / "go").touch()
        seen = wait(lambda: past(12), "both trials' checkpoints of epoch 12", retry_on=(CheckpointError, OSError))
        servers.append(net.start_mlflow_server(folder, port))
        return seen

    try:
        with Fault(wait, lambda: paused(gate) == trials, "both trials at the gate", outage) as fault:
            assert sweep(str(path), "--tracking-uri", uri, "--num-cpus", "2") == 0
        assert min(fault.check()) >= 12  # trained on while the store was away
        runs = assert_each_trial_once(uri, path, epochs=16)
        assert_no_secret_written(uri, runs, results, "".join(capfd.readouterr()), tmp_path / "downloads")
    finally:
        (gate / "go").touch()
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
    monkeypatch.setenv(tracking.FLUSH_ENV, "3600")  # the sender's thread waits: what is sent, flush sends
    record = tracking.TrialRecord(uri, "0123abcd", "gone-0000", last_step=0, finished=False, summary={})
    tries: list[list] = []
    send = record._sender._send

    def counted(items: list) -> None:
        tries.append(items)
        send(items)

    record._sender._send = counted
    record.log_epoch(1, {"task_loss": 1.0, "test_accuracy": 0.5})
    assert record._sender.queued == 2 and not tries  # queued by the training loop, not sent from it
    with pytest.raises(tracking.TrackingError) as info:
        record.flush()
    assert uri in str(info.value) and "\n" not in str(info.value)
    assert record._sender.queued == 2 and tries  # tried, and kept for the next try
    with pytest.raises(tracking.TrackingError):
        record.fail()
    with pytest.raises(tracking.TrackingError):
        tracking.TrialRecord.open(uri, "1", "p", "gone", "gone-sweep", "gone-0000", parse_config({}))


# --- 4. a trial diverges ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_diverging_trial_is_recorded_as_diverged_and_its_pack_and_the_sweep_go_on(results, tmp_path):
    """Three trials in packs of two (a Tune trial each): the first diverges at its first epoch, its pack partner and
    the other pack train to the end. Each member keeps its own run and its own folder in the pack's checkpoints."""
    path = tmp_path / "diverge.yaml"
    path.write_text(
        textwrap.dedent("""\
        # Question: does a diverging trial stop the others?
        # Run: urn-study sweep diverge.yaml
        name: diverge
        base: {data.name: nlgp, data.side: 8, data.n_samples: 200, train.epochs: 3, train.batch_size: 50,
               train.snapshot_every: 1, train.checkpoint_every: 1, model.steps: 40, model.activation: identity}
        grid:
          model.init_scale: [10.0, 0.05, 0.1]
        trials_per_worker: 2
        """)
    )
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
    packs: dict[str, list[str]] = {}
    for trial_id, run in runs.items():
        packs.setdefault(run.data.tags["urn.tune_trial"], []).append(trial_id)
    assert {k: sorted(v) for k, v in packs.items()} == {
        "diverge-0000+1": ["diverge-0000", "diverge-0001"],
        "diverge-0002": ["diverge-0002"],
    }
    checkpoints = sorted((results / "ray").glob("diverge-*/diverge-0000+1_*/checkpoint_*"))
    assert checkpoints
    assert sorted(p.name for p in checkpoints[-1].iterdir()) == ["diverge-0000", "diverge-0001"]
    # MLflow is the record: of Tune's per-report files only its JSON, no CSV or TensorBoard copies
    trial_folder = checkpoints[-1].parent
    files = {p.name for p in trial_folder.iterdir() if not p.name.startswith("checkpoint_")}
    assert files == {"result.json", "params.json", "params.pkl"}, files


# --- 5. many writers at once to the local store -----------------------------------------------------------


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
def test_many_trials_logging_at_once_to_the_local_store_lose_nothing(results, tmp_path, wait):
    writers, epochs, metrics = 6, 20, 20
    uri = tracking.resolve_tracking_uri()
    tracking.check_tracking(uri)
    experiment = tracking.ensure_experiment(uri, "many")
    parent = tracking.open_sweep_run(uri, experiment, "many", "many-sweep", {"searcher": "grid"})
    gate = tmp_path / "gate"
    gate.mkdir()
    trial_ids = [f"many-{i:04d}" for i in range(writers)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, uri, experiment, parent, t, str(epochs), str(gate)],
            cwd=tmp_path,
            stderr=subprocess.PIPE,
            text=True,
        )
        for t in trial_ids
    ]
    try:

        def all_at_gate() -> bool:
            ended = [p.returncode for p in processes if p.poll() is not None]
            assert not ended, f"writers ended before the gate (codes {ended})"
            return len(list(gate.iterdir())) == writers

        wait(all_at_gate, "every writer at the gate", timeout=180)
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
