"""The MLflow record: store resolution, trial runs found again (never doubled), artifacts, the heatmap."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from urn_study import tracking
from urn_study.artifacts import write_artifacts
from urn_study.config import parse_config, to_flat

TINY = {
    "data.name": "nlgp",
    "data.side": 8,
    "data.n_samples": 200,
    "train.epochs": 3,
    "train.batch_size": 50,
    "train.snapshot_every": 2,
    "regulators.l1": 1e-4,
}


@pytest.fixture(scope="module")
def trial():
    """A real (tiny) trial: its config, per-epoch reports and result."""
    from urn_study.trial import run_trial

    config = parse_config(TINY)
    reports = []
    result = run_trial(config, report=lambda epoch, m: reports.append((epoch, dict(m))))
    return config, reports, result


def record_trial(uri, experiment_id, parent, trial_id, config, reports, result, upto=None):
    record = tracking.TrialRecord.open(uri, experiment_id, parent, "tiny", "tiny-sweep", trial_id, config, {"urn.device": "cpu"})
    for epoch, metrics in reports[:upto]:
        record.log_epoch(epoch, metrics)
    if upto is None:
        record.finish(result)
    return record


# --- the store -----------------------------------------------------------------------------------


def test_default_store_is_sqlite_under_the_results_folder(results):
    uri = tracking.resolve_tracking_uri()
    assert uri == f"sqlite:///{results / 'mlflow.db'}"
    assert tracking.default_artifact_root() == results / "mlartifacts"


def test_relative_sqlite_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert tracking.resolve_tracking_uri("sqlite:///store/m.db") == f"sqlite:///{tmp_path / 'store' / 'm.db'}"
    assert tracking.resolve_tracking_uri("http://127.0.0.1:5000/") == "http://127.0.0.1:5000"


def test_file_store_is_refused():
    with pytest.raises(tracking.TrackingError, match="file store"):
        tracking.resolve_tracking_uri("file:///tmp/mlruns")


def test_unreachable_server_is_one_clear_line(net):
    uri = f"http://127.0.0.1:{net.free_port()}"
    with pytest.raises(tracking.TrackingError) as info:
        tracking.check_tracking(uri, timeout=2)
    message = str(info.value)
    assert uri in message and "not reachable" in message and "\n" not in message


class _Answers(BaseHTTPRequestHandler):
    """Answers every request with the status in ``server.status`` and an HTML page (as a proxy or a gateway does)."""

    def _answer(self):
        self.send_response(self.server.status)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html><body>no</body></html>")

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("status, silent", [(None, True), (503, True), (403, False)])
def test_a_server_that_stops_answering_is_one_line_and_one_that_answers_an_error_keeps_it(net, monkeypatch, status, silent):
    """Nothing listening, or 5xx until MLflow's retries are spent: the server stopped answering (TrackingError, one
    line). A page answering 403: the server answered, and its error is MLflow's own (not read as an outage)."""
    from mlflow.exceptions import MlflowException

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow's own retries would wait minutes
    server = None
    port = net.free_port()
    if status is not None:
        server = ThreadingHTTPServer(("127.0.0.1", port), _Answers)
        server.status = status
        threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{port}"
    try:
        with pytest.raises(MlflowException if not silent else tracking.TrackingError) as info:
            tracking.client(uri).get_run("0" * 32)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    if silent:
        assert str(info.value).count("\n") == 0 and f"{uri} stopped answering (get_run)" in str(info.value)
    else:
        assert "403" in str(info.value) and not isinstance(info.value, tracking.TrackingError)


def test_unwritable_local_store_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(tracking.TrackingError, match="cannot create"):
        tracking.check_tracking(f"sqlite:///{blocker / 'sub' / 'mlflow.db'}")


def test_an_unwritable_artifact_folder_is_refused_before_any_run(results):
    results.mkdir()
    (results / "mlartifacts").write_text("")  # a file where the folder must go (root writes through chmod)
    uri = tracking.resolve_tracking_uri()
    with pytest.raises(tracking.TrackingError) as info:
        tracking.check_tracking(uri)
    message = str(info.value)
    assert str(results / "mlartifacts") in message and "a file is in its place" in message and "\n" not in message
    assert sorted(p.name for p in results.iterdir()) == ["mlartifacts"]  # no store was opened
    with pytest.raises(tracking.TrackingError, match="cannot create /proc/urn-nowhere"):
        tracking.check_tracking("sqlite:////proc/urn-nowhere/mlflow.db")


def test_the_writable_check_leaves_no_probe_behind(results):
    tracking.check_tracking(tracking.resolve_tracking_uri())
    assert list(results.rglob("*")) == [results / "mlartifacts"]


@pytest.mark.parametrize(
    "uri, words",
    [
        ("http://", "no host"),
        ("https://:5000", "no host"),
        ("http://[::1", "not a valid URI"),
        ("http://127.0.0.1:99999", "not a valid URI"),
    ],
)
def test_a_malformed_tracking_uri_is_one_line(uri, words):
    with pytest.raises(tracking.TrackingError) as info:
        tracking.resolve_tracking_uri(uri)
    message = str(info.value)
    assert f"--tracking-uri {uri!r}" in message and words in message and "\n" not in message


@pytest.mark.parametrize(
    "uri",
    [
        "HTTP://alice:s3cr3t@127.0.0.1:5000",
        "Https://s3cr3t@example.org",
        "ftp://alice:s3cr3t@example.org",
        "gopher://alice:s3cr3t@[::1",
        "http://127.0.0.1:5000?token=s3cr3t",
        "http://h:5000/?x=1&API_KEY=s3cr3t",
        "POSTGRESQL://alice:s3cr3t@db/urn",
        "postgresql://alice@db/urn?sslmode=require&password=s3cr3t",
    ],
)
def test_a_secret_anywhere_in_the_tracking_uri_is_refused_unechoed(uri):
    with pytest.raises(tracking.TrackingError) as info:
        tracking.resolve_tracking_uri(uri)
    assert "s3cr3t" not in str(info.value) and "\n" not in str(info.value)


def test_the_scheme_is_read_in_any_case(tmp_path):
    assert tracking.resolve_tracking_uri("HTTP://127.0.0.1:5000/") == "http://127.0.0.1:5000"
    assert tracking.resolve_tracking_uri(f"SQLite:///{tmp_path / 'm.db'}") == f"sqlite:///{tmp_path / 'm.db'}"
    assert tracking.is_local(f"SQLITE:///{tmp_path / 'm.db'}")


def test_a_database_store_without_its_driver_is_one_line(monkeypatch):
    for module in ("psycopg", "pymysql"):
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed: its import fails
    for uri, package in (("postgresql://bob@127.0.0.1:1/db", "psycopg"), ("mysql+pymysql://bob@db/urn", "PyMySQL")):
        with pytest.raises(tracking.TrackingError) as info:
            tracking.check_tracking(tracking.resolve_tracking_uri(uri))
        message = str(info.value)
        assert "is not installed" in message and f"pip install {package}" in message and "\n" not in message
        assert "bob" not in message  # the user info is masked in every message that quotes a URI


def test_a_refused_tracking_uri_leaves_no_sweep_record(results, tmp_path, monkeypatch, capsys):
    from urn_study import cli

    monkeypatch.setitem(sys.modules, "psycopg", None)
    study = tmp_path / "tiny.yaml"
    study.write_text("base: {data.name: nlgp, data.side: 8, data.n_samples: 200, train.epochs: 1}\n")
    for uri in ("http://", "postgresql://bob@127.0.0.1:1/db"):
        assert cli.main(["sweep", str(study), "--tracking-uri", uri]) == 2
        assert capsys.readouterr().err.count("\n") == 1
        assert not results.exists() or not any(p.is_file() for p in results.rglob("*"))


# --- runs -------------------------------------------------------------------------------------------


def check_trial_run(client, run, config, reports, result):
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "tiny-0000"
    tags = run.data.tags
    assert tags[tracking.TRIAL_TAG] == "tiny-0000" and tags[tracking.SWEEP_TAG] == "tiny-sweep"
    assert tags[tracking.STUDY_TAG] == "tiny" and tags[tracking.ROLE_TAG] == "trial"
    assert tags["phase"] == result.metrics["phase"]
    assert tags["depth"] == str(result.metrics["depth"])
    assert json.loads(tags["widths"]) == list(result.metrics["widths"])
    # every config value as a param (MLflow gives strings back)
    expected = {k: (json.dumps(v) if isinstance(v, dict) else str(v)) for k, v in to_flat(config).items()}
    assert run.data.params == expected
    # per-epoch metrics, one value per epoch
    for key in ("task_loss", "loss", "test_accuracy", "reg_l1", "strength_l1"):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
        assert sorted(steps) == [e for e, _ in reports], key
    assert [m.step for m in client.get_metric_history(run.info.run_id, "locality")] == [2, 3]  # snapshot epochs
    assert "phase_index" in run.data.metrics and "seconds" in run.data.metrics
    assert run.data.metrics["test_accuracy"] == pytest.approx(result.metrics["test_accuracy"])
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {
        "W.npy",
        "b.npy",
        "W0.npy",
        "layout.json",
        "structure.json",
        "history.json",
        "config.json",
        "W_heatmap.png",
        "snapshots",
    } <= names
    snapshots = {a.path for a in client.list_artifacts(run.info.run_id, "snapshots")}
    assert snapshots == {
        "snapshots/epoch_0002.npy",
        "snapshots/epoch_0003.npy",
        "snapshots/epoch_0002_b.npy",
        "snapshots/epoch_0003_b.npy",
    }
    assert json.loads(tags["block_widths"]) == result.metrics["block_widths"] and tags["null_phase"] == "dead"
    check_snapshot_images(client, run.info.run_id, sorted(result.snapshots))


def test_a_sweep_trials_artifacts_are_the_files_of_train_out(results, tmp_path, capsys):
    """One layout on disk (urn_study.artifacts): a trial recorded as the sweep's trainable records it (TrialRecord,
    run_trials) and ``urn-study train --out`` of the same config leave the same files, with equal arrays and JSON;
    the run adds only the UI's images of the snapshots (images/)."""
    from urn_study.cli import main
    from urn_study.trial import run_trials

    config = parse_config(TINY)
    out = tmp_path / "out"
    assert main(["train", *(a for k, v in TINY.items() for a in ("--set", f"{k}={v}")), "--threads", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    uri = tracking.resolve_tracking_uri()
    experiment_id = tracking.ensure_experiment(uri, "tiny")
    parent = tracking.open_sweep_run(uri, experiment_id, "tiny", "tiny-sweep", {})
    record = tracking.TrialRecord.open(uri, experiment_id, parent, "tiny", "tiny-sweep", "tiny-0000", config)
    [result] = run_trials([config], [record.log_epoch])
    record.finish(result)
    run_folder = Path(tracking.client(uri).get_run(record.run_id).info.artifact_uri.removeprefix("file://"))

    def files(folder: Path) -> set[str]:
        return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}

    recorded, written = files(run_folder), files(out)
    assert {f for f in recorded if not f.startswith("images/")} == written
    assert {"W.npy", "W0.npy", "snapshots/epoch_0002_b.npy", "layout.json", "config.json"} <= written
    for name in sorted(written):
        if name.endswith(".npy"):
            np.testing.assert_array_equal(np.load(run_folder / name), np.load(out / name), err_msg=name)
        elif name.endswith(".json") and name != "history.json":  # history holds each epoch's seconds
            assert json.loads((run_folder / name).read_text()) == json.loads((out / name).read_text()), name
    epochs = [{k: v for k, v in row.items() if "second" not in k} for row in json.loads((out / "history.json").read_text())]
    assert [
        {k: v for k, v in row.items() if "second" not in k} for row in json.loads((run_folder / "history.json").read_text())
    ] == epochs


def check_snapshot_images(client, run_id, epochs):
    """Each snapshot's heatmap logged as an image of key W at its epoch (what the UI's image view steps through)."""
    from PIL import Image

    images = [a.path for a in client.list_artifacts(run_id, "images") if a.path.endswith(".png")]
    assert sorted(int(re.search(r"W\+step\+(\d+)\+", p)[1]) for p in images) == epochs
    with Image.open(client.download_artifacts(run_id, images[0])) as image:
        assert min(image.size) > 50


def test_the_snapshot_images_are_the_files_log_image_stores(results):
    """``write_images`` (the images of a trial's snapshots, sent with its other artifacts) leaves what MLflow's own
    ``log_image(run, image, key, step)`` leaves in a run, for the UI's image view: the same names but for the time
    and the uuid, a PNG of the image's size and a WebP of the compressed copy's size, and the run's
    ``mlflow.loggedImages`` tag. Fails when MLflow changes its layout."""
    from PIL import Image

    from urn_study.tracking.trial_record import LOGGED_IMAGES_TAG, write_images

    uri = tracking.resolve_tracking_uri()
    client = tracking.client(uri)
    experiment_id = tracking.ensure_experiment(uri, "images")
    images = [(5, Image.new("RGB", (524, 474), (200, 10, 10))), (10, Image.new("RGB", (300, 700), (10, 10, 200)))]
    theirs = client.create_run(experiment_id).info.run_id
    for step, image in images:
        client.log_image(theirs, image, key="W", step=step, synchronous=True)
    ours = client.create_run(experiment_id).info.run_id
    folder = results / "ours"
    write_images(images, folder, "W")
    client.log_artifacts(ours, str(folder))
    client.set_tag(ours, LOGGED_IMAGES_TAG, "True")

    def stored(run_id):
        files = {}
        for artifact in client.list_artifacts(run_id, "images"):
            name = re.sub(r"\+timestamp\+\d+\+[0-9a-f-]{36}", "+timestamp+T+U", artifact.path)
            with Image.open(client.download_artifacts(run_id, artifact.path)) as image:
                files[name] = (image.format, image.size)
        return files, client.get_run(run_id).data.tags.get(LOGGED_IMAGES_TAG)

    assert stored(ours) == stored(theirs)
    assert stored(ours)[0]["images/W+step+10+timestamp+T+U+compressed.webp"] == ("WEBP", (109, 256))


def record_and_check_one_trial(uri, experiment, trial):
    """A sweep run and one finished trial run in ``uri``, checked: (experiment id, parent run id, runs, client)."""
    config, reports, result = trial
    tracking.check_tracking(uri)
    experiment_id = tracking.ensure_experiment(uri, experiment)
    assert tracking.ensure_experiment(uri, experiment) == experiment_id
    parent = tracking.open_sweep_run(uri, experiment_id, "tiny", "tiny-sweep", {"searcher": "grid"})
    record_trial(uri, experiment_id, parent, "tiny-0000", config, reports, result)
    client = tracking.client(uri)
    runs = tracking.trial_runs(uri, experiment_id, "tiny-sweep")
    assert len(runs) == 1
    check_trial_run(client, runs[0], config, reports, result)
    return experiment_id, parent, runs, client


def test_trial_run_in_a_local_store(results, trial):
    config, _, result = trial
    uri = tracking.resolve_tracking_uri()
    experiment_id, parent, runs, client = record_and_check_one_trial(uri, "tiny", trial)
    assert runs[0].data.tags[tracking.PARENT_TAG] == parent
    w = np.load(client.download_artifacts(runs[0].info.run_id, "W.npy", str(results)), allow_pickle=False)
    np.testing.assert_array_equal(w, result.weights)
    assert runs[0].info.artifact_uri.startswith((results / "mlartifacts").as_uri())
    # a finished trial opened again is not run again, and no second run appears
    again = tracking.TrialRecord.open(uri, experiment_id, parent, "tiny", "tiny-sweep", "tiny-0000", config)
    assert again.finished and again.summary["phase"] == result.metrics["phase"]
    assert len(tracking.trial_runs(uri, experiment_id)) == 1
    assert tracking.close_sweep_run(uri, experiment_id, "tiny-sweep", parent, "FINISHED") == 0
    assert client.get_run(parent).info.status == "FINISHED"


def test_metric_sender_sends_in_batches_from_its_thread_and_keeps_what_the_store_refuses(caplog, wait):
    import logging
    import threading

    sent, refused, down = [], threading.Semaphore(0), threading.Event()

    def send(items):
        if down.is_set():
            refused.release()
            raise tracking.TrackingError("store away\n(the server's own traceback)")
        sent.append((threading.current_thread().name, list(items)))

    caplog.set_level(logging.WARNING, logger="urn_study.tracking")
    sender = tracking.MetricSender(send, every_s=0.05)
    down.set()
    sender.add([1, 2])
    sender.add([3])
    for turn in range(2):  # two turns of the sender's thread, each refused
        assert refused.acquire(timeout=30), f"the sender's thread never tried (turn {turn})"
    assert sent == [] and sender.queued == 3 and sender.failing
    with pytest.raises(tracking.TrackingError):
        sender.flush()
    down.clear()
    wait(lambda: not sender.failing, "the thread sending again", timeout=30, interval=0.02)
    assert [name for name, _ in sent] == ["urn-metrics"] and sent[0][1] == [1, 2, 3]  # one batch, in order
    # said once when the store went away (its first line), once when it came back: not a line per try
    said = [r.getMessage() for r in caplog.records if r.name == "urn_study.tracking.trial_record"]
    assert len(said) == 2 and "store away" in said[0] and "3 queued" in said[0] and "traceback" not in said[0], said
    assert "again" in said[1]
    sender.add(list(range(2500)))
    sender.close()
    batches = [items for _, items in sent[1:]]
    assert sum(batches, []) == list(range(2500)) and max(len(b) for b in batches) <= 1000
    sender._thread.join(timeout=1)
    assert not sender._thread.is_alive()


def test_a_store_that_never_comes_back_loses_no_metric_silently():
    """The sender keeps every metric while the store refuses them; its close says so (TrackingError), the metrics
    still queued for the trial's own handling (the run ends FAILED with what did arrive)."""
    import threading

    tries = threading.Semaphore(0)

    def send(items):
        tries.release()
        raise tracking.TrackingError("store away")

    sender = tracking.MetricSender(send, every_s=0.0)
    sender.add([1, 2, 3])
    assert tries.acquire(timeout=30), "the sender's thread never tried"
    with pytest.raises(tracking.TrackingError, match="store away"):
        sender.close()
    sender._thread.join(timeout=30)
    assert not sender._thread.is_alive()
    assert sender.queued == 3 and sender.failing  # the thread's own try said so (read after it ended: no race)


def test_epochs_reach_the_store_from_the_sender_thread_without_a_flush(results, trial, monkeypatch, wait):
    config, reports, _ = trial
    monkeypatch.setattr(tracking.store, "FLUSH_EVERY_S", 0.2)
    uri = tracking.resolve_tracking_uri()
    experiment_id = tracking.ensure_experiment(uri, "tiny")
    parent = tracking.open_sweep_run(uri, experiment_id, "tiny", "tiny-sweep", {})
    record = record_trial(uri, experiment_id, parent, "tiny-0007", config, reports, None, upto=len(reports))
    client = tracking.client(uri)
    wait(
        lambda: len(client.get_metric_history(record.run_id, "task_loss")) >= len(reports),
        "every epoch in the store, sent by the thread alone",
        timeout=30,
    )
    history = client.get_metric_history(record.run_id, "task_loss")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [epoch for epoch, _ in reports]
    assert record._sender.queued == 0
    record.fail()


def test_a_bad_metric_interval_is_said_before_anything_runs(results, monkeypatch):
    for text in ("soon", "-1", "nan"):
        monkeypatch.setenv(tracking.FLUSH_ENV, text)
        with pytest.raises(tracking.TrackingError, match=f"URN_METRICS_EVERY_S.*{text!r}"):
            tracking.check_tracking(tracking.resolve_tracking_uri())


def test_a_retried_trial_continues_its_run(results, trial):
    config, reports, result = trial
    uri = tracking.resolve_tracking_uri()
    experiment_id = tracking.ensure_experiment(uri, "tiny")
    parent = tracking.open_sweep_run(uri, experiment_id, "tiny", "tiny-sweep", {})
    first = record_trial(uri, experiment_id, parent, "tiny-0000", config, reports, result, upto=2)
    first.fail("ValueError: no reading")  # its error, as a pack's trial that failed in training
    run = tracking.client(uri).get_run(first.run_id)
    assert run.info.status == "FAILED" and run.data.tags["urn.error"] == "ValueError: no reading"
    assert first.failed and not first.finished  # train_pack's own clean-up leaves it ended
    # the retry trains again from a checkpoint at epoch 1: epoch 2 is reported again, but logged once
    second = tracking.TrialRecord.open(uri, experiment_id, parent, "tiny", "tiny-sweep", "tiny-0000", config)
    assert not second.finished and second.last_step == 2 and second.run_id == first.run_id
    for epoch, metrics in reports[1:]:
        second.log_epoch(epoch, metrics)
    second.finish(result)
    client = tracking.client(uri)
    runs = tracking.trial_runs(uri, experiment_id, "tiny-sweep")
    assert len(runs) == 1 and runs[0].data.tags[tracking.ATTEMPTS_TAG] == "2"
    # the finished run says no error of its own; the first attempt's is kept under its own name
    assert "urn.error" not in runs[0].data.tags
    assert runs[0].data.tags["urn.earlier_error"] == "attempt 1: ValueError: no reading"
    check_trial_run(client, runs[0], config, reports, result)


def test_closing_a_sweep_fails_its_orphaned_runs(results, trial):
    config, reports, result = trial
    uri = tracking.resolve_tracking_uri()
    experiment_id = tracking.ensure_experiment(uri, "tiny")
    parent = tracking.open_sweep_run(uri, experiment_id, "tiny", "tiny-sweep", {})
    record_trial(uri, experiment_id, parent, "tiny-0000", config, reports, result, upto=1)  # its process "died"
    assert tracking.close_sweep_run(uri, experiment_id, "tiny-sweep", parent, "FAILED") == 1
    client = tracking.client(uri)
    assert [r.info.status for r in tracking.trial_runs(uri, experiment_id)] == ["FAILED"]
    assert client.get_run(parent).info.status == "FAILED"
    # a resumed sweep finds its parent run again
    assert tracking.open_sweep_run(uri, experiment_id, "tiny", "tiny-sweep", {}) == parent
    assert client.get_run(parent).info.status == "RUNNING"
    tracking.close_sweep_run(uri, experiment_id, "tiny-sweep", parent, "FINISHED")


@pytest.mark.slow
def test_trial_run_over_http(mlflow_server, results, trial):
    experiment_id, parent, runs, _ = record_and_check_one_trial(mlflow_server, "tiny-http", trial)
    assert runs[0].info.artifact_uri.startswith("mlflow-artifacts:")  # proxied by the server
    tracking.close_sweep_run(mlflow_server, experiment_id, "tiny-sweep", parent, "FINISHED")


# --- the heatmap -------------------------------------------------------------------------------------


def test_heatmap_orders_neurons_by_level():
    """Against an order written out by hand: level 0 first, then 1, then 2, inactive (-1) last, each in index order."""
    from analysis.plots import draw_weight_heatmap

    levels = [2, -1, 0, 1, 0, -1, 1]
    order = [2, 4, 3, 6, 0, 1, 5]
    w = np.arange(49, dtype=float).reshape(7, 7) - 24.0
    fig = draw_weight_heatmap(w, levels, title="t")
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), np.abs(w)[np.ix_(order, order)])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["L0", "L1", "L2", "off"]
    assert sorted(line.get_xdata()[0] for line in fig.axes[0].lines if line.get_xdata()[0] == line.get_xdata()[1]) == [
        1.5,
        3.5,
        4.5,
    ]  # block borders between levels 0 | 1 | 2 | off


def test_heatmap_signed_and_without_levels():
    from analysis.plots import draw_weight_heatmap
    from urn_study.reading.structure import level_blocks

    w = np.array([[0.0, -2.0], [1.0, 0.5]])
    fig = draw_weight_heatmap(w, None, signed=True)
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), w)
    assert level_blocks([2, -1, 0, 2]) == [(0, 0, 1), (2, 1, 3), (-1, 3, 4)]


def _heatmap_pixels(image) -> np.ndarray:
    from urn_study.reading import weight_image as wi

    return np.asarray(image)[wi.MARGIN_TOP :, wi.MARGIN_LEFT :]


def test_run_heatmap_orders_by_level_and_marks_level_boundaries():
    from urn_study.reading.weight_image import LINE, magma, weight_image

    # neurons 0 and 2 at level 0, 1 at level 1, 3 inactive: order 0, 2, 1, 3; W[1, 0] (0 -> 1) the largest
    w = np.zeros((4, 4))
    w[1, 0], w[2, 2] = -3.0, 1.5
    image = weight_image(w, [0, 1, 0, -1], side=40)  # 10 pixels per weight
    pixels = _heatmap_pixels(image)
    row_of = {0: 0, 2: 1, 1: 2, 3: 3}  # neuron -> its place in the order

    def colour(i, j):  # the middle of weight (i, j)'s 10 x 10 square
        return tuple(pixels[row_of[i] * 10 + 5, row_of[j] * 10 + 5])

    assert colour(1, 0) == tuple(magma(np.array(1.0)))  # |W| at the top of the scale, sign dropped
    assert colour(2, 2) == tuple(magma(np.array(0.5)))
    assert colour(0, 3) == tuple(magma(np.array(0.0)))
    for boundary in (20, 30):  # level 0 | level 1 | inactive: lines across the whole heatmap
        assert all(tuple(p) == LINE for p in pixels[boundary, :40])
        assert all(tuple(p) == LINE for p in pixels[:40, boundary])
    assert tuple(pixels[10, 5]) != LINE  # none inside a level


def test_run_heatmap_colours_are_matplotlibs_magma():
    import matplotlib

    from urn_study.reading.weight_image import magma

    values = np.linspace(0.0, 1.0, 256)
    reference = np.rint(matplotlib.colormaps["magma"](values)[:, :3] * 255)
    assert np.abs(magma(values).astype(float) - reference).max() <= 3
    outside = magma(np.array([np.nan, -1.0, 2.0]))  # NaN as 0, the rest clipped to [0, 1]
    np.testing.assert_array_equal(outside, magma(np.array([0.0, 0.0, 1.0])))


def test_run_heatmap_keeps_a_single_strong_weight_of_a_large_matrix():
    from urn_study.reading.weight_image import magma, weight_image

    w = np.full((1000, 1000), 1e-3)
    w[777, 333] = 2.0
    pixels = _heatmap_pixels(weight_image(w, side=100))[:100, :100]  # 10 weights a pixel: block maxima
    assert tuple(pixels[77, 33]) == tuple(magma(np.array(1.0)))
    assert (pixels.reshape(-1, 3) == magma(np.array(1.0))).all(axis=1).sum() == 1
    flat = weight_image(np.zeros((3, 3)), title="all zero", side=30)  # no division by a zero scale
    assert tuple(_heatmap_pixels(flat)[0, 0]) == tuple(magma(np.array(0.0)))


def test_written_artifacts(tmp_path, trial):
    from urn_study.layout import Layout

    config, _, result = trial
    files = write_artifacts(result, tmp_path, title="x")
    assert {p.relative_to(tmp_path).as_posix() for p in files} == {
        "W.npy",
        "b.npy",
        "W0.npy",
        "layout.json",
        "structure.json",
        "history.json",
        "config.json",
        "W_heatmap.png",
        "snapshots/epoch_0002.npy",
        "snapshots/epoch_0003.npy",
        "snapshots/epoch_0002_b.npy",
        "snapshots/epoch_0003_b.npy",
    }
    np.testing.assert_array_equal(np.load(tmp_path / "snapshots" / "epoch_0002.npy"), result.snapshots[2])
    np.testing.assert_array_equal(np.load(tmp_path / "snapshots" / "epoch_0002_b.npy"), result.bias_snapshots[2])
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), result.bias)
    assert Layout.load(tmp_path / "layout.json").size == result.layout.size
    assert json.loads((tmp_path / "structure.json").read_text())["phase"] == result.metrics["phase"]
    assert parse_config(json.loads((tmp_path / "config.json").read_text())) == config
    assert [h["epoch"] for h in json.loads((tmp_path / "history.json").read_text())] == [1, 2, 3]


def test_the_ui_refuses_a_port_already_in_use():
    import socket

    from urn_study.config import ConfigError

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"--port {port}: 127.0.0.1:{port} is already in use"):
            tracking.ui._check_port_free(port)
    tracking.ui._check_port_free(port)  # free again: no error


# --- what the MLflow UI shows ---------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def test_the_experiment_is_classic_ml_with_the_studys_question_and_a_table_view(results):
    from mlflow.tracking import MlflowClient

    uri = tracking.resolve_tracking_uri()
    experiment_id = tracking.ensure_experiment(uri, "tiny", "does it work?", ("regulators.l1",))
    client = MlflowClient(uri)
    tags = client.get_experiment(experiment_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development" and tags["mlflow.note.content"] == "does it work?"
    view = json.loads(tags["mlflow.sharedViewState.urn-study"])
    assert view["selectedColumns"] == ["tags.`phase`", "tags.`depth`", "metrics.`test_accuracy`", "params.`regulators.l1`"]
    assert view["groupBy"]["groupByKeys"] == [{"mode": "tag", "groupByData": "phase"}]
    # an experiment made before (MLflow's defaults: no kind, no description) gets them when a sweep opens it
    older = client.create_experiment("older")
    assert "mlflow.experimentKind" not in client.get_experiment(older).tags
    assert tracking.ensure_experiment(uri, "older", "why?") == older
    tags = client.get_experiment(older).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development" and tags["mlflow.note.content"] == "why?"


def test_every_run_records_its_source_and_commit_relative_to_the_repository(results, trial, tmp_path, monkeypatch):
    config, reports, result = trial
    study_file = ROOT / "search_spaces" / "quickstart.yaml"
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    monkeypatch.chdir(tmp_path)  # the path is the repository's, wherever the command runs
    assert tracking.repo_path(study_file) == "search_spaces/quickstart.yaml"
    uri = tracking.resolve_tracking_uri()
    experiment_id = tracking.ensure_experiment(uri, "tiny")
    parent = tracking.open_sweep_run(uri, experiment_id, "tiny", "tiny-sweep", {}, study_file)
    trial_run = record_trial(uri, experiment_id, parent, "tiny-0000", config, reports, result, upto=1).run_id
    client = tracking.client(uri)
    for run_id in (parent, trial_run):
        tags = client.get_run(run_id).data.tags
        assert tags["mlflow.source.name"] == "search_spaces/quickstart.yaml" and tags["mlflow.source.type"] == "LOCAL"
        assert tags["mlflow.source.git.commit"] == commit and len(commit) == 40
    outside = tmp_path / "mine.yaml"  # no repository: the path from the working folder, no commit
    outside.write_text("name: mine\n")
    assert tracking.source_tags(outside) == {"mlflow.source.type": "LOCAL", "mlflow.source.name": "mine.yaml"}


TRAIN_ARGS = ["train", *[arg for key, value in TINY.items() for arg in ("--set", f"{key}={value}")]]


def test_train_records_one_run_only_when_given_a_store(results, tmp_path, capsys):
    from urn_study.cli import main

    assert main(TRAIN_ARGS) == 0  # no --tracking-uri: nothing recorded anywhere
    assert not results.exists() and list(tmp_path.iterdir()) == []
    capsys.readouterr()
    uri = f"sqlite:///{tmp_path / 'train.db'}"
    assert main([*TRAIN_ARGS, "--json", "--tracking-uri", uri, "--experiment", "single"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    client = tracking.client(uri)
    experiment = client.get_experiment_by_name("single")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.run_id == printed["run_id"] and run.info.status == "FINISHED"
    assert run.data.params == {k: str(v) for k, v in to_flat(parse_config(TINY)).items()}
    assert [m.step for m in client.get_metric_history(run.info.run_id, "task_loss")] == [1, 2, 3]
    assert run.data.tags["phase"] == printed["phase"] and run.data.tags["mlflow.source.name"] == "urn-study train"
    assert run.data.metrics["test_accuracy"] == pytest.approx(printed["test_accuracy"])
    assert {"W.npy", "W_heatmap.png", "structure.json", "snapshots"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    check_snapshot_images(client, run.info.run_id, [2, 3])


def test_train_with_a_refused_store_is_one_line_before_training(results, tmp_path, capsys):
    from urn_study.cli import main

    assert main([*TRAIN_ARGS, "--tracking-uri", f"file://{tmp_path}/store"]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "--tracking-uri" in err and "epoch" not in out
    assert list(tmp_path.iterdir()) == []


# --- MLflow in one module --------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
MLFLOW_HOME = "urn_study/tracking/"  # the record edge: the one project package that imports mlflow
# Exempt: benchmarks/ time MLflow's own calls (mlflow.search_runs) beside the project's, and tests/ check what
# MLflow holds with its own client and start its server: there MLflow is the reference, not the project's way in.
MLFLOW_EXEMPT = ("benchmarks", "tests")
NOT_PROJECT = {"__pycache__", "urn_results", "site-packages", "node_modules", "build", "dist"}  # never descended


def mlflow_imports(source: str) -> list[int]:
    """Lines of ``source`` (Python) importing mlflow or a module of it, at any depth (imports inside functions too)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        if any(name == "mlflow" or name.startswith("mlflow.") for name in names):
            lines.append(node.lineno)
    return lines


def project_sources(root: Path):
    """(path relative to ``root``, Python source) of every .py file and every notebook's code cell outside the
    exempt folders, hidden folders and build or results folders. Read, not imported."""
    for folder, subfolders, files in os.walk(root):
        here = Path(folder).relative_to(root)
        subfolders[:] = [
            d
            for d in subfolders
            if not d.startswith(".")
            and d not in NOT_PROJECT
            and not (here == Path(".") and d in MLFLOW_EXEMPT)
            and not d.endswith(".egg-info")
        ]
        for name in files:
            path = here / name
            if name.endswith(".py"):
                yield path.as_posix(), (root / path).read_text()
            elif name.endswith(".ipynb"):
                for cell in json.loads((root / path).read_text())["cells"]:
                    if cell["cell_type"] == "code":
                        code = "".join(cell["source"]).splitlines()
                        yield path.as_posix(), "\n".join(line for line in code if not line.lstrip().startswith(("%", "!")))


def test_mlflow_is_imported_by_the_record_edge_alone():
    """No file of the project outside urn_study/tracking/ imports mlflow: reading records goes through it too."""
    found = {
        f"{path}:{line}"
        for path, source in project_sources(ROOT)
        if not path.startswith(MLFLOW_HOME)
        for line in mlflow_imports(source)
    }
    assert not found, f"mlflow imported outside {MLFLOW_HOME}: {sorted(found)}"
    assert mlflow_imports((ROOT / MLFLOW_HOME / "store.py").read_text())  # the check sees tracking's own (lazy) imports
    assert {"analysis/runs.py", "urn_study/cli.py"} <= {path for path, _ in project_sources(ROOT)}  # it looked


def test_the_servers_we_start_leave_out_mlflows_job_runner_unless_the_environment_asks_for_it():
    assert tracking.server_env({"PATH": "/bin"}) == {"PATH": "/bin", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    assert tracking.server_env({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"})["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "true"
