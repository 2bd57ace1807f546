"""Each benchmark runs in its seconds-long smoke form and prints the machine and its table."""

import importlib.util
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from urn_study.regulators import linear_cost, strengths_at
from urn_study.trial import _train_step

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name,header", [("train_efficiency", "ratio"), ("trials_per_worker", "trials/hour"), ("lesion_cost", "S")])
def test_smoke_run_prints_machine_and_figures(name, header, capsys):
    _load(name).main(["--smoke"])
    out = capsys.readouterr().out
    assert "torch " in out and "cores" in out
    table = out[out.index(header) :].splitlines()
    assert len(table) >= 2 and table[1].split()[0].isdigit()


class _PassesOverW(TorchDispatchMode):
    """Counts whole-tensor reads and writes of tensors with W's number of elements, per op, outside the matrix
    products (and views, which move nothing)."""

    def __init__(self, numel: int):
        super().__init__()
        self.numel, self.passes = numel, Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func.overloadpacket.__name__
        if name in ("bmm", "baddbmm", "mm", "addmm") or func.is_view:
            return out
        reads, writes = set(), set()
        for i, arg in enumerate(func._schema.arguments):
            value = args[i] if i < len(args) else kwargs.get(arg.name)
            for t in value if isinstance(value, (list, tuple)) else [value]:
                if not (isinstance(t, torch.Tensor) and t.numel() == self.numel):
                    continue
                if name not in ("new_zeros", "new_empty", "zeros_like", "empty_like"):  # these read the shape only
                    reads.add(t.data_ptr())
                written = arg.alias_info is not None and arg.alias_info.is_write
                if (name, arg.name) == ("_fused_adam_", "grads"):  # its schema lets it write them: only to unscale
                    written = kwargs.get("grad_scale") is not None
                if written:
                    writes.add(t.data_ptr())
        for t in out if isinstance(out, (list, tuple)) else [out]:
            if isinstance(t, torch.Tensor) and t.numel() == self.numel and t.data_ptr() not in reads:
                writes.add(t.data_ptr())
        if reads or writes:
            self.passes[name] += len(reads) + len(writes)
        return out


def test_gpu_plan_counts_the_passes_over_W_that_a_training_step_makes(capsys):
    """The plan's "now" is what the trial's own step does (all five regulators on, T = 3), counted op by op;
    its bytes and ratio follow from that count, the device's bandwidth and the products' FLOPs."""
    module = _load("train_efficiency")
    batch = module.make_batch(200, 2, 128, 3)
    strengths = strengths_at(batch.configs, 0, batch.device)
    cost = linear_cost(batch.costs, strengths, batch.waits)
    x, y, mask = batch.x_train[:, :128], batch.y_train[:, :128], torch.ones(2)
    _train_step(batch, x, y, mask, cost, strengths)  # Adam's moments exist from here on, as in training
    with _PassesOverW(batch.model.W.numel()) as counted:
        _train_step(batch, x, y, mask, cost, strengths)
    now = [passes for how, passes in module.UPDATE_PASSES.items() if how.startswith("now")]
    assert now == [sum(counted.passes.values())], counted.passes
    assert counted.passes["_fused_adam_"] == 7  # W, its gradient and both moments read; W and the moments written
    row = next(r for r in module.gpu_plan([1034], 4, 256, 3) if r["update"].startswith("now") and r["gpu"] == "H200")
    assert row["bytes"] == now[0] * 4 * 4 * 1034**2
    module.main(["--gpu-plan"])
    out = capsys.readouterr().out
    assert "67 TFLOP/s" in out and out.count("H200") == 2 * len(module.UPDATE_PASSES)


def test_boundary_search_smoke_locates_the_synthetic_boundary_in_fewer_trials(capsys):
    _load("boundary_search").main(["--smoke"])
    out = capsys.readouterr().out
    assert "cores" in out and "same answer" in out
    searched, dense, ratio = _numbers(out, "locality at l1 1e-4")[:3]
    assert dense / searched == pytest.approx(ratio, abs=0.05) and ratio >= 3


def _numbers(out: str, label: str) -> list[float]:
    """The numbers on the line that starts with ``label``, in order (words and "(12.3)" skipped)."""
    line = next(line for line in out.splitlines() if line.startswith(label))
    numbers = []
    for word in line[len(label) :].split():
        try:
            numbers.append(float(word))
        except ValueError:
            pass
    return numbers


def _ratio_of_rounded(a: float, b: float, ratio: float) -> bool:
    """Whether ``ratio`` (printed to 0.001) can be a / b of the unrounded walls that printed as a and b (to 0.1 s)."""
    return (a - 0.05) / (b + 0.05) - 0.0005 <= ratio <= (a + 0.05) / (b - 0.05) + 0.0005


@pytest.mark.slow  # starts Ray three times and a local MLflow store: ~30 s
def test_sweep_overhead_smoke_prints_ratio_and_where_time_goes(capsys):
    _load("sweep_overhead").main(["--smoke"])
    out = capsys.readouterr().out
    assert "torch " in out and "cores" in out
    assert "plain workers: torch threads 1;" in out  # one thread each, as Ray gives a 1-CPU trial
    plain, _ = _numbers(out, "plain loop")
    ray_up, per_hour, ratio, _ = _numbers(out, "Ray + MLflow, Ray up")
    assert plain > 0 and ray_up > 0 and per_hour == pytest.approx(2 / ray_up * 3600, rel=0.01)
    assert _ratio_of_rounded(ray_up, plain, ratio)
    tune_alone, _, tune_ratio, _ = _numbers(out, "Ray Tune alone, Ray up")  # the same trials, nothing recorded
    assert tune_alone > 0 and _ratio_of_rounded(tune_alone, plain, tune_ratio)
    assert _ratio_of_rounded(ray_up, tune_alone, _numbers(out, "the record's share")[0])
    assert "target: Ray up within 5%" in out and "queue each epoch's metrics" in out
    for side in ("plain   ", "Tune    ", "Ray up  "):  # where the time goes, for each way of running
        assert len(_numbers(out, f"  {side}")) == 6
    if Path("/proc/stat").is_file():  # Linux: what the whole machine did meanwhile, for each way of running
        for side in ("plain   ", "Tune    ", "Ray up  "):
            assert _numbers(out, f"  {side} context switches/s")[0] > 0
        for side in ("plain   ", "Tune    "):  # and what each trial's thread did: it ran, so it was on a core
            on_core, waiting, _ = _numbers(out, f"  {side} on a core")
            assert on_core > 0 and waiting >= 0


@pytest.mark.slow  # makes an MLflow store of 100 recorded runs, runs `urn-study phase` on it and reads it two ways: ~30 s
def test_analysis_scale_smoke_times_each_step_and_the_phase_command(capsys, tmp_path):
    module = _load("analysis_scale")
    module.main(["--smoke", str(tmp_path / "store")])
    out = capsys.readouterr().out
    assert "torch " in out and "cores" in out
    steps = [
        _numbers(out, label)[0] for label in ("load_study_runs, warm", "latest_runs", "phase_grid", "draw_phase_diagram + PNG")
    ]
    # each step timed (printed to 0.01 s: a quick one reads 0.00), and the total covers the slowest
    assert all(step >= 0 for step in steps) and _numbers(out, "total: warm load to PNG")[0] >= max(steps)
    assert _numbers(out, "urn-study phase")[0] > 0 and "target: 100 runs" in out
    # a cold load from the sweep's study table, timed beside the full search (the benchmark checks the frames equal)
    assert _numbers(out, "load_study_runs, cold from the sweep's table")[0] >= 0
    assert "100 runs loaded cold (no local cache) from the sweep's study table" in out
    figures = tmp_path / "store" / "figures" / "scale"
    assert (figures / "phase_diagram.png").is_file() and (figures / "gallery.png").is_file()
    # the same store, reused (analysis_scale.make_store finds it whole), read through mlflow.search_runs and a plain
    # parquet file, beside our cache
    _load("study_table_cache").main(["--smoke", str(tmp_path / "store")])
    out = capsys.readouterr().out
    assert "making the store" not in out and "interleaved" in out
    for label, runs in (
        ("ours, cold", 100),
        ("ours, warm", 100),
        ("library, cold", 101),
        ("library, warm", 101),
        ("library, parquet alone", 101),
    ):  # the library's table also holds the sweep's own run
        seconds, rows = _numbers(out, label)[:2]
        assert seconds > 0 and rows == runs


@pytest.mark.slow  # starts an MLflow server twice (the second time after stopping it mid-run): ~40 s
def test_metric_logging_smoke_keeps_every_point_through_an_outage(capsys):
    _load("metric_logging").main(["--smoke"])
    out = capsys.readouterr().out
    assert "torch " in out and "cores" in out
    for way in ("sync", "MetricSender 5 s", "MetricSender 0 s", "mlflow async"):
        median_ms, longest_ms, stored_s = _numbers(out, f"  {way}")[:3]  # the first table: the SQLite store
        assert 0 <= median_ms <= longest_ms and stored_s >= 0
    outage = out[out.index("server down") :]
    for way in ("MetricSender 5 s", "MetricSender 0 s"):  # queued while the server was away, delivered after
        _, errors, stored, of = _numbers(outage, f"  {way}")
        assert errors == 0 and stored == of == 12


@pytest.mark.slow  # starts Ray and runs a two-trial Tune experiment five times (a warm-up, four ways): ~40 s
def test_progress_output_smoke_counts_what_each_reporter_prints(capsys):
    _load("progress_output").main(["--smoke"])
    out = capsys.readouterr().out
    assert "torch " in out and "cores" in out
    lines = {way: _numbers(out, way)[0] for way in ("Progress", "CLIReporter", "new output")}
    # ours: one line per finished trial and a final one (nothing else of Ray's or Tune's is printed by fit)
    assert lines["Progress"] >= 3 and lines["Progress"] < min(lines["CLIReporter"], lines["new output"])


def test_study_throughput_runs_structure_yaml_as_shipped_or_its_48_trial_sub_grid(tmp_path):
    from urn_study.study import load_study

    bench = _load("study_throughput")
    shipped = load_study(BENCHMARKS.parent / "search_spaces" / "structure.yaml")
    whole = load_study(bench.write_study(tmp_path, False, None))
    assert [t.config for t in whole.trials()] == [t.config for t in shipped.trials()] and len(whole.trials()) == 168
    assert whole.trials_per_worker == "auto"
    sub = load_study(bench.write_study(tmp_path, False, 1, sub_grid=True))
    assert len(sub.trials()) == 48 and sub.trials_per_worker == 1
    assert all(t.config in [s.config for s in shipped.trials()] for t in sub.trials())


@pytest.mark.slow  # two smoke sweeps through `urn-study sweep` (each starts Ray) and a loop of four short trials: ~1 min
def test_study_throughput_smoke_prints_the_three_ways_and_their_ratios(capsys):
    _load("study_throughput").main(["--smoke"])
    out = capsys.readouterr().out
    assert "torch " in out and "cores" in out
    assert "4 trials of structure.yaml's smoke grid" in out
    # the packed sweep said what it packed: on the machine's cores, as many as leave none idle
    assert "the packed sweep's packing: up to" in out and "trials of one shape train together (auto:" in out
    walls = {}
    for way in ("packed", "one per worker", "plain loop"):
        wall, per_hour = _numbers(out, way)[:2]
        # of the unrounded wall, printed to 0.1 s: a 3 s loop's trials/hour may differ by 2% from the printed wall's
        assert wall > 0 and 4 / (wall + 0.05) * 3600 - 1 <= per_hour <= 4 / (wall - 0.05) * 3600 + 1
        walls[way] = wall
    for label, (a, b) in (
        ("plain loop / packed", ("plain loop", "packed")),
        ("one per worker / packed", ("one per worker", "packed")),
        ("plain loop / one per worker", ("plain loop", "one per worker")),
    ):
        ratio = _numbers(out, label + ":")[0]  # of the unrounded walls, printed to 0.01 (the walls to 0.1 s)
        assert (walls[a] - 0.05) / (walls[b] + 0.05) - 0.005 <= ratio <= (walls[a] + 0.05) / (walls[b] - 0.05) + 0.005
    assert "(target: at least 1.5)" in out
