"""Safe by default: nothing pickled is loaded, YAML is read with the safe loader, config text is never
evaluated, servers bind to loopback, and secrets come only from the environment and are never written out.
(The UI's listening socket itself: test_sweep.py::test_ui_serves_the_local_store_on_loopback_only; the
cluster's MLflow server and dashboard: test_cluster_config.py; a real sweep over HTTP with a token in the
environment, which no record, result or printed line holds: test_faults.py::test_server_down_mid_sweep_...)"""

from __future__ import annotations

import ast
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from urn_study import cli, tracking
from urn_study.config import ConfigError, load_config, load_yaml, parse_overrides
from urn_study.study import load_study

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = sorted(p for folder in ("urn_study", "analysis", "benchmarks") for p in (ROOT / folder).rglob("*.py"))


def calls(path: Path):
    """Every call in a source file, with the dotted name it calls (``np.load``, ``eval``)."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def keyword(node: ast.Call, name: str):
    for kw in node.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else ast.unparse(kw.value)
    return None


def where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{node.lineno}"


# --- the source, read as code ------------------------------------------------------------------------


def test_there_is_source_to_check():
    assert len(PRODUCT) > 10 and any(p.name == "checkpoint.py" for p in PRODUCT)


def unpickling_loads(path: Path) -> list[str]:
    return [
        where(path, n)
        for n, name in calls(path)
        if (name in ("np.load", "numpy.load") and keyword(n, "allow_pickle") is not False)
        or (name == "torch.load" and keyword(n, "weights_only") is not True)
        or (name.split(".")[0] in ("pickle", "cloudpickle", "joblib", "dill") and name.endswith(("load", "loads")))
    ]


def unsafe_yaml(path: Path) -> list[str]:
    return [
        where(path, n)
        for n, name in calls(path)
        if name.startswith("yaml.")
        and name.split(".")[-1] in ("load", "load_all", "unsafe_load", "full_load", "unsafe_load_all", "full_load_all")
    ]


def code_from_text(path: Path) -> list[str]:
    return [
        where(path, n)
        for n, name in calls(path)
        if name in ("eval", "exec", "compile", "os.system", "os.popen", "__import__") or keyword(n, "shell") is True
    ]


FINDERS = {
    "loads that could unpickle": unpickling_loads,
    "YAML read with a loader that builds objects": unsafe_yaml,
    "code or shell commands built from text": code_from_text,
}
BAD_SOURCE = """\
import numpy as np, pickle, subprocess, torch, yaml
np.load("a.npy")
np.load("a.npz", allow_pickle=True)
torch.load("w.pt")
pickle.loads(b"")
yaml.load(open("s.yaml"), Loader=yaml.Loader)
yaml.full_load("a: 1")
eval("1 + 1")
exec("x = 1")
subprocess.run("ls", shell=True)
model.eval()  # torch's method: fine
np.load("ok.npz", allow_pickle=False)
yaml.safe_load("a: 1")
"""


@pytest.mark.parametrize("what", FINDERS)
def test_the_source_has_none_of(what):
    found = [hit for path in PRODUCT for hit in FINDERS[what](path)]
    assert not found, f"{what}: {found}"


def test_the_finders_find_what_they_look_for(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text(BAD_SOURCE)
    lines = {what: sorted(int(hit.rsplit(":", 1)[1]) for hit in find(path)) for what, find in FINDERS.items()}
    assert lines == {
        "loads that could unpickle": [2, 3, 4, 5],
        "YAML read with a loader that builds objects": [6, 7],
        "code or shell commands built from text": [8, 9, 10],
    }


def test_no_server_binds_beyond_loopback():
    text = {p: p.read_text() for p in PRODUCT + [ROOT / "cluster.yaml", ROOT / "Makefile"]}
    assert not [str(p) for p, t in text.items() if "0.0.0.0" in t or "--host=::" in t]
    command = tracking.ui_command("sqlite:////tmp/x.db", 5123)
    assert command[command.index("--host") + 1] == "127.0.0.1"


# what makes MLflow turn its telemetry off by itself (CI and test markers, mlflow/telemetry/utils.py)
CI_MARKERS = (
    "PYTEST_CURRENT_TEST",
    "GITHUB_ACTIONS",
    "CI",
    "CIRCLECI",
    "GITLAB_CI",
    "JENKINS_URL",
    "TRAVIS",
    "TF_BUILD",
    "BITBUCKET_BUILD_NUMBER",
    "CODEBUILD_BUILD_ARN",
    "BUILDKITE",
    "TEAMCITY_VERSION",
    "CLOUD_RUN_EXECUTION",
    "RUNBOT_HOST_URL",
    "RUNBOT_BUILD_NAME",
    "RUNBOT_WORKER_ID",
    "DO_NOT_TRACK",
    "MLFLOW_DISABLE_TELEMETRY",
)


def python_without_ci_markers(code: str, **env: str) -> str:
    """Run ``code`` in a fresh Python whose environment has none of the markers by which MLflow turns its
    telemetry off for CI and tests, as on a researcher's machine."""
    clean = {k: v for k, v in os.environ.items() if k not in CI_MARKERS}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT, env={**clean, **env})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_mlflow_telemetry_is_off_unless_the_user_turns_it_on():
    """MLflow 3 sends usage events over HTTPS from every process that imports it: nothing here does."""
    code = (
        "import urn_study.tracking, mlflow\nfrom mlflow.telemetry import get_telemetry_client\n"
        "from mlflow.telemetry.utils import _IS_IN_CI_ENV_OR_TESTING\n"
        "print(_IS_IN_CI_ENV_OR_TESTING, get_telemetry_client())"
    )
    # MLflow sees a researcher's machine (not CI), and still no telemetry client
    assert python_without_ci_markers(code) == "False None"
    # the user's own setting wins (not imported here: that would start the client and its HTTPS fetch)
    code = "import os, urn_study.tracking\nprint(os.environ['MLFLOW_DISABLE_TELEMETRY'])"
    assert python_without_ci_markers(code, MLFLOW_DISABLE_TELEMETRY="false") == "false"


# --- the same, shown on hostile input -----------------------------------------------------------------


class Payload:
    """Unpickling this would create the file ``target``: proof that something was unpickled."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def test_a_checkpoint_holding_a_pickle_is_refused_unread(tmp_path):
    from urn_study.checkpoint import ARRAYS, load_state, save_state
    from urn_study.trial import TrialState

    save_state(TrialState(epoch=2, arrays={"W": np.eye(3, dtype=np.float32)}, adam_step=0), tmp_path)
    assert load_state(tmp_path).epoch == 2
    target = tmp_path / "pwned"
    np.savez(tmp_path / ARRAYS, W=np.array([Payload(target)], dtype=object))
    assert pickle.loads(pickle.dumps(Payload(tmp_path / "check"))) is None and (tmp_path / "check").exists()
    with pytest.raises(ValueError, match="digest"):  # not the arrays saved with it
        load_state(tmp_path)
    meta = json.loads((tmp_path / "state.json").read_text())
    del meta["sha256"]  # a checkpoint written before digests: numpy itself refuses the pickle
    (tmp_path / "state.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="allow_pickle"):
        load_state(tmp_path)
    assert not target.exists()


def test_a_data_file_holding_a_pickle_is_one_error_naming_data_path(tmp_path):
    from urn_study.data import load_dataset

    target = tmp_path / "pwned"
    path = tmp_path / "mnist.npz"
    x = np.zeros((4, 28, 28), np.uint8)
    np.savez(
        path,
        x_train=np.array([Payload(target)], dtype=object),
        y_train=np.zeros(4, np.uint8),
        x_test=x,
        y_test=np.zeros(4, np.uint8),
    )
    config = load_config(overrides=["data.name=mnist", f"data.path={path}"])
    with pytest.raises(ValueError, match=r"^data\.path: .*mnist\.npz.*allow_pickle"):
        load_dataset(config.data, 0)
    assert not target.exists()


def test_python_tags_in_yaml_are_an_error_not_an_object(tmp_path):
    target = tmp_path / "pwned"
    hostile = f"base:\n  data.name: !!python/object/apply:pathlib.Path.touch [{str(target)!r}]\n"
    for text in (hostile, hostile.replace("base:\n  ", "")):
        path = tmp_path / "study.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError, match="not valid YAML") as info:
            load_yaml(path)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError):
        load_study(path)
    with pytest.raises(ConfigError, match="--set data.name"):
        parse_overrides([f"data.name=!!python/object/apply:pathlib.Path.touch [{str(target)!r}]"])
    assert not target.exists()


def test_config_text_is_data_never_code(tmp_path):
    target = tmp_path / "pwned"
    code = f"__import__('pathlib').Path({str(target)!r}).touch()"
    with pytest.raises(ConfigError, match="data.name: must be one of") as info:
        load_config(overrides=[f"data.name={code}"])
    assert code in str(info.value)  # read as the string it is
    with pytest.raises(ConfigError, match="model.steps: expected an integer"):
        load_config(overrides=["model.steps=1+1"])
    assert not target.exists()


# --- secrets: from the environment only, never written out ---------------------------------------------


def test_credentials_in_the_tracking_uri_are_refused_without_echoing_them(results, tmp_path, capsys):
    secret = "s3cr3t-in-uri"
    with pytest.raises(tracking.TrackingError) as info:
        tracking.resolve_tracking_uri(f"http://alice:{secret}@127.0.0.1:5000")
    assert "MLFLOW_TRACKING_TOKEN" in str(info.value) and secret not in str(info.value)
    study = tmp_path / "tiny.yaml"
    study.write_text("base: {data.name: nlgp, data.side: 8, data.n_samples: 200, train.epochs: 1}\n")
    assert cli.main(["sweep", str(study), "--tracking-uri", f"https://{secret}@example.invalid"]) == 2
    out = capsys.readouterr()
    assert secret not in out.out + out.err and out.err.count("\n") == 1
    assert not results.exists() or not any(results.rglob("*.json"))  # no sweep record holds it
    for uri in (f"postgresql://alice:{secret}@db.example/urn", f"mysql+pymysql://alice:{secret}@db/urn"):
        with pytest.raises(tracking.TrackingError) as info:
            tracking.resolve_tracking_uri(uri)
        assert "PGPASSWORD" in str(info.value) and secret not in str(info.value)
    # a user without a password is fine (the database client finds the password itself)
    assert tracking.resolve_tracking_uri("postgresql://alice@db.example:5432/urn") == "postgresql://alice@db.example:5432/urn"


def test_no_command_takes_a_secret_as_an_argument():
    """Arguments show in ``ps`` and shell history: tokens come from the environment."""
    helps = [
        subprocess.run(
            [sys.executable, "-m", "urn_study.cli", command, "--help"], capture_output=True, text=True, timeout=120, cwd=ROOT
        ).stdout
        for command in ("train", "sweep", "ui")
    ]
    assert all(helps)
    for text in helps:
        assert not any(word in text.lower() for word in ("--token", "password", "secret", "api-key", "--key")), text
