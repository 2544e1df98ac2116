"""Point 1: no secret, in any of its forms, in any output channel.

The environment of every case holds the forge tokens, GitLab's job token under its four names
(``CI_JOB_TOKEN``, inside ``CI_REPOSITORY_URL``, ``CI_REGISTRY_PASSWORD``,
``CI_DEPENDENCY_PROXY_PASSWORD``) and secrets named ``*_KEY``, ``*PASSWORD*``, ``*SECRET*``,
``*TOKEN*``; the attacks print or plant them in every place that reaches a channel.
"""

from __future__ import annotations

import base64
import json
import urllib.parse

import pytest

from adversarial.conftest import Project
from adversarial.harness import JOB_TOKEN, SECRETS, Run, assert_clean, leaks, run_cli
from cml_bot import delivery as app_module
from cml_bot.secrets import Secrets, redact_url, without_tokens

TOKEN = SECRETS["GITHUB_TOKEN"]
KEY = SECRETS["AWS_SECRET_ACCESS_KEY"]


def failing_step(project: Project, command: str) -> None:
    project.config(f"pipeline:\n  - name: leak\n    run: {json.dumps(command)}\n")


def roots(project: Project) -> tuple:
    return (project.root, project.home)


@pytest.mark.parametrize(
    "command",
    [
        pytest.param("env; exit 1", id="env"),
        pytest.param("printenv CI_REPOSITORY_URL CI_REGISTRY_PASSWORD CI_DEPENDENCY_PROXY_PASSWORD; exit 1", id="gl"),
        pytest.param('echo "$GITHUB_TOKEN $CML_BOT_TOKEN $GITLAB_TOKEN $CI_JOB_TOKEN"; exit 1', id="forge-vars"),
        pytest.param('echo "$AWS_SECRET_ACCESS_KEY $MY_SERVICE_KEY $DB_PASSWORD $HF_TOKEN"; exit 1', id="user"),
    ],
)
def test_a_failing_step_that_prints_its_environment(project: Project, command: str) -> None:
    failing_step(project, command)
    run = project.run("run")
    assert_clean(run, code=1, roots=roots(project), one_line=False)
    report = run.text("report.md")
    assert "Step leak exited with 1" in report
    # The forge tokens and the job token never reached the step; the user's own secrets did (they are
    # the user's to pass) and were scrubbed on the way out.
    if "$AWS" in command:
        assert "***" in report


def test_the_forge_tokens_never_reach_the_step() -> None:
    env = {**SECRETS, "PATH": "/bin", "OTHER_URL": f"https://x:{JOB_TOKEN}@h/"}
    kept = without_tokens(env)
    for name in ("GITHUB_TOKEN", "CML_BOT_TOKEN", "GITLAB_TOKEN", "CI_JOB_TOKEN", "CI_REPOSITORY_URL"):
        assert name not in kept
    assert "CI_REGISTRY_PASSWORD" not in kept and "OTHER_URL" not in kept  # they carry the job token
    assert kept["AWS_SECRET_ACCESS_KEY"] == KEY and kept["PATH"] == "/bin"


def leaky_file(project: Project, *lines: str) -> None:
    """What a step can read without the token in its environment: .git/config as actions/checkout
    leaves it, /proc/$PPID/environ, a credentials file. The step prints it and fails."""
    (project.home / "leak.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    failing_step(project, f"cat {project.home / 'leak.txt'}; exit 1")


def test_git_config_extraheader_base64_is_scrubbed(project: Project) -> None:
    header = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    gitlab = base64.b64encode(f"gitlab-ci-token:{JOB_TOKEN}".encode()).decode()
    leaky_file(
        project,
        f"http.https://github.com/.extraheader=AUTHORIZATION: basic {header}",
        f"http.extraheader=AUTHORIZATION: basic {gitlab}",
    )
    run = project.run("run")
    assert_clean(run, code=1, roots=roots(project), one_line=False)
    assert "AUTHORIZATION: basic ***" in run.text("report.md")


@pytest.mark.parametrize("shift", [0, 1, 2])
def test_a_token_inside_a_longer_base64_blob_at_each_alignment(project: Project, shift: int) -> None:
    blob = base64.b64encode(b"k" * shift + TOKEN.encode() + b"-and-more-bytes").decode()
    leaky_file(project, f"blob: {blob}")
    run = project.run("run")
    assert_clean(run, code=1, roots=roots(project), one_line=False)


def test_url_encoded_and_json_escaped_secrets(project: Project) -> None:
    password = SECRETS["DB_PASSWORD"]
    leaky_file(project, urllib.parse.quote(password, safe=""), urllib.parse.quote_plus(password), json.dumps(password))
    run = project.run("run")
    assert_clean(run, code=1, roots=roots(project), one_line=False)


def test_userinfo_of_any_url_in_a_log(project: Project) -> None:
    leaky_file(project, "connecting to postgres://admin:hunter2hunter2@db.internal:5432/x")
    run = project.run("run")
    assert_clean(run, code=1, roots=roots(project), one_line=False, extra_secrets=["hunter2hunter2"])
    assert "postgres://***@db.internal:5432/x" in run.text("report.md").replace("\u200b", "")


@pytest.mark.parametrize(
    ("where", "content"),
    [
        pytest.param("metrics.json", {f"acc {TOKEN}": 0.9, "loss": 0.3}, id="metric-name"),
        pytest.param("metrics.json", {"accuracy": TOKEN, "loss": 0.3}, id="metric-value"),
        pytest.param("metrics.json", {"accuracy": f"see https://u:{KEY}@h/x", "loss": 0.3}, id="value-url"),
        pytest.param("params.yaml", f"key: {json.dumps(urllib.parse.quote(KEY, safe=''))}\n", id="param-encoded"),
        pytest.param("params.yaml", f"lr: 0.1\n{JOB_TOKEN}: 1\n", id="param-name"),
    ],
)
def test_a_secret_planted_in_metrics_or_params(project: Project, where: str, content: object) -> None:
    project.write(where, content)  # type: ignore[arg-type]
    run = project.run("report", "--dry-run", env=project.env(actions=True))
    assert_clean(run, code=0, roots=roots(project))


def test_a_secret_in_a_gated_metric_name_reaches_no_annotation(project: Project) -> None:
    project.config("thresholds:\n  '*': {min: 0.95}\n")
    project.write("metrics.json", {f"acc-{JOB_TOKEN}": 0.9})
    run = project.run("report", "--dry-run", "--fail-on-regression", env=project.env(actions=True))
    assert_clean(run, code=1, roots=roots(project), one_line=False)
    assert "::error title=cml-bot regression::acc-***" in run.out


def test_a_secret_in_a_step_name_and_command(project: Project) -> None:
    project.config(f"pipeline:\n  - name: step {JOB_TOKEN}\n    run: echo {KEY}; exit 3\n")
    run = project.run("-v", "run", "--dry-run", env=project.env(actions=True))
    assert_clean(run, code=1, roots=roots(project), one_line=False)
    assert "pipeline failed: step 'step ***' exited with 3" in run.out


def test_a_secret_in_the_output_folder_name(project: Project) -> None:
    out = project.home / f"out-{JOB_TOKEN}"
    run = run_cli(
        ["report", "--dry-run", "-C", str(project.root), "--out", str(out)],
        project.env(actions=True),
        watch=[project.root, project.home],
    )
    assert_clean(run, code=0, roots=roots(project))
    assert "report-path<<" in project.outputs.read_text(encoding="utf-8")


def test_a_shard_bundle_is_scrubbed(project: Project) -> None:
    project.config("pipeline:\n  - env\n")
    project.write("metrics.json", {"accuracy": 0.9, f"n {KEY}": 1})
    run = project.run("run", "--shard", "s1")
    assert_clean(run, code=0, roots=roots(project))
    saved = run.text("run.json")
    assert "***" in saved and json.loads(saved)["shard"] == "s1"


def test_recorded_results_are_scrubbed(project: Project) -> None:
    project.write("metrics.json", {"accuracy": 0.9, f"name {TOKEN}": 1})
    project.commit()
    run = project.run("record", report=False)
    assert_clean(run, code=0, roots=roots(project))
    [recorded] = [path for path in run.files if "/.cml-bot/records/" in path and path.endswith(".json")]
    assert "***" in run.files[recorded].decode()


def test_a_config_error_quoting_a_secret(project: Project) -> None:
    project.config(f"thresholds:\n  accuracy: {{max_drop: '{KEY}'}}\n")
    run = project.run("report")
    assert_clean(run, code=2, roots=roots(project))
    assert "max_drop" in run.err


def test_data_url_credentials_are_never_shown(project: Project) -> None:
    project.config(
        "data:\n  files:\n    - path: d.csv\n      url: http://user:sup3rsecretpass@127.0.0.1:9/d.csv\n"
        f"      sha256: {'0' * 64}\n"
    )
    run = project.run("pull", report=False)
    assert_clean(run, code=(1, 2), roots=roots(project), extra_secrets=["sup3rsecretpass"])


def test_an_internal_error_quoting_a_secret(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: object, **kwargs: object) -> str:
        raise RuntimeError(f"unexpected {TOKEN} and {base64.b64encode(KEY.encode()).decode()}")

    monkeypatch.setattr(app_module, "render_markdown", explode)
    run = project.run("report")
    assert_clean(run, code=3, roots=roots(project))
    [log] = [path for path in run.files if "cml-bot-error-" in path]
    assert "Traceback" in run.files[log].decode() and "***" in run.files[log].decode()


def test_a_log_line_with_a_secret_is_scrubbed(project: Project) -> None:
    project.config(f"pipeline:\n  - name: s\n    run: 'true # {SECRETS['HF_TOKEN']}'\n")
    run = project.run("-v", "run")  # logs each step's command at INFO
    assert_clean(run, code=0, roots=roots(project))
    assert "cml-bot: step s: true # ***" in run.err


def test_no_add_mask_line_with_the_raw_token(project: Project) -> None:
    run = project.run("report", env=project.env(actions=True, GITHUB_TOKEN=TOKEN, GITHUB_API_URL="http://127.0.0.1:9"))
    assert "::add-mask::" not in run.out
    assert not leaks(run)


def test_the_sanitiser_names_and_forms() -> None:
    secrets = Secrets.from_env({**SECRETS, "TOKENIZERS_PARALLELISM": "false", "MONKEY": "not-a-secret-at-all"})
    assert "false" not in secrets.values and "not-a-secret-at-all" not in secrets.values
    assert JOB_TOKEN in secrets.values and KEY in secrets.values
    assert repr(secrets) == f"Secrets(<{len(secrets.values)} values>)" and TOKEN not in repr(secrets)
    assert redact_url("http://u:p@host:99999/x") == "http://host:99999/x"
    assert secrets.scrub(f"a {TOKEN} b") == "a *** b"


def fragments(value: str, length: int = 8) -> set[str]:
    """Every piece of ``value`` ``length`` characters long: what a secret cut in two still shows."""
    return {value[at : at + length] for at in range(len(value) - length + 1)}


def assert_no_fragment(run: Run, value: str) -> None:
    pieces = fragments(value)
    shown = [(channel, piece) for channel, text in run.channels().items() for piece in pieces if piece in text]
    assert not shown, shown[:5]


@pytest.mark.parametrize(
    "program",
    [
        # one long line written in two parts, as any streamed line is (a pipe holds 64 KB)
        pytest.param('sys.stdout.write("x" * 8190 + os.environ["AWS_SECRET_ACCESS_KEY"])', id="two-writes"),
        # one print of a line longer than a pipe's buffer, the secret across the first cut
        pytest.param('print("x" * 8190 + os.environ["AWS_SECRET_ACCESS_KEY"] + "y" * 70000, end="")', id="64k-line"),
        # the secret across a later cut, and its base64 (longer than the secret) across the next one
        pytest.param(
            'key = os.environ["AWS_SECRET_ACCESS_KEY"]; b = base64.b64encode(key.encode()).decode();'
            'print("x" * (2 * 8192 - 20) + key + "y" * (8192 - 40 - 30) + b + "z" * 9000, end="")',
            id="later-cuts",
        ),
    ],
)
def test_a_secret_across_the_cut_of_a_long_line(project: Project, program: str) -> None:
    # the line ends only after a pause, so cml-bot holds an unfinished line longer than it keeps whole
    script = f"import base64, os, sys, time\n{program}\nsys.stdout.flush()\ntime.sleep(0.3)\nprint(' tail')\nexit(1)\n"
    project.write("leak.py", script)
    failing_step(project, "python3 leak.py")
    run = project.run("run")
    assert_clean(run, code=1, roots=roots(project), one_line=False)
    assert_no_fragment(run, KEY)
    assert_no_fragment(run, base64.b64encode(KEY.encode()).decode())
    lines = run.out.splitlines()
    start = lines.index("$ python3 leak.py") + 1
    end = next(at for at in range(start, len(lines)) if lines[at].startswith("cml-bot: step 1/1 leak:"))
    shown = "".join(lines[start:end])  # the pieces, rejoined
    assert shown.count("***") == program.count("os.environ") + program.count("b64encode"), shown.replace("x", "")


@pytest.mark.parametrize(
    "command",
    [
        pytest.param("""python3 -c 'import os; print({"db": os.environ["DB_PASSWORD"]})'; exit 1""", id="repr"),
        pytest.param("""python3 -c 'import os; print(os.environ)'; exit 1""", id="os.environ"),
        pytest.param(
            """python3 -c 'import os, shlex; print(shlex.quote(os.environ["DB_PASSWORD"]))'; exit 1""", id="shlex"
        ),
        pytest.param("""bash -xc 'true "$DB_PASSWORD"'; exit 1""", id="set-x"),
    ],
)
def test_a_secret_with_both_quotes_shown_quoted(project: Project, command: str) -> None:
    failing_step(project, command)
    run = project.run("run")
    assert_clean(run, code=1, roots=roots(project), one_line=False)
    assert_no_fragment(run, SECRETS["DB_PASSWORD"].split("'")[0])  # the part before any quoting
