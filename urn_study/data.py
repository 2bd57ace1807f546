"""The datasets of the URN study (spec section 4): seeded, deterministic, offline.

Every dataset declares the lattice its features live on (flattened row-major), so the neurons of
a URN can be placed on the data's own geometry (see ``layout.py``).

- ``digits``: scikit-learn's 8x8 digits, pixels in [0, 1], stratified seeded split.
- ``digits_permuted``: the same samples and split, pixels scrambled by one fixed permutation
  (seed ``PERMUTATION_SEED``, shared by all trials): the geometry is destroyed, the lattice kept.
- ``nlgp``: the nonlinear Gaussian process of Ingrosso & Goldt (PNAS 2022) on a ring or torus.
- ``teacher``: labels from a planted locally connected random teacher of known depth and receptive field.
- ``mnist``: from a local keras-layout ``.npz`` (never downloaded).

All randomness comes from ``rng_for(seed, dataset, stream)``, so one call never shifts another's draws.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import zipfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NoReturn

import numpy as np

from urn_study.errors import ConfigError

DATASETS = ("digits", "digits_permuted", "nlgp", "teacher", "mnist")
PERMUTATION_SEED = 20191126  # fixed: every trial sees the same scrambled geometry
MNIST_SHAPE = (28, 28)
MAX_DATA_GIB = 8  # generated data larger than this are refused before anything is allocated
GENERATED_BYTES = 32  # per sample and site while generating: float64 white noise and its complex FFT
_N_CLASSES = {"digits": 10, "digits_permuted": 10, "nlgp": 2, "teacher": 2, "mnist": 10}


@dataclass
class DataConfig:
    """The ``data.`` section of a trial config. Fields that a dataset does not use are ignored by it."""

    name: str = "digits"
    dims: int = 1  # nlgp/teacher: 1 = ring/chain, 2 = torus/grid
    side: int = 16  # nlgp/teacher: lattice side L (n_in = side**dims)
    xi0: float = 1.0  # nlgp: correlation length of class 0
    xi1: float = 3.0  # nlgp: correlation length of class 1
    gain: float = 3.0  # nlgp: g; g -> 0 is Gaussian
    n_samples: int = 2000  # nlgp/teacher: samples generated (train + test)
    test_fraction: float = 0.25
    teacher_depth: int = 2  # weight layers of the teacher (hidden local layers + readout)
    teacher_receptive_field: int = 3  # sites per lattice axis seen by each teacher neuron
    path: str = ""  # mnist: local .npz with x_train, y_train, x_test, y_test (keras layout)
    switch_to: str = ""  # lifetime studies: dataset to switch to mid-training ("" = none)
    switch_epoch: int = 0  # epoch of the switch (applied by the trial, only validated here)
    switch_back_epoch: int = 0  # epoch where the data return to `name` (0: never)

    def uses(self, name: str) -> bool:
        """Whether this config loads dataset ``name``, first or after the switch."""
        return name in (self.name, self.switch_to)

    def switched_at(self, epoch: int) -> bool:
        """Whether epoch (counted from 0) trains on ``switch_to`` rather than ``name``."""
        if not self.switch_to or epoch < self.switch_epoch:
            return False
        return not (self.switch_back_epoch and epoch >= self.switch_back_epoch)

    def change_epochs(self) -> list[int]:
        """The epochs where the data change."""
        if not self.switch_to:
            return []
        return [self.switch_epoch, self.switch_back_epoch] if self.switch_back_epoch else [self.switch_epoch]

    def check(self) -> None:
        """Raise ValueError("data.<field>: ...") for the first bad value."""
        if self.name not in DATASETS:
            _fail("name", f"must be one of {', '.join(DATASETS)}, got {self.name!r}")
        if self.dims not in (1, 2):
            _fail("dims", f"must be 1 (ring/chain) or 2 (torus/grid), got {self.dims}")
        if self.side < 2:
            _fail("side", f"must be at least 2, got {self.side}")
        for field in ("xi0", "xi1"):
            value = getattr(self, field)
            if not (value > 0 and math.isfinite(value)):
                _fail(field, f"correlation length must be a positive number, got {value}")
        if not (self.gain >= 0 and math.isfinite(self.gain)):
            _fail("gain", f"must be a number >= 0, got {self.gain}")
        if self.n_samples < 4:
            _fail("n_samples", f"must be at least 4 (two per class for train and test), got {self.n_samples}")
        if not 0 < self.test_fraction < 1:
            _fail("test_fraction", f"must lie strictly between 0 and 1, got {self.test_fraction}")
        if self.teacher_depth < 1:
            _fail("teacher_depth", f"must be at least 1 (the readout), got {self.teacher_depth}")
        if self.teacher_receptive_field < 1:
            _fail("teacher_receptive_field", f"must be at least 1, got {self.teacher_receptive_field}")
        self._check_dataset_specific()
        self._check_switch()
        self._check_size()

    def _check_size(self) -> None:
        """Refuse before allocating: the samples of a generated dataset, in float64 and its FFT, must fit."""
        if not (self.uses("nlgp") or self.uses("teacher")):
            return
        gib = self.n_samples * self.side**self.dims * GENERATED_BYTES / 2**30
        if gib > MAX_DATA_GIB:
            _fail(
                "side" if self.side**self.dims >= self.n_samples else "n_samples",
                f"{self.n_samples} samples of side {self.side} in {self.dims}D need about {gib:.0f} GiB to generate "
                f"(at most {MAX_DATA_GIB}); make data.side or data.n_samples smaller",
            )

    def _check_dataset_specific(self) -> None:
        if self.uses("nlgp") and self.xi0 == self.xi1:
            _fail("xi1", f"must differ from data.xi0 (both {self.xi0}): the classes would be identical")
        if self.uses("teacher") and self.teacher_receptive_field > self.side:
            r = self.teacher_receptive_field
            _fail("teacher_receptive_field", f"must be at most data.side ({self.side}), got {r}")
        if self.uses("mnist"):
            if not self.path:
                _fail("path", "mnist needs the path of a local .npz (x_train, y_train, x_test, y_test)")
            if not Path(self.path).is_file():
                _fail("path", f"no such file: {self.path}")

    def _check_switch(self) -> None:
        if self.switch_epoch < 0:
            _fail("switch_epoch", f"must be >= 0, got {self.switch_epoch}")
        if self.switch_back_epoch and not self.switch_to:
            _fail("switch_back_epoch", "needs data.switch_to (the data to switch back from)")
        if self.switch_back_epoch and self.switch_back_epoch <= self.switch_epoch:
            _fail("switch_back_epoch", f"must be after data.switch_epoch ({self.switch_epoch}), got {self.switch_back_epoch}")
        if not self.switch_to:
            return
        if self.switch_to not in DATASETS:
            _fail("switch_to", f"must be empty or one of {', '.join(DATASETS)}, got {self.switch_to!r}")
        if self.switch_to == self.name:
            _fail("switch_to", f"switching {self.name!r} to itself changes nothing")
        if self.switch_epoch < 1:
            _fail("switch_epoch", f"must be at least 1 when data.switch_to is set, got {self.switch_epoch}")
        before, after = lattice_shape_of(self), lattice_shape_of(self.switched())
        if before != after:
            _fail("switch_to", f"{self.switch_to!r} lives on lattice {after}, {self.name!r} on {before}: the neurons cannot move")
        if n_classes_of(self.switch_to) != n_classes_of(self.name):  # the outputs and their samples' count stay
            _fail(
                "switch_to",
                f"{self.switch_to!r} has {n_classes_of(self.switch_to)} classes, {self.name!r} "
                f"{n_classes_of(self.name)}: a switch keeps the outputs, so both must have as many classes",
            )

    def switched(self) -> "DataConfig":
        """The config of the dataset after the switch (same geometry parameters, no further switch)."""
        return replace(self, name=self.switch_to, switch_to="", switch_epoch=0, switch_back_epoch=0)


def _fail(field: str, message: str) -> NoReturn:

    raise ConfigError(f"data.{field}: {message}")


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray  # float32 (N_train, n_in), features flattened row-major from the lattice
    y_train: np.ndarray  # int64 (N_train,)
    x_test: np.ndarray
    y_test: np.ndarray
    lattice_shape: tuple[int, ...]
    periodic: bool  # distances wrap around (nlgp ring/torus only)
    n_classes: int
    info: dict  # JSON-able extras: generation parameters, teacher ground truth, permutation

    @property
    def n_in(self) -> int:
        return int(np.prod(self.lattice_shape))


def lattice_shape_of(cfg: DataConfig) -> tuple[int, ...]:
    """The lattice of ``cfg.name`` without loading it."""
    if cfg.name in ("digits", "digits_permuted"):
        return (8, 8)
    if cfg.name == "mnist":
        return MNIST_SHAPE
    return (cfg.side,) * cfg.dims


def n_classes_of(name: str) -> int:
    return _N_CLASSES[name]


def rng_for(seed: int, dataset: str, stream: str) -> np.random.Generator:
    """An independent generator per (trial seed, dataset, stream); crc32 because hash() is salted."""
    if seed < 0:
        raise ValueError(f"seed: must be a non-negative integer, got {seed}")
    return np.random.default_rng([int(seed), zlib.crc32(dataset.encode()), zlib.crc32(stream.encode())])


def load_dataset(cfg: DataConfig, seed: int) -> Dataset:
    """Build dataset ``cfg.name``; identical arrays for identical (cfg, seed)."""
    cfg.check()
    return _LOADERS[cfg.name](cfg, seed)


def stratified_split(y: np.ndarray, test_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled train and test indices with each class split in the same proportion (>= 1 each side)."""
    train, test = [], []
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_test = int(round(test_fraction * len(idx)))
        n_test = min(max(n_test, 1), len(idx) - 1) if len(idx) > 1 else n_test
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def _from_pool(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    cfg: DataConfig,
    seed: int,
    split_key: str,
    lattice_shape: tuple[int, ...],
    periodic: bool,
    info: dict,
) -> Dataset:
    train, test = stratified_split(y, cfg.test_fraction, rng_for(seed, split_key, "split"))
    x, y = x.astype(np.float32), y.astype(np.int64)
    return Dataset(name, x[train], y[train], x[test], y[test], lattice_shape, periodic, n_classes_of(name), info)


# --- digits -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _digits_pool() -> tuple[np.ndarray, np.ndarray]:
    """Read once per process (parsing scikit-learn's CSV costs ~20 ms a trial). Callers must not mutate."""
    data = np.loadtxt(digits_file(), delimiter=",")
    x, y = data[:, :-1] / 16.0, data[:, -1].astype(int)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def digits_file() -> Path:
    """The CSV ``sklearn.datasets.load_digits`` reads (pixels, then the label), shipped inside scikit-learn: read
    directly, since importing scikit-learn's datasets (scipy, pandas) takes seconds."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    if spec is None:
        _fail("name", "digits needs scikit-learn installed (it ships the data)")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"


def pixel_permutation(n: int = 64) -> np.ndarray:
    """The fixed scramble of ``digits_permuted``: independent of the trial seed."""
    return np.random.default_rng(PERMUTATION_SEED).permutation(n)


def _digits(cfg: DataConfig, seed: int) -> Dataset:
    x, y = _digits_pool()
    return _from_pool("digits", x, y, cfg, seed, "digits", (8, 8), False, {"scale": "pixel / 16"})


def _digits_permuted(cfg: DataConfig, seed: int) -> Dataset:
    x, y = _digits_pool()
    perm = pixel_permutation(x.shape[1])
    info = {"scale": "pixel / 16", "permutation_seed": PERMUTATION_SEED, "permutation": perm.tolist()}
    # split keyed on "digits": the very same samples as `digits`, only the columns move
    return _from_pool("digits_permuted", x[:, perm], y, cfg, seed, "digits", (8, 8), False, info)


# --- nlgp (Ingrosso & Goldt) ------------------------------------------------------------------


def circulant_spectrum(shape: tuple[int, ...], xi: float) -> tuple[np.ndarray, float]:
    """Eigenvalues of C(d) = exp(-d^2 / (2 xi^2)) on a ring/torus (nearest-image d), unit variance.

    Returns the spectrum (negative eigenvalues clipped to 0, then rescaled so C(0) = 1) and the
    share of spectral weight that was clipped (non-zero when xi is large compared to the side).
    """
    axes = [np.minimum(np.arange(n), n - np.arange(n)) ** 2 for n in shape]
    d2 = sum(np.meshgrid(*axes, indexing="ij"))
    spectrum = np.fft.fftn(np.exp(-d2 / (2.0 * xi**2))).real
    clipped = float(np.clip(-spectrum, 0.0, None).sum() / np.abs(spectrum).sum())
    spectrum = np.clip(spectrum, 0.0, None)
    return spectrum / spectrum.mean(), clipped  # C(0) = mean of the eigenvalues


def gaussian_field(n: int, shape: tuple[int, ...], xi: float, rng: np.random.Generator) -> np.ndarray:
    """n exact samples (n, *shape) of the translation-invariant field: z = F* sqrt(Lambda) F w."""
    spectrum, _ = circulant_spectrum(shape, xi)
    axes = tuple(range(1, len(shape) + 1))
    white = rng.standard_normal((n, *shape))
    return np.fft.ifftn(np.sqrt(spectrum) * np.fft.fftn(white, axes=axes), axes=axes).real


def erf_normaliser(gain: float) -> float:
    """Z(g) = std of erf(g z) for z ~ N(0, 1)."""
    return math.sqrt(2.0 / math.pi * math.asin(2.0 * gain**2 / (1.0 + 2.0 * gain**2)))


def nonlinear_field(z: np.ndarray, gain: float) -> np.ndarray:
    """x = erf(g z) / Z(g), unit variance; the Gaussian limit x = z at g = 0."""
    from scipy.special import erf

    return z if gain == 0 else erf(gain * z) / erf_normaliser(gain)


def _nlgp(cfg: DataConfig, seed: int) -> Dataset:
    shape = (cfg.side,) * cfg.dims
    rng = rng_for(seed, "nlgp", "samples")
    n0 = cfg.n_samples // 2
    counts, xis = (n0, cfg.n_samples - n0), (cfg.xi0, cfg.xi1)
    z = np.concatenate([gaussian_field(n, shape, xi, rng) for n, xi in zip(counts, xis)])
    x = nonlinear_field(z, cfg.gain).reshape(cfg.n_samples, -1)
    y = np.repeat([0, 1], counts)
    info = {
        "dims": cfg.dims,
        "side": cfg.side,
        "xi0": cfg.xi0,
        "xi1": cfg.xi1,
        "gain": cfg.gain,
        "normaliser": erf_normaliser(cfg.gain) if cfg.gain > 0 else 1.0,
        "kernel": "exp(-d^2/(2 xi^2)), nearest-image d, unit variance",
        "clipped_spectrum": [circulant_spectrum(shape, xi)[1] for xi in xis],
    }
    return _from_pool("nlgp", x, y, cfg, seed, "nlgp", shape, True, info)


# --- teacher ----------------------------------------------------------------------------------

# relu(a) for a ~ N(0, 1) has mean 1/sqrt(2 pi) and variance 1/2 - 1/(2 pi): subtracting and
# dividing keeps every hidden level near zero mean, unit variance, so depth does not kill the signal
_RELU_MEAN = 1.0 / math.sqrt(2.0 * math.pi)
_RELU_STD = math.sqrt(0.5 - 1.0 / (2.0 * math.pi))


def local_neighbourhoods(shape: tuple[int, ...], r: int) -> tuple[np.ndarray, np.ndarray]:
    """For each site (row-major), the flat indices of its r-per-axis neighbourhood and an in-lattice mask.

    Offsets per axis are ``arange(r) - r // 2`` (centred for odd r); both arrays are (n_sites, r**dims).
    """
    sites = np.indices(shape).reshape(len(shape), -1).T
    offsets = np.indices((r,) * len(shape)).reshape(len(shape), -1).T - r // 2
    neighbours = sites[:, None, :] + offsets[None, :, :]
    inside = np.all((neighbours >= 0) & (neighbours < np.asarray(shape)), axis=-1)
    clipped = np.clip(neighbours, 0, np.asarray(shape) - 1)  # masked entries point anywhere valid
    flat = np.ravel_multi_index(tuple(np.moveaxis(clipped, -1, 0)), shape)
    return flat, inside


@dataclass
class Teacher:
    """A planted network: depth-1 locally connected relu levels on the input lattice, then a dense readout."""

    neighbours: np.ndarray  # (n_in, K) flat indices of each site's neighbourhood
    local_weights: list[np.ndarray]  # one (n_in, K) per hidden level, zero outside the lattice
    readout: np.ndarray  # (2, n_in)
    readout_bias: np.ndarray  # (2,), set by calibrate() so the classes are balanced

    def levels(self, x: np.ndarray) -> list[np.ndarray]:
        """Activations of every level for inputs x (N, n_in): input, hidden levels, logits."""
        h = np.asarray(x, dtype=np.float64)
        out = [h]
        for weights in self.local_weights:
            pre = np.zeros_like(h)
            for k in range(self.neighbours.shape[1]):  # one offset at a time: memory N x n_in
                pre += h[:, self.neighbours[:, k]] * weights[:, k]
            h = (np.maximum(pre, 0.0) - _RELU_MEAN) / _RELU_STD
            out.append(h)
        out.append(h @ self.readout.T + self.readout_bias)
        return out

    def labels(self, x: np.ndarray) -> np.ndarray:
        return np.argmax(self.levels(x)[-1], axis=1).astype(np.int64)

    def calibrated(self, x: np.ndarray) -> "Teacher":
        """The same teacher with a bias putting the decision at the median logit difference over x."""
        logits = self.levels(x)[-1] - self.readout_bias
        median = float(np.median(logits[:, 1] - logits[:, 0]))
        return replace(self, readout_bias=np.array([0.0, -median]))


def make_teacher(shape: tuple[int, ...], depth: int, r: int, rng: np.random.Generator) -> Teacher:
    """Random weights; each local neuron's weights have unit norm over its in-lattice neighbourhood."""
    neighbours, inside = local_neighbourhoods(shape, r)
    local = []
    for _ in range(depth - 1):
        weights = rng.standard_normal(inside.shape) * inside
        local.append(weights / np.linalg.norm(weights, axis=1, keepdims=True))
    n_in = neighbours.shape[0]
    readout = rng.standard_normal((2, n_in)) / math.sqrt(n_in)
    return Teacher(neighbours, local, readout, np.zeros(2))


def teacher_inputs(cfg: DataConfig, seed: int) -> np.ndarray:
    """The teacher's inputs, i.i.d. N(0, 1) per site, float32 so labels are exact for the stored x."""
    rng = rng_for(seed, "teacher", "samples")
    return rng.standard_normal((cfg.n_samples, cfg.side**cfg.dims)).astype(np.float32)


def build_teacher(cfg: DataConfig, seed: int) -> Teacher:
    """The planted teacher of trial ``seed`` (weights seeded by it), calibrated on its own inputs."""
    shape = (cfg.side,) * cfg.dims
    teacher = make_teacher(shape, cfg.teacher_depth, cfg.teacher_receptive_field, rng_for(seed, "teacher", "weights"))
    return teacher.calibrated(teacher_inputs(cfg, seed))


def _teacher(cfg: DataConfig, seed: int) -> Dataset:
    shape = (cfg.side,) * cfg.dims
    teacher = build_teacher(cfg, seed)
    x = teacher_inputs(cfg, seed)
    y = teacher.labels(x)
    n_in = cfg.side**cfg.dims
    info = {
        "depth": cfg.teacher_depth,
        "receptive_field": cfg.teacher_receptive_field,
        "widths": [n_in] * cfg.teacher_depth + [2],
        "dims": cfg.dims,
        "side": cfg.side,
        "padding": "zero",
        "readout_bias": float(teacher.readout_bias[1]),
    }
    return _from_pool("teacher", x, y, cfg, seed, "teacher", shape, False, info)


# --- mnist ------------------------------------------------------------------------------------

MNIST_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _mnist(cfg: DataConfig, seed: int) -> Dataset:
    """The file's own train/test split; integer pixels are divided by 255. ``seed`` is unused."""
    arrays = read_mnist(cfg.path)
    xs, ys = [], []
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        scale = 255.0 if np.issubdtype(x.dtype, np.integer) else 1.0
        xs.append((x.reshape(len(x), -1) / scale).astype(np.float32))
        ys.append(y.astype(np.int64).ravel())
    info = {"path": cfg.path, "scale": "pixel / 255"}
    return Dataset("mnist", xs[0], ys[0], xs[1], ys[1], MNIST_SHAPE, False, 10, info)


def read_mnist(path: str) -> dict[str, np.ndarray]:
    """The four arrays of a keras-layout .npz, checked (images of 28 x 28, one label in 0..9 each); anything
    else is a ConfigError naming data.path, the file and what is wrong with it."""
    arrays = _read_npz(path, MNIST_KEYS)
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if x.shape[1:] not in (MNIST_SHAPE, (MNIST_SHAPE[0] * MNIST_SHAPE[1],)) or y.size != len(x):
            _fail("path", f"{path}: x_{part} {x.shape} / y_{part} {y.shape} are not (N, 28, 28) images with N labels")
        if x.dtype.kind not in "iuf" or y.dtype.kind not in "iuf":
            _fail("path", f"{path}: x_{part} / y_{part} hold {x.dtype} / {y.dtype}, not numbers")
        if not np.isin(y, np.arange(10)).all():
            _fail("path", f"{path}: labels must be the integers 0..9")
    return arrays


def _read_npz(path: str, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of an .npz archive, never unpickled; a file that is not such an archive (text, an
    .npy, gzip, truncated or corrupt) is a ConfigError naming it and why."""
    try:
        with open(path, "rb") as file:
            head = file.read(6)
    except OSError as err:
        _fail("path", f"{path}: cannot read it ({err.strerror})")
    # told apart by their first bytes: np.load calls anything it does not recognise "pickled data"
    if head.startswith(b"\x93NUMPY"):
        _fail("path", f"{path}: a single .npy array; expected an .npz archive of {', '.join(keys)}")
    if head.startswith(b"\x1f\x8b"):
        _fail("path", f"{path}: gzip-compressed; expected an .npz archive of {', '.join(keys)} (keras' mnist.npz)")
    if not head.startswith(b"PK"):
        _fail("path", f"{path}: not an .npz archive (a zip of .npy arrays such as keras' mnist.npz)")
    unreadable = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, MemoryError)
    try:
        archive = np.load(path, allow_pickle=False)
    except unreadable as err:  # a truncated archive has no directory: "not a zip file"
        _fail("path", f"{path}: not a readable .npz archive, truncated or corrupt ({err})")
    with archive:
        missing = [k for k in keys if k not in archive.files]
        if missing:
            _fail("path", f"{path}: missing arrays {', '.join(missing)}")
        # the sizes the archive declares (reading stops there): a huge array is refused before it is read
        gib = sum(archive.zip.getinfo(f"{k}.npy").file_size for k in keys) / 2**30
        if gib > MAX_DATA_GIB:
            _fail("path", f"{path}: its arrays hold {gib:.0f} GiB (at most {MAX_DATA_GIB})")
        try:
            return {k: archive[k] for k in keys}
        except unreadable as err:  # ValueError: also an object array, which only unpickling could read
            _fail("path", f"{path}: cannot read its arrays ({type(err).__name__}: {err})")


_LOADERS = {"digits": _digits, "digits_permuted": _digits_permuted, "nlgp": _nlgp, "teacher": _teacher, "mnist": _mnist}
