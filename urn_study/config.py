"""Typed trial configuration, built from nested mappings or dotted keys (``model.steps: 3``).

Every key is checked against the dataclasses below: an unknown key or a value of the wrong type
raises ``ConfigError`` naming the key (and the file, when there is one).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from urn_study.data import DataConfig
from urn_study.errors import ConfigError  # raised here; callers may import it from here as well


@dataclass
class Schedule:
    """A regulator strength over training: constant, a linear ramp, or a step at an epoch."""

    kind: str = "constant"
    value: float = 0.0  # constant
    start: float = 0.0  # linear: strength at start_epoch ...
    end: float = 0.0  # ... and at end_epoch, held after it
    start_epoch: int = 0
    end_epoch: int = 0
    before: float = 0.0  # step: strength before epoch ...
    after: float = 0.0  # ... and from epoch on ...
    epoch: int = 0
    until: int = 0  # ... up to this epoch, where it returns to `before` (0: held to the end)

    def at(self, epoch: int) -> float:
        if self.kind == "constant":
            return self.value
        if self.kind == "step":
            on = epoch >= self.epoch and not (self.until and epoch >= self.until)
            return self.after if on else self.before
        if epoch <= self.start_epoch:
            return self.start
        if epoch >= self.end_epoch:
            return self.end
        frac = (epoch - self.start_epoch) / (self.end_epoch - self.start_epoch)
        return self.start + frac * (self.end - self.start)

    def change_epochs(self) -> list[int]:
        """Epochs where the schedule changes course (for marking lifetime plots)."""
        if self.kind == "step":
            return [self.epoch, self.until] if self.until else [self.epoch]
        if self.kind == "linear":
            return [self.start_epoch, self.end_epoch]
        return []

    def values(self) -> list[float]:
        return {"constant": [self.value], "step": [self.before, self.after], "linear": [self.start, self.end]}[self.kind]

    def to_value(self) -> float | dict:
        if self.kind == "constant":
            return self.value
        keys = {"step": ("before", "after", "epoch"), "linear": ("start", "end", "start_epoch", "end_epoch")}
        value = {"kind": self.kind, **{k: getattr(self, k) for k in keys[self.kind]}}
        if self.until:
            value["until"] = self.until
        return value


Strength = Union[float, Schedule]
REGULATORS = ("l1", "l2", "locality", "width", "self")


@dataclass
class ModelConfig:
    steps: int = 3  # T: bounds the depth that can emerge
    # clamp + all: the input is there at every step and every step's readout is trained, so walks of every
    # length 1..T reach the loss and the regulators decide which depth carries the task (docs/results.md,
    # depth). With once + last every walk has T steps: depth = T by construction.
    input_mode: str = "clamp"  # clamp | once
    readout: str = "all"  # all | last
    readout_from: int = 1  # readout all: loss averaged over steps readout_from..T
    activation: str = "relu"  # relu | tanh | identity
    hidden_channels: int = 1  # hidden neurons = channels copies of the input lattice
    hidden_layout: str = "lattice"  # lattice | random
    output_position: str = "uniform"  # uniform | center | free
    init_scale: float = 0.05  # std of the dense i.i.d. normal initial W


@dataclass
class RegulatorConfig:
    l1: Strength = 0.0
    l2: Strength = 0.0
    locality: Strength = 0.0
    locality_alpha: float = 1.0
    width: Strength = 0.0
    self_: Strength = 0.0  # key "regulators.self" ("self" cannot be a Python field name)
    # what `self` prices: diagonal (the spec's sum |W_ii|) | waits (also the connections among the linear
    # outputs, through which a network priced off its diagonal carries a linear skip: urn_study.regulators.waits)
    self_scope: str = "diagonal"

    def schedule(self, name: str) -> Schedule:
        value = getattr(self, _attr(name))
        return value if isinstance(value, Schedule) else Schedule(value=float(value))


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.01
    # cosine: decays to 0 (small weights settle instead of dithering at ~lr) | constant | restart: the cosine
    # restarted at every change of the trial's pressures (change_epochs), so each phase of a lifetime has the
    # learning rate a fresh training would (without it a change at mid-training meets half the rate)
    lr_schedule: str = "cosine"
    snapshot_every: int = 5  # epochs between structure snapshots (and saved W)
    checkpoint_every: int = 5  # epochs between checkpoints (sweeps only)
    device: str = "auto"  # auto (cuda where present) | cpu | cuda


@dataclass
class TrialConfig:
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    regulators: RegulatorConfig = field(default_factory=RegulatorConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


SECTIONS = {"data": DataConfig, "model": ModelConfig, "regulators": RegulatorConfig, "train": TrainConfig}
CHOICES = {
    "model.input_mode": ("once", "clamp"),
    "model.readout": ("last", "all"),
    "model.activation": ("relu", "tanh", "identity"),
    "model.hidden_layout": ("lattice", "random"),
    "model.output_position": ("uniform", "center", "free"),
    "train.device": ("auto", "cpu", "cuda"),
    "train.lr_schedule": ("cosine", "constant", "restart"),
    "regulators.self_scope": ("diagonal", "waits"),
}


def change_epochs(config: TrialConfig) -> list[int]:
    """The epochs inside training where the trial's pressures change: a regulator schedule changes course, or
    the data switch (and switch back). ``train.lr_schedule: restart`` restarts its cosine at each."""
    epochs = {e for name in REGULATORS for e in config.regulators.schedule(name).change_epochs()}
    epochs |= set(config.data.change_epochs())
    return sorted(e for e in epochs if 0 < e < config.train.epochs)


def _attr(name: str) -> str:
    return "self_" if name == "self" else name


def _key(attr: str) -> str:
    return "self" if attr == "self_" else attr


def flatten(mapping: dict, prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> dotted keys. Schedules (mappings under a regulator) stay whole."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and not dotted.startswith("regulators."):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def all_keys() -> list[str]:
    """Every valid dotted key."""
    keys = ["seed"]
    for section, cls in SECTIONS.items():
        keys += [f"{section}.{_key(f.name)}" for f in dataclasses.fields(cls)]
    return keys


def _check_type(key: str, value: Any, annotation: Any) -> Any:
    """Return value converted to the annotated type, or raise ConfigError naming key."""
    if annotation in ("Strength", Strength):
        if isinstance(value, dict):
            return _parse_schedule(key, value)
        return _check_type(key, value, float)
    if annotation in (float, "float"):
        value = _yaml_float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):  # .nan / .inf read from YAML: a trial could only diverge
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if annotation in (int, "int"):
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(value)
    if annotation in (bool, "bool"):
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if annotation in (str, "str"):
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {annotation!r}")  # a bug in the dataclasses


def _yaml_float(value: Any) -> Any:
    """PyYAML reads ``1e-4`` (no dot) as a string; researchers write it that way, so accept it."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _parse_schedule(key: str, spec: dict) -> Schedule:
    kind = spec.get("kind", "constant")
    allowed = {
        "constant": {"value"},
        "step": {"before", "after", "epoch", "until"},
        "linear": {"start", "end", "start_epoch", "end_epoch"},
    }
    if kind not in allowed:
        raise ConfigError(f"{key}.kind: must be one of {sorted(allowed)}, got {kind!r}")
    hints = _hints(Schedule)
    values = {}
    for name, value in spec.items():
        if name == "kind":
            continue
        if name not in allowed[kind]:
            raise ConfigError(f"{key}.{name}: unknown for a {kind} schedule (allowed: {', '.join(sorted(allowed[kind]))})")
        values[name] = _check_type(f"{key}.{name}", value, hints[name])
    missing = allowed[kind] - set(values) - {"until"}  # until is optional
    if missing:
        raise ConfigError(f"{key}: a {kind} schedule needs {', '.join(sorted(missing))}")
    schedule = Schedule(kind=kind, **values)
    if kind == "linear" and schedule.end_epoch <= schedule.start_epoch:
        raise ConfigError(f"{key}: end_epoch must be after start_epoch")
    if kind == "step" and schedule.until and schedule.until <= schedule.epoch:
        raise ConfigError(f"{key}.until: must be after epoch ({schedule.epoch}), got {schedule.until}")
    if any(v < 0 for v in schedule.values()) or schedule.epoch < 0 or schedule.start_epoch < 0:
        raise ConfigError(f"{key}: strengths and epochs must be >= 0")
    return schedule


def parse_config(mapping: dict | None, source: str = "") -> TrialConfig:
    """Build a checked TrialConfig from nested and/or dotted keys. Errors name the key (and source)."""
    where = f"{source}: " if source else ""
    try:
        return _parse(flatten(mapping or {}))
    except ConfigError as err:
        raise ConfigError(f"{where}{err}") from None


def _parse(flat: dict[str, Any]) -> TrialConfig:
    config = TrialConfig()
    valid = set(all_keys())
    for key, value in flat.items():
        if key not in valid:
            raise ConfigError(f"unknown key {key!r}" + _suggest(key, valid))
        if key == "seed":
            config.seed = _check_type(key, value, int)
            continue
        section, name = key.split(".", 1)
        obj = getattr(config, section)
        hints = _hints(type(obj))
        setattr(obj, _attr(name), _check_type(key, value, hints[_attr(name)]))
    _check_values(config)
    return config


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """A config class's field types (resolving them is slow: a 10,000-trial study calls this 80,000 times)."""
    return typing.get_type_hints(cls, globalns={"Strength": Strength})


def _suggest(key: str, valid: set[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, sorted(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_values(config: TrialConfig) -> None:
    for key, choices in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if value not in choices:
            raise ConfigError(f"{key}: must be one of {', '.join(choices)}, got {value!r}")
    if not 0 <= config.seed < 2**32:  # numpy's and torch's generators take seeds in this range
        raise ConfigError(f"seed: must lie in 0 .. 2**32 - 1, got {config.seed}")
    m, t, r = config.model, config.train, config.regulators
    positive = {
        "model.steps": m.steps,
        "model.hidden_channels": m.hidden_channels,
        "train.epochs": t.epochs,
        "train.batch_size": t.batch_size,
        "train.snapshot_every": t.snapshot_every,
        "train.checkpoint_every": t.checkpoint_every,
    }
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key}: must be at least 1, got {value}")
    if not 1 <= m.readout_from <= m.steps:
        raise ConfigError(f"model.readout_from: must lie in 1..model.steps ({m.steps}), got {m.readout_from}")
    for key, value in {"model.init_scale": m.init_scale, "train.lr": t.lr, "regulators.locality_alpha": r.locality_alpha}.items():
        if not value > 0:
            raise ConfigError(f"{key}: must be > 0, got {value}")
    for name in REGULATORS:
        if any(v < 0 for v in r.schedule(name).values()):
            raise ConfigError(f"regulators.{name}: strength must be >= 0")
    try:
        config.data.check()
    except ValueError as err:
        raise ConfigError(str(err)) from None


def to_flat(config: TrialConfig) -> dict[str, Any]:
    """Dotted key -> plain value (schedules as mappings): the inverse of parse_config."""
    flat: dict[str, Any] = {"seed": config.seed}
    for section in SECTIONS:
        obj = getattr(config, section)
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            flat[f"{section}.{_key(f.name)}"] = value.to_value() if isinstance(value, Schedule) else value
    return flat


MAX_ALIAS_NODES = 10_000  # what aliases (*name) may add to a document: a study needs a few, a "billion laughs" 10**9


class _AliasBomb(yaml.YAMLError):
    """A document whose aliases expand past MAX_ALIAS_NODES nodes, or into themselves."""


class _Loader(yaml.SafeLoader):
    """The safe loader, checking what the aliases expand to once the document is parsed, before any value is
    built: the values themselves share memory, but anything that walks them (a message, a flattening, a
    fingerprint) walks every copy."""

    def compose_document(self):
        node = super().compose_document()
        added = _alias_expansion(node)
        if added > MAX_ALIAS_NODES:
            raise _AliasBomb(f"its aliases (*name) would add {added:,} values (at most {MAX_ALIAS_NODES:,}); write them out")
        return node


def _alias_expansion(root: yaml.Node) -> int:
    """How many nodes the aliases add when the document is written out in full (each node counted once per use)."""
    sizes: dict[int, int | None] = {}  # id -> nodes below and including it; None while being counted

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            if sizes[id(node)] is None:
                raise _AliasBomb("an alias (*name) refers to a value that holds it: it would expand without end")
            return sizes[id(node)]
        sizes[id(node)] = None
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            children = node.value if isinstance(node, yaml.SequenceNode) else []
        sizes[id(node)] = 1 + sum(size(child) for child in children)
        return sizes[id(node)]

    return size(root) - len(sizes)


def _safe_yaml(text: str) -> Any:
    """``yaml.safe_load`` with aliases bounded (see _Loader)."""
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping with the safe loader; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        data = _safe_yaml(path.read_text())
    except _AliasBomb as err:
        raise ConfigError(f"{path}: {err}") from None
    except RecursionError:  # PyYAML reads nested values by recursion
        raise ConfigError(f"{path}: values nested too deeply to read") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {err.start})") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys, got {type(data).__name__}")
    return data


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["model.steps=3", "regulators.l1=1e-4"]`` -> dotted mapping; values read as YAML scalars."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value")
        try:
            out[key.strip()] = _safe_yaml(text) if text.strip() else ""
        except _AliasBomb as err:
            raise ConfigError(f"--set {key}: {err}") from None
        except RecursionError:
            raise ConfigError(f"--set {key}: value nested too deeply to read") from None
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: cannot read value {text!r}") from None
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrialConfig:
    """A YAML config file (optional) plus ``key=value`` overrides -> checked TrialConfig."""
    mapping = flatten(load_yaml(path)) if path else {}
    mapping.update(parse_overrides(overrides or []))
    return parse_config(mapping, source=str(path) if path else "")
