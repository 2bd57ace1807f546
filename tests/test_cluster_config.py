"""cluster.yaml is a real Ray cluster-launcher config: checked offline by Ray's own schema and defaults."""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path

import pytest
import yaml

from urn_study.tracking.ui import JOB_EXECUTION_ENV

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def validated(config: dict) -> dict:
    """What ``ray up`` does before touching a cloud: fill the provider's defaults, then the schema check."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_passes_rays_schema_check(cluster):
    prepared = validated(cluster)
    assert prepared["head_node_type"] in prepared["available_node_types"]


@pytest.mark.parametrize("breakage", ["unknown_field", "head_not_a_type", "bad_type"])
def test_the_check_catches_mistakes(cluster, breakage):
    import jsonschema

    broken = copy.deepcopy(cluster)
    if breakage == "unknown_field":
        broken["available_node_types"]["gpu_worker"]["gpus"] = 1
    elif breakage == "head_not_a_type":
        broken["head_node_type"] = "nowhere"
    else:
        broken["max_workers"] = "many"
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        validated(broken)


def test_has_a_head_and_a_gpu_worker_type(cluster):
    types = cluster["available_node_types"]
    workers = [name for name in types if name != cluster["head_node_type"]]
    assert workers
    gpu_types = [name for name in workers if types[name]["node_config"]["InstanceType"].startswith(("g", "p"))]
    assert gpu_types, "no GPU instance type among the workers"
    assert types[gpu_types[0]].get("max_workers", 0) >= 1


# What AWS says of the two instance types (its published figures). ``ray up`` asks AWS, then gives each node type
# these detected resources with the node type's own ``resources`` over them (AWSNodeProvider.
# fillout_available_node_types_resources, which needs boto3: done here the same way, offline).
INSTANCE_RESOURCES = {"m5.2xlarge": {"CPU": 8}, "g5.xlarge": {"CPU": 4, "GPU": 1, "accelerator_type:A10G": 1}}


def test_trials_land_on_the_gpu_workers_never_on_the_head(cluster):
    """Ray's autoscaler packs a trial that asks for a quarter GPU (``--gpus-per-trial 0.25``) or for CPU alone onto
    GPU workers, four GPU trials a worker, and never onto the head."""
    from ray.autoscaler._private.node_provider_availability_tracker import NodeAvailabilitySummary
    from ray.autoscaler._private.resource_demand_scheduler import (
        _default_utilization_scorer,
        get_bin_pack_residual,
        get_nodes_for,
    )

    config = validated(cluster)
    types, head = config["available_node_types"], config["head_node_type"]
    for node_type in types.values():
        node_type["resources"] = {**INSTANCE_RESOURCES[node_type["node_config"]["InstanceType"]], **node_type["resources"]}
    gpu_trial, cpu_trial = {"CPU": 1.0, "GPU": 0.25}, {"CPU": 1.0}
    for trial in (gpu_trial, cpu_trial):
        left, _ = get_bin_pack_residual([dict(types[head]["resources"])], [trial])
        assert left == [trial], f"the head ({types[head]['resources']}) would take a trial {trial}"
    for trials, workers in (([gpu_trial] * 8, 2), ([gpu_trial] * 5, 2), ([cpu_trial] * 4, 1)):
        to_add, left = get_nodes_for(
            types,
            {head: 1},
            head,
            config["max_workers"],
            trials,
            functools.partial(_default_utilization_scorer, node_availability_summary=NodeAvailabilitySummary({})),
        )
        assert (dict(to_add), left) == ({"gpu_worker": workers}, []), (trials, to_add)


def test_setup_installs_this_project_under_the_versions_its_tests_ran_with(cluster):
    """The nodes install the mounted checkout under a constraints file the checkout holds, and that file pins torch
    (a range there would take whatever torch is newest, not the one CI ran)."""
    mounted = {remote: ROOT / local for remote, local in cluster["file_mounts"].items()}
    install = next(c for c in cluster["setup_commands"] if " -e " in c).split()
    project = install[install.index("-e") + 1]
    assert mounted.get(project) == ROOT / ".", (project, mounted)
    constraints = install[install.index("-c") + 1]
    assert constraints.startswith(project + "/"), constraints
    pins = (ROOT / constraints[len(project) + 1 :]).read_text().splitlines()
    assert any(re.fullmatch(r"torch==[\d.]+", line) for line in pins), pins


def test_mlflow_server_on_the_head_listens_on_loopback_with_sqlite(cluster):
    head = " ".join(cluster["head_start_ray_commands"])
    server = next(c for c in cluster["head_start_ray_commands"] if "mlflow server" in c)
    assert "--host 127.0.0.1" in server and "--backend-store-uri sqlite:///" in server
    assert "--dashboard-host=127.0.0.1" in head
    # workers reach it on their own loopback, through SSH to the head's
    tunnel = " ".join(cluster["worker_start_ray_commands"])
    assert "-L 127.0.0.1:5000:127.0.0.1:5000" in tunnel and "$RAY_HEAD_IP" in tunnel
    assert "5000" in server


def test_nothing_reports_usage_to_its_makers(cluster):
    """Ray's usage statistics and MLflow's telemetry are off on every node (urn_study.tracking turns MLflow's
    off in the trials' own processes)."""
    starts = [c for key in ("head_start_ray_commands", "worker_start_ray_commands") for c in cluster[key] if "ray start" in c]
    assert len(starts) == 2 and all("--disable-usage-stats" in c for c in starts)
    server = next(c for c in cluster["head_start_ray_commands"] if "mlflow server" in c)
    assert "MLFLOW_DISABLE_TELEMETRY=true" in server and " nohup " in server


def test_the_heads_mlflow_server_runs_without_mlflows_job_runner(cluster):
    """As the servers urn_study starts (tracking.server_env): no job runner beside it."""
    server = next(c for c in cluster["head_start_ray_commands"] if "mlflow server" in c)
    env = server[: server.index(" nohup ")].rsplit("&&", 1)[-1].split()
    assert f"{JOB_EXECUTION_ENV}=false" in env
