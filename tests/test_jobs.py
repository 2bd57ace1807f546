"""The README's Ray Jobs recipe, for real: a head started by ``ray start --head`` (with its dashboard, which Ray Jobs
goes through), a smoke sweep submitted with ``ray job submit --working-dir .``; the job succeeds and its records land
where URN_RESULTS_DIR says, not in the job's uploaded copy of the repository."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest

from urn_study import tracking
from urn_study.study import load_study

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
JOB_TIMEOUT_S = 900  # the job's whole life, with room for a loaded 2-core machine


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory, net, wait):
    """A Ray head of its own (``ray start --head --block``, every port free on loopback, its own temp dir and token):
    its environment, dashboard address, temp dir and log; stopped afterwards, and with it only what it started.
    One for the module's tests (a head's start is most of their time)."""
    tmp_path = tmp_path_factory.mktemp("ray-head")
    temp = Path(tempfile.mkdtemp(prefix="urn-ray-", dir="/tmp"))  # Ray's socket paths must stay short
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "URN_RESULTS_DIR", "MLFLOW_TRACKING_URI")}
    # its own token: two Ray instances on one machine each need token auth, and no test writes ~/.ray/auth_token
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16), PATH=f"{BIN}{os.pathsep}{env['PATH']}")
    # the raylet's wait for its agents (Python processes, slow to start on a loaded machine), longer
    env["RAY_agent_register_timeout_ms"] = "120000"
    dashboard = net.free_port()
    ports = {
        flag: net.free_port()
        for flag in (
            "port",
            "node-manager-port",
            "object-manager-port",
            "ray-client-server-port",
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
            "runtime-env-agent-port",
            "metrics-export-port",
        )
    }
    log = open(tmp_path / "head.log", "wb")
    head = subprocess.Popen(
        [
            str(BIN / "ray"),
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=2",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            f"--temp-dir={temp}",
            "--disable-usage-stats",
            *(f"--{flag}={port}" for flag, port in ports.items()),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        api = f"http://127.0.0.1:{dashboard}"
        wait(
            lambda: _jobs_api_up(api, env["RAY_AUTH_TOKEN"], ports["dashboard-agent-listen-port"], head, tmp_path / "head.log"),
            f"the job API at {api}",
            timeout=300,
            retry_on=(OSError,),
            interval=0.5,
        )
        yield env, api, temp, tmp_path / "head.log", f"127.0.0.1:{ports['port']}"
    finally:
        _stop_head(head, temp)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _jobs_api_up(dashboard: str, token: str, agent_port: int, head: subprocess.Popen, log: Path) -> bool:
    """``ray start`` says the node is up, the dashboard's job API answers and the head's agent, which runs the jobs,
    listens (the dashboard gives the agent 10 s, too short on a loaded machine). Raises, with the head's last
    lines, once the head has exited."""
    if head.poll() is not None:
        said = log.read_text(errors="replace")[-1500:]
        raise RuntimeError(f"ray start --head exited with {head.returncode} before its job API answered:\n{said}")
    if b"Ray runtime started" not in log.read_bytes():
        return False
    socket.create_connection(("127.0.0.1", agent_port), timeout=5).close()
    request = urllib.request.Request(f"{dashboard}/api/jobs/", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status == 200


def _stop_head(head: subprocess.Popen, temp: Path) -> None:
    """SIGTERM to ``ray start --block`` drains the node and stops what it started; whatever is left of its process
    group, and any process named after its temp dir (a job's driver, a worker), is killed."""
    head.send_signal(signal.SIGTERM)
    try:
        head.wait(timeout=90)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(head.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    head.wait()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if str(temp).encode() in (proc / "cmdline").read_bytes():
                os.kill(int(proc.name), signal.SIGKILL)
        except OSError:  # gone already, or not ours to read
            continue


@pytest.mark.slow
def test_a_sweep_submitted_as_a_ray_job_records_every_trial_where_urn_results_dir_says(ray_head, tmp_path):
    env, dashboard, temp, head_log, _ = ray_head
    records = tmp_path / "urn_results"  # absolute: the job runs in an uploaded copy under Ray's temp dir
    runtime_env = {"env_vars": {"URN_RESULTS_DIR": str(records)}, "excludes": [".git"]}
    submit = [
        str(BIN / "ray"),
        "job",
        "submit",
        "--address",
        dashboard,
        "--submission-id",
        "urn-jobs-test",
        "--working-dir",
        ".",
        "--runtime-env-json",
        json.dumps(runtime_env),
        "--",
        "urn-study",
        "sweep",
        "search_spaces/quickstart.yaml",
        "--smoke",
        "--address",
        "auto",
    ]
    # `ray job submit` waits for the job to end and says how it ended
    try:
        done = subprocess.run(submit, cwd=ROOT, env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    except subprocess.TimeoutExpired as err:  # its output comes as bytes then
        said = (err.stdout or b"").decode(errors="replace")[-3000:]
        raise AssertionError(f"the job did not end within {JOB_TIMEOUT_S} s:\n{said}") from None
    out = done.stdout + done.stderr
    head_said = head_log.read_text(errors="replace")[-1500:]
    assert done.returncode == 0 and "Job 'urn-jobs-test' succeeded" in out, f"{out[-4000:]}\nthe head's log:\n{head_said}"

    study = load_study(ROOT / "search_spaces" / "quickstart.yaml", smoke=True)
    uri = f"sqlite:///{records / 'mlflow.db'}"
    experiment = tracking.client(uri).get_experiment_by_name(study.name)
    assert experiment is not None, out[-4000:]
    runs = tracking.trial_runs(uri, experiment.experiment_id)
    assert sorted(r.data.tags[tracking.TRIAL_TAG] for r in runs) == sorted(t.trial_id for t in study.trials())
    assert all(r.info.status == "FINISHED" for r in runs)
    assert len(list((records / "sweeps").glob(f"{study.name}-*.json"))) == 1
    # the uploaded copy: what git ignores (.venv, urn_results) and .git stayed behind, and nothing was written there
    (copy,) = [p for p in (temp / "session_latest" / "runtime_resources" / "working_dir_files").iterdir() if p.is_dir()]
    assert (copy / "search_spaces" / "quickstart.yaml").is_file()
    assert not {".git", ".venv", "urn_results"} & {p.name for p in copy.iterdir()}


LOCAL_RAY = """
import ray
from urn_study.sweep.driver import start_ray
start_ray(None, 1)
import json
dashboard = ray._private.worker._global_node.webui_url  # no web server beside a local sweep: empty
print(json.dumps([ray.get_runtime_context().gcs_address, ray.cluster_resources().get("CPU"), dashboard]), flush=True)
ray.shutdown()
"""


@pytest.mark.slow
def test_a_local_sweeps_ray_is_its_own_beside_a_head_left_running(ray_head):
    """Ray would join the instance a `ray start` left running (RAY_ADDRESS, or the address it notes in /tmp/ray) and
    then refuse a sweep's CPU count: a sweep without --address starts its own, with the CPUs it was given."""
    env, _, _, _, head_address = ray_head
    done = subprocess.run(
        [sys.executable, "-c", LOCAL_RAY],
        cwd=ROOT,
        env={**env, "RAY_ADDRESS": head_address},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    address, cpus, dashboard = json.loads(done.stdout.splitlines()[-1])
    assert address != head_address and cpus == 1.0, (address, cpus, head_address)
    assert not dashboard, dashboard
