"""The Ingrosso-Goldt network on the platform's nlgp, at a reduced size (D = 40, time 1000): localisation at high gain.

Margins, measured over seeds 0..9 in units of the random-vector IPR 3/(D+2) = 0.071:
- their setting, g = 10: 1.85 .. 2.23; g = 0.01: 0.69 .. 0.88; ratio g=10 / g=0.01: 2.1 .. 3.0.
- a fixed training set of 300 samples, g = 10: 0.94 .. 1.28.
The tests use seed 0 and the thresholds 1.5 (above random), 1.8 (ratio) and 1.4 (killed).
"""

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from analysis.ingrosso_goldt import (
    CONDITIONS,
    PeerConfig,
    draw_ipr_against_gain,
    field90,
    ipr,
    random_ipr,
    run_conditions,
    train_peer,
)

SMALL = dict(D=40, time=1000)
RANDOM = random_ipr(40)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def their_setting():
    return {g: train_peer(PeerConfig(**SMALL, gain=g, seed=0)) for g in (0.01, 10.0)}


def test_measures_on_known_vectors():
    w = np.array([[0.0, 0.0, 2.0, 0.0], [1.0, -1.0, 1.0, -1.0], [3.0, 1.0, 1.0, 1.0]])
    assert np.allclose(ipr(w), [1.0, 0.25, 84 / 144])
    assert list(field90(w)) == [1, 4, 3]  # last row: 9, 10, 11 of 12 = 75%, 83%, 92% of the squared norm
    rows = np.random.default_rng(0).standard_normal((4000, 40))
    assert ipr(rows).mean() == pytest.approx(RANDOM, rel=0.03)


def test_their_setting_localises_at_high_gain_only(their_setting):
    low, high = their_setting[0.01]["ipr"], their_setting[10.0]["ipr"]
    assert high > 1.5 * RANDOM
    assert high > 1.8 * low
    assert low < 1.1 * RANDOM
    assert their_setting[10.0]["ipr_init"] < 1.2 * RANDOM  # it is learnt, not drawn
    assert their_setting[10.0]["field90"] < their_setting[0.01]["field90"]
    assert their_setting[10.0]["accuracy"] > 0.7  # the network did learn the task


def test_a_small_fixed_training_set_removes_it(their_setting):
    fixed = train_peer(PeerConfig(**SMALL, gain=10.0, seed=0, samples=300))
    assert fixed["ipr"] < 1.4 * RANDOM
    assert fixed["ipr"] < 0.75 * their_setting[10.0]["ipr"]


@pytest.mark.parametrize("samples", [0, 100])
def test_deterministic_for_a_seed(samples):
    config = PeerConfig(D=20, time=100, gain=3.0, samples=samples, seed=3)
    first, again, other = train_peer(config), train_peer(config), train_peer(PeerConfig(**{**config.__dict__, "seed": 4}))
    drop = ("seconds",)
    assert {k: v for k, v in first.items() if k not in drop} == {k: v for k, v in again.items() if k not in drop}
    assert first["ipr"] != other["ipr"]


def test_run_conditions_and_figure():
    base = PeerConfig(D=20, time=20)
    names = ["their setting", "URN-like at K = 8"]
    df = run_conditions(names, gains=(0.1, 3.0), seeds=(0, 1), progress=None, base=base)
    assert len(df) == 8 and list(df["condition"].unique()) == names
    assert set(df.columns) >= {"condition", "gain", "seed", "ipr", "ipr_init", "field90", "accuracy", "seconds", "random_ipr"}
    assert df["random_ipr"].eq(3 / 22).all() and np.isfinite(df["ipr"]).all()
    fig = draw_ipr_against_gain(df)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and len(ax.get_legend().get_texts()) == len(names) + 1


def test_conditions_are_valid_overrides():
    assert next(iter(CONDITIONS)) == "their setting" and CONDITIONS["their setting"] == {}
    fields = set(PeerConfig.__dataclass_fields__)
    assert all(set(overrides) <= fields for overrides in CONDITIONS.values())
    assert math.isclose(PeerConfig().xi1 / PeerConfig().xi0, 3.0)
