"""The ``urn-study`` command: train one trial, run a sweep, draw phase diagrams, serve the MLflow UI."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from urn_study.config import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="urn-study", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="run one trial in this process (no Ray; MLflow only with --tracking-uri)")
    train.add_argument("config", nargs="?", help="YAML config with dotted or nested keys")
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one key, e.g. --set regulators.locality=0.01 (repeatable)",
    )
    train.add_argument(
        "--json", action="store_true", help="print, last, one JSON object with the results (the null's figures as null_*)"
    )
    train.add_argument(
        "--out",
        help="folder to save what a sweep's run stores: W, b, W0, snapshots, layout, config, "
        "history, the structure record and the heatmap",
    )
    train.add_argument(
        "--tracking-uri",
        help="record the trial as one MLflow run in this store (sqlite:///PATH.db or "
        "http://HOST:PORT), as a sweep records each trial; default: no record",
    )
    train.add_argument("--experiment", default="train", help="its MLflow experiment with --tracking-uri (default: train)")
    train.add_argument(
        "--threads",
        type=int,
        help=f"CPU threads for torch and numpy (default: 1 below {SMALL_NETWORK} neurons; above, the cores idle now)",
    )
    train.set_defaults(handler=_train)

    for register in _extra_commands():
        register(sub)

    args = parser.parse_args(argv)
    try:
        return args.handler(args) or 0
    except ConfigError as err:
        print(f"urn-study: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("urn-study: interrupted", file=sys.stderr)
        return 130


def _extra_commands() -> list:
    """Sub-commands that live beside the sweep (Ray) and the analysis (imported lazily: train needs no Ray)."""
    from urn_study import commands

    return commands.REGISTER


def _train(args: argparse.Namespace) -> int:
    from urn_study.config import load_config, to_flat

    config = load_config(args.config, args.overrides)
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads: must be at least 1, got {args.threads}")
    if config.data.uses("mnist"):  # a bad data file is one line before anything is printed
        from urn_study.data import read_mnist

        read_mnist(config.data.path)
    record = _open_record(args, config)  # a store that cannot be used is said before training
    from urn_study.trial import run_trial  # after the config check: errors come before torch loads

    neurons = network_size(config)
    threads = args.threads or default_threads(neurons, len(os.sched_getaffinity(0)), os.getloadavg()[0])
    use_threads(threads)
    out = sys.stderr if args.json else sys.stdout
    regulators = ", ".join(f"{k.split('.')[1]}={v}" for k, v in to_flat(config).items() if k.startswith("regulators.") and v)
    print(
        f"training one URN on {config.data.name}: steps={config.model.steps}, epochs={config.train.epochs}, "
        f"{neurons} neurons, {threads} thread{'s' * (threads > 1)}, regulators {regulators}",
        file=out,
        flush=True,
    )

    def progress(epoch: int, m: dict) -> None:
        line = (
            f"epoch {epoch:>3}/{config.train.epochs}  loss {m.get('loss', float('nan')):.4f}  "
            f"task {m['task_loss']:.4f}  train {m.get('train_accuracy', float('nan')):.3f}  "
            f"test {m.get('test_accuracy', float('nan')):.3f}"
        )
        if "diverged" in m:
            line += "  DIVERGED"
        elif "failed" in m:  # its error is raised next
            line += "  FAILED"
        elif "depth" in m:
            line += (
                f"  | {m['phase']}{' (uncertain)' if m['uncertain'] else ''} depth {m['depth']:.0f} "
                f"hidden {m['hidden_width']:.0f} locality {m['locality']:.2f}"
            )
        print(line, file=out, flush=True)
        if record is not None:
            record.log_epoch(epoch, m)

    try:
        result = run_trial(config, report=progress)
        if record is not None:
            record.finish(result)
    except BaseException:
        if record is not None:
            record.fail()
        raise
    summary = {k: result.metrics[k] for k in result.metrics}
    if args.out:
        from urn_study.artifacts import write_artifacts

        write_artifacts(result, Path(args.out), title="train")
        summary["out"] = str(Path(args.out).resolve())
    if record is not None:
        summary["run_id"] = record.run_id
    print(_readable(summary), file=out, flush=True)
    if args.json:
        print(json.dumps(_strict({**summary, "null": result.structure.get("null")})))
    return 0


def _open_record(args: argparse.Namespace, config):
    """With --tracking-uri: the MLflow run of this trial (tracking.TrialRecord), else None."""
    if args.tracking_uri is None:
        return None
    from urn_study import tracking

    uri = tracking.resolve_tracking_uri(args.tracking_uri)
    tracking.check_tracking(uri)
    experiment_id = tracking.ensure_experiment(uri, args.experiment)
    source = tracking.source_tags(args.config, name=None if args.config else "urn-study train")
    return tracking.TrialRecord.open_single(uri, experiment_id, args.experiment, config, source)


SMALL_NETWORK = 1000  # neurons: below, one thread trains fastest (benchmarks/README.md, "Threads of one trial")


def network_size(config) -> int:
    """S: the input lattice, its hidden copies and the outputs."""
    from urn_study.data import lattice_shape_of, n_classes_of

    return math.prod(lattice_shape_of(config.data)) * (1 + config.model.hidden_channels) + n_classes_of(config.data.name)


def default_threads(neurons: int, cores: int, load: float) -> int:
    """1 for a small network: its matrix products are too small to share out, and each thread more only waits on
    the others (on a busy machine, for cores other processes hold). A large one: the cores idle now."""
    if neurons < SMALL_NETWORK:
        return 1
    return max(1, cores - round(load))


def use_threads(threads: int) -> None:
    """Torch's threads and numpy's BLAS threads (the structure reading), for the rest of this process."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads, user_api="blas")


def _strict(value):
    """NaN and infinities as null: strict JSON (a diverged trial's accuracy is NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


READABLE = (
    "test_accuracy",
    "phase",
    "uncertain",
    "margin",
    "depth",
    "widths",
    "block_widths",
    "carrying_depths",
    "depth_shares",
    "hidden_cost",
    "recurrence_cost",
    "locality",
    "receptive_field",
    "w_phase",
    "w_widths",
    "null_phase",
    "null_accuracy",
    "recovery",
    "recovery_margin",
    "epochs",
    "seconds",
    "out",
    "run_id",
)


def _readable(summary: dict) -> str:
    """The figures a reader looks at first (every one is in --json and the --out folder)."""
    lines = ["result:"]
    for key in READABLE:
        if key not in summary:
            continue
        value = summary[key]
        if key == "uncertain":
            value = "yes" if value else "no"
        elif isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, list) and value and isinstance(value[0], float):
            value = "[" + ", ".join(f"{v:.3f}" for v in value) + "]"
        lines.append(f"  {key:<18} {value}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
