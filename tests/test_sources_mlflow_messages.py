"""What cml-bot says about an MLflow server that fails, and what it shows of the server's URI: a
server error is named as one (not as a timeout), and a query string in MLFLOW_TRACKING_URI (which
may carry a token) is shown in no message and no run link. Stub servers on 127.0.0.1: no MLflow
server is needed, only the client."""

from __future__ import annotations

import http.server
import io
import json
import os
import threading
from collections.abc import Iterator

import pytest
from conftest import GitRepo

from cml_bot.cli import Console, main
from cml_bot.config import MlflowSource
from cml_bot.sources.mlflow import RunData, run_url

QUERY_SECRET = "QTOKEN-secret-in-the-query-9321"


class _Failing(http.server.BaseHTTPRequestHandler):
    """Answers every request with ``status`` and a JSON error that echoes the path it was sent."""

    status = 500

    def do_GET(self) -> None:
        body = json.dumps({"error_code": "INTERNAL_ERROR", "message": f"failed at {self.path}"}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


def _serve(status: int) -> Iterator[str]:
    handler = type("Handler", (_Failing,), {"status": status})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def failing_500() -> Iterator[str]:
    yield from _serve(500)


@pytest.fixture
def failing_400() -> Iterator[str]:
    yield from _serve(400)


def report(repo: GitRepo, uri: str) -> tuple[int, str, str]:
    pytest.importorskip("mlflow")
    repo.write("cml-bot.yaml", "mlflow:\n  experiment: anything\n")
    repo.commit("main")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    }
    out, err = io.StringIO(), io.StringIO()
    code = main(["report", "--dry-run", "-C", str(repo.root)], env=env, console=Console(out, err))
    return code, out.getvalue(), err.getvalue()


def test_a_server_error_is_named_as_one(repo: GitRepo, failing_500: str) -> None:
    code, _, err = report(repo, failing_500)

    assert code == 2
    assert err.strip().count("\n") == 0, err
    assert f"MLflow at {failing_500}: the server answered HTTP 500 (server error)" in err
    assert "no answer" not in err and "timed out" not in err


def test_a_query_in_the_tracking_uri_is_not_shown_in_errors(repo: GitRepo, failing_400: str) -> None:
    """The client's own error text names the URL it asked (the query included): it is redacted."""
    code, out, err = report(repo, f"{failing_400}/?token={QUERY_SECRET}")

    assert code == 2
    assert err.strip().count("\n") == 0, err
    assert f"MLflow at {failing_400}/?..." in err
    assert QUERY_SECRET not in out + err


def test_a_query_in_the_tracking_uri_is_not_shown_in_errors_on_server_error(repo: GitRepo, failing_500: str) -> None:
    code, out, err = report(repo, f"{failing_500}?access_token={QUERY_SECRET}")

    assert code == 2
    assert "the server answered HTTP 500" in err
    assert QUERY_SECRET not in out + err


def test_run_links_leave_out_the_tracking_uris_query() -> None:
    run = RunData("r1", "n", "7", None, 0, {}, {})
    uri = f"https://u:p@mlflow.example/?token={QUERY_SECRET}#frag"

    assert run_url(MlflowSource(experiment="x"), uri, run) == "https://mlflow.example/#/experiments/7/runs/r1"
    templated = MlflowSource(experiment="x", run_url="{tracking_uri}/runs/{run_id}?view=chart")
    assert run_url(templated, uri, run) == "https://mlflow.example/runs/r1?view=chart"


def test_run_links_leave_out_credential_parameters_of_the_template() -> None:
    """A template's own query stays (GitLab's ``?run={run_id}``), but not a parameter that carries
    a credential: the link is posted where every reader of the pull request sees it."""
    run = RunData("r1", "n", "7", None, 0, {}, {})
    source = MlflowSource(experiment="x", run_url=f"https://ui.example/r?run={{run_id}}&sig={QUERY_SECRET}&tab=m")

    assert run_url(source, "https://mlflow.example", run) == "https://ui.example/r?run=r1&tab=m"
