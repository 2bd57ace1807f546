"""What untrained networks read as: W0 of the studies' inits, by function and by the |W| pattern.

    python -m urn_study.reading.untrained --out docs/figures/untrained      # the table docs/results.md quotes (~2 min)

One row per (init scale, input mode, T, dataset, seed): the W0 a trial of that config starts from
(``urn_study.model.initial_weights``, zero biases), read on the dataset's held-out samples exactly as a trial
reads its W (``urn_study.reading.measure.measure_null``): the functional phase, its accuracy against the best of the
random reference networks, and beside it the |W| pattern's label and figures (``w_*``), which is what the
platform reported for every W before the functional reading.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from urn_study.data import DataConfig, load_dataset
from urn_study.layout import make_layout
from urn_study.model import initial_weights
from urn_study.reading.measure import measure_null, probe_of

INIT_SCALES = (0.05, 0.1)  # every init the shipped studies use
MODES = ("once", "clamp")
STEPS = (2, 3, 4, 5)
DATASETS = {
    "digits": DataConfig(name="digits"),
    "nlgp": DataConfig(name="nlgp", dims=2, side=8),
    "teacher": DataConfig(name="teacher"),
}
SEEDS = (0, 1, 2)


def untrained_table(
    init_scales=INIT_SCALES, modes=MODES, steps=STEPS, datasets=tuple(DATASETS), seeds=SEEDS, progress=None
) -> pd.DataFrame:
    rows = []
    for name, seed in itertools.product(datasets, seeds):
        data = load_dataset(DATASETS[name], seed)
        layout = make_layout(data.lattice_shape, data.n_classes, periodic=data.periodic)
        probe = probe_of(data.x_test, data.y_test, seed)
        for scale, mode, t in itertools.product(init_scales, modes, steps):
            model = SimpleNamespace(steps=t, input_mode=mode, readout="last", readout_from=1, activation="relu")
            W0 = initial_weights([seed], layout.size, scale)[0].numpy()
            null = measure_null(W0, layout, model, probe)
            f, w = null.function, null.weights
            rows.append(
                {
                    "init_scale": scale,
                    "input_mode": mode,
                    "steps": t,
                    "data": name,
                    "seed": seed,
                    "phase": f.phase,
                    "uncertain": f.uncertain,
                    "accuracy": f.accuracy,
                    "chance": f.chance,
                    "reference_accuracy": f.reference_accuracy,
                    "depth": f.depth,
                    "locality_all": f.locality_all,
                    "w_phase": w.phase,
                    "w_depth": w.depth,
                    "w_skip_share": w.skip_share,
                    "w_recurrence_share": w.recurrence_share,
                    "w_locality": w.locality,
                    "w_density": w.density,
                }
            )
            if progress:
                progress(len(rows))
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for untrained.csv")
    args = parser.parse_args(argv)
    total = len(INIT_SCALES) * len(MODES) * len(STEPS) * len(DATASETS) * len(SEEDS)
    table = untrained_table(progress=lambda n: print(f"\r{n}/{total} untrained networks read", end="", flush=True))
    print()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "untrained.csv", index=False)
    print(table.groupby(["input_mode", "phase"]).size().rename("networks").to_string())
    print(table.groupby(["input_mode", "w_phase"]).size().rename("networks (|W| pattern)").to_string())
    print(f"written to {out / 'untrained.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
