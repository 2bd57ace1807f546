"""A trial's child run (``TrialRecord``) and the thread that sends its per-epoch metrics (``MetricSender``)."""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from urn_study.artifacts import json_default, snapshot_images, write_artifacts
from urn_study.config import TrialConfig, to_flat
from urn_study.tracking.experiments import SOURCE_PREFIX
from urn_study.tracking.runs import (
    ATTEMPTS_TAG,
    ERROR_TAG,
    FINAL_TAGS,
    METRIC_BATCH,
    PARENT_TAG,
    PHASE_CODES,
    ROLE_TAG,
    STUDY_TAG,
    SWEEP_TAG,
    TRIAL_TAG,
    _find_runs,
    _log_params,
    _now,
    _set_tags,
)
from urn_study.tracking.store import _flush_every, client

_log = logging.getLogger(__name__)

IMAGE_KEY = "W"  # the snapshots' heatmaps in the UI's image view, one step per snapshot epoch
LOGGED_IMAGES_TAG = "mlflow.loggedImages"  # what log_image sets: the UI looks for images/ in such a run
EARLIER_ERROR_TAG = "urn.earlier_error"  # a retried run: the error its last failed attempt ended with
THUMBNAIL = 256  # the longer side of each image's compressed copy (mlflow.tracking.multimedia's size)


# --- one trial (child run) -----------------------------------------------------------------------


class TrialRecord:
    """A trial's child run. ``open`` finds the run of (sweep, trial) again, so a retried or resumed trial
    continues its own run instead of adding one; epochs already logged are not logged twice."""

    def __init__(self, uri: str, run_id: str, trial_id: str, last_step: int, finished: bool, summary: dict):
        self.uri, self.run_id, self.trial_id = uri, run_id, trial_id
        self.last_step = last_step  # epochs <= this are already in the run
        self.finished = finished  # the run ended FINISHED before: nothing to do
        self.failed = False  # this attempt ended the run FAILED (``fail``): nothing more to end
        self.summary = summary  # finished runs: final metrics and tags, for the sweep's table
        self._client = client(uri)
        self._sender = MetricSender(lambda items: self._client.log_batch(self.run_id, metrics=items, synchronous=True))

    @classmethod
    def open(
        cls,
        uri: str,
        experiment_id: str,
        parent_run_id: str,
        study_name: str,
        sweep_id: str,
        trial_id: str,
        config: TrialConfig,
        tags: dict[str, Any] | None = None,
    ) -> "TrialRecord":
        mlflow_client = client(uri)
        found = _find_runs(mlflow_client, experiment_id, {ROLE_TAG: "trial", SWEEP_TAG: sweep_id, TRIAL_TAG: trial_id})
        done = [r for r in found if r.info.status == "FINISHED"]
        if done:
            run = done[0]
            summary = {**run.data.metrics, **{k: run.data.tags.get(k) for k in FINAL_TAGS}}
            return cls(uri, run.info.run_id, trial_id, -1, True, summary)
        if found:
            run = found[0]
            run_id = run.info.run_id
            mlflow_client.update_run(run_id, status="RUNNING")
            attempts = int(run.data.tags.get(ATTEMPTS_TAG, "1")) + 1
            if ERROR_TAG in run.data.tags:  # an earlier attempt's: this one may finish, the error is kept apart
                tags = {EARLIER_ERROR_TAG: f"attempt {attempts - 1}: {run.data.tags[ERROR_TAG]}"[:5000], **(tags or {})}
                mlflow_client.delete_tag(run_id, ERROR_TAG)
            history = mlflow_client.get_metric_history(run_id, "task_loss")
            last_step = max((m.step for m in history), default=0)
        else:
            source = {k: v for k, v in mlflow_client.get_run(parent_run_id).data.tags.items() if k.startswith(SOURCE_PREFIX)}
            run = mlflow_client.create_run(
                experiment_id,
                run_name=trial_id,
                tags={
                    PARENT_TAG: parent_run_id,
                    ROLE_TAG: "trial",
                    STUDY_TAG: study_name,
                    SWEEP_TAG: sweep_id,
                    TRIAL_TAG: trial_id,
                    **source,
                },
            )
            run_id, attempts, last_step = run.info.run_id, 1, 0
            _log_params(mlflow_client, run_id, to_flat(config))
        _set_tags(mlflow_client, run_id, {ATTEMPTS_TAG: str(attempts), **(tags or {})})
        return cls(uri, run_id, trial_id, last_step, False, {})

    @classmethod
    def open_single(
        cls, uri: str, experiment_id: str, experiment_name: str, config: TrialConfig, tags: dict[str, str]
    ) -> "TrialRecord":
        """A new run for one trial outside a sweep (``urn-study train``): no parent, named ``train-<time>``."""
        mlflow_client = client(uri)
        name = f"train-{time.strftime('%Y%m%d-%H%M%S')}"
        run = mlflow_client.create_run(
            experiment_id,
            run_name=name,
            tags={ROLE_TAG: "trial", STUDY_TAG: experiment_name, TRIAL_TAG: name, ATTEMPTS_TAG: "1", **tags},
        )
        _log_params(mlflow_client, run.info.run_id, to_flat(config))
        return cls(uri, run.info.run_id, name, 0, False, {})

    def set_tags(self, tags: dict[str, Any]) -> None:
        _set_tags(self._client, self.run_id, tags)

    def log_epoch(self, epoch: int, metrics: dict[str, Any]) -> None:
        """One epoch's report (step = epoch; the phase as ``phase_index``), queued: it reaches the store
        from the sender's thread within ``FLUSH_EVERY_S``, or at ``flush``/``finish``."""
        if epoch <= self.last_step:
            return
        self._sender.add(_metric_items(epoch, metrics))
        self.last_step = epoch

    def flush(self) -> None:
        """Send every queued metric now; raises TrackingError if the store stays away (they stay queued)."""
        self._sender.flush()

    def finish(self, result) -> dict:
        """Log the final figures, tags and artifacts of a TrialResult and end the run FINISHED."""
        last = result.history[-1] if result.history else {}
        final_step = int(result.metrics.get("epochs", last.get("epoch", 0)))
        extra = {k: v for k, v in result.metrics.items() if k not in last and _is_number(v)}
        if "phase" not in last:  # a diverged trial's last report has no phase: log its phase_index here
            extra["phase"] = result.metrics.get("phase")
        if extra:
            self._sender.add(_metric_items(final_step, extra))
        self._sender.close()  # everything queued is in the store, or TrackingError
        tags = {k: _tag_text(result.metrics.get(k, result.structure.get(k))) for k in FINAL_TAGS}
        tags.update(ground_truth_tags(result.data_info))
        _set_tags(self._client, self.run_id, {**tags, **({LOGGED_IMAGES_TAG: "True"} if result.snapshots else {})})
        with tempfile.TemporaryDirectory(prefix="urn-artifacts-") as folder:
            write_artifacts(result, Path(folder), title=self.trial_id)
            write_images(snapshot_images(result), Path(folder), IMAGE_KEY)
            self._client.log_artifacts(self.run_id, folder)
        self._client.set_terminated(self.run_id, "FINISHED")
        self.finished = True
        self.summary = {**{k: v for k, v in result.metrics.items() if _is_number(v)}, **tags}
        return self.summary

    def fail(self, error: str | None = None) -> None:
        """End the run FAILED, with what the trial reported before it failed and ``error`` (one line: why) as
        its ``urn.error`` tag where given."""
        try:
            self._sender.close()  # keep what the trial reported before it failed
            if error:
                _set_tags(self._client, self.run_id, {ERROR_TAG: error[:5000]})
        finally:
            self._client.set_terminated(self.run_id, "FAILED")
            self.failed = True


def write_images(images: list[tuple[int, Any]], folder: Path, key: str) -> None:
    """Each (step, PIL image) as the files ``MlflowClient.log_image(run, image, key=key, step=step)`` would
    store, under ``folder/images``, so that they go up with the run's other artifacts in one call: the image
    (PNG) and its copy scaled to fit ``THUMBNAIL`` pixels (WebP), named ``KEY+step+STEP+timestamp+MS+UUID``
    (``+compressed`` for the copy): what the UI's image view reads (with the ``LOGGED_IMAGES_TAG`` on the run).
    ``log_image`` stores each with its own calls and encodes it at zlib's default level: 26 ms an image at
    S = 138 here, ~10 ms this way (benchmarks/README.md, study_throughput)."""
    if images:
        (folder / "images").mkdir(parents=True, exist_ok=True)
    for step, image in images:
        name = f"images/{key.replace('/', '~')}+step+{int(step)}+timestamp+{_now()}+{uuid.uuid4()}"
        image.save(folder / f"{name}.png", compress_level=1)
        small = image.resize(_thumbnail_size(*image.size))
        small.save(folder / f"{name}+compressed.webp", method=0)


def _thumbnail_size(width: int, height: int) -> tuple[int, int]:
    """The compressed copy's size, as mlflow.tracking.multimedia.compress_image_size computes it."""
    if width > height:
        return THUMBNAIL, int(height * (THUMBNAIL / width))
    return int(width * (THUMBNAIL / height)), THUMBNAIL


def ground_truth_tags(data_info: dict) -> dict[str, str]:
    """The planted teacher's depth, widths and receptive field (``teacher_*``), for runs on teacher data."""
    if not {"depth", "widths", "receptive_field"} <= set(data_info or {}):
        return {}
    return {f"teacher_{k}": _tag_text(data_info[k]) for k in ("depth", "widths", "receptive_field")}


def _metric_items(step: int, metrics: dict[str, Any]) -> list:
    from mlflow.entities import Metric

    stamp = _now()
    items = [Metric(k, float(v), stamp, step) for k, v in metrics.items() if _is_number(v)]
    if isinstance(metrics.get("phase"), str):
        items.append(Metric("phase_index", float(PHASE_CODES.get(metrics["phase"], -1)), stamp, step))
    return items


class MetricSender:
    """Metrics queued by the training loop, sent in order in batches from a background thread.

    The training loop never waits on the store: a batch leaves ``every_s`` seconds after the first metric
    queued since the last batch (one ``log_batch`` per 1000 metrics instead of one per epoch). While the
    store does not answer, the metrics stay queued and are tried again at the next turn (MLflow itself
    retries each call with backoff first); ``flush`` and ``close`` send from the caller's thread and raise
    that error, the metrics still queued."""

    def __init__(self, send, every_s: float | None = None):
        self._send, self.every_s = send, _flush_every() if every_s is None else every_s
        self._queue: list = []
        self._queue_lock = threading.Lock()  # guards the queue
        self._send_lock = threading.Lock()  # one sender at a time: batches leave in order
        self._queued = threading.Event()  # something waits to be sent
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failing = False  # the last send from the thread failed (said once, in a warning)

    @property
    def queued(self) -> int:
        with self._queue_lock:
            return len(self._queue)

    def add(self, items: list) -> None:
        with self._queue_lock:
            self._queue.extend(items)
        self._queued.set()
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(target=self._run, name="urn-metrics", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._queued.wait()
            if self._stop.wait(self.every_s):  # let a batch gather; close() sends the rest
                return
            self._queued.clear()
            try:
                self.flush()
            except Exception as err:  # noqa: BLE001 - still queued; the trial's own flush or close raises it
                if not self.failing:  # one line when the store goes away, one when it is back: not one per try
                    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
                    _log.warning("metrics wait for the tracking store, training goes on (%d queued): %s", self.queued, first)
                self.failing = True
                self._queued.set()
                self._stop.wait(max(self.every_s, 1.0))
            else:
                if self.failing:
                    _log.warning("metrics reach the tracking store again")
                self.failing = False

    def flush(self) -> None:
        with self._send_lock:
            with self._queue_lock:
                items, self._queue = self._queue, []
            sent = 0
            try:
                while sent < len(items):
                    self._send(items[sent : sent + METRIC_BATCH])
                    sent += METRIC_BATCH
            finally:
                if sent < len(items):  # back in front of anything queued meanwhile
                    with self._queue_lock:
                        self._queue[:0] = items[sent:]

    def close(self) -> None:
        """Stop the thread and send what is left (raises if that fails)."""
        self._stop.set()
        self._queued.set()  # wakes the thread, which then ends
        self.flush()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _tag_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple, np.ndarray, dict)):
        return json.dumps(value, default=json_default)
    return str(value)
