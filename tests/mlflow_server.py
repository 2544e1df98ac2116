"""A real MLflow tracking server on 127.0.0.1 (``mlflow server``, SQLite backend in a temp folder),
and helpers to log runs to it with the real client. Used by tests/test_sources_mlflow.py (one
server per test session) and bench/sources.py."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

START_TIMEOUT = 180.0  # seconds; the first start migrates a new database (10-60 s on 2 busy cores)
QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}  # no traffic but to 127.0.0.1


class ServerUnavailable(Exception):
    """``mlflow server`` is not installed (skip) or did not answer in time (fail)."""


@dataclass
class MlflowServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    start_seconds: float

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def mlflow_command() -> list[str] | None:
    beside = Path(sys.executable).parent / "mlflow"
    found = str(beside) if beside.exists() else shutil.which("mlflow")
    return [found] if found else None


def start_server(folder: Path, timeout: float = START_TIMEOUT, workers: int | None = 1) -> MlflowServer:
    """Start ``mlflow server`` on a free port and wait (at most ``timeout``) for /health.
    ``workers=None`` keeps the server's default (several worker processes, as deployed)."""
    command = mlflow_command()
    if command is None:
        raise ServerUnavailable("the `mlflow` command is not installed (pip install -e '.[test]')")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = folder / "server.log"
    started = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *command,
                "server",
                "--backend-store-uri",
                f"sqlite:///{folder / 'mlflow.db'}",
                "--artifacts-destination",
                str(folder / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *(["--workers", str(workers)] if workers else []),
            ],
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **QUIET},
        )
    server = MlflowServer(url, process, log, 0.0)
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise ServerUnavailable(f"mlflow server exited with {process.returncode}: {_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    server.start_seconds = time.monotonic() - started
                    return server
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    server.stop()
    raise ServerUnavailable(f"mlflow server did not answer on {url} within {timeout:.0f} s: {_tail(log)}")


def _tail(log: Path) -> str:
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    return " | ".join(lines[-5:])


def client(url: str) -> Any:
    for key, value in QUIET.items():
        os.environ.setdefault(key, value)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=url)


def log_run(
    mlflow: Any,
    experiment: str,
    commit: str,
    *,
    name: str,
    metrics: Mapping[str, float] | None = None,
    histories: Mapping[str, Sequence[float]] | None = None,
    params: Mapping[str, object] | None = None,
    artifacts: Mapping[str, bytes] | None = None,
    status: str = "FINISHED",
) -> str:
    """One run of ``experiment`` tagged with ``commit`` (as MLflow tags a run started in a git
    checkout), logged in one batch; returns its id."""
    from mlflow.entities import Metric, Param

    found = mlflow.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else mlflow.create_experiment(experiment)
    run = mlflow.create_run(experiment_id, tags={"mlflow.source.git.commit": commit}, run_name=name)
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    batch = [Metric(key, float(value), now, 0) for key, value in (metrics or {}).items()]
    for key, values in (histories or {}).items():
        batch += [Metric(key, float(value), now + step, step) for step, value in enumerate(values)]
    param_batch = [Param(key, str(value)) for key, value in (params or {}).items()]
    for start in range(0, max(len(batch), 1), 1000):  # the server takes 1,000 metrics per batch
        mlflow.log_batch(run_id, metrics=batch[start : start + 1000], params=param_batch if start == 0 else [])
    for path, data in (artifacts or {}).items():
        with tempfile.TemporaryDirectory() as folder:
            target = Path(folder) / Path(path).name
            target.write_bytes(data)
            mlflow.log_artifact(run_id, str(target), str(Path(path).parent) if "/" in path else None)
    mlflow.set_terminated(run_id, status)
    return str(run_id)
