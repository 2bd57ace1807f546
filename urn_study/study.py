"""Study files: what a sweep asks, read and checked before anything starts. Pure: no Ray, no MLflow.

A study file (YAML, in ``search_spaces/``) holds a base config, grid axes over dotted config keys,
sampled axes, seeds, the metric, resources per trial and a ``smoke`` block that shrinks it to seconds::

    name: quickstart                      # optional; default: the file's stem
    base: {data.name: digits, train.epochs: 20}
    grid: {regulators.locality: [0, 3e-4, 1e-3], regulators.l1: [0, 1e-4]}
    sample: {regulators.width: {loguniform: [1e-5, 1e-3]}}   # optional; optuna searches these
    samples: 1                            # draws from `sample` (grid searcher) / trials (optuna)
    seeds: [0]
    metric: test_accuracy
    mode: max
    resources: {cpu: 1, gpu: 0}          # per trial; a fraction of a GPU packs trials onto one
    trials_per_worker: auto              # K trials of one shape trained together in one Tune trial: a number,
                                         # or auto (the default: chosen from their size and the device, packing.py)
    max_failures: 2                      # retries of a failed trial, from its checkpoint
    smoke: {base: {train.epochs: 1}, grid: {regulators.locality: [0, 1e-3]}}

Trials: the grid's product (file order, last axis fastest) x ``samples`` draws of the sampled axes (seeded
by ``sample_seed``) x seeds (fastest), numbered ``<name>-0000``, ``<name>-0001``... in that order, so a
resumed sweep finds them again. Sampled axes: ``{uniform: [lo, hi]}``, ``{loguniform: [lo, hi]}``,
``{randint: [lo, hi]}`` (hi excluded), ``{choice: [...]}``. With ``--searcher optuna`` Optuna draws the
sampled axes for ``samples`` trials (``<name>-o0000``...) and grid axes or seeds with several values
become its choices. The smoke block replaces base keys and grid / sample axes one by one and other
settings whole; the smoke study is named ``<name>-smoke`` (its own MLflow experiment).

Every error is a ``ConfigError`` of one line naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
import math
import os
import random
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from urn_study.boundary import Refine
from urn_study.config import (
    SECTIONS,
    ConfigError,
    Strength,
    TrialConfig,
    _attr,
    all_keys,
    flatten,
    load_yaml,
    parse_config,
    to_flat,
)
from urn_study.data import read_mnist
from urn_study.packing import AUTO

STUDY_KEYS = (
    "name",
    "base",
    "grid",
    "sample",
    "samples",
    "sample_seed",
    "seeds",
    "metric",
    "mode",
    "resources",
    "trials_per_worker",
    "max_failures",
    "refine",
    "smoke",
)
SMOKE_KEYS = ("base", "grid", "sample", "samples", "seeds", "resources", "trials_per_worker", "max_failures", "refine")
REFINE_KEYS = ("axes", "tolerance", "budget", "start_seeds", "max_seeds", "outcome")
OUTCOMES = ("phase", "depth")  # what a boundary search bisects: where the phase changes, or the depth
RESOURCE_KEYS = ("cpu", "gpu")
SAMPLE_KINDS = {"uniform": 2, "loguniform": 2, "randint": 2, "choice": None}
MODES = ("min", "max")
# What a trial reports (urn_study.trial): per epoch, and at snapshot epochs the structure scalars.
METRICS = (
    "test_accuracy",
    "train_accuracy",
    "task_loss",
    "loss",
    "depth",
    "margin",
    "hidden_width",
    "hidden_cost",
    "locality",
    "ipr",
    "receptive_field",
    "kept_units",
    "w_skip_share",
    "w_recurrence_share",
    "w_density",
    "w_locality",
)
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_TRIALS = 100_000  # a study's trials are all built and held before it runs: more is a mistake, not a sweep


def results_dir() -> Path:
    """Where sweeps write (MLflow store, Ray results, sweep records): ``$URN_RESULTS_DIR`` or ./urn_results."""
    return Path(os.environ.get("URN_RESULTS_DIR") or "urn_results").resolve()


@dataclass(frozen=True)
class Sampled:
    """One sampled axis: ``kind`` is uniform | loguniform | randint (high excluded) | choice."""

    key: str
    kind: str
    args: tuple

    def draw(self, rng: random.Random) -> Any:
        if self.kind == "uniform":
            return rng.uniform(*self.args)
        if self.kind == "loguniform":
            return math.exp(rng.uniform(math.log(self.args[0]), math.log(self.args[1])))
        if self.kind == "randint":
            return rng.randrange(*self.args)
        return rng.choice(self.args)


@dataclass(frozen=True)
class Resources:
    cpu: float = 1.0
    gpu: float = 0.0


@dataclass(frozen=True)
class StudyTrial:
    """One URN trial of a study: its stable id, the axis values that make it, and its checked config."""

    trial_id: str
    point: dict[str, Any]  # dotted key -> value for each grid / sampled axis, and seed
    config: TrialConfig


@dataclass
class Study:
    name: str
    path: Path
    base: dict[str, Any]  # dotted keys
    grid: dict[str, list]
    sample: dict[str, Sampled]
    samples: int = 1
    sample_seed: int = 0
    seeds: list[int] = field(default_factory=lambda: [0])
    metric: str = "test_accuracy"
    mode: str = "max"
    resources: Resources = field(default_factory=Resources)
    trials_per_worker: int | str = "auto"  # a number of trials per pack, or "auto" (urn_study.packing)
    max_failures: int = 2
    refine: Refine | None = None  # the boundary search (--searcher boundary); None: defaults from the grid
    smoke: bool = False
    _trials: list[StudyTrial] | None = field(default=None, repr=False, compare=False)

    @property
    def axes(self) -> list[str]:
        """The keys that vary between trials, in file order (seed last when it varies)."""
        keys = list(self.grid) + [k for k in self.sample if k not in self.grid]
        return keys + (["seed"] if len(self.seeds) > 1 else [])

    def config_for(self, point: dict[str, Any], where: str = "") -> TrialConfig:
        """The checked TrialConfig of base + point (errors name the file and ``where``)."""
        source = f"{self.path}: {where}" if where else str(self.path)
        return parse_config({**self.base, **point}, source=source)

    def trials(self) -> list[StudyTrial]:
        """The grid x sampled draws x seeds, in a fixed order with fixed ids (``<name>-0007``)."""
        if self._trials is None:
            self._trials = _expand(self)
        return self._trials

    def boundary_search(self) -> Refine:
        """The study's ``refine:`` block, or the defaults: every numeric grid axis of a float key bisected, a factor
        1.25, one seed a point, up to the study's seeds at an uncertain end of a bracket, a budget of the grid's
        size."""
        return self.refine or _refine(str(self.path), {}, self)

    def trial_id(self, index: int, prefix: str = "") -> str:
        return f"{self.name}-{prefix}{index:04d}"

    def fingerprint(self) -> str:
        """Changes whenever any trial's id or config changes (a resume must find the same trials)."""
        body = json.dumps([[t.trial_id, to_flat(t.config)] for t in self.trials()], sort_keys=True, default=str)
        extra = json.dumps({k: _jsonable(v) for k, v in self.sample.items()}, sort_keys=True, default=str)
        if self.refine is not None:
            extra += json.dumps(dataclasses.asdict(self.refine), sort_keys=True)
        return hashlib.sha1((body + extra).encode()).hexdigest()[:16]


def _jsonable(sampled: Sampled) -> list:
    return [sampled.kind, list(sampled.args)]


def load_study(path: str | Path, smoke: bool = False) -> Study:
    """Read and check a study file completely: every trial's config is built, so nothing fails later."""
    path = Path(path)
    raw = load_yaml(path)
    where = str(path)
    _check_keys(where, "", raw, STUDY_KEYS)
    if not raw.keys() & {"base", "grid", "sample"}:
        raise ConfigError(f"{where}: the study trains nothing of its own: give a base config, grid axes or sample axes")
    if smoke:
        load_study(path)  # a smoke run is where a study file gets checked: its full form must be valid too
        raw = _apply_smoke(where, raw)
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ConfigError(f"{where}: name: letters, digits, '_', '.', '-' only, got {name!r}")
    if smoke:
        name += "-smoke"  # its own MLflow experiment: smoke runs never mix with the study's records
    base = _mapping(where, "base", raw.get("base", {}))
    base = flatten(base)
    if isinstance(base.get("data.path"), str) and base["data.path"]:
        # trials run in their own folders: a path relative to here travels as an absolute one
        base["data.path"] = str(Path(base["data.path"]).resolve())
    if "seed" in base:
        raise ConfigError(f"{where}: base.seed: list seeds under 'seeds', not in base")
    parse_config(base, source=f"{where}: base")
    study = Study(
        name=name,
        path=path,
        base=base,
        grid=_grid(where, raw.get("grid", {}), base),
        sample=_samples(where, raw.get("sample", {}), base),
        samples=_integer(where, "samples", raw.get("samples", 1), minimum=1),
        sample_seed=_integer(where, "sample_seed", raw.get("sample_seed", 0), minimum=0),
        seeds=_seeds(where, raw.get("seeds", [0])),
        metric=_choice(where, "metric", raw.get("metric", "test_accuracy"), METRICS, _regulator_metrics()),
        mode=_choice(where, "mode", raw.get("mode", "max"), MODES),
        resources=_resources(where, raw.get("resources", {})),
        trials_per_worker=_per_pack(where, raw.get("trials_per_worker", AUTO)),
        max_failures=_integer(where, "max_failures", raw.get("max_failures", 2), minimum=0),
        smoke=smoke,
    )
    _check_trial_count(where, study)
    if "refine" in raw:
        study.refine = _refine(where, _mapping(where, "refine", raw["refine"]), study)
    both = set(study.grid) & set(study.sample)
    if both:
        raise ConfigError(f"{where}: sample.{sorted(both)[0]}: already a grid axis (an axis is either grid or sampled)")
    if study.resources.gpu > 0 and base.get("train.device") == "cpu":
        raise ConfigError(f"{where}: resources.gpu: trials ask for a GPU but base train.device is cpu")
    study.trials()  # builds (and so checks) every config
    return study


def check_data_files(study: Study) -> None:
    """Read each distinct data file the study's trials use, once: before a sweep, a bad one is one line, not
    every trial failing (and retried) on it. (Not part of ``load_study``: reading a study's records needs no
    data.)"""
    for path in sorted({t.config.data.path for t in study.trials() if t.config.data.uses("mnist")}):
        try:
            read_mnist(path)
        except ConfigError as err:
            raise ConfigError(f"{study.path}: {err}") from None


def _check_trial_count(where: str, study: Study) -> None:
    """Counted before the trials are built (each takes memory and time to build and check)."""
    factors = [len(values) for values in study.grid.values()] + [study.samples if study.sample else 1, len(study.seeds)]
    count = math.prod(factors)
    if count > MAX_TRIALS:
        raise ConfigError(
            f"{where}: {count:,} trials ({' x '.join(map(str, factors))}: the grid's axes, draws, seeds), "
            f"at most {MAX_TRIALS:,}; split the study or give its axes fewer values"
        )


def _refine(where: str, raw: dict, study: Study) -> Refine:
    """A checked ``refine:`` block (an empty one: the defaults of ``Study.boundary_search``)."""
    _check_keys(where, "refine.", raw, REFINE_KEYS)
    numeric = [
        k
        for k, values in study.grid.items()
        if _key_type(k) in (float, Strength)
        and all(_is_plain_number(v) and v >= 0 for v in values)
        and sum(v > 0 for v in values) >= 1
        and len(values) >= 2
    ]
    axes = raw.get("axes", numeric)
    if isinstance(axes, str):
        axes = [axes]
    if not isinstance(axes, list) or not axes:
        raise ConfigError(
            f"{where}: refine.axes: a list of grid axes to bisect, got {axes!r}"
            + ("" if numeric else " (the grid has no axis of numbers >= 0 to bisect)")
        )
    for axis in axes:
        if axis not in study.grid:
            raise ConfigError(f"{where}: refine.axes: {axis!r} is not a grid axis (grid: {', '.join(study.grid)})")
        if axis not in numeric:
            raise ConfigError(
                f"{where}: refine.axes: {axis} takes values that cannot be bisected in log space "
                "(numbers >= 0, one of them > 0, at least two): a facet, not an axis to refine"
            )
    tolerance = _number(f"{where}: refine.tolerance", raw.get("tolerance", 1.25))
    if not tolerance > 1:
        raise ConfigError(f"{where}: refine.tolerance: a factor above 1 (high / low of a located bracket), got {tolerance}")
    start = _integer(where, "refine.start_seeds", raw.get("start_seeds", 1), minimum=1)
    if start > len(study.seeds):
        raise ConfigError(f"{where}: refine.start_seeds: at most the {len(study.seeds)} seeds listed, got {start}")
    max_seeds = _integer(where, "refine.max_seeds", raw.get("max_seeds", max(len(study.seeds), start)), minimum=start)
    points = math.prod(len(v) for v in study.grid.values())
    budget = _integer(where, "refine.budget", raw.get("budget", points * len(study.seeds)), minimum=points * start)
    outcome = _choice(where, "refine.outcome", raw.get("outcome", "phase"), OUTCOMES)
    return Refine(tuple(axes), float(tolerance), budget, start, max_seeds, outcome)


def _is_plain_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _regulator_metrics() -> tuple[str, ...]:
    from urn_study.config import REGULATORS

    return tuple(f"{prefix}_{name}" for prefix in ("reg", "strength") for name in REGULATORS)


def _check_keys(where: str, prefix: str, raw: dict, allowed: tuple[str, ...]) -> None:
    for key in raw:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(allowed)})"
            raise ConfigError(f"{where}: {prefix}{_shown(key)}: unknown study key{hint}")


def _shown(key: Any) -> str:
    """A key as a message shows it: as written, or quoted where it holds what would break the line (a newline)."""
    text = str(key)
    return text if text.isprintable() else repr(text)


def _apply_smoke(where: str, raw: dict) -> dict:
    """The study with its ``smoke`` block laid over: base keys and grid / sample axes replace one by one."""
    smoke = _mapping(where, "smoke", raw.get("smoke", {}))
    _check_keys(where, "smoke.", smoke, SMOKE_KEYS)
    out = dict(raw)
    for key, value in smoke.items():
        if key in ("base", "grid", "sample"):
            merged = (
                flatten(_mapping(where, key, raw.get(key, {}))) if key == "base" else dict(_mapping(where, key, raw.get(key, {})))
            )
            update = _mapping(where, f"smoke.{key}", value)
            merged.update(flatten(update) if key == "base" else update)
            out[key] = merged
        else:
            out[key] = value
    return out


def _mapping(where: str, key: str, value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key}: expected a mapping, got {type(value).__name__}")
    return value


def _integer(where: str, key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: {key}: expected an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{where}: {key}: must be at least {minimum}, got {value}")
    return value


def _per_pack(where: str, value: Any) -> int | str:
    """``trials_per_worker``: a number of trials (>= 1) or ``auto``."""
    if value == AUTO:
        return AUTO
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: trials_per_worker: expected an integer or 'auto', got {value!r}")
    return _integer(where, "trials_per_worker", value, minimum=1)


def _choice(where: str, key: str, value: Any, choices: tuple, extra: tuple = ()) -> str:
    if value not in choices + extra:
        close = difflib.get_close_matches(str(value), choices + extra, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{where}: {key}: must be one of {', '.join(choices)}{', ...' if extra else ''}, got {value!r}{hint}")
    return value


def _config_key(where: str, section: str, key: Any) -> str:
    valid = all_keys()
    if not isinstance(key, str) or key not in valid:
        close = difflib.get_close_matches(str(key), valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{where}: {section}.{_shown(key)}: unknown config key{hint}")
    if key == "seed":
        raise ConfigError(f"{where}: {section}.seed: list seeds under 'seeds'")
    return key


def _grid(where: str, raw: Any, base: dict) -> dict[str, list]:
    grid = {}
    for key, values in _mapping(where, "grid", raw).items():
        key = _config_key(where, "grid", key)
        if not isinstance(values, list):
            raise ConfigError(f"{where}: grid.{key}: expected a list of values, got {values!r}")
        if not values:
            raise ConfigError(f"{where}: grid.{key}: empty list (an axis needs at least one value)")
        if len(values) > MAX_TRIALS:  # each value is checked, and against the others: not for a million
            raise ConfigError(f"{where}: grid.{key}: {len(values):,} values, at most {MAX_TRIALS:,} trials in a study")
        seen = []
        for value in values:
            if value in seen:
                raise ConfigError(f"{where}: grid.{key}: value {value!r} listed twice")
            seen.append(value)
            parse_config({**base, key: value}, source=f"{where}: grid")
        grid[key] = values
    return grid


def _key_type(key: str) -> Any:
    section, name = key.split(".", 1)
    hints = typing.get_type_hints(SECTIONS[section], globalns={"Strength": Strength})
    return hints[_attr(name)]


def _samples(where: str, raw: Any, base: dict) -> dict[str, Sampled]:
    out = {}
    for key, spec in _mapping(where, "sample", raw).items():
        key = _config_key(where, "sample", key)
        at = f"{where}: sample.{key}"
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in SAMPLE_KINDS:
            raise ConfigError(f"{at}: expected one of {{{', '.join(k + ': [...]' for k in SAMPLE_KINDS)}}}, got {spec!r}")
        kind, args = next(iter(spec.items()))
        if not isinstance(args, list) or not args:
            raise ConfigError(f"{at}.{kind}: expected a non-empty list, got {args!r}")
        if SAMPLE_KINDS[kind] is not None and len(args) != SAMPLE_KINDS[kind]:
            raise ConfigError(f"{at}.{kind}: expected [low, high], got {args!r}")
        kind_type = _key_type(key)
        if kind != "choice":
            args = [_number(f"{at}.{kind}", a) for a in args]
            low, high = args
            if not low < high:
                raise ConfigError(f"{at}.{kind}: low must be below high, got {args!r}")
            if kind == "loguniform" and low <= 0:
                raise ConfigError(f"{at}.loguniform: bounds must be > 0, got {args!r}")
            if kind == "randint" and not all(float(a).is_integer() for a in args):
                raise ConfigError(f"{at}.randint: bounds must be integers, got {args!r}")
            if kind == "randint":
                args = [int(a) for a in args]
            if kind in ("uniform", "loguniform") and kind_type is int:
                raise ConfigError(f"{at}.{kind}: {key} takes integers: use randint or choice")
            if kind_type not in (int, float, Strength):
                raise ConfigError(f"{at}.{kind}: {key} is not a number: use choice")
        # the bounds (and every choice) must make valid configs
        for value in args if kind == "choice" else [args[0], args[1] - (1 if kind == "randint" else 0)]:
            parse_config({**base, key: value}, source=f"{where}: sample")
        out[key] = Sampled(key, kind, tuple(args))
    return out


def _number(where: str, value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}: expected numbers, got {value!r}")
    return value


def _seeds(where: str, raw: Any) -> list[int]:
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where}: seeds: expected a non-empty list of integers, got {raw!r}")
    for seed in raw:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"{where}: seeds: expected integers >= 0, got {seed!r}")
    if len(set(raw)) != len(raw):
        raise ConfigError(f"{where}: seeds: a seed is listed twice")
    return list(raw)


def with_gpus(study: Study, gpus: float) -> Study:
    """The study with every trial asking for ``gpus`` GPUs (``urn-study sweep --gpus-per-trial``): a fraction of one
    packs trials onto it (0.25: four), a whole number gives each trial that many."""
    where = "--gpus-per-trial"
    if not math.isfinite(gpus) or gpus < 0 or (gpus > 1 and not float(gpus).is_integer()):
        raise ConfigError(f"{where}: a fraction of one GPU (0 to 1) or whole GPUs, got {gpus:g}")
    if gpus == 0 and study.resources.cpu == 0:
        raise ConfigError(f"{where}: 0 GPUs, but {study.path} gives a trial no CPU either (resources.cpu: 0)")
    if gpus > 0 and study.base.get("train.device") == "cpu":
        raise ConfigError(f"{where}: trials would get a GPU, but {study.path} sets base train.device: cpu")
    return dataclasses.replace(study, resources=Resources(study.resources.cpu, float(gpus)))


def _resources(where: str, raw: Any) -> Resources:
    raw = _mapping(where, "resources", raw)
    _check_keys(where, "resources.", raw, RESOURCE_KEYS)
    values = {}
    for key in RESOURCE_KEYS:
        value = raw.get(key, Resources.__dataclass_fields__[key].default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{where}: resources.{key}: expected a number, got {value!r}")
        if value < 0:
            raise ConfigError(f"{where}: resources.{key}: must be >= 0, got {value}")
        values[key] = float(value)
    if values["cpu"] == 0 and values["gpu"] == 0:
        raise ConfigError(f"{where}: resources.cpu: a trial needs some CPU or GPU (both are 0)")
    if values["gpu"] > 1 and not values["gpu"].is_integer():
        raise ConfigError(f"{where}: resources.gpu: a fraction of one GPU (<= 1) or whole GPUs, got {values['gpu']}")
    return Resources(**values)


def _expand(study: Study) -> list[StudyTrial]:
    """Grid points (file order, last axis fastest) x draws x seeds (fastest), each built and checked."""
    rng = random.Random(study.sample_seed)
    grid_points = [dict(zip(study.grid, values)) for values in itertools.product(*study.grid.values())]
    draws = [{k: s.draw(rng) for k, s in study.sample.items()} for _ in range(study.samples if study.sample else 1)]
    trials = []
    for point in grid_points:
        for draw in draws:
            for seed in study.seeds:
                full = {**point, **draw, "seed": seed}
                trial_id = study.trial_id(len(trials))
                config = study.config_for(full, where=f"trial {trial_id} ({_describe(full)})")
                trials.append(StudyTrial(trial_id, full, config))
    return trials


def _describe(point: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items())


def pack_key(config: TrialConfig) -> tuple:
    """Trials with equal keys can train together (``run_trials``): the trial's group key and data shape."""
    from urn_study.trial import group_key  # torch: only a sweep needs packs

    d = config.data
    return group_key(config) + (d.name, d.dims, d.side, d.n_samples, d.test_fraction, d.path, d.switch_to, d.switch_back_epoch)


def pack_trials(trials: list[StudyTrial], per_pack: int) -> list[list[StudyTrial]]:
    """Groups of up to ``per_pack`` trials of one shape, in study order (first trial's position)."""
    if per_pack == 1:
        return [[t] for t in trials]
    groups: dict[tuple, list[StudyTrial]] = {}
    for trial in trials:
        groups.setdefault(pack_key(trial.config), []).append(trial)
    packs = [group[i : i + per_pack] for group in groups.values() for i in range(0, len(group), per_pack)]
    order = {t.trial_id: n for n, t in enumerate(trials)}
    return sorted(packs, key=lambda p: order[p[0].trial_id])


def study_question(path: str | Path) -> str:
    """The question a study file's header states (``# Question...: ...`` and its indented ``#`` lines), in one
    line; "" when it states none."""
    lines, found = [], False
    for line in Path(path).read_text().splitlines():
        if not found and line.startswith("# Question"):
            found = True
            lines.append(line.split(":", 1)[1] if ":" in line else "")
        elif found and line.startswith("#   "):
            lines.append(line[1:])
        elif found:
            break
    return " ".join(" ".join(lines).split())
