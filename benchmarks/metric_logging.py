"""Per-epoch metrics: the project's ``tracking.MetricSender`` against MLflow's own asynchronous logging.

    .venv/bin/python benchmarks/metric_logging.py            # 60 epochs of 20 metrics, a SQLite store and a server
    .venv/bin/python benchmarks/metric_logging.py --smoke    # 12 epochs, SQLite store and the outage: ~40 s

One loop stands for a trial's training: every ``--epoch-s`` seconds it hands one epoch's metrics (``--metrics``
numbers, step = epoch) to each way of logging, in turn and in a rotating order, each to its own run:

- ``sync``: ``log_batch(synchronous=True)`` in the loop (what a trial did before MetricSender);
- ``MetricSender 5 s``: ``tracking.MetricSender`` as ``TrialRecord`` uses it (a batch every 5 s from its thread);
- ``MetricSender 0 s``: the same with ``URN_METRICS_EVERY_S=0`` (a batch as soon as one is queued);
- ``mlflow async``: ``MlflowClient.log_batch(synchronous=False)`` (MLflow's async queue and thread pool).

Printed per way: the loop's median and longest hand-over (ms per epoch); the seconds from the last epoch's
hand-over until every point is readable from the store (polled, nothing flushed); then, on an ``mlflow
server`` that is stopped after a third of the epochs and started again (the loop going on meanwhile), the
longest hand-over and how many points are in the store once the server is back and each way has been flushed
(MetricSender ``close``, the async operations waited on). MLflow retries each HTTP call with backoff before
it gives up (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, 7: about four minutes); the outage here outlasts the
retries that ``--retries`` leaves (default 1), which is what a server down for longer than four minutes does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

from urn_study.model import pick_device  # noqa: E402
from urn_study.tracking import stop_group  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import free_port  # noqa: E402 - the tests' helpers for a loopback server

WAYS = ("sync", "MetricSender 5 s", "MetricSender 0 s", "mlflow async")


class Way:
    """One way of logging a run's epochs: ``hand_over`` is what the training loop calls, ``drain`` sends the rest."""

    def __init__(self, name: str, uri: str, experiment_id: str):
        from urn_study import tracking

        self.name, self.client = name, tracking.client(uri)
        self.run_id = self.client.create_run(experiment_id, run_name=name).info.run_id
        self.times: list[float] = []
        self.errors = 0
        self.operations: list = []
        self.sender = None
        if name.startswith("MetricSender"):
            every = 5.0 if "5 s" in name else 0.0
            self.sender = tracking.MetricSender(
                lambda items: self.client.log_batch(self.run_id, metrics=items, synchronous=True), every_s=every
            )

    def hand_over(self, items: list) -> None:
        start = time.perf_counter()
        try:
            if self.sender is not None:
                self.sender.add(items)
            elif self.name == "sync":
                self.client.log_batch(self.run_id, metrics=items, synchronous=True)
            else:
                self.operations.append(self.client.log_batch(self.run_id, metrics=items, synchronous=False))
        except Exception:  # noqa: BLE001 - the store refused: the loop would have failed the trial
            self.errors += 1
        self.times.append(time.perf_counter() - start)

    def drain(self) -> None:
        """Send what is left; a batch the store refused for good counts as an error."""
        if self.sender is not None:
            try:
                self.sender.close()
            except Exception:  # noqa: BLE001 - still queued: shows as points missing from the store
                self.errors += 1
        for operation in self.operations:
            try:
                operation.wait()
            except Exception:  # noqa: BLE001 - MLflow dropped this batch (and logged an error)
                self.errors += 1

    def points(self, key: str = "m00") -> int:
        return len(self.client.get_metric_history(self.run_id, key))


def epoch_items(epoch: int, n_metrics: int) -> list:
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    return [Metric(f"m{k:02d}", 1.0 / (epoch + k + 1), stamp, epoch) for k in range(n_metrics)]


def train_loop(ways: list[Way], epochs: int, n_metrics: int, epoch_s: float, at_epoch=None) -> float:
    """Hands each epoch to every way (the order rotating); ``at_epoch(epoch)`` runs first. The last hand-over's time."""
    last = time.perf_counter()
    for epoch in range(1, epochs + 1):
        if at_epoch is not None:
            at_epoch(epoch)
        time.sleep(epoch_s)  # the epoch's training
        turn = epoch % len(ways)
        for way in ways[turn:] + ways[:turn]:
            way.hand_over(epoch_items(epoch, n_metrics))
        last = time.perf_counter()
    return last


def seconds_until_stored(ways: list[Way], epochs: int, since: float, timeout: float = 60.0) -> dict[str, float]:
    waiting, found = list(ways), {}
    while waiting and time.perf_counter() - since < timeout:
        for way in list(waiting):
            if way.points() >= epochs:
                found[way.name] = time.perf_counter() - since
                waiting.remove(way)
        time.sleep(0.02)
    return {**found, **{way.name: float("nan") for way in waiting}}


def start_server(folder: Path, port: int) -> subprocess.Popen:
    """``mlflow server`` on 127.0.0.1:port (the tests' fixture's command), answering when this returns."""
    from conftest import MLFLOW, wait_http

    from urn_study.tracking import server_env

    with open(folder / "server.log", "ab") as log:  # the server keeps its own copy of the descriptor
        process = subprocess.Popen(
            [
                str(MLFLOW),
                "server",
                "--backend-store-uri",
                f"sqlite:///{folder / 'server.db'}",
                "--artifacts-destination",
                str(folder / "served"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_env(),
            start_new_session=True,
        )
    wait_http(f"http://127.0.0.1:{port}/health", process=process)
    return process


def live(uri: str, epochs: int, n_metrics: int, epoch_s: float) -> None:
    from urn_study import tracking

    experiment_id = tracking.client(uri).create_experiment(f"live-{time.time_ns()}")
    ways = [Way(name, uri, experiment_id) for name in WAYS]
    last = train_loop(ways, epochs, n_metrics, epoch_s)
    stored = seconds_until_stored(ways, epochs, last)
    for way in ways:
        way.drain()
        print(
            f"  {way.name:<18}{statistics.median(way.times) * 1000:>10.2f}{max(way.times) * 1000:>10.1f}{stored[way.name]:>10.2f}"
        )


def outage(folder: Path, epochs: int, n_metrics: int, epoch_s: float) -> None:
    import logging

    from urn_study import tracking

    logging.getLogger("mlflow.utils.async_logging").setLevel(logging.CRITICAL)  # one line per dropped batch: counted
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = [start_server(folder, port)]
    experiment_id = tracking.client(uri).create_experiment(f"outage-{time.time_ns()}")
    ways = [Way(name, uri, experiment_id) for name in WAYS]
    down: dict[str, float] = {}

    def restart():
        server[0] = start_server(folder, port)
        down["back"] = time.perf_counter()

    restarting = threading.Thread(target=restart)

    def at_epoch(epoch: int) -> None:
        if epoch == epochs // 3:
            stop_group(server[0])
            down["stopped"] = time.perf_counter()
            restarting.start()

    train_loop(ways, epochs, n_metrics, epoch_s, at_epoch)
    restarting.join()
    try:
        print(
            f"  server down {down['back'] - down['stopped']:.1f} s from epoch {epochs // 3} "
            f"(the loop ran on: {epochs} epochs of {epoch_s:g} s)"
        )
        for way in ways:
            way.drain()
            print(f"  {way.name:<18}{max(way.times) * 1000:>10.1f}{way.errors:>8}{way.points():>8} of {epochs}")
    finally:
        stop_group(server[0])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--metrics", type=int, default=20, help="numbers a trial reports per epoch")
    parser.add_argument("--epoch-s", type=float, default=0.25, help="seconds of training per epoch")
    parser.add_argument("--retries", type=int, default=1, help="MLFLOW_HTTP_REQUEST_MAX_RETRIES in the outage")
    parser.add_argument("--smoke", action="store_true", help="12 epochs of 0.1 s; no live run on a server")
    args = parser.parse_args(argv)
    if args.smoke:
        args.epochs, args.epoch_s = 12, 0.1
    stores = (("SQLite store", False),) if args.smoke else (("SQLite store", False), ("MLflow server", True))

    import mlflow  # noqa: F401 - imported before the timings

    print("metric_logging |", describe(pick_device("auto")))
    with tempfile.TemporaryDirectory(prefix="urn-metric-logging-") as scratch:
        folder = Path(scratch)
        header = f"  {'way':<18}{'ms/epoch':>10}{'longest':>10}{'stored s':>10}"
        for label, served in stores:
            server, uri = None, f"sqlite:///{folder / 'mlflow.db'}"
            if served:
                port = free_port()
                server, uri = start_server(folder, port), f"http://127.0.0.1:{port}"
            try:
                print(
                    f"{label}: {args.epochs} epochs of {args.metrics} metrics, one every {args.epoch_s:g} s; "
                    f"load average {os.getloadavg()[0]:.1f}"
                )
                print(header)
                live(uri, args.epochs, args.metrics, args.epoch_s)
            finally:
                if server is not None:
                    stop_group(server)
        previous = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR")}
        os.environ.update({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(args.retries), "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"})
        try:
            print(f"server down: MLFLOW_HTTP_REQUEST_MAX_RETRIES={args.retries}; load average {os.getloadavg()[0]:.1f}")
            print(f"  {'way':<18}{'longest':>10}{'errors':>8}{'stored':>8}")
            outage(folder, args.epochs, args.metrics, args.epoch_s)
        finally:
            for key, value in previous.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        print(f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
