"""The record's tags and codes, and the run calls every writer shares: search by tags (all pages), params and
tags in MLflow's batches."""

from __future__ import annotations

import json
import time
from typing import Any

ROLE_TAG, STUDY_TAG, SWEEP_TAG, TRIAL_TAG = "urn.role", "urn.study", "urn.sweep", "urn.trial_id"
ATTEMPTS_TAG = "urn.attempts"
ERROR_TAG = "urn.error"  # a failed run: the line of the error it failed with, where one is known
PARENT_TAG = "mlflow.parentRunId"
PHASE_CODES = {"dead": 0, "recurrent": 1, "shallow": 2, "residual": 3, "locally_connected": 4, "fully_connected": 5, "diverged": 6}
# the final figures that are words or lists: tags (phase and depth as the functional reading; w_: the |W| pattern)
FINAL_TAGS = (
    "phase",
    "depth",
    "widths",
    "block_widths",
    "carrying_depths",
    "depth_shares",
    "w_phase",
    "w_widths",
    "w_hop_spectrum",
    "null_phase",
)
BATCH = 100  # MLflow takes at most 100 params / tags per batch (and 1000 metrics)
METRIC_BATCH = 1000


def _now() -> int:
    return int(time.time() * 1000)


def _find_runs(mlflow_client, experiment_id: str, tags: dict[str, str]) -> list:
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    return _all_pages(mlflow_client, experiment_id, filter_string=query, max_results=1000, order_by=["attributes.start_time ASC"])


def _all_pages(mlflow_client, experiment_id: str, **search: Any) -> list:
    """Every run a search of one experiment finds, page after page (``search``: MlflowClient.search_runs' own)."""
    runs, token = [], None
    while True:
        page = mlflow_client.search_runs([experiment_id], page_token=token, **search)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _log_params(mlflow_client, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, _param_text(v)) for k, v in params.items()]
    for start in range(0, len(items), BATCH):
        mlflow_client.log_batch(run_id, params=items[start : start + BATCH], synchronous=True)


def _param_text(value: Any) -> str:
    """Schedules as JSON (readable back as YAML); everything else as ``str``."""
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def _set_tags(mlflow_client, run_id: str, tags: dict[str, Any]) -> None:
    from mlflow.entities import RunTag

    items = [RunTag(k, v if isinstance(v, str) else json.dumps(v)) for k, v in tags.items()]
    for start in range(0, len(items), BATCH):
        mlflow_client.log_batch(run_id, tags=items[start : start + BATCH], synchronous=True)
