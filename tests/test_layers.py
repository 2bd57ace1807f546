"""The layers depend one way (README "Where things are"): the core (urn_study/*.py and urn_study/reading/) ->
the edges (urn_study/tracking/: MLflow; urn_study/sweep/: Ray) -> analysis/ (the reading of recorded studies) -> the CLI
(cli.py, commands.py). Read from the source files with ast, nothing imported: every import counts, a lazy one
inside a function as much as one at the top."""

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "urn_study"
CLI = {PACKAGE / "cli.py", PACKAGE / "commands.py"}
CORE = sorted({*PACKAGE.glob("*.py"), *(PACKAGE / "reading").rglob("*.py")} - CLI)
TRACKING = sorted((PACKAGE / "tracking").rglob("*.py"))
SWEEP = sorted((PACKAGE / "sweep").rglob("*.py"))
ANALYSIS = sorted((ROOT / "analysis").rglob("*.py"))
BELOW_THE_CLI = sorted(set(PACKAGE.rglob("*.py")) - CLI)


def imported(source: str, package: str = "", parents: bool = True) -> set[str]:
    """Every module a source imports, with the packages above it: ``from a.b import c`` gives a, a.b and a.b.c
    (c may be a module); a relative import is resolved against ``package``; ``importlib.import_module("x")``
    with a literal name counts too."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    if not parents:
        return names
    return {".".join(name.split(".")[:i]) for name in names for i in range(1, name.count(".") + 2)}


def imports_of(path: Path, root: Path = ROOT, parents: bool = True) -> set[str]:
    module = ".".join(path.relative_to(root).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    return imported(path.read_text(), package.removesuffix(".__init__"), parents)


def offences(files: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(f"{path.relative_to(ROOT)} imports {name}" for path in files for name in imports_of(path) if name in forbidden)


def test_the_import_reader_sees_every_form():
    source = """
import ray.tune
from urn_study import tracking
from . import driver
def later():
    from analysis.phase import phase_grid
    importlib.import_module("mlflow")
"""
    found = imported(source, "urn_study.sweep")
    assert {"ray", "urn_study.tracking", "urn_study.sweep.driver", "analysis", "mlflow"} <= found
    assert "urn_study.sweep" in imported("from urn_study.sweep.driver import run_checked")


def test_the_file_sets_are_what_they_name():
    assert PACKAGE / "trial.py" in CORE and PACKAGE / "reading" / "measure.py" in CORE
    assert PACKAGE / "sweep" / "driver.py" in SWEEP and ROOT / "analysis" / "runs.py" in ANALYSIS
    assert PACKAGE / "tracking" / "store.py" in TRACKING and not set(TRACKING) & set(CORE)


@pytest.mark.parametrize(
    "files,forbidden,why",
    [
        (BELOW_THE_CLI, ("analysis",), "only the CLI (cli.py, commands.py) sits above analysis/"),
        (CORE, ("ray", "mlflow", "urn_study.sweep", "urn_study.tracking"), "the core knows no edge"),
        (SWEEP, ("analysis",), "the Ray edge sits below the analysis of records"),
        (TRACKING, ("ray", "urn_study.sweep", "analysis"), "the record edge knows neither Ray nor the analysis"),
        (ANALYSIS, ("urn_study.sweep",), "the analysis reads records, it does not run sweeps"),
    ],
    ids=[
        "nothing-below-the-cli-imports-analysis",
        "the-core-imports-no-edge",
        "the-sweep-imports-no-analysis",
        "the-record-edge-imports-no-ray-nor-analysis",
        "analysis-imports-no-sweep",
    ],
)
def test_imports_go_one_way(files, forbidden, why):
    assert files
    found = offences(files, forbidden)
    assert not found, why + ":\n" + "\n".join(found)


def import_cycle(files: list[Path], root: Path = ROOT) -> list[str]:
    """One loop of imports among the project's modules ([] if none): a module whose import runs, however lazily,
    back to itself is two modules that cannot be read, tested or moved apart. An import names the module it takes
    from (``from a.b import c``: a.b, or a.b.c where c is a module), not the packages above it, which Python
    initialises first by construction: a package's __init__ importing its own modules is no loop."""
    modules = {".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): path for path in files}

    def target(name: str) -> str | None:
        parts = name.split(".")
        return next((".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in modules), None)

    graph = {
        name: {target(other) for other in imports_of(path, root, parents=False)} - {None, name} for name, path in modules.items()
    }
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        return list(err.args[1])
    return []


def test_no_module_imports_its_way_back_to_itself(tmp_path):
    assert import_cycle(BELOW_THE_CLI + ANALYSIS + sorted(CLI)) == []
    (tmp_path / "a.py").write_text("from b import x\n")  # the check sees a loop closed by a lazy import
    (tmp_path / "b.py").write_text("def f():\n    from a import y\n")
    assert sorted(set(import_cycle(sorted(tmp_path.glob("*.py")), tmp_path))) == ["a", "b"]
