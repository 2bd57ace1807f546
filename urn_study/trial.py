"""One trial (or K trials of the same shape as one batched computation): config in, result out.

Pure: no Ray, no MLflow. Per-epoch metrics leave through ``report(epoch, metrics)``; training state
leaves through ``checkpoint(state)`` and comes back through ``resume``. A trial that diverges (non-finite
weights, or a task loss non-finite or blown up far above chance: ``_blown_up``) ends with phase ``diverged``;
in a batch the other trials go on.

A trial whose own work raises (its reading at a snapshot, its ``report`` or ``checkpoint`` callback, its result)
fails alone: ``run_trials`` takes it out of the batch as it does a diverged one, the others train on exactly as they
would have, and its result carries the error (``TrialResult.error``, the exception itself in ``.exception``) instead
of a reading. Its last report is ``{"task_loss": ..., "failed": 1.0}``, and its ``checkpoint`` keeps being called,
with the state of its last checkpoint before it failed (a retry goes on from there). Errors of a failed trial's
callbacks after that are dropped: its first error is the one kept. ``run_trial`` (one trial) raises that error
instead: a failure is never turned into a result. The batched training step is the whole batch's: an error there,
or a ``PackError`` from a callback (a full disk: no trial can go on), leaves ``run_trials`` and ends every trial.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch

from urn_study.adam import Adam
from urn_study.config import REGULATORS, ConfigError, TrialConfig, change_epochs
from urn_study.data import Dataset, lattice_shape_of, load_dataset, n_classes_of
from urn_study.layout import Layout, make_layout
from urn_study.model import URN, initial_weights, pick_device
from urn_study.reading.measure import Measurement, Null, measure, measure_null, probe_of
from urn_study.reading.recovery import recovery_with_nulls
from urn_study.regulators import add_regulator_gradient, linear_cost, regulator_values, strengths_at, waits, wiring_costs

Report = Callable[[int, dict], None]
Checkpoint = Callable[["TrialState"], None]


@dataclass
class TrialState:
    """Everything needed to continue a trial exactly where it stopped (plain numpy and JSON-able)."""

    epoch: int  # epochs completed
    arrays: dict[str, np.ndarray]  # W, b and the optimiser moments
    adam_step: int
    history: list[dict] = field(default_factory=list)
    snapshots: dict[int, np.ndarray] = field(default_factory=dict)
    diverged_at: int | None = None
    seconds: float = 0.0
    bias_snapshots: dict[int, np.ndarray] = field(default_factory=dict)  # epoch -> b, beside each W snapshot


@dataclass
class TrialResult:
    config: TrialConfig
    metrics: dict  # final figures: test_accuracy, phase, depth, widths, locality, ... seconds
    structure: dict  # the whole record of the final W (urn_study.reading.measure): function, w_ descriptors, null
    weights: np.ndarray  # final W (S, S)
    bias: np.ndarray
    layout: Layout
    snapshots: dict[int, np.ndarray]  # epoch -> W along training
    history: list[dict]  # per-epoch metrics, as reported
    data_info: dict
    initial_weights: np.ndarray | None = None  # W0, the untrained network the measures are held to
    bias_snapshots: dict[int, np.ndarray] = field(default_factory=dict)  # epoch -> b along training
    error: str | None = None  # a failed trial's error ("ValueError: ..."): its metrics hold no reading
    exception: Exception | None = field(default=None, repr=False)  # that error itself


class PackError(Exception):
    """Raised by a trial's callback for a failure that no trial of the batch can go on from (a full disk): it leaves
    ``run_trials`` at once, where any other error of a trial's own work fails that trial alone."""


def run_trial(
    config: TrialConfig, report: Report | None = None, checkpoint: Checkpoint | None = None, resume: TrialState | None = None
) -> TrialResult:
    """Train one URN and read its structure; an error in its reading or callbacks is raised."""
    [result] = run_trials([config], [report], [checkpoint], [resume])
    if result.exception is not None:
        raise result.exception
    return result


GROUP_KEYS = (
    "model.steps",
    "model.input_mode",
    "model.readout",
    "model.readout_from",
    "model.activation",
    "model.hidden_channels",
    "train.epochs",
    "train.batch_size",
    "train.lr",
    "train.lr_schedule",
    "train.snapshot_every",
    "train.checkpoint_every",
    "train.device",
)


def group_key(config: TrialConfig) -> tuple:
    """Trials with equal keys (and equally shaped data) can train together in one batch; under
    ``lr_schedule: restart`` they must also restart together (one learning rate per batch)."""
    key = tuple(getattr(getattr(config, k.split(".")[0]), k.split(".")[1]) for k in GROUP_KEYS)
    return key + (tuple(change_epochs(config)),) if config.train.lr_schedule == "restart" else key


def learning_rate(train, changes: list[int], progress: float) -> float:
    """The learning rate at ``progress`` epochs (fractional) into training: ``train.lr`` held, decayed by one
    cosine to 0 over training, or (restart) by a cosine over each stretch between the epochs in ``changes``."""
    if train.lr_schedule == "constant":
        return train.lr
    start, end = 0, train.epochs
    if train.lr_schedule == "restart":
        start = max([e for e in changes if e <= progress], default=0)
        end = min([e for e in changes if e > progress], default=train.epochs)
    return train.lr * 0.5 * (1.0 + math.cos(math.pi * (progress - start) / (end - start)))


MAX_TRAINING_GIB = 16  # what one batch of trials may need for its states and weights; more is refused up front


def _check_memory(configs: list[TrialConfig], size: int, n_train: int | None) -> None:
    """Refuse a training whose states (T steps of the batch, kept for the backward pass), weights (W, its
    gradient, Adam's moments, the wiring costs, the self mask) and neuron distances (float64) would not fit,
    before allocating any of it. ``n_train`` None: before the data are loaded (generating them may take
    gigabytes), the weights alone; the batch, bounded by the training samples, is known only after."""
    first = configs[0]
    batch = 0 if n_train is None else min(first.train.batch_size, n_train)
    floats = len(configs) * (3 * first.model.steps * batch * size + 9 * size * size)
    gib = 4 * floats / 2**30
    if gib <= MAX_TRAINING_GIB:
        return
    trials = f" x {len(configs)} trials" if len(configs) > 1 else ""
    if n_train is None:
        raise ConfigError(
            f"{size} neurons{trials} need about {gib:.0f} GiB for their weights alone (at most "
            f"{MAX_TRAINING_GIB}); make the data's lattice (data.side, data.dims) or "
            "model.hidden_channels smaller"
        )
    raise ConfigError(
        f"model.steps {first.model.steps} x train.batch_size {batch} x {size} neurons{trials} needs "
        f"about {gib:.0f} GiB to train (at most {MAX_TRAINING_GIB}); make the steps, the batch or the "
        "network smaller"
    )


class _Batch:
    """The stacked state of K trials: data, layouts, model, optimiser."""

    def __init__(self, configs: list[TrialConfig]):
        keys = {group_key(c) for c in configs}
        if len(keys) != 1:
            raise ValueError("trials batched together must share " + ", ".join(GROUP_KEYS))
        self.configs = configs
        first = configs[0]
        self.device = pick_device(first.train.device)
        m = first.model
        n_in, n_classes = math.prod(lattice_shape_of(first.data)), n_classes_of(first.data.name)
        _check_memory(configs, n_in * (1 + m.hidden_channels) + n_classes, None)
        self.datasets = [load_dataset(c.data, c.seed) for c in configs]
        shapes = {(d.x_train.shape, d.x_test.shape, d.n_classes) for d in self.datasets}
        if len(shapes) != 1:
            raise ValueError(f"trials batched together need data of one shape, got {sorted(shapes)}")
        data = self.datasets[0]
        _check_memory(configs, data.n_in * (1 + m.hidden_channels) + data.n_classes, len(data.x_train))
        self.layouts = [
            make_layout(
                d.lattice_shape,
                d.n_classes,
                c.model.hidden_channels,
                c.model.hidden_layout,
                c.model.output_position,
                d.periodic,
                seed=c.seed,
            )
            for c, d in zip(configs, self.datasets)
        ]
        size = self.layouts[0].size
        w0 = initial_weights([c.seed for c in configs], size, 1.0)
        w0 = w0 * torch.tensor([c.model.init_scale for c in configs]).view(-1, 1, 1)
        self.initial = w0.numpy().copy()
        self.model = URN(
            w0, self.datasets[0].n_in, self.datasets[0].n_classes, m.steps, m.input_mode, m.readout, m.readout_from, m.activation
        ).to(self.device)
        # fused: one pass over W per step instead of about eight (same update, float rounding aside)
        self.optimizer = Adam(self.model.parameters(), lr=first.train.lr)
        distances = torch.tensor(np.stack([lay.distances for lay in self.layouts]), dtype=torch.float32)
        alphas = torch.tensor([c.regulators.locality_alpha for c in configs], dtype=torch.float32)
        self.costs = wiring_costs(distances, alphas).to(self.device)
        self.waits = torch.stack([waits(size, lay.n_out, c.regulators.self_scope) for c, lay in zip(configs, self.layouts)]).to(
            self.device
        )
        self.active = {name for name in REGULATORS for c in configs if any(c.regulators.schedule(name).values())}
        self.current_data: list[Dataset | None] = [None] * len(configs)
        self.x_train = self.y_train = self.x_test = self.y_test = None

    def data_for_epoch(self, epoch: int) -> None:
        """Use each trial's dataset for this epoch, switching geometry where its config says so."""
        changed = False
        for k, (c, base) in enumerate(zip(self.configs, self.datasets)):
            wanted = _switched(c, base) if c.data.switched_at(epoch) else base
            if self.current_data[k] is not wanted:
                self.current_data[k], changed = wanted, True
        if changed:

            def stack(attr, dtype):
                return torch.tensor(np.stack([getattr(d, attr) for d in self.current_data]), dtype=dtype, device=self.device)

            self.x_train, self.y_train = stack("x_train", torch.float32), stack("y_train", torch.long)
            self.x_test, self.y_test = stack("x_test", torch.float32), stack("y_test", torch.long)

    def load(self, states: list[TrialState]) -> None:
        with torch.no_grad():
            self.model.W.copy_(torch.tensor(np.stack([s.arrays["W"] for s in states])))
            self.model.b.copy_(torch.tensor(np.stack([s.arrays["b"] for s in states])))
        if states[0].adam_step > 0:
            for name, param in (("W", self.model.W), ("b", self.model.b)):
                self.optimizer.state[param] = {
                    "step": torch.tensor(float(states[0].adam_step), device=self.device),  # fused Adam: on device
                    "exp_avg": torch.tensor(np.stack([s.arrays[f"{name}_exp_avg"] for s in states]), device=self.device),
                    "exp_avg_sq": torch.tensor(np.stack([s.arrays[f"{name}_exp_avg_sq"] for s in states]), device=self.device),
                }

    def arrays(self, k: int) -> tuple[dict[str, np.ndarray], int]:
        arrays = {"W": _np(self.model.W[k]), "b": _np(self.model.b[k])}
        step = 0
        for name, param in (("W", self.model.W), ("b", self.model.b)):
            state = self.optimizer.state.get(param)
            if state:
                arrays[f"{name}_exp_avg"] = _np(state["exp_avg"][k])
                arrays[f"{name}_exp_avg_sq"] = _np(state["exp_avg_sq"][k])
                step = int(state["step"])
        return arrays, step


_switch_cache: dict[tuple, Dataset] = {}


def _switched(config: TrialConfig, base: Dataset) -> Dataset:
    key = (config.data.switch_to, config.seed, repr(config.data))
    if key not in _switch_cache:
        other = load_dataset(config.data.switched(), config.seed)
        if other.x_train.shape != base.x_train.shape or other.n_classes != base.n_classes:
            raise ValueError(f"data.switch_to: {config.data.switch_to} has a different shape than {base.name}")
        _switch_cache[key] = other
    return _switch_cache[key]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def run_trials(
    configs: list[TrialConfig],
    reports: list[Report | None] | None = None,
    checkpoints: list[Checkpoint | None] | None = None,
    resumes: list[TrialState | None] | None = None,
) -> list[TrialResult]:
    """Train K trials of one shape together; each keeps its own seed, metrics, checkpoints and result. A trial whose
    own work raises fails alone (its result's ``error``); see the module's docstring."""
    n = len(configs)
    reports = reports or [None] * n
    checkpoints = checkpoints or [None] * n
    resumes = resumes or [None] * n
    start = 0
    if any(r is not None for r in resumes):
        if any(r is None for r in resumes) or not resumable_together(resumes):
            raise ValueError("trials resumed together must have completed the same number of epochs")
        start = max(r.epoch for r in resumes)
    batch = _Batch(configs)
    states = [r or TrialState(epoch=0, arrays={}, adam_step=0) for r in resumes]
    if start > 0:
        batch.load(states)
    kept = [_copy(state) for state in states]  # each trial's state at its latest checkpoint: a failed trial's
    failures: dict[int, Exception] = {}  # trial -> the error that took it out of the batch
    train = configs[0].train
    t0 = time.perf_counter() - max(s.seconds for s in states)
    reports_of_w: dict[int, Measurement] = {}  # trial -> the measurement of its latest snapshot
    for epoch in range(start, train.epochs):
        alive = [s.diverged_at is None and k not in failures for k, s in enumerate(states)]
        if not any(alive):
            break
        task = _train_epoch(batch, epoch, alive)
        done = epoch + 1
        metrics = _epoch_metrics(batch, epoch, task)
        for k, state in enumerate(states):
            if not alive[k]:
                continue
            try:
                _end_epoch(batch, k, state, metrics[k], done, reports_of_w, reports[k], t0)
            except PackError:
                raise
            except Exception as err:  # noqa: BLE001 - this trial's own work: it fails alone
                _fail(batch, k, err, failures, reports[k], done, metrics[k])
        if not (done % train.checkpoint_every == 0 or done == train.epochs):
            continue
        for k, state in enumerate(states):
            if checkpoints[k] is None:
                continue
            if k in failures:  # saved as it was before it failed
                _quietly(checkpoints[k], kept[k])
                continue
            state.arrays, state.adam_step = batch.arrays(k)
            kept[k] = _copy(state)
            try:
                checkpoints[k](state)
            except PackError:
                raise
            except Exception as err:  # noqa: BLE001 - this trial's own checkpoint: it fails alone
                _fail(batch, k, err, failures, reports[k], done, metrics[k])
    # the last epoch is a snapshot: a trial's latest report is its final W's (a diverged trial's is not used)
    results = []
    for k, state in enumerate(states):
        try:
            results.append(_result(batch, k, state, reports_of_w.get(k), failures.get(k)))
        except Exception as err:  # noqa: BLE001 - this trial's own reading: it fails alone
            failures[k] = err
            results.append(_result(batch, k, state, failure=err))
    return results


def resumable_together(states: list[TrialState]) -> bool:
    """Trials resume together from one epoch only: that of each that has not diverged (a diverged trial stopped
    counting epochs where it diverged)."""
    return len({s.epoch for s in states if s.diverged_at is None}) <= 1


def _end_epoch(
    batch: _Batch,
    k: int,
    state: TrialState,
    m: dict,
    done: int,
    reports_of_w: dict[int, Measurement],
    report: Report | None,
    t0: float,
) -> None:
    """Trial k's own work after an epoch: the divergence check, its reading at a snapshot, its history, its report."""
    train = batch.configs[k].train
    if _blown_up(m["task_loss"], batch.datasets[k].n_classes) or not np.all(np.isfinite(_np(batch.model.W[k]))):
        state.diverged_at = done
        _silence(batch, k)
        m = {"task_loss": m["task_loss"], "diverged": 1.0}
    elif done % train.snapshot_every == 0 or done == train.epochs:
        w, b = _np(batch.model.W[k]), _np(batch.model.b[k])
        state.snapshots[done], state.bias_snapshots[done] = w, b
        reports_of_w[k] = _measure(batch, k, w, b, final=done == train.epochs)
        m.update(reports_of_w[k].summary())
    state.epoch, state.seconds = done, time.perf_counter() - t0
    state.history.append({"epoch": done, **m})
    if report:
        report(done, m)


def _fail(batch: _Batch, k: int, err: Exception, failures: dict[int, Exception], report: Report | None, done: int, m: dict) -> None:
    """Trial k out of the batch for good, as a diverged one, with its error kept; its last report says so."""
    failures[k] = err
    _silence(batch, k)
    if report:
        _quietly(report, done, {"task_loss": m["task_loss"], "failed": 1.0})


def _quietly(callback: Callable, *args) -> None:
    """A failed trial's callback: its first error is already kept, so what this one raises is dropped (a
    PackError aside)."""
    try:
        callback(*args)
    except PackError:
        raise
    except Exception:  # noqa: BLE001 - see above
        pass


def _copy(state: TrialState) -> TrialState:
    """The state as it is now: the training loop appends to the original's history and snapshots."""
    return replace(
        state,
        arrays=dict(state.arrays),
        history=list(state.history),
        snapshots=dict(state.snapshots),
        bias_snapshots=dict(state.bias_snapshots),
    )


BLOWN_UP = 100.0  # a mean task loss above this many times ln(classes) (chance) is a training that blew up


def _blown_up(task_loss: float, n_classes: int) -> bool:
    """Non-finite, or so far above chance (ln C nats) that no trained network reads it: at 100 ln C the true class
    gets e^-230 of the probability on average for 10 classes. A learning rate of 1e4 gives 1e13 and more with every
    weight still finite; a trial that had trained normally stays below ln C."""
    return not np.isfinite(task_loss) or task_loss > BLOWN_UP * math.log(max(n_classes, 2))


def _train_epoch(batch: _Batch, epoch: int, alive: list[bool]) -> torch.Tensor:
    """One pass over each trial's training data, in its own seeded order. Returns mean task loss (K,)."""
    batch.data_for_epoch(epoch)
    mask = torch.tensor(alive, dtype=torch.float32, device=batch.device)
    # A diverged trial is out of the loss: its task loss is masked below, its regulators here.
    strengths = {name: s * mask for name, s in strengths_at(batch.configs, epoch, batch.device).items()}
    cost = linear_cost(batch.costs, strengths, batch.waits)
    n = batch.x_train.shape[1]
    size = batch.configs[0].train.batch_size
    # The order depends on (seed, epoch) only, so a resumed trial sees the same batches.
    order = torch.tensor(
        np.stack([np.random.default_rng([c.seed, epoch]).permutation(n) for c in batch.configs]), device=batch.device
    )
    rows = torch.arange(len(batch.configs), device=batch.device).unsqueeze(1)
    total = torch.zeros(len(batch.configs), device=batch.device)
    steps = 0
    train = batch.configs[0].train
    changes = change_epochs(batch.configs[0])  # the batch's trials share them under restart (group_key)
    for start in range(0, n, size):
        batch.optimizer.lr = learning_rate(train, changes, epoch + start / n)
        idx = order[:, start : start + size]
        total += _train_step(batch, batch.x_train[rows, idx], batch.y_train[rows, idx], mask, cost, strengths)
        steps += 1
    return total / steps


def _train_step(
    batch: _Batch, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, cost: torch.Tensor, strengths: dict[str, torch.Tensor]
) -> torch.Tensor:
    """One minibatch of every trial, with no autograd: every gradient is written by hand. The task loss's
    gradient in closed form, the URN's backward (``model.recursion_backward``: W's gradient as a new tensor,
    which W.grad takes over), the regulators' added in place, Adam (fused). Returns the task loss (K,).

    Without autograd for speed: its graph, engine and the loss's small backward ops cost about 0.25 ms per step
    whatever the size (S = 138, B = 4: 0.72 against 0.50 ms per step), a fixed cost each step pays;
    ``tests/test_gradients.py`` holds the result to plain autograd's."""
    model = batch.model
    logits, states = model.forward_keeping_states(x)
    task, grad_logits = _task_loss_and_gradient(logits, y, mask)
    model.set_gradients(states, grad_logits)
    # the regulators' gradient in closed form: their value is not needed here (see _epoch_metrics)
    add_regulator_gradient(model.W.grad, model.W, cost, strengths, batch.active)
    batch.optimizer.step()
    return task


def _task_loss_and_gradient(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy per trial (K,), averaged over samples and read-out steps, and the gradient of
    sum_k mask_k * loss_k with respect to the logits (R, K, B, C): mask_k (softmax - one-hot) / (R B).
    The logits carry no autograd (training's forward keeps none), so neither does this.

    Few small ops: each costs more in the loop, where it runs cold after the products (S = 522: 0.36 ms with
    a no_grad decorator, a new tensor of -1s and the mask divided first, 0.32 ms so). The log-softmax runs
    over the classes as the second-last dimension of a transposed view: torch's CPU kernel over a last
    dimension as short as the classes (10) is about 8x slower (120 against 15 us at R B = 768)."""
    r, k, b, c = logits.shape
    log_p = torch.log_softmax(logits.transpose(2, 3), dim=2)  # (R, K, C, B)
    picked = labels.expand(r, k, b).unsqueeze(2)  # (R, K, 1, B)
    task = -log_p.gather(2, picked).mean(dim=(0, 2, 3))
    grad = log_p.exp_()  # the softmax
    grad.scatter_(2, picked, -1.0, reduce="add")
    grad.mul_(mask.view(1, k, 1, 1)).div_(r * b)
    return task, grad.transpose(2, 3)


@torch.no_grad()
def _epoch_metrics(batch: _Batch, epoch: int, task: torch.Tensor) -> list[dict]:
    model = batch.model
    train_acc = _accuracy(model, batch.x_train, batch.y_train)
    test_acc = _accuracy(model, batch.x_test, batch.y_test)
    values = regulator_values(model.W, batch.costs, batch.waits)
    strengths = strengths_at(batch.configs, epoch, batch.device)
    out = []
    for k in range(len(batch.configs)):
        m = {"task_loss": float(task[k]), "train_accuracy": float(train_acc[k]), "test_accuracy": float(test_acc[k])}
        reg = {f"reg_{name}": float(strengths[name][k] * values[name][k]) for name in REGULATORS}
        m["loss"] = m["task_loss"] + sum(reg.values())
        m.update(reg)
        m.update({f"strength_{name}": float(strengths[name][k]) for name in REGULATORS})
        out.append(m)
    return out


def _accuracy(model: URN, x: torch.Tensor, y: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    correct = torch.zeros(x.shape[0], device=x.device)
    for start in range(0, x.shape[1], chunk):
        pred = model(x[:, start : start + chunk])[-1].argmax(dim=-1)
        correct += (pred == y[:, start : start + chunk]).float().sum(dim=1)
    return correct / x.shape[1]


def _silence(batch: _Batch, k: int) -> None:
    """A diverged trial's parameters and moments are zeroed so its NaNs cannot cost anything further."""
    with torch.no_grad():
        batch.model.W[k].zero_()
        batch.model.b[k].zero_()
        for state in batch.optimizer.state.values():
            state["exp_avg"][k].zero_()
            state["exp_avg_sq"][k].zero_()


_nulls: dict[tuple, Null] = {}  # (seed, model, data) -> its untrained network's reading; trials of a sweep share W0s
NULLS_KEPT = 32


def _null(batch: _Batch, k: int) -> Null:
    """Trial k's untrained W0 measured on its current data (a switch of data brings a new probe). W0 and the
    probe follow from the seed, the model and the data config alone, so trials that share them (the other
    regulator settings of a sweep, in a reused worker) share this reading."""
    config = batch.configs[k]
    data = batch.current_data[k] or batch.datasets[k]
    key = (config.seed, repr(config.model), data.name, repr(config.data))
    if key not in _nulls:
        if len(_nulls) >= NULLS_KEPT:
            _nulls.pop(next(iter(_nulls)))
        _nulls[key] = measure_null(
            batch.initial[k], batch.layouts[k], config.model, probe_of(data.x_test, data.y_test, config.seed)
        )
    return _nulls[key]


def _measure(batch: _Batch, k: int, w: np.ndarray, b: np.ndarray, final: bool) -> Measurement:
    """The reading of one W of trial k; the degree-keeping shuffle (a null of the |W| descriptors) for the
    final W only."""
    config = batch.configs[k]
    data = batch.current_data[k] or batch.datasets[k]
    return measure(
        w, b, batch.layouts[k], config.model, probe_of(data.x_test, data.y_test, config.seed), _null(batch, k), shuffle=final
    )


FINAL_LISTS = ("widths", "block_widths", "carrying_depths", "depth_shares", "w_widths", "w_hop_spectrum")


def _result(
    batch: _Batch, k: int, state: TrialState, report: Measurement | None = None, failure: Exception | None = None
) -> TrialResult:
    config, data = batch.configs[k], batch.datasets[k]
    last = state.history[-1] if state.history else {}
    b = _np(batch.model.b[k])
    error = None if failure is None else f"{type(failure).__name__}: {failure}"
    if state.diverged_at is not None or failure is not None:
        w = state.snapshots[max(state.snapshots)] if state.snapshots else np.zeros((batch.layouts[k].size,) * 2, np.float32)
        if failure is not None:
            structure = {"phase": "failed"}
            metrics = {"phase": "failed", "error": error, "test_accuracy": float("nan")}
        else:
            structure = {"phase": "diverged"}
            metrics = {"phase": "diverged", "diverged_at_epoch": state.diverged_at, "test_accuracy": float("nan")}
    else:
        w = _np(batch.model.W[k])
        report = report if report is not None else _measure(batch, k, w, b, final=True)
        structure = report.to_dict()
        metrics = {key: last[key] for key in ("test_accuracy", "train_accuracy", "task_loss", "loss") if key in last}
        metrics.update(report.summary())
        metrics["depth"] = int(structure["depth"])
        metrics.update({key: structure[key] for key in FINAL_LISTS})
        metrics["w_phase"] = structure["w_phase"]
        metrics["null_phase"] = structure["null"]["phase"]
        if data.name == "teacher":
            metrics.update(recovery_with_nulls(structure, batch.layouts[k], data.info))
    metrics["epochs"] = state.epoch
    metrics["seconds"] = state.seconds
    return TrialResult(
        config,
        metrics,
        structure,
        w,
        b,
        batch.layouts[k],
        state.snapshots,
        state.history,
        data.info,
        batch.initial[k],
        state.bias_snapshots,
        error,
        failure,
    )
