"""Every figure docs/results.md quotes comes from a CSV the repository holds, and says which.

A measured number in docs/results.md is followed by an HTML comment (invisible on the rendered page) naming
its source and how it is computed:

    accuracy 0.97<!--= structure/phase_grid.csv: test_accuracy | mean where model.steps == 2 -->

``<folder>/<file>.csv`` under docs/figures; then a column, an optional aggregate (``value``: exactly one row,
the default; ``mean``, ``median``, ``min``, ``max``, ``sum``, ``count``, ``nunique``) and an optional
pandas query (dotted config keys may be written bare). The number must equal the result to the precision it
is written with (a trailing ``%`` reads the result in percent). A decimal number or a percentage in the prose
or the tables without such a comment fails the test, so that none is typed in by hand; config values are
written as code (backticks) and skipped.
"""

import re
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results.md"
FIGURES = ROOT / "docs" / "figures"
ANNOTATED = re.compile(r"(?P<number>-?\d+(?:\.\d+)?)(?P<percent>%?)<!--=\s*(?P<source>[^:]+?):\s*(?P<expr>.*?)\s*-->", re.S)
EXPRESSION = re.compile(r"^(?P<column>[\w.]+)\s*(?:\|\s*(?P<agg>\w+))?\s*(?:where\s+(?P<query>.+))?$", re.S)
BARE_FIGURE = re.compile(r"(?<![\w.\-/=`])(?:\d+\.\d+%?|\d+%)(?![\w.]*<!--=)")
AGGREGATES = {"mean", "median", "min", "max", "sum", "count", "nunique", "value"}


def _query(text: str) -> str:
    """Dotted config keys (``model.steps``) quoted for pandas: ``model.steps`` -> `model.steps` (a string in the
    query, ``axis == 'regulators.l1'``, stays as it is)."""
    return re.sub(r"(?<![`\w'])([A-Za-z_]\w*\.[A-Za-z_]\w*)(?![`\w'])", r"`\1`", text)  # not inside 'quotes'


def evaluate(source: str, expr: str) -> float:
    match = EXPRESSION.match(expr.strip())
    assert match, f"cannot read {expr!r}"
    table = pd.read_csv(FIGURES / source.strip())
    rows = table.query(_query(match["query"])) if match["query"] else table
    agg = match["agg"] or "value"
    assert agg in AGGREGATES, f"unknown aggregate {agg!r}"
    if agg == "count":
        return float(len(rows))
    column = rows[match["column"]]
    if agg == "value":
        assert len(column) == 1, f"{source}: {expr!r} selects {len(column)} rows, not one"
        return float(column.iloc[0])
    return float(getattr(column, agg)())


def _annotations(text: str) -> list[re.Match]:
    return list(ANNOTATED.finditer(text))


def _prose(text: str) -> str:
    """The page without code blocks, inline code, link targets, annotations and other comments."""
    text = re.sub(r"```.*?```", " ", text, flags=re.S)
    text = ANNOTATED.sub(" ", text)
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.S)
    text = re.sub(r"`[^`]*`", " ", text)
    return re.sub(r"\]\([^)]*\)", "]", text)


def test_the_page_quotes_figures_at_all():
    assert len(_annotations(RESULTS.read_text())) >= 20


@pytest.mark.parametrize(
    "match",
    _annotations(RESULTS.read_text()) if RESULTS.exists() else [],
    ids=lambda m: f"{m['number']}{m['percent']} {m['source'].strip()}",
)
def test_each_quoted_figure_matches_its_csv(match):
    written = float(match["number"])
    value = evaluate(match["source"], match["expr"]) * (100.0 if match["percent"] else 1.0)
    decimals = len(match["number"].split(".")[1]) if "." in match["number"] else 0
    assert abs(value - written) <= 0.5 * 10**-decimals + 1e-9, f"{match['expr']!r} is {value}, the page says {written}"


def test_no_figure_is_typed_in_by_hand():
    bare = [m.group(0) for m in BARE_FIGURE.finditer(_prose(RESULTS.read_text()))]
    assert not bare, f"figures without a source in docs/results.md: {bare[:20]}"


def test_the_checker_catches_a_wrong_figure(tmp_path):
    """The same reading on a page with a figure off by one in its last digit fails."""
    match = _annotations(RESULTS.read_text())[0]
    written = match["number"]
    decimals = len(written.split(".")[1]) if "." in written else 0
    wrong = float(written) + 10**-decimals * 2
    value = evaluate(match["source"], match["expr"]) * (100.0 if match["percent"] else 1.0)
    assert abs(value - wrong) > 0.5 * 10**-decimals
