"""Tests of urn_study.data: shapes, determinism, the geometry each dataset is meant to carry."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from scipy.stats import kurtosis
from sklearn.linear_model import LogisticRegression

from urn_study.config import ConfigError
from urn_study.data import (
    DATASETS,
    DataConfig,
    Dataset,
    build_teacher,
    circulant_spectrum,
    gaussian_field,
    load_dataset,
    local_neighbourhoods,
    pixel_permutation,
    stratified_split,
)

SMALL = {"n_samples": 600}
CASES = {
    "digits": DataConfig(name="digits"),
    "digits_permuted": DataConfig(name="digits_permuted"),
    "nlgp_1d": DataConfig(name="nlgp", dims=1, side=16, **SMALL),
    "nlgp_2d": DataConfig(name="nlgp", dims=2, side=8, **SMALL),
    "teacher_1d": DataConfig(name="teacher", dims=1, side=16, **SMALL),
    "teacher_2d": DataConfig(name="teacher", dims=2, side=8, **SMALL),
}
EXPECTED = {  # lattice_shape, n_classes, periodic
    "digits": ((8, 8), 10, False),
    "digits_permuted": ((8, 8), 10, False),
    "nlgp_1d": ((16,), 2, True),
    "nlgp_2d": ((8, 8), 2, True),
    "teacher_1d": ((16,), 2, False),
    "teacher_2d": ((8, 8), 2, False),
}


def all_samples(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([ds.x_train, ds.x_test]), np.concatenate([ds.y_train, ds.y_test])


def neighbour_correlation(x: np.ndarray, shape: tuple[int, ...]) -> float:
    """Mean Pearson correlation (over samples) of sites adjacent along the last lattice axis."""
    grid = x.reshape(len(x), *shape)
    a = grid[..., :-1].reshape(len(x), -1)
    b = grid[..., 1:].reshape(len(x), -1)
    a, b = a - a.mean(0), b - b.mean(0)
    denom = np.sqrt((a**2).sum(0) * (b**2).sum(0))
    keep = denom > 1e-9  # constant border pixels of the digits carry no correlation
    return float(((a * b).sum(0)[keep] / denom[keep]).mean())


# --- every dataset ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_shapes_dtypes_and_balance(case: str) -> None:
    cfg = CASES[case]
    ds = load_dataset(cfg, seed=0)
    shape, n_classes, periodic = EXPECTED[case]
    assert ds.lattice_shape == shape and ds.n_classes == n_classes and ds.periodic is periodic
    assert ds.n_in == int(np.prod(shape))
    assert ds.x_train.dtype == np.float32 and ds.x_test.dtype == np.float32
    assert ds.y_train.dtype == np.int64 and ds.y_test.dtype == np.int64
    assert ds.x_train.shape == (len(ds.y_train), ds.n_in) and ds.x_test.shape == (len(ds.y_test), ds.n_in)
    n_total = len(ds.y_train) + len(ds.y_test)
    assert len(ds.y_test) == pytest.approx(cfg.test_fraction * n_total, abs=n_classes)
    for y in (ds.y_train, ds.y_test):
        counts = np.bincount(y, minlength=n_classes)
        assert counts.min() >= 0.85 * counts.max(), counts  # balanced (digits: nearly)
    json.dumps(ds.info)  # must go into MLflow params / JSON records


@pytest.mark.parametrize("case", ["digits", "nlgp_2d", "teacher_1d"])
def test_deterministic_in_seed(case: str) -> None:
    a, b, c = (load_dataset(CASES[case], seed) for seed in (3, 3, 4))
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.info == b.info
    assert not np.array_equal(a.x_train, c.x_train)  # another split (digits) or other samples


def test_stratified_split_partitions_every_class() -> None:
    y = np.repeat(np.arange(3), [10, 7, 2])
    train, test = stratified_split(y, 0.25, np.random.default_rng(0))
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(y)))
    for label in range(3):  # every class on both sides, even the tiny one
        assert (y[train] == label).any() and (y[test] == label).any()


def test_negative_seed_is_refused() -> None:
    with pytest.raises(ValueError, match="seed"):
        load_dataset(DataConfig(), seed=-1)


# --- digits and digits_permuted -----------------------------------------------------------------


def test_digits_pixels_in_unit_range() -> None:
    x, y = all_samples(load_dataset(DataConfig(name="digits"), 0))
    assert len(y) == 1797 and x.min() == 0.0 and x.max() == 1.0


def test_digits_are_scikit_learns_samples() -> None:
    """Read from the file scikit-learn ships, not through its datasets module (seconds to import): the same data."""
    from sklearn.datasets import load_digits

    from urn_study.data import _digits_pool

    x, y = _digits_pool()
    reference = load_digits()
    np.testing.assert_array_equal(x * 16, reference.data)
    np.testing.assert_array_equal(y, reference.target)


def test_permuted_digits_are_a_fixed_column_permutation() -> None:
    for seed in (0, 1):
        plain = load_dataset(DataConfig(name="digits"), seed)
        scrambled = load_dataset(DataConfig(name="digits_permuted"), seed)
        perm = np.asarray(scrambled.info["permutation"])
        np.testing.assert_array_equal(perm, pixel_permutation())  # the same for every trial seed
        assert sorted(perm.tolist()) == list(range(64)) and (perm != np.arange(64)).any()
        np.testing.assert_array_equal(scrambled.x_train, plain.x_train[:, perm])
        np.testing.assert_array_equal(scrambled.x_test, plain.x_test[:, perm])
        np.testing.assert_array_equal(scrambled.y_train, plain.y_train)
        np.testing.assert_array_equal(scrambled.y_test, plain.y_test)


def test_permutation_destroys_local_correlation() -> None:
    plain = neighbour_correlation(load_dataset(DataConfig(name="digits"), 0).x_train, (8, 8))
    scrambled = neighbour_correlation(load_dataset(DataConfig(name="digits_permuted"), 0).x_train, (8, 8))
    assert plain > 0.25 and abs(scrambled) < 0.1, (plain, scrambled)


# --- nlgp -----------------------------------------------------------------------------------------


def test_gaussian_field_has_the_planted_covariance() -> None:
    xi = 2.0
    z = gaussian_field(20000, (16,), xi, np.random.default_rng(0))
    cov = z.T @ z / len(z)
    for d in (0, 1, 2, 3):  # translation invariant: average over all pairs at ring distance d
        measured = np.mean([cov[i, (i + d) % 16] for i in range(16)])
        assert measured == pytest.approx(np.exp(-(d**2) / (2 * xi**2)), abs=0.03)


def test_long_correlations_keep_unit_variance_after_clipping() -> None:
    spectrum, clipped = circulant_spectrum((8, 8), 6.0)  # xi near the side: the periodic kernel is not PSD
    assert clipped > 0.03 and spectrum.min() >= 0.0
    assert spectrum.mean() == pytest.approx(1.0)  # C(0) = mean eigenvalue
    z = gaussian_field(10000, (8, 8), 6.0, np.random.default_rng(0))
    assert z.var() == pytest.approx(1.0, abs=0.04)


@pytest.mark.parametrize("case", ["nlgp_1d", "nlgp_2d"])
def test_nlgp_unit_variance_and_longer_correlation_for_larger_xi(case: str) -> None:
    cfg = CASES[case]
    ds = load_dataset(cfg, seed=0)
    x, y = all_samples(ds)
    assert x.var() == pytest.approx(1.0, abs=0.06)
    assert abs(x.mean()) < 0.05
    corr = [neighbour_correlation(x[y == c], ds.lattice_shape) for c in (0, 1)]
    assert cfg.xi1 > cfg.xi0 and corr[1] > corr[0] + 0.2, corr
    flipped = load_dataset(replace(cfg, xi0=cfg.xi1, xi1=cfg.xi0), seed=0)
    x, y = all_samples(flipped)
    assert neighbour_correlation(x[y == 0], ds.lattice_shape) > neighbour_correlation(x[y == 1], ds.lattice_shape)


def test_gain_sets_how_non_gaussian_the_marginals_are() -> None:
    def marginal_kurtosis(gain: float) -> float:
        x, _ = all_samples(load_dataset(replace(CASES["nlgp_2d"], gain=gain), seed=0))
        return float(kurtosis(x.ravel(), fisher=False))

    assert marginal_kurtosis(0.0) == pytest.approx(3.0, abs=0.2)  # g = 0: exactly Gaussian
    assert marginal_kurtosis(3.0) < 1.5  # erf saturates: nearly binary, far from 3
    x, _ = all_samples(load_dataset(replace(CASES["nlgp_2d"], gain=3.0), seed=0))
    assert x.var() == pytest.approx(1.0, abs=0.06)  # Z(g) keeps unit variance at any gain


# --- teacher --------------------------------------------------------------------------------------


def test_teacher_info_carries_the_ground_truth() -> None:
    cfg = DataConfig(name="teacher", dims=2, side=6, teacher_depth=3, teacher_receptive_field=3, **SMALL)
    ds = load_dataset(cfg, seed=0)
    assert ds.info["depth"] == 3 and ds.info["receptive_field"] == 3
    assert ds.info["widths"] == [36, 36, 36, 2]
    assert len(np.unique(ds.y_train)) == 2


def test_teacher_labels_are_its_function_of_the_stored_inputs() -> None:
    cfg = CASES["teacher_2d"]
    ds = load_dataset(cfg, seed=5)
    teacher = build_teacher(cfg, seed=5)
    np.testing.assert_array_equal(teacher.labels(ds.x_train), ds.y_train)
    np.testing.assert_array_equal(teacher.labels(ds.x_test), ds.y_test)
    other = build_teacher(cfg, seed=6)
    assert not np.array_equal(other.readout, teacher.readout)  # weights follow the trial seed
    assert (other.labels(ds.x_test) != ds.y_test).mean() > 0.2


@pytest.mark.parametrize("dims", [1, 2])
def test_teacher_levels_only_see_their_receptive_field(dims: int) -> None:
    """Perturbing input site j moves level l only within l * (r // 2) sites per axis of j."""
    side, r, depth = (15, 3, 4) if dims == 1 else (9, 3, 3)
    shape = (side,) * dims
    cfg = DataConfig(name="teacher", dims=dims, side=side, teacher_depth=depth, teacher_receptive_field=r, **SMALL)
    teacher = build_teacher(cfg, seed=0)
    x = np.random.default_rng(1).standard_normal((200, side**dims))
    centre = tuple(s // 2 for s in shape)
    j = np.ravel_multi_index(centre, shape)
    bumped = x.copy()
    bumped[:, j] += 1.0
    sites = np.indices(shape).reshape(dims, -1).T
    reach = np.abs(sites - np.asarray(centre)).max(axis=1)  # Chebyshev distance to site j
    hidden = zip(teacher.levels(x)[1:-1], teacher.levels(bumped)[1:-1])
    for level, (before, after) in enumerate(hidden, start=1):
        moved = np.abs(after - before).max(axis=0) > 1e-12
        assert not moved[reach > level * (r // 2)].any(), f"level {level} moved outside its reach"
        assert moved[reach == level * (r // 2)].any(), f"level {level} never reached its edge"


def test_local_neighbourhoods_are_zero_padded_at_the_border() -> None:
    neighbours, inside = local_neighbourhoods((4,), 3)
    assert inside.tolist() == [[False, True, True], [True] * 3, [True] * 3, [True, True, False]]
    np.testing.assert_array_equal(neighbours[1], [0, 1, 2])


@pytest.mark.parametrize(("depth", "floor"), [(1, 0.85), (2, 0.65)])
def test_teacher_labels_are_learnable_from_x(depth: int, floor: float) -> None:
    cfg = DataConfig(name="teacher", dims=1, side=16, teacher_depth=depth, n_samples=2000)
    ds = load_dataset(cfg, seed=0)
    clf = LogisticRegression(max_iter=1000).fit(ds.x_train, ds.y_train)
    assert clf.score(ds.x_test, ds.y_test) > floor


# --- mnist ----------------------------------------------------------------------------------------


def fake_mnist(path, n_train: int = 12, n_test: int = 6) -> None:
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        y_train=rng.integers(0, 10, n_train, dtype=np.uint8),
        x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        y_test=rng.integers(0, 10, n_test, dtype=np.uint8),
    )


def test_mnist_from_a_local_npz(tmp_path) -> None:
    path = tmp_path / "mnist.npz"
    fake_mnist(path)
    ds = load_dataset(DataConfig(name="mnist", path=str(path)), seed=0)
    assert ds.x_train.shape == (12, 784) and ds.x_test.shape == (6, 784)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0 and ds.x_train.max() > 0.9
    assert ds.lattice_shape == (28, 28) and ds.n_classes == 10 and not ds.periodic
    with np.load(path) as raw:
        np.testing.assert_allclose(ds.x_test[0], raw["x_test"][0].ravel() / 255.0, rtol=1e-6)
        np.testing.assert_array_equal(ds.y_train, raw["y_train"])


def test_mnist_missing_file_names_key_and_path(tmp_path) -> None:
    path = str(tmp_path / "nowhere" / "mnist.npz")
    with pytest.raises(ValueError, match=r"data\.path") as err:
        load_dataset(DataConfig(name="mnist", path=path), seed=0)
    assert path in str(err.value)
    with pytest.raises(ValueError, match=r"^data\.path:"):
        DataConfig(name="mnist").check()


def test_mnist_with_wrong_arrays_is_refused(tmp_path) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=np.zeros((3, 8, 8), np.uint8), y_train=np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match=r"data\.path: .*missing arrays x_test, y_test"):
        load_dataset(DataConfig(name="mnist", path=str(path)), seed=0)


def unreadable_files(folder) -> dict[str, str]:
    """Files that are no keras-layout .npz, each with the words the error must hold."""
    np.save(folder / "array.npy", np.zeros(3))
    fake_mnist(folder / "whole.npz")
    whole = (folder / "whole.npz").read_bytes()
    (folder / "truncated.npz").write_bytes(whole[: len(whole) // 2])
    (folder / "garbage.npz").write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    (folder / "mnist.gz").write_bytes(b"\x1f\x8b\x08\x00" + bytes(64))
    np.savez(
        folder / "objects.npz",
        x_train=np.array([None] * 3, dtype=object),
        y_train=np.zeros(3),
        x_test=np.zeros((2, 28, 28)),
        y_test=np.zeros(2),
    )
    np.savez(
        folder / "labels.npz",
        x_train=np.zeros((3, 28, 28)),
        y_train=np.full(3, np.nan),
        x_test=np.zeros((2, 28, 28)),
        y_test=np.zeros(2),
    )
    return {
        "/etc/passwd": "not an .npz archive",
        str(folder / "array.npy"): "single .npy array",
        str(folder / "truncated.npz"): "truncated or corrupt",
        str(folder / "garbage.npz"): "truncated or corrupt",
        str(folder / "mnist.gz"): "gzip",
        str(folder / "objects.npz"): "Object arrays",
        str(folder / "labels.npz"): "labels must be the integers 0..9",
    }


def test_an_unreadable_data_file_is_one_config_error_naming_it(tmp_path) -> None:
    for path, words in unreadable_files(tmp_path).items():
        with pytest.raises(ConfigError) as info:
            load_dataset(DataConfig(name="mnist", path=path), seed=0)
        message = str(info.value)
        assert message.startswith(f"data.path: {path}") and words in message and "\n" not in message, message


def test_train_on_an_unreadable_data_file_is_one_line_and_nothing_else(capsys) -> None:
    from urn_study import cli

    assert cli.main(["train", "--set", "data.name=mnist", "--set", "data.path=/etc/passwd"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "data.path: /etc/passwd" in err, (out, err)


# --- DataConfig.check ----------------------------------------------------------------------------

BAD = [
    ("name", {"name": "cifar"}),
    ("dims", {"dims": 3}),
    ("side", {"side": 1}),
    ("xi0", {"xi0": 0.0}),
    ("xi1", {"xi1": -1.0}),
    ("xi1", {"name": "nlgp", "xi0": 2.0, "xi1": 2.0}),
    ("gain", {"gain": -0.1}),
    ("n_samples", {"n_samples": 3}),
    ("test_fraction", {"test_fraction": 1.0}),
    ("test_fraction", {"test_fraction": 0.0}),
    ("teacher_depth", {"teacher_depth": 0}),
    ("teacher_receptive_field", {"teacher_receptive_field": 0}),
    ("teacher_receptive_field", {"name": "teacher", "side": 4, "teacher_receptive_field": 5}),
    ("path", {"name": "mnist"}),
    ("switch_to", {"switch_to": "cifar", "switch_epoch": 3}),
    ("switch_to", {"switch_to": "digits", "switch_epoch": 3}),  # to itself
    ("switch_to", {"switch_to": "nlgp", "switch_epoch": 3}),  # (8, 8) -> (16,): neurons cannot move
    ("switch_to", {"name": "nlgp", "dims": 2, "side": 8, "switch_to": "digits", "switch_epoch": 3}),  # 10 > 2 classes
    ("switch_to", {"name": "digits", "dims": 2, "side": 8, "switch_to": "nlgp", "switch_epoch": 1}),  # 2 < 10 classes
    ("switch_epoch", {"switch_to": "digits_permuted"}),
    ("switch_epoch", {"switch_epoch": -1}),
    ("side", {"name": "nlgp", "side": 10**6}),  # 60 GiB of samples: refused before allocating
    ("n_samples", {"name": "teacher", "dims": 2, "side": 64, "n_samples": 10**6}),
    ("switch_back_epoch", {"switch_back_epoch": 5}),  # nothing to switch back from
    ("switch_back_epoch", {"switch_to": "digits_permuted", "switch_epoch": 5, "switch_back_epoch": 5}),
]


@pytest.mark.parametrize(("field", "kwargs"), BAD, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD)])
def test_check_names_the_field(field: str, kwargs: dict) -> None:
    with pytest.raises(ValueError, match=rf"^data\.{field}: "):
        DataConfig(**kwargs).check()


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"name": "nlgp", "gain": 0.0},
        {"xi0": 2.0, "xi1": 2.0},  # equal lengths only matter when nlgp is used
        {"switch_to": "digits_permuted", "switch_epoch": 5},
        {"name": "nlgp", "switch_to": "teacher", "switch_epoch": 2},
    ],
)
def test_check_accepts_valid_configs(kwargs: dict) -> None:
    DataConfig(**kwargs).check()


def test_switched_config_loads_the_new_geometry() -> None:
    cfg = DataConfig(name="digits", switch_to="digits_permuted", switch_epoch=4)
    after = cfg.switched()
    assert after.name == "digits_permuted" and after.switch_to == ""
    assert load_dataset(after, 0).lattice_shape == load_dataset(cfg, 0).lattice_shape


def test_datasets_tuple_is_the_public_list() -> None:
    assert DATASETS == ("digits", "digits_permuted", "nlgp", "teacher", "mnist")
