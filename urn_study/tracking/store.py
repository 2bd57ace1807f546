"""The tracking store: which URIs are accepted (``resolve_tracking_uri``), whether one can be used now
(``check_tracking``), and the client that fails in one line when a server stays away."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from urn_study.config import ConfigError
from urn_study.study import results_dir

# MLflow 3 sends usage telemetry from every process that imports it (a config fetch, then events, over
# HTTPS; its UI too). Off unless the user set MLFLOW_DISABLE_TELEMETRY: offline by default, and ~0.3 s of CPU
# per trial worker here. Set before mlflow is imported (this module imports it lazily; workers inherit it).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# MLflow draws a progress bar for every download, one per artifact file: reading a study's saved arrays
# (analysis.runs) would flood the output. Off unless the user set it; MLflow reads it at each download and
# takes no argument for it, so it is set here once, at import, not changed around a call.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

# MLflow logs each database error (several lines: SQL, parameters) before raising it; the raised error is
# what urn-study reports, in one line
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
_log = logging.getLogger(__name__)


class TrackingError(ConfigError):
    """The tracking store cannot be used (unreachable server, unwritable folder): said before any trial runs."""


# --- the store ---------------------------------------------------------------------------------


def default_tracking_uri() -> str:
    return f"sqlite:///{results_dir() / 'mlflow.db'}"


def default_artifact_root() -> Path:
    return results_dir() / "mlartifacts"


FLUSH_EVERY_S = 5.0  # per-epoch metrics (trial_record.MetricSender) reach the store about this long after their epoch at most
FLUSH_ENV = "URN_METRICS_EVERY_S"  # overrides FLUSH_EVERY_S (0: send each epoch as soon as it is queued)


def _flush_every() -> float:
    text = os.environ.get(FLUSH_ENV, "")
    try:
        seconds = float(text) if text else FLUSH_EVERY_S
    except ValueError:
        seconds = -1.0
    if not math.isfinite(seconds) or seconds < 0:
        raise TrackingError(f"${FLUSH_ENV}: seconds between metric batches, a number >= 0; got {text!r}")
    return seconds


SERVER_SCHEMES = ("http", "https")
DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")  # each optionally with +driver (mysql+pymysql)
# query keys that carry a secret (?token=..., ?password=...): like credentials, never part of a URI here
SECRET_KEY = re.compile(r"token|passw|pwd|secret|api_?key|access_?key|auth|credential|signature", re.IGNORECASE)
# the pip package of each database driver SQLAlchemy loads by default or by name
DRIVER_PACKAGES = {
    "psycopg": "psycopg[binary]",
    "psycopg2": "psycopg2-binary",
    "MySQLdb": "mysqlclient",
    "pymysql": "PyMySQL",
    "pyodbc": "pyodbc",
    "pymssql": "pymssql",
}


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else the local SQLite store; SQLite paths made absolute
    (trials run in their own folders), the scheme in lower case. MLflow's file store is refused, and so is a
    URI holding a secret: it is printed, stored in the sweep record and sent to every trial."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
    try:
        parts = urllib.parse.urlsplit(uri)
        if parts.scheme.lower() in SERVER_SCHEMES:
            parts.port  # noqa: B018 - raises ValueError for a port that is no number in 0..65535
    except ValueError as err:
        raise TrackingError(f"--tracking-uri {masked(uri)!r}: not a valid URI ({err})") from None
    scheme = parts.scheme.lower()
    uri = scheme + uri[len(parts.scheme) :]
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///") :]
        return uri if path.startswith("/") else f"sqlite:///{Path(path).resolve()}"
    secrets = [key for key, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if SECRET_KEY.search(key)]
    if secrets:
        raise TrackingError(
            f"--tracking-uri {masked(uri)!r}: a secret in the query ({secrets[0]}=...) would be "
            "printed and stored; give it in the environment instead (MLFLOW_TRACKING_TOKEN for a "
            "server, PGPASSWORD or ~/.pgpass for PostgreSQL)"
        )
    if scheme in SERVER_SCHEMES:
        if parts.username is not None or parts.password is not None:
            raise TrackingError(
                "--tracking-uri: credentials in the URI would be printed and stored; give them "
                "as MLFLOW_TRACKING_TOKEN (or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD) "
                "in the environment instead"
            )
        if not parts.hostname:
            raise TrackingError(f"--tracking-uri {masked(uri)!r}: no host; an MLflow server is {scheme}://host:port")
    if scheme.split("+")[0] in DATABASE_SCHEMES and parts.password is not None:
        raise TrackingError(
            "--tracking-uri: a password in the URI would be printed and stored; leave it out "
            "(postgresql://user@host/db) and give it to the database client instead "
            "(PGPASSWORD or ~/.pgpass for PostgreSQL)"
        )
    if scheme in SERVER_SCHEMES or uri.lower().startswith("databricks") or scheme.split("+")[0] in DATABASE_SCHEMES:
        return uri.rstrip("/")
    raise TrackingError(
        f"--tracking-uri {masked(uri)!r}: use an MLflow server (http://host:port) or sqlite:///path.db "
        "(the file store is deprecated)"
    )


def masked(uri: str) -> str:
    """``uri`` for a message: its user info and the values of secret query keys replaced by ``***``. By text,
    not by parsing: a malformed URI is masked too."""
    uri = re.sub(r"^([^:/?#]+://)[^/?#]*@", r"\1***@", uri)
    return re.sub(r"([?&][^=&#]*=)([^&#]*)", lambda m: m[1] + ("***" if SECRET_KEY.search(m[1]) else m[2]), uri)


def is_local(uri: str) -> bool:
    return uri.lower().startswith("sqlite:")


def check_tracking(uri: str, timeout: float = 10.0) -> None:
    """Raise TrackingError (one line) unless the store can be used right now."""
    _flush_every()  # a bad $URN_METRICS_EVERY_S is said here, not in every trial
    scheme = uri.split("://", 1)[0].lower()
    if scheme in SERVER_SCHEMES:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=timeout) as response:
                if response.status != 200:
                    raise OSError(f"HTTP {response.status}")
        except (OSError, urllib.error.URLError, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise TrackingError(
                f"MLflow server {masked(uri)} is not reachable ({reason}); start it (mlflow server "
                f"--host 127.0.0.1 --port ...) or leave out --tracking-uri for the local store"
            ) from None
    elif scheme.split("+")[0] in DATABASE_SCHEMES:
        _check_driver(uri)
    elif is_local(uri):
        _check_writable(Path(uri[len("sqlite:///") :]).parent, f"tracking store {uri}")
        # where a local store's runs keep their artifacts: found unwritable only once the sweep's run is open
        _check_writable(default_artifact_root(), f"artifact folder of {uri}")


def _check_writable(folder: Path, what: str) -> None:
    """Create ``folder`` and a probe file in it, then remove the probe. Tried, not asked: os.access says yes
    to root everywhere, and a read-only mount or a file in the folder's place shows only when writing."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".urn-probe-"):
            pass
    except OSError as err:
        reason = "a file is in its place" if folder.exists() and not folder.is_dir() else err.strerror
        raise TrackingError(f"{what}: cannot create {folder} or write in it ({reason})") from None


def _check_driver(uri: str) -> None:
    """The database driver SQLAlchemy loads for ``uri`` must import (else MLflow fails once the sweep started)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(uri).get_dialect().import_dbapi()
    except ArgumentError as err:  # an unparsable URL, or a driver name SQLAlchemy does not know
        raise TrackingError(f"tracking store {masked(uri)}: {err}") from None
    except ImportError as err:
        if not err.name:
            raise TrackingError(f"tracking store {masked(uri)}: its database driver does not load ({err})") from None
        scheme = uri.split("://", 1)[0].split("+")[0]
        raise TrackingError(
            f"tracking store {masked(uri)}: its database driver {err.name} is not installed; "
            f"pip install {DRIVER_PACKAGES.get(err.name, err.name)} (or name a driver you have: "
            f"{scheme}+DRIVER://...)"
        ) from None


def client(uri: str) -> "_Client":
    """An MlflowClient for ``uri`` (see _Client for what happens when a server stops answering)."""
    return _Client(uri)


class _Client:
    """An MlflowClient whose calls, when a server stays away, wait and then fail in one line.

    MLflow itself retries every HTTP call with exponential backoff (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, 7 by
    default: about four minutes), so a server that restarts loses nothing: the trial waits, then logs.
    Past that, ``TrackingError`` names the server instead of a page of connection errors."""

    def __init__(self, uri: str):
        from mlflow.tracking import MlflowClient

        self._uri, self._mlflow = uri, MlflowClient(tracking_uri=uri)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_mlflow":  # copy / pickle probing a half-made object
            raise AttributeError(name)
        attribute = getattr(self._mlflow, name)
        if not callable(attribute):
            return attribute

        def call(*args, **kwargs):
            from mlflow.exceptions import MlflowException

            try:
                return attribute(*args, **kwargs)
            except MlflowException as err:
                if not no_answer(err):  # the server answered: a real error
                    raise
                raise TrackingError(
                    f"MLflow server {masked(self._uri)} stopped answering ({name}), still after "
                    "MLFLOW_HTTP_REQUEST_MAX_RETRIES retries with backoff"
                ) from None

        return call


def no_answer(err: BaseException) -> bool:
    """Whether MLflow raised ``err`` because its server gave no answer: the connection refused or cut, a timeout,
    or its retries spent on transient statuses (429, 5xx: a proxy before a server that is down). MLflow's REST
    client raises a plain MlflowException then, chained to the ``requests`` error; a server that answers with an
    error gives a RestException, or an MlflowException with no such error behind it."""
    from requests import exceptions as http

    return isinstance(err.__cause__ or err.__context__, (http.ConnectionError, http.RetryError, http.Timeout))


@contextlib.contextmanager
def _creating_store(uri: str):
    """Around the first use of a local store: one process at a time (two drivers creating one SQLite store at once
    would both run MLflow's schema migrations, and one fails). An exclusive lock on ``<db>.lock``."""
    if not is_local(uri):
        yield
        return
    import fcntl

    path = Path(f"{uri[len('sqlite:///') :]}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
