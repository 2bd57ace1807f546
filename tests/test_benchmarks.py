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
