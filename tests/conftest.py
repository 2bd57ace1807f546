"""Shared fixtures: a results folder per test, a real MLflow server on loopback, a multi-node Ray cluster."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest

from urn_study.tracking import server_env, stop_group

ROOT = Path(__file__).resolve().parents[1]
MLFLOW = Path(sys.executable).parent / "mlflow"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(
    condition: Callable[[], Any],
    what: str,
    *,
    timeout: float = 240.0,
    process: subprocess.Popen | None = None,
    retry_on: tuple[type[BaseException], ...] = (),
    interval: float = 0.1,
) -> Any:
    """Poll ``condition`` until it gives something truthy, and return that. A bound, not a window: at ``timeout``
    it fails naming ``what`` (and the last exception it retried); it fails at once when ``process``, which should
    get there, has ended. An exception of ``condition`` propagates, unless it is one of ``retry_on`` (a store
    being created, a server not listening yet): those are retried and kept for the failure's message."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = condition()
        except retry_on as err:
            value, last = None, err
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(
                f"the process ended (code {process.returncode}) before {what}" + (f"; last error: {last!r}" if last else "")
            ) from last
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f} s waiting for {what}" + (f"; last error: {last!r}" if last else "")
            ) from last
        time.sleep(interval)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status == 200


def wait_http(url: str, timeout: float = 90.0, process: subprocess.Popen | None = None) -> None:
    """Wait until ``url`` answers 200 (failing at once if the process that should serve it has exited)."""
    wait_until(lambda: _http_ok(url), f"{url} to answer", timeout=timeout, process=process, retry_on=(OSError,), interval=0.3)


def start_mlflow_server(folder: Path, port: int, workers: int = 1) -> subprocess.Popen:
    """``mlflow server`` on loopback ``port`` with its SQLite store and proxied artifacts in ``folder`` (its log
    appended to ``folder/server.log``), once it answers; started again on the same folder it serves the same runs."""
    with open(folder / "server.log", "ab") as log:
        process = subprocess.Popen(
            [
                str(MLFLOW),
                "server",
                "--backend-store-uri",
                f"sqlite:///{folder / 'mlflow.db'}",
                "--artifacts-destination",
                str(folder / "mlartifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=folder,
            env=server_env(),  # as the project's own servers run: without MLflow's job runner
            start_new_session=True,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", process=process)
    except BaseException:
        stop_group(process)  # one that never answered is not left behind
        raise
    return process


class Net:
    """Helpers for tests that start servers (conftest cannot be imported under --import-mode=importlib)."""

    start_mlflow_server = staticmethod(start_mlflow_server)

    free_port = staticmethod(free_port)
    wait_http = staticmethod(wait_http)
    stop_group = staticmethod(stop_group)


@pytest.fixture(scope="session")
def net() -> type[Net]:
    return Net


@pytest.fixture(scope="session")
def wait() -> Callable[..., Any]:
    """``wait_until``: the one bounded poller of the tests (conftest cannot be imported under
    --import-mode=importlib)."""
    return wait_until


@pytest.fixture
def results(tmp_path, monkeypatch) -> Path:
    """URN_RESULTS_DIR for this test: sweeps' stores, Ray results and records land in tmp_path."""
    folder = tmp_path / "urn_results"
    monkeypatch.setenv("URN_RESULTS_DIR", str(folder))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return folder


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` (SQLite backend, proxied artifacts) on a free loopback port; its URI."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    process = start_mlflow_server(folder, port, workers=2)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_group(process)


@pytest.fixture
def ray_cluster():
    """A Ray cluster of three nodes on this machine: a head without CPUs (where the driver connects) and two
    workers with 4 (fake) CPUs and one fake GPU each. The test connects through its address."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        nodes = [cluster.add_node(num_cpus=4, num_gpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        yield cluster, nodes
    finally:
        ray.shutdown()
        cluster.shutdown()
