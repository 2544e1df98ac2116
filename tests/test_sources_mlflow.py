"""MLflow as a metrics source, against a real tracking server (``mlflow server``, SQLite, 127.0.0.1)
started once per session, with runs logged by the real client at commits of temp git repos, and
full ``cml-bot report --dry-run`` runs through ``cml_bot.cli.main``.

Bad input: an unreachable server, a 401 (a stub that echoes the token back in its error body), an
experiment that does not exist, no run for the commit: one line or a report that says what is
missing; the token is in no output.
"""

from __future__ import annotations

import http.server
import io
import itertools
import math
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import GitRepo
from mlflow_server import MlflowServer, ServerUnavailable, client, free_port, log_run, start_server

from cml_bot.cli import Console, main
from cml_bot.config import MlflowSource
from cml_bot.secrets import without_userinfo
from cml_bot.sources.mlflow import filter_string, mlflow_results, open_tracking, run_url, tracking_uri

TOKEN = "mlflow-SECRET-token-do-not-leak-4711"
PASSWORD = "mlflow-SECRET-password-0815"
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a2dd1b6f0000000049454e44ae426082"
)
PR_CURVE = b"recall,precision\n0.1,0.95\n0.5,0.9\n0.9,0.7\n"
_names = itertools.count()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """One tracking server for the session (its start is most of this module's time: say it)."""
    pytest.importorskip("mlflow", reason="MLflow is in the test extras: pip install -e '.[test]'")
    try:
        started = start_server(tmp_path_factory.mktemp("mlflow"))
    except ServerUnavailable as exc:
        if "not installed" in str(exc):
            pytest.skip(str(exc))
        pytest.fail(f"cannot start the MLflow tracking server: {exc}")
    print(f"\nmlflow server ready in {started.start_seconds:.1f} s at {started.url}")
    yield started
    started.stop()


@pytest.fixture(scope="session")
def mlflow(server: MlflowServer) -> Any:
    return client(server.url)


def experiment_name() -> str:
    return f"exp-{os.getpid()}-{next(_names)}"


def env_for(url: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "MLFLOW_TRACKING_URI": url,
        "MLFLOW_TRACKING_TOKEN": TOKEN,
        "MLFLOW_TRACKING_PASSWORD": PASSWORD,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    }


def cli(args: list[str], repo: GitRepo, env: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*args, "-C", str(repo.root)], env=env, console=Console(out, err))
    return code, out.getvalue(), err.getvalue()


def config(experiment: str, extra: str = "") -> str:
    return f"title: MLflow model\nmlflow:\n  experiment: {experiment}\n{extra}"


def two_commits(repo: GitRepo, text: str) -> tuple[str, str]:
    repo.write("cml-bot.yaml", text)
    base = repo.commit("main")
    repo.git("checkout", "--quiet", "-b", "feature")
    repo.write("train.py", "# a change\n")
    return base, repo.commit("feature")


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text
        assert PASSWORD not in text


def report_files(repo: GitRepo) -> str:
    folder = repo.root / "cml-bot-report"
    return "\n".join(p.read_text(encoding="utf-8") for p in folder.glob("*") if p.suffix in (".md", ".html"))


def test_report_compares_this_commits_runs_with_the_base_commits(
    repo: GitRepo, server: MlflowServer, mlflow: Any
) -> None:
    name = experiment_name()
    extra = (
        "  artifacts:\n    - confusion.png\n    - {path: eval/pr.csv, x: recall, y: precision}\n"
        "thresholds:\n  accuracy: {direction: higher, max_drop: 0.01}\n"
    )
    base, head = two_commits(repo, config(name, extra))
    for seed, accuracy in ((0, 0.80), (1, 0.82)):
        log_run(
            mlflow,
            name,
            base,
            name=f"seed-{seed}",
            metrics={"accuracy": accuracy},
            histories={"loss": [1.0, 0.6, 0.4 + seed / 100]},
            params={"lr": 0.1, "seed": seed},
            artifacts={"confusion.png": PNG, "eval/pr.csv": PR_CURVE} if seed == 0 else {},  # from the first run
        )
    for seed, accuracy in ((0, 0.90), (1, 0.92)):
        log_run(
            mlflow,
            name,
            head,
            name=f"seed-{seed}",
            metrics={"accuracy": accuracy},
            histories={"loss": [0.9, 0.5, 0.3 + seed / 100]},
            params={"lr": 0.2, "seed": seed},
            artifacts={"confusion.png": PNG, "eval/pr.csv": PR_CURVE} if seed == 0 else {},
        )
    log_run(mlflow, name, head, name="crashed", metrics={"accuracy": 0.1}, status="FAILED")  # not counted

    code, out, err = cli(["report", "--dry-run", "-v"], repo, env_for(server.url))

    assert code == 0, err
    assert "pass" in out
    report = (repo.root / "cml-bot-report" / "report.md").read_text(encoding="utf-8").replace("\u200b", "")  # as read
    row = next(line for line in report.splitlines() if line.startswith("| accuracy"))
    assert "0.81 ± 0.01414 (n=2)" in row and "0.91 ± 0.01414 (n=2)" in row  # two seeds a side, not the crash
    assert "better" in row
    lr = next(line for line in report.splitlines() if line.startswith("| lr"))
    assert "0.1" in lr and "0.2" in lr
    assert "| seed" in report and "0, 1" in report  # a param that differs between the runs
    assert f"MLflow runs of the base commit ({base[:10]})" in report
    assert f"baseline: MLflow runs of the base commit ({base[:10]})" in err  # as the report says, not "no baseline"
    assert "no baseline" not in err
    assert report.count("#/experiments/") == 8  # 2 runs a side, each link's text and target
    assert "seed-0 (this change)" in report and "seed-0 (main)" in report
    images = sorted(p.name for p in (repo.root / "cml-bot-report").glob("*.png"))
    assert any("loss" in image for image in images), images  # the step history, base and head
    assert any("confusion" in image for image in images), images  # a logged image
    assert any("pr-csv" in image for image in images), images  # logged plot data
    assert "not in main" not in report  # both sides drawn
    assert_no_secret(out, err, report_files(repo))
    assert "Downloading" not in err  # the client's progress bars are off: only the CLI prints
    assert "MLFLOW_TRACKING_TOKEN" not in os.environ  # the client's environment was put back


def test_baseline_from_the_nearest_ancestor_with_runs(repo: GitRepo, server: MlflowServer, mlflow: Any) -> None:
    name = experiment_name()
    repo.write("cml-bot.yaml", config(name, "thresholds:\n  accuracy: {max_drop: 0.01}\n"))
    logged = repo.commit("main, logged")
    repo.write("README", "docs only")
    repo.commit("main, not logged")
    repo.git("checkout", "--quiet", "-b", "feature")
    repo.write("train.py", "# a change\n")
    head = repo.commit("feature")
    log_run(mlflow, name, logged, name="main", metrics={"accuracy": 0.8})
    log_run(mlflow, name, head, name="change", metrics={"accuracy": 0.7})

    code, out, err = cli(["report", "--dry-run"], repo, env_for(server.url))

    assert code == 0, err
    assert "regressed: accuracy" in out
    report = (repo.root / "cml-bot-report" / "report.md").read_text(encoding="utf-8").replace("\u200b", "")  # as read
    assert f"MLflow runs of {logged[:10]}, 1 commit older than the base commit" in report


def test_runs_as_shards_and_filter(repo: GitRepo, server: MlflowServer, mlflow: Any) -> None:
    name = experiment_name()
    extra = "  runs: shards\n  filter: \"params.model = 'cnn'\"\nthresholds:\n  accuracy: {max_drop: 0.05}\n"
    base, head = two_commits(repo, config(name, extra))
    log_run(mlflow, name, base, name="main", metrics={"accuracy": 0.8}, params={"model": "cnn"})
    log_run(mlflow, name, head, name="lr=0.1", metrics={"accuracy": 0.85}, params={"model": "cnn"})
    log_run(mlflow, name, head, name="lr=0.3", metrics={"accuracy": 0.60}, params={"model": "cnn"})
    log_run(mlflow, name, head, name="other", metrics={"accuracy": 0.1}, params={"model": "mlp"})  # filtered out

    code, out, err = cli(["report", "--dry-run"], repo, env_for(server.url))

    assert code == 0, err
    report = (repo.root / "cml-bot-report" / "report.md").read_text(encoding="utf-8").replace("\u200b", "")  # as read
    assert "lr=0.1" in report and "lr=0.3" in report
    assert "other" not in report.replace("others", "")
    assert "regressed: in lr=0.3" in out


def test_no_run_for_the_commit_says_what_is_missing(repo: GitRepo, server: MlflowServer, mlflow: Any) -> None:
    name = experiment_name()
    base, _ = two_commits(repo, config(name))
    log_run(mlflow, name, base, name="main", metrics={"accuracy": 0.8})

    code, out, err = cli(["report", "--dry-run"], repo, env_for(server.url))

    assert code == 0, err
    report = (repo.root / "cml-bot-report" / "report.md").read_text(encoding="utf-8").replace("\u200b", "")  # as read
    assert "no finished run of experiment" in report and "MLflow metrics are missing" in report
    assert "Traceback" not in out + err


def test_no_base_runs_say_so(repo: GitRepo, server: MlflowServer, mlflow: Any) -> None:
    name = experiment_name()
    _, head = two_commits(repo, config(name))
    log_run(mlflow, name, head, name="change", metrics={"accuracy": 0.8})

    code, out, err = cli(["report", "--dry-run"], repo, env_for(server.url))

    assert code == 0, err
    assert "no baseline" in out
    report = (repo.root / "cml-bot-report" / "report.md").read_text(encoding="utf-8").replace("\u200b", "")  # as read
    assert "the MLflow metrics have no baseline" in report


def test_experiment_that_does_not_exist_is_one_line(repo: GitRepo, server: MlflowServer) -> None:
    two_commits(repo, config("no-such-experiment"))

    code, out, err = cli(["report", "--dry-run"], repo, env_for(server.url))

    assert code == 2
    assert err.strip().count("\n") == 0
    assert "no experiment named 'no-such-experiment'" in err
    assert_no_secret(out, err)


def test_unreachable_server_is_one_line(repo: GitRepo) -> None:
    two_commits(repo, config("anything"))
    url = f"http://user:{PASSWORD}@127.0.0.1:{free_port()}"  # nothing listens there

    code, out, err = cli(["report", "--dry-run"], repo, env_for(url))

    assert code == 2
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert "cannot connect" in err and "http://127.0.0.1:" in err
    assert_no_secret(out, err)


def test_a_port_out_of_range_is_one_line_without_the_password(repo: GitRepo) -> None:
    """MLFLOW_TRACKING_URI is not validated: naming the server in the error must not fail on it
    (``urlsplit(...).port`` raises ValueError for 99999, which became a traceback)."""
    two_commits(repo, config("anything"))
    url = f"http://user:{PASSWORD}@127.0.0.1:99999"

    code, out, err = cli(["report", "--dry-run"], repo, env_for(url))

    assert code == 2, err
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert "MLflow at http://127.0.0.1:99999" in err
    assert_no_secret(out, err)


class _Refusing(http.server.BaseHTTPRequestHandler):
    """A server that refuses every request, echoing the credentials it was sent (hostile)."""

    def do_GET(self) -> None:
        body = f'{{"error_code": "UNAUTHENTICATED", "message": "bad {self.headers.get("Authorization")}"}}'.encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def refusing() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.mark.parametrize("credentials", ["token", "basic"])
def test_refused_credentials_are_one_line_and_never_shown(repo: GitRepo, refusing: str, credentials: str) -> None:
    pytest.importorskip("mlflow")
    two_commits(repo, config("anything"))
    env = env_for(refusing)
    if credentials == "basic":
        del env["MLFLOW_TRACKING_TOKEN"]
        env["MLFLOW_TRACKING_USERNAME"] = "someone"

    code, out, err = cli(["report", "--dry-run"], repo, env)

    assert code == 2
    assert err.strip().count("\n") == 0
    assert "access refused (401/403)" in err
    assert_no_secret(out, err)


def test_config_uri_and_environment_uri_must_agree(repo: GitRepo) -> None:
    two_commits(repo, config("x", "  tracking_uri: https://elsewhere.example.invalid\n"))

    code, _, err = cli(["report", "--dry-run"], repo, env_for("http://127.0.0.1:1"))

    assert code == 2
    assert "mlflow.tracking_uri: differs from MLFLOW_TRACKING_URI" in err


def test_tracking_uri_needs_a_server() -> None:
    with pytest.raises(Exception, match="no tracking server"):
        tracking_uri(MlflowSource(experiment="x"), {})
    assert tracking_uri(MlflowSource(experiment="x", tracking_uri="http://a"), {}) == "http://a"


def test_filter_string_quotes_the_run_name() -> None:
    source = MlflowSource(experiment="x", run_name="it's", filter="metrics.acc > 0")
    text = filter_string(source, "ab" * 20)
    assert text == (
        "attributes.status = 'FINISHED' AND tags.`mlflow.source.git.commit` = '" + "ab" * 20 + "'"
        ' AND attributes.run_name = "it\'s" AND metrics.acc > 0'
    )


def test_run_links_hide_credentials_and_skip_gitlab() -> None:
    from cml_bot.sources.mlflow import RunData

    run = RunData("r1", "n", "7", None, 0, {}, {})
    source = MlflowSource(experiment="x")
    assert run_url(source, "https://u:p@mlflow.example/", run) == "https://mlflow.example/#/experiments/7/runs/r1"
    assert run_url(source, "https://gitlab.example/api/v4/projects/3/ml/mlflow", run) is None
    templated = MlflowSource(experiment="x", run_url="https://gitlab.example/g/p/-/ml/experiments?run={run_id}")
    assert run_url(templated, "https://gitlab.example/api/v4/projects/3/ml/mlflow", run) == (
        "https://gitlab.example/g/p/-/ml/experiments?run=r1"
    )
    assert without_userinfo("https://user:secret@host:8443/x") == "https://host:8443/x"


def test_client_environment_is_put_back(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "outer-value")
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    env = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:1", "MLFLOW_TRACKING_USERNAME": "inner"}
    with open_tracking(MlflowSource(experiment="x"), env):
        assert os.environ.get("MLFLOW_TRACKING_USERNAME") == "inner"
        assert "MLFLOW_TRACKING_TOKEN" not in os.environ  # only the given environment's credentials
        assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert os.environ["MLFLOW_TRACKING_TOKEN"] == "outer-value"
    assert "MLFLOW_TRACKING_USERNAME" not in os.environ


def test_missing_client_is_a_one_line_hint(repo: GitRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)  # as if cml-bot[mlflow] were not installed
    two_commits(repo, config("x"))

    code, _, err = cli(["report", "--dry-run"], repo, env_for("http://127.0.0.1:1"))

    assert code == 2
    assert "pip install 'cml-bot[mlflow]'" in err


def test_recorded_results_keep_the_histories(repo: GitRepo, server: MlflowServer, mlflow: Any) -> None:
    """`cml-bot record` on main stores the MLflow metrics and step histories like any results."""
    name = experiment_name()
    repo.write("cml-bot.yaml", config(name))
    sha = repo.commit("main")
    log_run(mlflow, name, sha, name="main", metrics={"accuracy": 0.8}, histories={"loss": [1.0, 0.5]})

    code, out, err = cli(["record"], repo, env_for(server.url))

    assert code == 0, err
    from cml_bot.results import LocalStore

    stored = LocalStore(repo.root / ".cml-bot" / "records").load(sha)
    assert stored is not None
    assert stored.metrics["accuracy"] == 0.8
    assert stored.files["mlflow:history/loss.csv"] == b"step,loss\n0,1\n1,0.5\n"
    assert any(key.startswith("link:MLflow run main") for key in stored.facts)
    assert_no_secret(out, err, (repo.root / ".cml-bot" / "records" / f"{sha}.json").read_text())


def test_artifact_missing_from_the_run_is_noted(repo: GitRepo, server: MlflowServer, mlflow: Any) -> None:
    name = experiment_name()
    base, head = two_commits(repo, config(name, "  artifacts: [plots/confusion.png]\n"))
    log_run(mlflow, name, base, name="main", metrics={"accuracy": 0.8}, artifacts={"plots/confusion.png": PNG})
    log_run(mlflow, name, head, name="change", metrics={"accuracy": 0.8})

    code, _, err = cli(["report", "--dry-run"], repo, env_for(server.url))

    assert code == 0, err
    report = (repo.root / "cml-bot-report" / "report.md").read_text(encoding="utf-8").replace("\u200b", "")  # as read
    assert "has no artifact plots/confusion.png" in report
    assert Path(repo.root / "cml-bot-report").is_dir()


def test_run_links_from_untrusted_results_are_escaped() -> None:
    """A record or a fork's bundle carries the link facts: only http(s) URLs, escaped in the table."""
    from cml_bot.diff import diff
    from cml_bot.report import Report, RunFacts, render_markdown
    from cml_bot.results import RunResults
    from cml_bot.sources import run_links

    head = RunResults(
        sha="a" * 40,
        metrics={},
        facts={
            "link:MLflow run x|y": "https://mlflow.example/#/r)|[evil](https://evil.example)",
            "link:MLflow run js": "javascript:alert(1)",
            "not a link": "https://ignored.example",
        },
    )
    links = run_links(head, None, "main")
    assert [label for label, _ in links] == ["MLflow run x|y (this change)"]
    text = render_markdown(Report("t", "default", diff(None, {}), RunFacts(links=links)))
    row = next(line for line in text.splitlines() if "MLflow run" in line)
    assert row.count("|") - row.count("\\|") == 3  # two cells: the label's and the URL's pipes are escaped
    assert "](https://mlflow.example/#/r%29%7C%5Bevil%5D%28https://evil.example%29)" in row
    assert "javascript" not in text


def test_histories_only_where_there_are_steps(repo: GitRepo, server: MlflowServer, mlflow: Any) -> None:
    """A metric logged once (latest value at step 0) costs no history request; `history:` patterns
    choose which metrics are plotted."""
    from cml_bot.baseline import Baseline
    from cml_bot.git import Git
    from cml_bot.sources.mlflow import Tracking

    name = experiment_name()
    repo.write("cml-bot.yaml", config(name))
    sha = repo.commit("main")
    log_run(
        mlflow,
        name,
        sha,
        name="run",
        metrics={"test_accuracy": 0.9},
        histories={"loss": [1.0, 0.5, 0.25], "val_loss": [1.1, 0.6, 0.3]},
    )
    fetched: list[str] = []

    class Counting(Tracking):
        def history(self, run_id: str, key: str) -> list[tuple[float, float]]:
            fetched.append(key)
            return super().history(run_id, key)

        def bulk_history(self, run_ids: Sequence[str], key: str) -> dict[str, list[tuple[float, float]]] | None:
            fetched.append(key)
            return super().bulk_history(run_ids, key)

    no_base = Baseline(None, None, "main", "none")
    env = {"MLFLOW_TRACKING_URI": server.url}
    everything = MlflowSource(experiment=name)
    with open_tracking(everything, env):
        found = mlflow_results(everything, env, Git(repo.root), sha, no_base, Counting(server.url, env))
    assert sorted(fetched) == ["loss", "val_loss"]
    assert sorted(found.head.results.files) == ["mlflow:history/loss.csv", "mlflow:history/val_loss.csv"]
    assert found.head.results.metrics == {"loss": 0.25, "test_accuracy": 0.9, "val_loss": 0.3}

    fetched.clear()
    some = MlflowSource(experiment=name, history=("val_*",))
    with open_tracking(some, env):
        found = mlflow_results(some, env, Git(repo.root), sha, no_base, Counting(server.url, env))
    assert fetched == ["val_loss"]
    assert list(found.head.results.files) == ["mlflow:history/val_loss.csv"]


def _predictions(wrong: int, rows: int = 300) -> bytes:
    lines = ["id,label,prediction"] + [f"ex{i},{i % 3},{(i + 1) % 3 if i < wrong else i % 3}" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def test_predictions_logged_as_an_artifact_give_per_example_evidence(
    repo: GitRepo, server: MlflowServer, mlflow: Any
) -> None:
    """``predictions: mlflow:artifacts/...``: each side's run's logged predictions, paired by id."""
    name = experiment_name()
    text = config(name) + "predictions: mlflow:artifacts/eval/predictions.csv\n"
    base, head = two_commits(repo, text)
    log_run(
        mlflow, name, base, name="main", metrics={"accuracy": 0.9}, artifacts={"eval/predictions.csv": _predictions(30)}
    )
    log_run(
        mlflow,
        name,
        head,
        name="change",
        metrics={"accuracy": 0.8},
        artifacts={"eval/predictions.csv": _predictions(60)},
    )

    code, _, err = cli(["report", "--dry-run"], repo, env_for(server.url))

    assert code == 0, err
    report = (repo.root / "cml-bot-report" / "report.md").read_text(encoding="utf-8").replace("\u200b", "")
    assert "### Per-example results" in report
    assert "**Predictions: 0 examples fixed, 30 broken**" in report
    assert "mid-p McNemar" in report


def test_predictions_from_mlflow_need_an_mlflow_source(repo: GitRepo) -> None:
    repo.write("cml-bot.yaml", "predictions: mlflow:artifacts/eval/predictions.csv\n")
    repo.commit("config")
    code, _, err = cli(["report", "--dry-run"], repo, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    assert code == 2 and err.count("\n") == 1 and "predictions.path" in err


def test_bulk_and_per_run_histories_draw_the_same(repo: GitRepo, server: MlflowServer, mlflow: Any) -> None:
    """The server's bulk endpoint (one request per metric) and the per-run fallback (GitLab's and
    Databricks' APIs do not serve the bulk one) give the same plot data."""
    from cml_bot.baseline import Baseline
    from cml_bot.git import Git
    from cml_bot.sources.mlflow import Tracking

    name = experiment_name()
    repo.write("cml-bot.yaml", config(name))
    sha = repo.commit("main")
    for seed in range(3):
        log_run(
            mlflow, name, sha, name=f"seed-{seed}", histories={"loss": [1.0 / (step + 1 + seed) for step in range(40)]}
        )
    per_run: list[str] = []

    class NoBulk(Tracking):
        def bulk_history(self, run_ids: Sequence[str], key: str) -> dict[str, list[tuple[float, float]]] | None:
            return None

        def history(self, run_id: str, key: str) -> list[tuple[float, float]]:
            per_run.append(run_id)
            return super().history(run_id, key)

    class Bulk(Tracking):
        def history(self, run_id: str, key: str) -> list[tuple[float, float]]:
            raise AssertionError("the real server serves bulk histories: no request per run")

    no_base = Baseline(None, None, "main", "none")
    env = {"MLFLOW_TRACKING_URI": server.url}
    source = MlflowSource(experiment=name)
    with open_tracking(source, env):
        bulk = mlflow_results(source, env, Git(repo.root), sha, no_base, Bulk(server.url, env))
        fallback = mlflow_results(source, env, Git(repo.root), sha, no_base, NoBulk(server.url, env))
    assert len(per_run) == 3  # the fallback asked run by run
    assert bulk.head.results.files == fallback.head.results.files
    assert bulk.head.results.files["mlflow:history/loss.csv"].count(b"\n") == 41  # 40 steps and the header


def test_a_bulk_answer_is_read_as_mlflow_writes_its_json() -> None:
    """Proto3 JSON leaves out a field at its default (step 0, value 0.0), writes 64-bit integers
    as strings and NaN/infinities as strings; anything else in the answer is skipped."""
    from cml_bot.sources.mlflow import _point

    assert _point({"value": 0.5}) == (0.0, 0.5)
    assert _point({"step": "3"}) == (3.0, 0.0)
    step, value = _point({"step": "7", "value": "NaN"}) or (None, None)
    assert step == 7.0 and value is not None and math.isnan(value)
    assert _point({"step": 1, "value": "Infinity"}) == (1.0, math.inf)
    assert _point({"step": 1, "value": "high"}) is None
    assert _point(["step", 1]) is None


def test_metrics_logged_once_do_not_crowd_out_the_step_plots(repo: GitRepo, server: MlflowServer, mlflow: Any) -> None:
    """The step-plot limit counts metrics with a history: 31 metrics logged once (at step 0) and one
    loss curve draw the loss curve, with no note that plots were left out."""
    from cml_bot.baseline import Baseline
    from cml_bot.git import Git
    from cml_bot.sources import MAX_HISTORY_PLOTS

    name = experiment_name()
    repo.write("cml-bot.yaml", config(name))
    sha = repo.commit("main")
    once = {f"a{i:02d}": float(i) for i in range(MAX_HISTORY_PLOTS + 1)}
    log_run(mlflow, name, sha, name="r", metrics=once, histories={"loss": [1.0, 0.5, 0.25]})

    source = MlflowSource(experiment=name)
    env = {"MLFLOW_TRACKING_URI": server.url}
    with open_tracking(source, env) as tracking:
        found = mlflow_results(source, env, Git(repo.root), sha, Baseline(None, None, "main", "none"), tracking)

    assert found.head.notes == ()
    assert list(found.head.results.files) == ["mlflow:history/loss.csv"]
    assert len(found.head.results.metrics) == MAX_HISTORY_PLOTS + 2
