"""The tree is ruff clean under the project's own settings (pyproject.toml, [tool.ruff]): its lint finds nothing and its
formatter would change nothing (`ruff format` writes the layout; run it before committing)."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _ruff() -> str:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is part of the test extras: pip install -e '.[test]'"
    return ruff


def test_ruff_finds_nothing():
    proc = subprocess.run([_ruff(), "check", "--no-cache", str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_ruff_format_would_change_nothing():
    proc = subprocess.run([_ruff(), "format", "--check", "--no-cache", str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, f"run `ruff format` on:\n{proc.stdout[-3000:]}"
