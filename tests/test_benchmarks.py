"""Each benchmark runs in its seconds-long smoke form and prints the machine and its table."""
import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name,header", [("train_efficiency", "ratio"), ("trials_per_worker", "trials/hour")])
def test_smoke_run_prints_machine_and_figures(name, header, capsys):
    _load(name).main(["--smoke"])
    out = capsys.readouterr().out
    assert "torch " in out and "cores" in out
    table = out[out.index(header):].splitlines()
    assert len(table) >= 2 and table[1].split()[0].isdigit()



def _numbers(out: str, label: str) -> list[float]:
    """The numbers on the line that starts with ``label``, in order (words and "(12.3)" skipped)."""
    line = next(line for line in out.splitlines() if line.startswith(label))
    numbers = []
    for word in line[len(label):].split():
        try:
            numbers.append(float(word))
        except ValueError:
            pass
    return numbers


@pytest.mark.slow  # starts Ray and a local MLflow store: ~20 s
def test_sweep_overhead_smoke_prints_ratio_and_where_time_goes(capsys):
    _load("sweep_overhead").main(["--smoke"])
    out = capsys.readouterr().out
    assert "torch " in out and "cores" in out
    assert "plain workers: torch threads 1;" in out  # one thread each, as Ray gives a 1-CPU trial
    plain, _ = _numbers(out, "plain loop")
    ray_up, per_hour, ratio, _ = _numbers(out, "Ray + MLflow, Ray up")
    assert plain > 0 and ray_up > 0 and per_hour == pytest.approx(2 / ray_up * 3600, rel=0.01)
    # the ratio is of the unrounded walls; the walls are printed to 0.1 s (a smoke sweep's few seconds)
    assert (ray_up - 0.05) / (plain + 0.05) - 0.0005 <= ratio <= (ray_up + 0.05) / (plain - 0.05) + 0.0005
    assert "target: Ray up within 5%" in out and "queue each epoch's metrics" in out
    if Path("/proc/stat").is_file():  # Linux: what the whole machine did meanwhile, for each way of running
        assert _numbers(out, "  plain    context switches/s")[0] > 0
        assert _numbers(out, "  Ray up   context switches/s")[0] > 0


@pytest.mark.slow  # makes an MLflow store of 200 recorded runs, runs `urn-study phase` on it: ~30 s
def test_analysis_scale_smoke_times_each_step_and_the_phase_command(capsys, tmp_path):
    module = _load("analysis_scale")
    module.main(["--smoke", str(tmp_path / "store")])
    out = capsys.readouterr().out
    assert "torch " in out and "cores" in out
    steps = [_numbers(out, label)[0] for label in ("load_study_runs, warm", "latest_runs", "phase_grid",
                                                   "draw_phase_diagram + PNG")]
    assert _numbers(out, "total: warm load to PNG")[0] == pytest.approx(sum(steps), abs=0.02)
    assert _numbers(out, "urn-study phase")[0] > 0 and "target: 200 runs" in out
    figures = tmp_path / "store" / "figures" / "scale"
    assert (figures / "phase_diagram.png").is_file() and (figures / "gallery.png").is_file()
    module.main(["--smoke", str(tmp_path / "store")])  # a second call reuses the store
    assert "making the store" not in capsys.readouterr().out
