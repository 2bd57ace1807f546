"""A tiny study recorded with urn_study.tracking's own functions, loaded back as a table, re-read with other
thresholds, cached, and drawn by ``urn-study phase``.

The trials are planted networks (urn_study.reading.planted) of known phase, measured on Gaussian samples labelled by
their own outputs (the task is what they compute) and recorded as a sweep records them, so the table's
values are known exactly; one real trial (``run_trial``) checks the path from training.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.runs import latest_runs, load_study_runs, load_trial_artifacts, reclassify
from urn_study import tracking
from urn_study.config import parse_config, to_flat
from urn_study.layout import make_layout
from urn_study.model import initial_weights
from urn_study.reading.function import Network, Probe, Thresholds, run
from urn_study.reading.measure import measure, measure_null
from urn_study.reading.planted import plant_fully_connected, plant_locally_connected, plant_residual
from urn_study.tracking.study_table import TABLE_FILE, read_table, write_table
from urn_study.trial import FINAL_LISTS, TrialResult

STUDY = "tiny"
CHAIN = make_layout((16,), n_out=2, hidden_channels=3)
STEP = {"kind": "step", "before": 0.0, "after": 0.01, "epoch": 2}
# trial id -> (regulators.l1, regulators.locality, seed, planted phase)
TRIALS = {
    "tiny-0000": (0.0, 0.0, 0, "residual"),
    "tiny-0001": (0.0, 0.0, 1, "residual"),
    "tiny-0002": (0.0, 1e-2, 0, "locally_connected"),
    "tiny-0003": (0.0, 1e-2, 1, "fully_connected"),
    "tiny-0004": (1e-3, 0.0, 0, "fully_connected"),  # these two also switch regulators.self on at epoch 2
    "tiny-0005": (1e-3, 0.0, 1, "fully_connected"),
}
BUILD = {  # planted phase -> (W builder, model.steps)
    "residual": (lambda seed: plant_residual(CHAIN, [8, 6, 5], seed), 6),
    "locally_connected": (lambda seed: plant_locally_connected(CHAIN, 3, 3, seed), 3),
    "fully_connected": (lambda seed: plant_fully_connected(CHAIN, [10, 6], seed), 3),
}
STUDY_YAML = """\
name: tiny
base: {data.name: teacher, data.side: 16, model.hidden_channels: 3, train.epochs: 4, train.snapshot_every: 2}
grid: {regulators.l1: [0, 1.0e-3], regulators.locality: [0, 1.0e-2]}
seeds: [0, 1]
"""


def planted_probe(config, artifacts: dict) -> Probe:
    """Gaussian samples (seeded by the trial's seed) labelled by the planted network's own outputs."""
    net = Network.of(artifacts["W.npy"], artifacts["b.npy"], artifacts["layout.json"], config.model)
    return Probe.self_labelled(net, np.random.default_rng(config.seed).normal(size=(1500, CHAIN.n_in)))


def planted_result(trial_id: str) -> TrialResult:
    """A TrialResult as run_trial would return it, for a planted W (a sweep records it the same way)."""
    l1, locality, seed, phase = TRIALS[trial_id]
    build, steps = BUILD[phase]
    config = parse_config(
        {
            "data.name": "teacher",
            "data.side": 16,
            "model.hidden_channels": 3,
            "model.steps": steps,
            "regulators.l1": l1,
            "regulators.locality": locality,
            "seed": seed,
            "train.epochs": 4,
            "train.snapshot_every": 2,
            **({"regulators.self": STEP} if l1 else {}),
        }
    )
    W, b, W0 = build(seed), np.zeros(CHAIN.size), initial_weights([seed], CHAIN.size, 0.05)[0].numpy()
    x = np.random.default_rng(config.seed).normal(size=(1500, CHAIN.n_in))
    b[CHAIN.outputs] = -run(Network.of(W, b, CHAIN, config.model), x).mean(axis=0)  # both classes answered
    probe = planted_probe(config, {"W.npy": W, "b.npy": b, "layout.json": CHAIN})
    report = measure(W, b, CHAIN, config.model, probe, measure_null(W0, CHAIN, config.model, probe))
    history = [
        {"epoch": e, "task_loss": 1.0 / e, "train_accuracy": 0.95, "test_accuracy": 0.9, **(report.summary() if e % 2 == 0 else {})}
        for e in range(1, 5)
    ]
    structure = report.to_dict()
    metrics = {
        "test_accuracy": 0.9,
        "train_accuracy": 0.95,
        "task_loss": 0.25,
        **report.summary(),
        **{k: structure[k] for k in FINAL_LISTS},
        "depth": structure["depth"],
        "w_phase": structure["w_phase"],
        "null_phase": structure["null"]["phase"],
        "epochs": 4,
        "seconds": 0.5,
    }
    return TrialResult(config, metrics, structure, W, b, CHAIN, {2: W, 4: W}, history, {}, W0, {2: b, 4: b})


RECORDED = {trial_id: planted_result(trial_id) for trial_id in TRIALS}


def record(uri: str, study: str, results: dict[str, TrialResult], sweep: str = "sweep-1") -> None:
    """Record trials exactly as a sweep does: a parent run, then a child run per trial."""
    experiment = tracking.ensure_experiment(uri, study)
    parent = tracking.open_sweep_run(uri, experiment, study, sweep, {"searcher": "grid", "trials": len(results)})
    for trial_id, result in results.items():
        run = tracking.TrialRecord.open(uri, experiment, parent, study, sweep, trial_id, result.config)
        for row in result.history:
            run.log_epoch(row["epoch"], row)
        run.finish(result)
    tracking.close_sweep_run(uri, experiment, sweep, parent, "FINISHED")


def record_tiny_study(folder: Path) -> tuple[str, Path]:
    """The planted study recorded in ``folder/mlflow.db``; returns (tracking URI, study file)."""
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    record(uri, STUDY, RECORDED)
    study_file = folder / "tiny.yaml"
    study_file.write_text(STUDY_YAML)
    return uri, study_file


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("URN_RESULTS_DIR", str(folder / "urn_results"))  # artifacts of the local store go here
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        uri, study_file = record_tiny_study(folder)
        yield uri, study_file, folder


def test_table_types_and_values(store):
    uri, _, folder = store
    df = load_study_runs(STUDY, uri, cache_dir=folder / "cache")
    assert df["trial_id"].tolist() == list(TRIALS) and df["status"].eq("FINISHED").all()
    assert df["run_id"].str.len().eq(32).all()
    assert df["model.steps"].dtype == np.int64 and df["seed"].tolist() == [t[2] for t in TRIALS.values()]
    assert df["regulators.l1"].dtype == np.float64 and df["regulators.l1"].tolist() == [t[0] for t in TRIALS.values()]
    assert df["data.name"].eq("teacher").all() and df["train.lr"].dtype == np.float64
    assert df["data.path"].eq("").all()  # an empty string stays a string
    # a column holding a schedule stays text for every row (readable back as YAML / JSON)
    assert df["regulators.self"].tolist()[:4] == ["0.0"] * 4 and json.loads(df["regulators.self"][4]) == STEP
    assert df["phase"].tolist() == [t[3] for t in TRIALS.values()]  # the planted phases come back
    assert str(df["depth"].dtype) == "Int64" and df["depth"].tolist() == [4, 4, 3, 3, 3, 3]
    assert df["widths"].tolist() == [r.metrics["widths"] for r in RECORDED.values()]
    assert df["widths"].tolist()[2][:2] == [16, 16] and df["widths"].tolist()[3][:2] == [16, 10]
    assert df["block_widths"].tolist() == [r.metrics["block_widths"] for r in RECORDED.values()]
    assert df["test_accuracy"].tolist() == [0.9] * 6 and df["seconds"].eq(0.5).all()
    assert df["locality"][2] > 0.7 and df["sweep"].eq("sweep-1").all() and df["role"].eq("trial").all()
    assert isinstance(df["w_hop_spectrum"][0], list) and df["attempts"].eq(1).all()
    assert df["null_phase"].eq("dead").all() and df["w_phase"].notna().all()


def test_reclassify_with_other_thresholds(store):
    uri, _, folder = store
    df = load_study_runs(STUDY, uri, cache_dir=folder / "cache")
    same = reclassify(df, Thresholds(), uri, probe=planted_probe)
    assert same["phase"].tolist() == df["phase"].tolist() and same["reclassified"].all()
    assert same["widths"].tolist() == df["widths"].tolist() and same["depth"].tolist() == df["depth"].tolist()
    lax = reclassify(df, Thresholds(cost=0.99), uri, probe=planted_probe)  # no lesion costs enough any more
    assert lax["phase"].tolist()[:2] == ["shallow"] * 2 and lax["recorded_phase"].tolist() == df["phase"].tolist()
    strict = reclassify(df, Thresholds(locality=1.01), uri, probe=planted_probe)  # nothing local enough
    assert strict["phase"][2] == "fully_connected" and strict["depth"][2] == 3


def test_artifacts_read_in_place_or_downloaded(store):
    uri, _, folder = store
    row = load_study_runs(STUDY, uri, cache_dir=folder / "cache").iloc[2]
    in_place = load_trial_artifacts(row, uri)  # a local store: read from its artifact folder
    downloaded = load_trial_artifacts(row["run_id"], uri)  # by id only: through MLflow, as from a server
    np.testing.assert_array_equal(in_place["W.npy"], downloaded["W.npy"])
    assert in_place["layout.json"].size == CHAIN.size
    with pytest.raises(FileNotFoundError, match="no artifact 'nope.npy'"):
        load_trial_artifacts(row["run_id"], uri, names=("nope.npy",))


def test_cache_matches_the_store_and_follows_it(store, tmp_path):
    uri, _, _ = store
    cache = tmp_path / "cache"
    first = load_study_runs(STUDY, uri, cache_dir=cache)
    assert len(list(cache.glob("*.parquet"))) == 1
    again = load_study_runs(STUDY, uri, cache_dir=cache)
    pd.testing.assert_frame_equal(first, again)
    pd.testing.assert_frame_equal(first, load_study_runs(STUDY, uri, use_cache=False))
    extra = planted_result("tiny-0000")
    record(uri, STUDY, {"tiny-0099": extra}, sweep="sweep-2")  # a later sweep adds a run
    grown = load_study_runs(STUDY, uri, cache_dir=cache)
    assert grown["trial_id"].tolist() == [*TRIALS, "tiny-0099"]
    pd.testing.assert_frame_equal(grown.iloc[:6], first, check_like=True)
    tracking.client(uri).delete_run(grown["run_id"].iloc[-1])  # and deleting it takes it away again
    pd.testing.assert_frame_equal(load_study_runs(STUDY, uri, cache_dir=cache), first)
    later_sweep, sweep_id = tracking.latest_sweep_run(uri, STUDY)
    assert sweep_id == "sweep-2"
    tracking.client(uri).delete_run(later_sweep)  # leave the shared store as the other tests expect: sweep-1 the latest


def test_cache_follows_a_running_trial_to_its_end(store, tmp_path):
    uri, _, _ = store
    cache = tmp_path / "cache"
    experiment = tracking.ensure_experiment(uri, STUDY)
    parent = tracking.open_sweep_run(uri, experiment, STUDY, "sweep-live", {"searcher": "grid"})
    result = planted_result("tiny-0002")
    run = tracking.TrialRecord.open(uri, experiment, parent, STUDY, "sweep-live", "tiny-0100", result.config)
    run.log_epoch(1, result.history[0])
    run.flush()
    live = load_study_runs(STUDY, uri, cache_dir=cache).set_index("trial_id").loc["tiny-0100"]
    assert live["status"] == "RUNNING" and live["phase"] is None and live["test_accuracy"] == 0.9
    for row in result.history[1:]:
        run.log_epoch(row["epoch"], row)
    run.finish(result)
    done = load_study_runs(STUDY, uri, cache_dir=cache).set_index("trial_id").loc["tiny-0100"]
    assert done["status"] == "FINISHED" and done["phase"] == "locally_connected" and done["depth"] == 3
    tracking.client(uri).delete_run(run.run_id)  # leave the shared store as the other tests expect
    tracking.client(uri).delete_run(parent)


# --- the study tables the sweeps keep on their runs ---------------------------------------------------


def plain_load(uri: str) -> pd.DataFrame:
    """The study as MLflow's search of every run gives it: no local cache, no table."""
    return load_study_runs(STUDY, uri, use_cache=False, use_tables=False)


def table_load(uri: str) -> pd.DataFrame:
    """The study as a machine without the local cache reads it: the sweeps' tables, MLflow for the rest."""
    return load_study_runs(STUDY, uri, use_cache=False)


def sweep_table_file(uri: str, sweep_id: str) -> Path:
    client = tracking.client(uri)
    [run] = client.search_runs(
        [client.get_experiment_by_name(STUDY).experiment_id], f"tags.`urn.role` = 'sweep' and tags.`urn.sweep` = '{sweep_id}'"
    )
    return Path(run.info.artifact_uri.removeprefix("file://")) / TABLE_FILE


def test_the_sweeps_tables_give_the_same_frame_as_mlflows_search(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("URN_RESULTS_DIR", str(tmp_path / "urn_results"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ids = list(TRIALS)
    record(uri, STUDY, {t: RECORDED[t] for t in ids[:4]}, sweep="sweep-a")  # two sweeps of one study: two tables
    record(uri, STUDY, {t: RECORDED[t] for t in ids[4:]}, sweep="sweep-b")
    tables = {s: read_table(sweep_table_file(uri, s))[0] for s in ("sweep-a", "sweep-b")}
    assert sorted(tables["sweep-a"]["tag:urn.trial_id"]) == ids[:4] and sorted(tables["sweep-b"]["tag:urn.trial_id"]) == ids[4:]
    plain = plain_load(uri)
    assert plain["trial_id"].tolist() == ids
    pd.testing.assert_frame_equal(table_load(uri), plain)  # dtypes, columns, rows, values

    # the load reads the tables: a value only the table holds (its watermark past every run's end) shows
    frame, meta = read_table(sweep_table_file(uri, "sweep-a"))
    assert meta["watermark"] <= frame["end_time"].max()  # as written: the runs that ended last are asked again
    edited = frame.assign(**{"metric:test_accuracy": 0.125})
    write_table(edited, sweep_table_file(uri, "sweep-a"), "sweep-a", int(frame["end_time"].max()) + 1)
    assert table_load(uri)["test_accuracy"].tolist() == [0.125] * 4 + [0.9] * 2
    write_table(frame, sweep_table_file(uri, "sweep-a"), "sweep-a", meta["watermark"])

    # after the tables were written, MLflow wins: a run deleted, a trial resumed (newer values), a run of no sweep
    client = tracking.client(uri)
    experiment = client.get_experiment_by_name(STUDY).experiment_id
    gone = plain.loc[plain["trial_id"] == ids[1], "run_id"].item()
    client.delete_run(gone)
    resumed = plain.loc[plain["trial_id"] == ids[4], "run_id"].item()
    client.update_run(resumed, status="RUNNING")
    client.log_metric(resumed, "test_accuracy", 0.5, step=5)
    client.set_terminated(resumed, "FINISHED")
    single = tracking.TrialRecord.open_single(uri, experiment, STUDY, RECORDED[ids[0]].config, {})
    single.finish(RECORDED[ids[0]])
    after = plain_load(uri)
    assert gone not in set(after["run_id"]) and after.set_index("run_id").loc[resumed, "test_accuracy"] == 0.5
    assert len(after) == 6 and after["sweep"].isna().sum() == 1
    pd.testing.assert_frame_equal(table_load(uri), after)

    # a trial still running when its sweep's driver last wrote the table, then ending: followed to its end
    parent = tracking.open_sweep_run(uri, experiment, STUDY, "sweep-b", {"searcher": "grid"})  # resumed
    live = tracking.TrialRecord.open(uri, experiment, parent, STUDY, "sweep-b", "tiny-0100", RECORDED[ids[2]].config)
    live.log_epoch(1, RECORDED[ids[2]].history[0])
    live.flush()
    keeper = tracking.SweepTable(uri, experiment, "sweep-b", parent)
    assert keeper.update() == 3  # the table it found on the run, plus the new trial
    running = read_table(sweep_table_file(uri, "sweep-b"))[0].set_index("run_id").loc[live.run_id, "status"]
    assert running == "RUNNING"
    pd.testing.assert_frame_equal(table_load(uri), plain_load(uri))
    live.finish(RECORDED[ids[2]])
    assert table_load(uri).set_index("run_id").loc[live.run_id, "phase"] == "locally_connected"
    pd.testing.assert_frame_equal(table_load(uri), plain_load(uri))

    # a damaged table: MLflow's runs of that sweep instead, said in one warning line
    sweep_table_file(uri, "sweep-b").write_bytes(b"PAR1 cut short")
    caplog.clear()
    with caplog.at_level("WARNING", logger="urn_study.tracking"):
        pd.testing.assert_frame_equal(table_load(uri), plain_load(uri))
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "sweep-b" in said[0] and "sweep-a" not in said[0] and "\n" not in said[0], said
    sweep_table_file(uri, "sweep-b").unlink()  # and a missing one the same
    caplog.clear()
    with caplog.at_level("WARNING", logger="urn_study.tracking"):
        pd.testing.assert_frame_equal(table_load(uri), plain_load(uri))
    # said only once its sweep has ended: a running sweep has no table before its first batch (and its own report
    # at its end reads it before the final table is written)
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    client.set_terminated(parent, "FINISHED")
    with caplog.at_level("WARNING", logger="urn_study.tracking"):
        pd.testing.assert_frame_equal(table_load(uri), plain_load(uri))
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "sweep-b (no table)" in said[0], said


def test_latest_runs_keeps_one_run_per_trial():
    t = pd.to_datetime([1, 2, 3, 4, 5], unit="s", utc=True)
    df = pd.DataFrame(
        {
            "trial_id": ["a", "a", "b", "b", "c"],
            "run_id": list("12345"),
            "start_time": t,
            "status": ["FINISHED", "FINISHED", "FINISHED", "FAILED", "RUNNING"],
        }
    )
    assert latest_runs(df)["run_id"].tolist() == ["2", "3", "5"]  # b's later run failed: its finished one stays


def test_unknown_study_says_so(store):
    uri, _, _ = store
    with pytest.raises(LookupError, match="no study 'nope' recorded"):
        load_study_runs("nope", uri, use_cache=False)


def test_a_store_that_does_not_exist_is_said_and_not_created(tmp_path, monkeypatch, capsys):
    from urn_study.cli import main

    monkeypatch.setenv("URN_RESULTS_DIR", str(tmp_path / "urn_results"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    study_file = tmp_path / "tiny.yaml"
    study_file.write_text(STUDY_YAML)
    elsewhere = tmp_path / "elsewhere" / "mlflow.db"
    with pytest.raises(LookupError, match=f"no study 'tiny' recorded: no MLflow store at {elsewhere}"):
        load_study_runs(STUDY, f"sqlite:///{elsewhere}")
    assert main(["phase", str(study_file)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"no MLflow store at {tmp_path / 'urn_results' / 'mlflow.db'}" in err, err
    assert list(tmp_path.rglob("*")) == [study_file]  # no store, cache or figures folder was made


def test_a_real_trial_loads_back(tmp_path, monkeypatch):
    from urn_study.trial import run_trial

    monkeypatch.setenv("URN_RESULTS_DIR", str(tmp_path))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = parse_config(
        {
            "data.name": "teacher",
            "data.side": 8,
            "data.n_samples": 200,
            "model.steps": 2,
            "train.epochs": 2,
            "train.snapshot_every": 1,
            "regulators.self": STEP,
        }
    )
    result = run_trial(config)
    record(uri, "real", {"real-0000": result})
    df = load_study_runs("real", uri, use_cache=False)
    row = df.iloc[0]
    assert row["phase"] == result.metrics["phase"] and row["widths"] == result.metrics["widths"]
    assert row["depth"] == result.metrics["depth"] and row["test_accuracy"] == pytest.approx(result.metrics["test_accuracy"])
    assert all(row[k] == v for k, v in to_flat(config).items() if not isinstance(v, dict))
    # teacher data: the planted teacher's ground truth is in the record, and the recovery beside its nulls
    assert row["teacher_depth"] == 2 and row["teacher_widths"] == result.data_info["widths"] == [8, 8, 2]
    assert row["recovery_null_mlp"] == 0.5 and row["recovery_margin"] == pytest.approx(result.metrics["recovery_margin"])
    again = reclassify(df, Thresholds(), uri)  # on the trial's own held-out samples, generated again
    assert again["phase"][0] == row["phase"] and again["reclassified"][0]
    assert again["widths"][0] == row["widths"] and again["margin"][0] == pytest.approx(row["margin"])


# --- urn-study phase ---------------------------------------------------------------------------------


def test_phase_command_writes_figures_and_tables(store, tmp_path, capsys):
    from urn_study.cli import main

    uri, study_file, _ = store
    assert main(["phase", str(study_file), "--tracking-uri", uri, "--out", str(tmp_path / "fig")]) == 0
    printed = capsys.readouterr().out
    names = {p.name for p in (tmp_path / "fig").iterdir()}
    assert {"phase_diagram.png", "phase_diagram.svg", "phase_grid.csv", "runs.csv", "label_changes.csv", "gallery.png"} <= names
    changes = pd.read_csv(tmp_path / "fig" / "label_changes.csv")
    assert changes["trials"].sum() == 6 and set(changes["phase"]) == {"residual", "locally_connected", "fully_connected"}
    recorded = pd.Series([r.structure["w_phase"] for r in RECORDED.values()]).value_counts()
    assert changes.groupby("w_phase")["trials"].sum().to_dict() == recorded.to_dict()
    lifetimes = sorted(n for n in names if n.startswith("lifetime_"))
    # the two trials with a schedule (self switched on at epoch 2), each with its transition
    assert lifetimes == ["lifetime_tiny-0004.png", "lifetime_tiny-0004.svg", "lifetime_tiny-0005.png", "lifetime_tiny-0005.svg"]
    moves = pd.read_csv(tmp_path / "fig" / "transitions.csv")
    assert sorted(moves["trial_id"]) == ["tiny-0004", "tiny-0005"] and set(moves["change_epoch"]) == {2}
    assert "x=regulators.l1, y=regulators.locality" in printed and str(tmp_path / "fig") in printed
    grid = pd.read_csv(tmp_path / "fig" / "phase_grid.csv")
    assert grid[["regulators.l1", "regulators.locality", "phase", "agreement", "n"]].values.tolist() == [
        [0.0, 0.0, "residual", 1.0, 2],
        [0.0, 0.01, "locally_connected", 0.5, 2],
        [0.001, 0.0, "fully_connected", 1.0, 2],
    ]
    assert len(pd.read_csv(tmp_path / "fig" / "runs.csv")) >= 6
    # the latest sweep's run carries the report and the sweep's summary (the planted trials as recorded)
    client = tracking.client(uri)
    [sweep] = client.search_runs([client.get_experiment_by_name(STUDY).experiment_id], "tags.`urn.role` = 'sweep'")
    phases = Counter(r.metrics["phase"] for r in RECORDED.values())
    summary = sweep.data.metrics
    assert {k: summary[k] for k in summary if k.startswith("trials_")} == {f"trials_{p}": n for p, n in phases.items()}
    assert summary["failed"] == 0 and summary["diverged"] == 0 and summary["trials"] == len(RECORDED)
    assert summary["best_test_accuracy_residual"] == pytest.approx(0.9)
    files = {a.path for a in client.list_artifacts(sweep.info.run_id, "phase")}
    assert files == {f"phase/{n}" for n in ("phase_diagram.png", "phase_diagram.svg", "gallery.png", "phase_grid.csv")}
    recorded_grid = client.download_artifacts(sweep.info.run_id, "phase/phase_grid.csv", str(tmp_path))
    assert Path(recorded_grid).read_text() == (tmp_path / "fig" / "phase_grid.csv").read_text()


def test_phase_command_errors_are_one_line(store, tmp_path, capsys):
    from urn_study.cli import main

    uri, study_file, _ = store
    assert main(["phase", str(study_file), "--tracking-uri", uri, "--x", "regulators.l2x", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--x regulators.l2x" in err and "regulators.l2" in err
    empty = tmp_path / "other.yaml"
    empty.write_text(STUDY_YAML.replace("name: tiny", "name: never-run"))
    assert main(["phase", str(empty), "--tracking-uri", uri, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "never-run" in err and "urn-study sweep" in err


@pytest.mark.slow
def test_a_study_on_an_mlflow_server(mlflow_server, results):
    """Through a real server: artifacts are downloaded (proxied), the cache sits under urn_results."""
    record(mlflow_server, "served", {t: RECORDED[t] for t in ("tiny-0000", "tiny-0002")})
    df = load_study_runs("served", mlflow_server)
    assert df["phase"].tolist() == ["residual", "locally_connected"] and df["depth"].tolist() == [4, 3]
    assert not df["artifact_uri"].str.startswith("file:").any()
    assert list((results / "study_cache").glob("served-*.parquet"))
    pd.testing.assert_frame_equal(load_study_runs("served", mlflow_server), df)
    plain = load_study_runs("served", mlflow_server, use_cache=False, use_tables=False)
    pd.testing.assert_frame_equal(load_study_runs("served", mlflow_server, use_cache=False), plain)  # table downloaded
    again = reclassify(df, Thresholds(locality=1.01), mlflow_server, probe=planted_probe)
    assert again["phase"].tolist() == ["residual", "fully_connected"] and again["reclassified"].all()
