"""What a sweep prints while it runs: the driver's ``Progress`` callback against Tune's own reporters.

    .venv/bin/python benchmarks/progress_output.py            # 6 trials of 10 reports, 3 repeats: ~5 min
    .venv/bin/python benchmarks/progress_output.py --smoke    # 2 trials of 3 reports, once: ~30 s

One local Ray (2 CPUs) runs the same small Tune experiment several ways, in turn (A, B, C, D, B, C, D, A...),
after one untimed run that starts Ray's worker processes: trials that wait ``--report-s`` seconds between
reports (an epoch's training; no CPU, so what differs is the driver's work) and report the keys a URN trial
reports (``epoch``, losses, accuracy; the last report carries ``urn_summary`` as a finished trial's does). Ways:

- ``Progress``: what ``urn-study sweep`` runs: ``verbose=0``, ``RAY_AIR_NEW_OUTPUT=0``, our callback (a line
  every 10 s and at each trial's end);
- ``CLIReporter``: Tune's classic table (``RAY_AIR_NEW_OUTPUT=0``, Tune's default verbosity);
- ``new output``: Tune's current default (``RAY_AIR_NEW_OUTPUT=1``, default verbosity);
- ``silent``: ``verbose=0`` and no callback, the floor against which a reporter's cost shows.

Printed per way: the lines written to the terminal during ``Tuner.fit`` (stdout and stderr, at the file
descriptors; as in the driver, workers' output is not forwarded), the characters, the wall time of ``fit``
and the driver process's CPU seconds during it (every thread of the driver: Tune's loop, the reporter, Ray's
client).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

from urn_study.model import pick_device  # noqa: E402

WAYS = ("Progress", "CLIReporter", "new output", "silent")


def urn_like_trial(config: dict) -> None:
    from ray import tune

    for epoch in range(1, config["reports"] + 1):
        time.sleep(config["report_s"])
        metrics = {"epoch": epoch, "task_loss": 1.0 / epoch, "test_accuracy": 1 - 0.5 / epoch, "seconds": epoch}
        if epoch == config["reports"]:
            metrics["urn_summary"] = "{}"
        tune.report(metrics)


def fit(way: str, trials: int, reports: int, report_s: float, storage: Path) -> dict:
    """Runs the experiment one way, the terminal captured: its lines, characters, seconds, and the text."""
    from ray import tune

    from urn_study.sweep.progress import Progress

    os.environ["RAY_AIR_NEW_OUTPUT"] = "1" if way == "new output" else "0"
    ours = {"verbose": 0, "callbacks": [Progress("bench", trials, reports)]} if way == "Progress" else {}
    if way == "silent":
        ours = {"verbose": 0}
    run_config = tune.RunConfig(name=f"{way.replace(' ', '_')}-{time.time_ns()}", storage_path=str(storage), **ours)
    tuner = tune.Tuner(
        urn_like_trial,
        run_config=run_config,
        param_space={"index": tune.grid_search(list(range(trials))), "reports": reports, "report_s": report_s},
    )
    with captured_terminal() as text:
        cpu, start = time.process_time(), time.perf_counter()
        tuner.fit()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"lines": len(text[0].splitlines()), "chars": len(text[0]), "wall": wall, "cpu": cpu, "text": text[0]}


@contextlib.contextmanager
def captured_terminal():
    """Everything written meanwhile to stdout and stderr, at the file descriptors (Ray's and Tune's own
    handlers) and at ``sys.stdout``/``sys.stderr`` (prints, wherever those point, as under pytest): a list
    that holds the text once the block ends."""
    text: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "terminal"
        with open(path, "ab") as raw, open(path, "a") as stream:  # both appending: neither overwrites the other
            sys.stdout.flush()
            sys.stderr.flush()
            saved = os.dup(1), os.dup(2)
            os.dup2(raw.fileno(), 1)
            os.dup2(raw.fileno(), 2)
            try:
                with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
                    yield text
                    stream.flush()
            finally:
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                os.close(saved[0])
                os.close(saved[1])
        text.append(path.read_text(errors="replace"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--reports", type=int, default=10, help="reports per trial")
    parser.add_argument("--report-s", type=float, default=0.5, help="seconds between a trial's reports")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--show", action="store_true", help="print what each way wrote, after the table")
    parser.add_argument("--smoke", action="store_true", help="2 trials of 3 reports, 0.2 s apart, once")
    args = parser.parse_args(argv)
    if args.smoke:
        args.trials, args.reports, args.report_s, args.repeats = 2, 3, 0.2, 1

    import ray

    print("progress_output |", describe(pick_device("auto")))
    previous = os.environ.get("RAY_AIR_NEW_OUTPUT")
    with tempfile.TemporaryDirectory(prefix="urn-progress-") as scratch:
        ray.init(
            address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING"
        )  # as the driver does
        try:
            results: dict[str, list[dict]] = {way: [] for way in WAYS}
            loads = [os.getloadavg()[0]]
            fit("Progress", args.trials, args.reports, args.report_s, Path(scratch))  # untimed: starts Ray's workers
            for repeat in range(args.repeats):
                for way in WAYS[repeat % len(WAYS) :] + WAYS[: repeat % len(WAYS)]:  # each way first in turn
                    results[way].append(fit(way, args.trials, args.reports, args.report_s, Path(scratch)))
                loads.append(os.getloadavg()[0])
        finally:
            ray.shutdown()
            if previous is None:
                os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
            else:
                os.environ["RAY_AIR_NEW_OUTPUT"] = previous
    print(
        f"{args.trials} trials of {args.reports} reports {args.report_s:g} s apart, 2 at a time; medians of "
        f"{args.repeats}, interleaved; load average {min(loads):.1f} to {max(loads):.1f}"
    )
    print(f"{'way':<14}{'lines':>7}{'chars':>8}{'wall s':>8}{'driver CPU s':>14}")
    for way, runs in results.items():
        median = {k: statistics.median(r[k] for r in runs) for k in ("lines", "chars", "wall", "cpu")}
        print(f"{way:<14}{median['lines']:>7.0f}{median['chars']:>8.0f}{median['wall']:>8.2f}{median['cpu']:>14.2f}")
    if args.show:
        for way, runs in results.items():
            print(f"--- {way} wrote:\n{runs[-1]['text']}")


if __name__ == "__main__":
    main()
