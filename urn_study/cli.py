"""The ``urn-study`` command: train one trial, run a sweep, draw phase diagrams, serve the MLflow UI."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from urn_study.config import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="urn-study", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="run one trial in this process (no Ray, no MLflow)")
    train.add_argument("config", nargs="?", help="YAML config with dotted or nested keys")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override one key, e.g. --set regulators.locality=0.01 (repeatable)")
    train.add_argument("--json", action="store_true", help="print, last, one JSON object with the results")
    train.add_argument("--out", help="folder to save W, the snapshots, the layout and the structure report")
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
    """Sub-commands that live beside the launcher and the analysis (imported lazily: train needs no Ray)."""
    from urn_study import commands

    return commands.REGISTER


def _train(args: argparse.Namespace) -> int:
    from urn_study.config import load_config, to_flat

    config = load_config(args.config, args.overrides)
    from urn_study.trial import run_trial  # after the config check: errors come before torch loads
    out = sys.stderr if args.json else sys.stdout
    print(f"training one URN on {config.data.name}: steps={config.model.steps}, epochs={config.train.epochs}, "
          f"regulators " + ", ".join(f"{k.split('.')[1]}={v}" for k, v in to_flat(config).items()
                                     if k.startswith("regulators.") and v), file=out, flush=True)

    def progress(epoch: int, m: dict) -> None:
        line = (f"epoch {epoch:>3}/{config.train.epochs}  loss {m.get('loss', float('nan')):.4f}  "
                f"task {m['task_loss']:.4f}  train {m.get('train_accuracy', float('nan')):.3f}  "
                f"test {m.get('test_accuracy', float('nan')):.3f}")
        if "diverged" in m:
            line += "  DIVERGED"
        elif "depth" in m:
            line += f"  | {m['phase']} depth {m['depth']} locality {m['locality']:.2f} skip {m['skip_share']:.2f}"
        print(line, file=out, flush=True)

    result = run_trial(config, report=progress)
    summary = {k: result.metrics[k] for k in result.metrics}
    if args.out:
        _save(result, Path(args.out))
        summary["out"] = str(Path(args.out).resolve())
    print(_readable(summary), file=out, flush=True)
    if args.json:
        print(json.dumps(summary))
    return 0


def _save(result, folder: Path) -> None:
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "W.npy", result.weights)
    np.savez(folder / "snapshots.npz", **{f"epoch_{e}": w for e, w in result.snapshots.items()})
    result.layout.save(folder / "layout.json")
    (folder / "structure.json").write_text(json.dumps(result.structure, indent=1))


def _readable(summary: dict) -> str:
    lines = ["result:"]
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, list) and value and isinstance(value[0], float):
            value = "[" + ", ".join(f"{v:.3f}" for v in value) + "]"
        lines.append(f"  {key:<18} {value}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
