"""The MLflow UI of a local store, run in the foreground (``urn-study ui``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from urn_study.config import ConfigError
from urn_study.tracking.experiments import VIEW_TAG, view_url
from urn_study.tracking.store import check_tracking, client, default_artifact_root, is_local, resolve_tracking_uri

# --- the UI --------------------------------------------------------------------------------------


def ui_command(uri: str, port: int) -> list[str]:
    """``mlflow server`` on loopback only, for a local store (artifacts served from urn_results)."""
    import shutil
    import sys

    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow") or "mlflow"
    return [
        mlflow,
        "server",
        "--backend-store-uri",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--artifacts-destination",
        str(default_artifact_root()),
        "--workers",
        "1",
    ]


# MLflow's server starts a job runner beside it (a runner and 7 huey consumers, each process importing MLflow: about
# 25 s of CPU at every start on this project's 2-core machine), for its GenAI jobs (evaluation, prompt optimisation):
# nothing a study uses. Off in the servers this project starts, unless the environment says otherwise.
JOB_EXECUTION_ENV = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"


def server_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for an ``mlflow server`` this project starts: ``environ`` (default: this process's) with
    MLflow's job runner off unless it sets ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION`` itself."""
    env = dict(os.environ if environ is None else environ)
    env.setdefault(JOB_EXECUTION_ENV, "false")
    return env


def _check_port_free(port: int) -> None:
    """A port something already listens on would have the browser open that instead: say so, before starting."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise ConfigError(
                f"--port {port}: 127.0.0.1:{port} is already in use (another server?); choose another --port"
            ) from None


def serve_ui(uri: str | None, port: int, out: Any = None) -> int:
    """Run the MLflow UI for the local store in the foreground until interrupted (Ctrl-C or SIGTERM)."""
    import signal
    import subprocess
    import sys

    out = out or sys.stdout
    uri = resolve_tracking_uri(uri)
    if not is_local(uri):
        print(f"{uri} is an MLflow server: open it in a browser (through an SSH tunnel if remote)", file=out)
        return 0
    check_tracking(uri)
    _check_port_free(port)
    base = f"http://127.0.0.1:{port}"
    print(f"MLflow UI for {uri} at {base} (loopback only; Ctrl-C stops it)", file=out, flush=True)
    for name, experiment_id in _viewed_experiments(uri):
        print(f"  {name}: {view_url(base, experiment_id)}", file=out, flush=True)
    # its own process group: the server's workers (and a job runner, if the environment asks for one) stop with it
    process = subprocess.Popen(ui_command(uri, port), env=server_env(), start_new_session=True)

    def stop(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return process.wait()
    except KeyboardInterrupt:
        stop_group(process)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def _viewed_experiments(uri: str) -> list[tuple[str, str]]:
    """(name, id) of the experiments carrying the runs table's saved view (the studies'), by name."""
    experiments = client(uri).search_experiments(filter_string=f"tags.`{VIEW_TAG}` != ''", max_results=1000)
    return sorted((e.name, e.experiment_id) for e in experiments)


def stop_group(process, timeout: float = 15.0) -> None:
    """Stop a process started in its own session (``start_new_session``), and everything it started."""
    import signal
    import subprocess

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue
