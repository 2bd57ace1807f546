"""The MLflow UI in a real headless browser: Debian's chromium driven by Playwright (never a downloaded browser).

``urn-study ui`` serves a store holding one recorded trial; the link it prints opens the study's runs table with
phase, depth and accuracy, trials grouped by phase; the trial's run shows its heatmap. Skipped, saying why, where
chromium or playwright is missing (``make setup`` installs chromium where apt-get can).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from urn_study import tracking
from urn_study.config import parse_config

CHROMIUM = shutil.which("chromium")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
TINY = {
    "data.name": "nlgp",
    "data.side": 8,
    "data.n_samples": 200,
    "train.epochs": 3,
    "train.batch_size": 50,
    "train.snapshot_every": 2,
}
WAIT_MS = 90_000  # the UI's first page load on a busy 2-core machine

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no chromium on PATH: `make setup` installs Debian's chromium as root "
        "where apt-get works (apt-get install chromium)",
    ),
]


def record_one_trial(uri: str) -> tuple[str, dict]:
    """A real tiny trial recorded as a sweep records it, in study ``tiny``; (trial id, its final metrics)."""
    from urn_study.trial import run_trial

    config = parse_config(TINY)
    reports = []
    result = run_trial(config, report=lambda epoch, m: reports.append((epoch, dict(m))))
    experiment = tracking.ensure_experiment(uri, "tiny", "does the browser show the trial?", ("regulators.l1",))
    parent = tracking.open_sweep_run(uri, experiment, "tiny", "tiny-sweep", {"searcher": "grid"})
    record = tracking.TrialRecord.open(uri, experiment, parent, "tiny", "tiny-sweep", "tiny-0000", config)
    for epoch, metrics in reports:
        record.log_epoch(epoch, metrics)
    record.finish(result)
    tracking.close_sweep_run(uri, experiment, "tiny-sweep", parent, "FINISHED")
    return "tiny-0000", result.metrics


def test_the_study_table_and_a_trials_heatmap_in_a_browser(results, tmp_path, net):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the `test` extra has it)")
    uri = tracking.resolve_tracking_uri()
    trial_id, metrics = record_one_trial(uri)
    port = net.free_port()
    log = open(tmp_path / "ui.log", "wb")
    ui = subprocess.Popen(
        [sys.executable, "-m", "urn_study.cli", "ui", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        net.wait_http(f"http://127.0.0.1:{port}/health", process=ui)
        link = re.search(r"tiny: (http://\S+)", (tmp_path / "ui.log").read_text())
        assert link, (tmp_path / "ui.log").read_text()
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                page.set_default_timeout(WAIT_MS)
                page.goto(link[1])
                # the runs table: the trial under its phase's group, with its phase, depth and accuracy as columns
                page.get_by_text(f"Group: {metrics['phase']}").first.wait_for()
                for header in ("test_accuracy", "phase", "depth"):
                    assert page.get_by_role("columnheader", name=header).count() >= 1, header
                # the grid draws a row in two parts (the pinned name, the other columns): both carry its row-index
                index = page.get_by_role("row").filter(has=page.get_by_role("link", name=trial_id)).get_attribute("row-index")
                cells = page.locator(f"[role=row][row-index='{index}'] [role=gridcell]").all_inner_texts()
                assert {metrics["phase"], str(metrics["depth"])} <= set(cells), cells
                numbers = [float(c) for c in cells if re.fullmatch(r"\d+(\.\d+)?", c)]
                assert any(abs(n - metrics["test_accuracy"]) < 1e-3 for n in numbers), cells
                # the trial's run: its heatmap among the artifacts, shown as an image
                page.get_by_role("link", name=trial_id).click()
                page.get_by_role("tab", name="Artifacts").click()
                page.get_by_text("W_heatmap.png", exact=True).first.click()
                image = page.locator("img[src^='blob:']").first
                image.wait_for()
                page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
                assert image.evaluate("img => img.naturalWidth") > 100
            finally:
                browser.close()
    finally:
        net.stop_group(ui)
        log.close()
