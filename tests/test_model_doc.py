"""Every code name docs/model.md cites exists, so the page cannot rot silently.

In backticks the page cites config keys (``regulators.locality``: one of ``urn_study.config.all_keys``), files
(``urn_study/reading/function.py``, ``search_spaces/lifetime.yaml``: present in the repository), Python names
(``urn_study.reading.function.Thresholds.cost``: the module imports and has that attribute) and commands
(``python -m urn_study.reading.untrained``: the module imports). Other spans (values such as ``clamp``, file names of
a trial's record such as ``W0.npy``) are not names of the code and are left alone.
"""

import importlib
import re
from pathlib import Path

import pytest

from urn_study.config import all_keys

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "model.md"
SECTIONS = ("seed", "data", "model", "regulators", "train")
PACKAGES = ("urn_study", "analysis")


def cited(text: str) -> list[str]:
    """The backtick spans of the page, outside code blocks, in order (each once)."""
    text = re.sub(r"```.*?```", " ", text, flags=re.S)
    return list(dict.fromkeys(re.findall(r"`([^`\n]+)`", text)))


def problem(span: str) -> str | None:
    """What is wrong with one cited span (None: it names something that exists, or is not a code name)."""
    if span.startswith("python -m "):
        span = span.split()[2]
        return None if importlib.util.find_spec(span) else f"no module {span}"
    if "/" in span:
        return None if (ROOT / span).exists() else f"no file {span}"
    head = span.split(".")[0]
    if head in SECTIONS and re.fullmatch(r"[a-z_]+(\.[a-z_0-9]+)?", span):
        return None if span in all_keys() else f"no config key {span}"
    if head in PACKAGES and re.fullmatch(r"[\w.]+", span):
        return python_name_problem(span)
    return None


def python_name_problem(name: str) -> str | None:
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):  # the longest prefix that is a module, then attributes
        module_name = ".".join(parts[:cut])
        try:
            target = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(target, attribute):
                return f"{module_name} has no {'.'.join(parts[cut:])}"
            target = getattr(target, attribute)
        return None
    return f"no module {parts[0]}"


def test_the_page_cites_code_of_every_kind():
    spans = cited(PAGE.read_text())
    assert sum(s in all_keys() for s in spans) >= 20  # config keys
    assert sum("/" in s for s in spans) >= 10  # files
    assert sum(s.split(".")[0] in PACKAGES and "/" not in s for s in spans) >= 10  # Python names


def test_every_cited_name_exists():
    problems = [p for p in map(problem, cited(PAGE.read_text())) if p]
    assert not problems, f"docs/model.md cites what the code does not have: {problems}"


@pytest.mark.parametrize(
    "span,why",
    [
        ("regulators.localty", "no config key"),
        ("urn_study/reading/fucntion.py", "no file"),
        ("urn_study.reading.function.Thresholds.costs", "has no"),
        ("urn_study.regulator.linear_cost", "has no"),
        ("python -m analysis.untrainde", "no module"),
    ],
)
def test_the_checker_catches_a_misspelt_name(span, why):
    assert why in (problem(span) or "")


def test_the_readme_points_at_the_page():
    readme = (ROOT / "README.md").read_text()
    assert "docs/model.md" in readme and "URN_SPEC" not in readme
