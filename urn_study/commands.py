"""Sub-commands beyond ``train``: each entry adds itself to the parser. Heavy imports stay inside handlers."""

from __future__ import annotations

import sys

REGISTER: list = []

from analysis.cli_phase import register as _register_phase  # noqa: E402

REGISTER.append(_register_phase)


def _register_sweep(subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="run a study file's trials with Ray Tune, recording each in MLflow",
        description="Run every trial of a study file (search_spaces/*.yaml) with Ray Tune; each trial gets one "
        "MLflow run. The whole study is checked before Ray starts. Results go under "
        "$URN_RESULTS_DIR (default ./urn_results).",
    )
    parser.add_argument("study", help="the study's YAML file")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="the study's smoke form: a few trials of a few epochs (under a minute, most of it Ray starting)",
    )
    parser.add_argument("--address", help="a Ray cluster to run on (e.g. auto on its head node); default: local Ray")
    parser.add_argument(
        "--tracking-uri", help="an MLflow server (http://127.0.0.1:5000); default: the local SQLite store urn_results/mlflow.db"
    )
    parser.add_argument(
        "--searcher",
        choices=("grid", "optuna", "boundary"),
        default="grid",
        help="grid: every grid point (and fixed draws of sampled axes); optuna: adaptive over "
        "the sampled axes; boundary: the coarse grid, then trials where the phase changes "
        "(the study's refine: block)",
    )
    parser.add_argument(
        "--max-concurrent", type=int, help="at most this many Tune trials (packs of trials_per_worker URN trials) at once"
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        metavar="SWEEP_ID",
        help="continue an interrupted sweep (the latest of this study, or SWEEP_ID) with its searcher and store",
    )
    parser.add_argument(
        "--storage",
        help="Ray results folder or URI (default urn_results/ray; on a multi-node "
        "cluster one every node reaches, e.g. s3://bucket/urn-study)",
    )
    parser.add_argument("--num-cpus", type=int, help="local Ray only: CPUs it may use (default: all)")
    parser.add_argument(
        "--gpus-per-trial",
        type=float,
        metavar="GPUS",
        help="GPUs each trial asks for, in place of the study's resources.gpu: a fraction packs "
        "trials onto one GPU (0.25: four), a whole number gives each trial that many",
    )
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=1800.0,
        metavar="SECONDS",
        help="a trial that reports nothing this long (a frozen process) is stopped and retried from its checkpoint (default 1800)",
    )
    parser.set_defaults(handler=_sweep)


def _sweep(args) -> int:
    from urn_study.sweep.inputs import check_inputs

    # every input is checked before Ray is imported: a mistake is one line at once, not after seconds
    inputs = check_inputs(
        args.study,
        smoke=args.smoke,
        address=args.address,
        tracking_uri=args.tracking_uri,
        searcher=args.searcher,
        max_concurrent=args.max_concurrent,
        resume=args.resume,
        storage=args.storage,
        num_cpus=args.num_cpus,
        stall_timeout_s=args.stall_timeout,
        gpus_per_trial=args.gpus_per_trial,
    )
    from urn_study.sweep.driver import run_checked

    return run_checked(inputs, report=sweep_report)


def sweep_report(study, uri: str, run_id: str, sweep_id: str) -> None:
    """The sweep's summary metrics, phase diagram, gallery and grid on its run (the sweep's driver calls this when
    its summary is printed); if drawing or recording them fails, the sweep is kept and one warning line says so
    (``urn-study phase`` draws them again)."""
    from analysis.cli_phase import record_sweep_report
    from urn_study.sweep.trainable import error_line

    try:
        record_sweep_report(study, uri, run_id, sweep_id)
    except Exception as err:  # noqa: BLE001 - the trials are recorded; only the report is missing
        print(
            f"urn-study: warning: the sweep's summary and phase diagram were not recorded on its MLflow run "
            f"({error_line(str(err)) or type(err).__name__}); `urn-study phase {study.path}"
            f"{' --smoke' if study.smoke else ''}` draws them",
            file=sys.stderr,
            flush=True,
        )


def _register_ui(subparsers) -> None:
    parser = subparsers.add_parser(
        "ui",
        help="serve the MLflow UI of the local store on 127.0.0.1",
        description="Serve the MLflow UI for the local store (loopback only).",
    )
    parser.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1 (default 5000)")
    parser.add_argument("--tracking-uri", help="the store (default: urn_results/mlflow.db)")
    parser.set_defaults(handler=_ui)


def _ui(args) -> int:
    from urn_study.tracking import serve_ui

    return serve_ui(args.tracking_uri, args.port)


REGISTER += [_register_sweep, _register_ui]
