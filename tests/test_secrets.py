"""Tokens never leak: through GitHub and GitLab runs of ``cml_bot.cli.main``, their failure paths and
a pipeline that prints its environment, no token appears in stdout (no ``::add-mask::`` line
either: the runner masks what it injects), stderr, the report, the preview, the job summary, GITHUB_OUTPUT, the bundle,
the pipeline log tail, or anything posted to the forge.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from conftest import GitRepo
from fake_github import FakeGitHub, fake_github, github_env
from fake_gitlab import FakeGitLab
from gitlab_fixtures import MR_IID, ci_env, fake

from cml_bot.cli import Console, main

__all__ = ["fake", "fake_github"]  # fixtures

GH_TOKEN = "ghp_FAKE0SECRET0TOKEN0do0not0leak0123456"  # the fake's write token (fake_github.TOKEN)
CML_TOKEN = "ghp_CMLBOT0SECRET0second0token0zz98765"
OTHER = "glpat-OTHER0SECRET0never0printed0aa11"
CONFIG = """\
title: Secrets
pipeline:
  - name: print the environment
    run: env; echo "token=[$GITHUB_TOKEN][$CML_BOT_TOKEN][$GITLAB_TOKEN][$CI_JOB_TOKEN]"
metrics: [metrics.json]
plots:
  - {path: log.csv, x: epoch, y: [loss]}
"""


def project(repo: GitRepo, config: str = CONFIG) -> tuple[str, str]:
    repo.write("cml-bot.yaml", config)
    repo.write("metrics.json", {"accuracy": 0.8})
    repo.write("log.csv", "epoch,loss\n1,0.9\n2,0.5\n")
    base = repo.commit("main")
    repo.git("checkout", "--quiet", "-b", "feature")
    repo.write("metrics.json", {"accuracy": 0.85})
    return base, repo.commit("change")


def cli(args: list[str], env: dict[str, str], repo: GitRepo) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*args, "-C", str(repo.root)], env=env, console=Console(out, err), sleep=lambda _: None)
    return code, out.getvalue(), err.getvalue()


def written(*roots: Path) -> str:
    """Every file under the folders (repo outside .git, report, bundle, summary, outputs)."""
    texts = []
    for root in roots:
        for path in [root] if root.is_file() else sorted(root.rglob("*")):
            if path.is_file() and ".git" not in path.parts:
                texts.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(texts)


def assert_no_token(tokens: list[str], out: str, err: str, *texts: str) -> None:
    assert "::add-mask::" not in out
    for token in tokens:
        assert token not in out, "token in stdout"
        assert token not in err, "token in stderr"
        for text in texts:
            assert token not in text


def github_posted(fake: FakeGitHub) -> str:
    parts = [c["body"] for c in fake.comments_on(2)]
    parts += [str(s) for s in fake.statuses]
    parts += [data.decode("utf-8", "replace") for data in fake.blobs.values()]
    parts += [str(c) for c in fake.commits.values()]
    return "\n".join(parts)


def actions_env(fake: FakeGitHub, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = github_env(
        fake,
        GITHUB_OUTPUT=str(tmp_path / "output"),
        GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"),
        PATH="/usr/bin:/bin",
        GITLAB_TOKEN=OTHER,
    )
    env.update(extra)
    return env


def test_github_run_with_a_pipeline_that_prints_env(fake_github: FakeGitHub, repo: GitRepo, tmp_path: Path) -> None:
    project(repo)
    fake_github.add_token(CML_TOKEN, "cml-bot-user")
    env = actions_env(fake_github, tmp_path, CML_BOT_TOKEN=CML_TOKEN)

    code, out, err = cli(["run", "--base", "main", "--bundle-dir", str(tmp_path / "bundle")], env, repo)

    assert code == 0, out + err
    assert "token=[][][][]" in out  # the step ran, without any token in its environment
    report = (repo.root / "cml-bot-report" / "report.md").read_text(encoding="utf-8")
    assert "print the environment" in report and "PATH=" in out
    assert len(fake_github.comments_on(2)) == 1
    tokens = [GH_TOKEN, CML_TOKEN, OTHER]
    assert_no_token(tokens, out, err, written(repo.root, tmp_path), github_posted(fake_github))


def test_github_read_only_token_bundle(fake_github: FakeGitHub, repo: GitRepo, tmp_path: Path) -> None:
    project(repo)
    read_only = "ghs_READONLY0fork0token0secret00000111"
    fake_github.add_token(read_only, "github-actions[bot]", type="Bot", can_write=False, can_read_user=False)
    env = actions_env(fake_github, tmp_path, GITHUB_TOKEN=read_only)

    code, out, err = cli(["run", "--base", "main", "--bundle-dir", str(tmp_path / "bundle")], env, repo)

    assert code == 0, out + err
    assert (tmp_path / "bundle" / "run.json").is_file() and "403" in out + err, out + err
    assert_no_token([read_only, OTHER], out, err, written(repo.root, tmp_path))


@pytest.mark.parametrize("status", [500, 422])
def test_github_failure_that_echoes_the_token(
    fake_github: FakeGitHub, repo: GitRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    """A server error message quoting the token (a proxy echoing headers): 500 until retries run out,
    or a 422 at once; the one-line error must not show it."""
    project(repo)
    fake_github.fail("POST", r"/issues/2/comments$", status=status, message=f"bad auth token {GH_TOKEN}", times=10)
    env = actions_env(fake_github, tmp_path)

    code, out, err = cli(["report", "--base", "main"], env, repo)

    assert code == 1, out + err
    assert err.startswith("cml-bot: error: GitHub POST") and err.count("\n") == 1, err
    assert "***" in err and "::error title=cml-bot::" in out
    assert len(fake_github.requests("POST", r"/issues/2/comments$")) == (6 if status == 500 else 1)
    assert_no_token([GH_TOKEN, OTHER], out, err, written(repo.root, tmp_path), github_posted(fake_github))


def test_config_error_quoting_the_token(fake_github: FakeGitHub, repo: GitRepo, tmp_path: Path) -> None:
    project(repo, CONFIG + f"thresholds:\n  accuracy: {{max_drop: '{GH_TOKEN}'}}\n")
    env = actions_env(fake_github, tmp_path)

    code, out, err = cli(["run", "--base", "main"], env, repo)

    assert code == 2 and err.count("\n") == 1 and "max_drop" in err, out + err
    outputs = [p for p in tmp_path.iterdir() if p.is_file()]  # (the config itself holds the token)
    assert_no_token([GH_TOKEN, OTHER], out, err, written(*outputs))
    assert fake_github.log == []


def test_gitlab_run_with_a_pipeline_that_prints_env(fake: FakeGitLab, repo: GitRepo, tmp_path: Path) -> None:
    base, head = project(repo)
    fake.add_merge_request(MR_IID, sha=head)
    env = ci_env(fake, CI_COMMIT_SHA=head, CI_MERGE_REQUEST_DIFF_BASE_SHA=base)
    env.update(PATH="/usr/bin:/bin", GITLAB_TOKEN=OTHER, GITHUB_TOKEN=GH_TOKEN)

    code, out, err = cli(["run"], env, repo)

    assert code == 0, out + err
    assert "token=[][][][]" in out
    notes = fake.marked_notes(MR_IID, "<!-- cml-bot report (id: default) -->")
    assert len(notes) == 1
    posted = "\n".join([n["body"] for n in fake.notes(MR_IID)] + [str(s) for s in fake.statuses])
    tokens = [fake.token, fake.job_token, OTHER, GH_TOKEN]
    assert_no_token(tokens, out, err, written(repo.root, tmp_path), posted)


def test_gitlab_job_token_only_and_a_refused_note(fake: FakeGitLab, repo: GitRepo, tmp_path: Path) -> None:
    base, head = project(repo)
    fake.add_merge_request(MR_IID, sha=head)
    env = ci_env(fake, CI_COMMIT_SHA=head, CI_MERGE_REQUEST_DIFF_BASE_SHA=base, CML_BOT_TOKEN=None)
    env.update(PATH="/usr/bin:/bin")

    code, out, err = cli(["run"], env, repo)  # job token only: the report goes to a bundle

    assert code == 0, out + err
    assert (repo.root / "cml-bot-bundle" / "run.json").is_file(), out + err
    assert_no_token([fake.job_token], out, err, written(repo.root, tmp_path))

    env = ci_env(fake, CI_COMMIT_SHA=head, CI_MERGE_REQUEST_DIFF_BASE_SHA=base)
    env["PATH"] = "/usr/bin:/bin"
    fake.fail("POST", rf"/merge_requests/{MR_IID}/notes$", status=403, message=f"token {fake.token} refused")
    code, out, err = cli(["report"], env, repo)

    assert code in (0, 1), out + err
    assert_no_token([fake.token, fake.job_token], out, err, written(repo.root, tmp_path))


# --- the sanitiser itself ---------------------------------------------------------------------------


def test_scrub_finds_every_form_of_a_secret() -> None:
    import base64
    import json
    import urllib.parse

    from cml_bot.secrets import Secrets

    value = "s3cr3t/with+odd=chars&more"
    secrets = Secrets.from_env({"API_KEY": value})
    raw = value.encode()
    forms = [
        value,
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote(value, safe="").lower(),
        urllib.parse.quote_plus(value),
        json.dumps(value)[1:-1],
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        base64.b64encode(b"x-access-token:" + raw).decode(),
        base64.b64encode(b"gitlab-ci-token:" + raw).decode(),
    ]
    for form in forms:
        assert value not in secrets.scrub(f"<{form}>") and form not in secrets.scrub(f"<{form}>"), form
    for shift in range(3):  # inside a longer base64 text, at each byte alignment
        blob = base64.b64encode(b"p" * shift + raw + b"suffix-bytes").decode()
        scrubbed = secrets.scrub(blob)
        assert "***" in scrubbed and len(scrubbed) < len(blob) - 20, (shift, scrubbed)


def test_scrub_tree_rebuilds_only_what_changed() -> None:
    from dataclasses import dataclass

    from cml_bot.secrets import Secrets

    @dataclass(frozen=True)
    class Inner:
        name: str
        data: bytes
        numbers: tuple[float, ...]

    @dataclass(frozen=True)
    class Outer:
        items: tuple[Inner, ...]
        mapping: dict[str, str]

    secrets = Secrets.from_env({"DEPLOY_SECRET": "topsecretvalue"})
    clean = Inner("fine", b"\x89PNG binary", (1.0, 2.0))
    tree = Outer((clean, Inner("x topsecretvalue", b"text topsecretvalue", ())), {"k": "see https://u:pw@h/x"})
    scrubbed = secrets.scrub_tree(tree)
    assert scrubbed.items[0] is clean
    assert scrubbed.items[1].name == "x ***" and scrubbed.items[1].data == b"text ***"
    assert scrubbed.mapping == {"k": "see https://***@h/x"}
    untouched = Outer((clean,), {"k": "v"})
    assert secrets.scrub_tree(untouched) is untouched


def test_short_values_and_plain_names_are_not_secrets() -> None:
    from cml_bot.secrets import Secrets, secret_variable

    secrets = Secrets.from_env({"GITHUB_TOKEN": "short", "PATH": "/usr/bin", "MY_KEY": "long-enough-key"})
    assert secrets.values == {"long-enough-key"}
    assert secret_variable("AWS_SECRET_ACCESS_KEY") and secret_variable("db_password") and not secret_variable("HOME")
    assert not secret_variable("KEYBOARD") and secret_variable("SSH_KEY")


def test_without_userinfo_leaves_out_user_and_password_and_never_raises() -> None:
    from cml_bot.secrets import without_userinfo

    assert without_userinfo("https://user:p@ss@host:8443/x?q=1") == "https://host:8443/x?q=1"
    assert without_userinfo("http://u:p@host:99999/x") == "http://host:99999/x"
    assert without_userinfo("http://[::1") == "http://[::1"
    assert without_userinfo("databricks://profile") == "databricks://profile"
    assert without_userinfo("x://" * 10_000).startswith("x://")


def test_redact_url_never_raises_and_takes_the_last_at() -> None:
    from cml_bot.secrets import redact_url

    assert redact_url("https://user:p@ss@host/x") == "https://host/x"
    assert redact_url("https://host/x?token=abc#frag") == "https://host/x?..."
    assert redact_url("data/a?b#c.csv") == "data/a?b#c.csv"  # a local path keeps its name
    assert redact_url("http://[::1") == "http://[::1"
    assert redact_url("s3://bucket/key") == "s3://bucket/key"
    assert redact_url("x://" * 10_000).startswith("x://")


def test_the_log_filter_scrubs_and_makes_one_line() -> None:
    import logging

    from cml_bot.secrets import ScrubFilter, Secrets

    record = logging.LogRecord("cml_bot.x", logging.WARNING, __file__, 1, "got %s\nnext", ("tokenvalue123",), None)
    try:
        raise ValueError("boom tokenvalue123")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    ScrubFilter(Secrets(frozenset({"tokenvalue123"}))).filter(record)
    assert record.getMessage() == "got ***\nnext: ValueError: boom ***" and record.exc_info is None


@pytest.mark.parametrize(
    "value",
    [
        "p@ss w0rd:with%odd&chars'\"005",
        "it's-a-secret-value",
        'say "hi" secretly',
        "back\\slash\\secret",
        "ünïcødé-sécret",
    ],
)
def test_scrub_finds_a_secret_as_code_prints_it_quoted(value: str) -> None:
    import json
    import shlex
    import subprocess

    from cml_bot.secrets import Secrets

    secrets = Secrets.from_env({"DB_PASSWORD": value})
    trace = subprocess.run(["bash", "-xc", 'true "$0"', value], capture_output=True, text=True, check=True).stderr
    shown = [
        str({"db": value}),  # print(dict), print(os.environ)
        repr(value),
        repr(value.encode()),
        shlex.quote(value),
        trace,  # bash's set -x: + true '...'
        json.dumps(value, ensure_ascii=False),
    ]
    for text in shown:
        scrubbed = secrets.scrub(text)
        assert "***" in scrubbed and value[:6] not in scrubbed, (text, scrubbed)


def test_span_covers_the_longest_form_and_a_url() -> None:
    import base64

    from cml_bot.secrets import Secrets

    value = "x" * 400
    secrets = Secrets.from_env({"BIG_SECRET": value})
    assert secrets.span >= len(base64.b64encode(b"gitlab-ci-token:" + value.encode()))
    assert Secrets().span >= len("https://" + "u" * 256 + "@")


def test_a_secret_with_bytes_that_are_not_utf8() -> None:
    from cml_bot.secrets import Secrets

    value = "abc\udcffdefghij"  # how os.environ keeps the byte 0xff
    secrets = Secrets.from_env({"MY_SECRET": value})
    assert secrets.scrub(f"<{value}>") == "<***>" and secrets.scrub(repr(value)) == "'***'"


# --- GitLab's job JWTs and id_tokens ------------------------------------------------------------------

# A JWT as GitLab signs one (header {"alg":"RS256","kid":"123"}, payload {"sub":"project_path:g/p"}).
JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEyMyJ9.eyJzdWIiOiJwcm9qZWN0X3BhdGg6Zy9wIn0.c2lnbmF0dXJlLXNlY3JldA"


def jwt(n: int) -> str:
    """Another token from the same issuer: the signature differs from its first character."""
    return f"{JWT.rsplit('.', 1)[0]}.{n}{JWT.rsplit('.', 1)[1]}"


def test_job_jwts_and_jwt_shaped_values_are_secrets() -> None:
    from cml_bot.secrets import Secrets, looks_like_jwt, secret_variable

    for name in ("CI_JOB_JWT", "CI_JOB_JWT_V1", "CI_JOB_JWT_V2", "AWS_OIDC_JWT", "VAULT_ID_TOKEN", "gcp_jwt"):
        assert secret_variable(name), name
    assert not secret_variable("AWS_OIDC_ROLE_ARN") and not secret_variable("OIDC_ISSUER_URL")
    # Under a name that says nothing: the value's shape (JWS, JWE, unsigned) gives it away.
    jwe = "eyJhbGciOiJSU0EtT0FFUCJ9.ZW5jcnlwdGVka2V5.aXYxMjM0NTY.Y2lwaGVydGV4dA.dGFnMTIzNA"
    unsigned = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."
    assert looks_like_jwt(JWT) and looks_like_jwt(jwe) and looks_like_jwt(unsigned) and looks_like_jwt(JWT + "\n")
    assert not looks_like_jwt("eyJ0.not a jwt") and not looks_like_jwt("v1.2.3") and not looks_like_jwt("x" + JWT)
    secrets = Secrets.from_env(
        {"CLOUD_LOGIN": JWT + "\n", "ENCRYPTED": jwe, "AWS_OIDC_ROLE_ARN": "arn:aws:iam::123456789012:role/ci"}
    )
    text = secrets.scrub(f"login {JWT} then {jwe} as arn:aws:iam::123456789012:role/ci")
    assert text == "login *** then *** as arn:aws:iam::123456789012:role/ci"


def test_forge_jwts_never_reach_the_commands_but_declared_id_tokens_do() -> None:
    from cml_bot.secrets import without_tokens

    env = {
        "CI_JOB_JWT": JWT,
        "CI_JOB_JWT_V1": jwt(1),
        "CI_JOB_JWT_V2": jwt(2),
        "VAULT_ADDR_WITH_JWT": f"https://vault/?jwt={JWT}",  # carries a forge JWT: withheld too
        "AWS_OIDC_JWT": jwt(3),  # declared by the user under id_tokens, for the training's cloud login
        "PATH": "/bin",
    }
    assert without_tokens(env) == {"AWS_OIDC_JWT": jwt(3), "PATH": "/bin"}


def test_gitlab_job_jwts_printed_by_a_step_are_scrubbed(fake: FakeGitLab, repo: GitRepo, tmp_path: Path) -> None:
    config = CONFIG.replace(
        'run: env; echo "token=[$GITHUB_TOKEN][$CML_BOT_TOKEN][$GITLAB_TOKEN][$CI_JOB_TOKEN]"',
        'run: echo "jwt=[$CI_JOB_JWT][$CI_JOB_JWT_V2] AWS_OIDC_JWT=$AWS_OIDC_JWT LOGIN=$LOGIN"; exit 1',
    )
    base, head = project(repo, config)
    fake.add_merge_request(MR_IID, sha=head)
    jwts = {"CI_JOB_JWT": JWT, "CI_JOB_JWT_V2": jwt(2), "AWS_OIDC_JWT": jwt(3), "LOGIN": jwt(4)}
    env = ci_env(fake, CI_COMMIT_SHA=head, CI_MERGE_REQUEST_DIFF_BASE_SHA=base, **jwts)
    env["PATH"] = "/usr/bin:/bin"

    code, out, err = cli(["run"], env, repo)

    assert code == 1, out + err
    assert "jwt=[][]" in out  # the forge's JWTs were withheld from the step
    [note] = fake.marked_notes(MR_IID, "<!-- cml-bot report (id: default) -->")
    assert "AWS_OIDC_JWT=***" in note["body"] and "LOGIN=***" in note["body"]  # passed, and scrubbed
    posted = "\n".join([n["body"] for n in fake.notes(MR_IID)] + [str(s) for s in fake.statuses])
    assert_no_token([*jwts.values(), JWT[:60]], out, err, written(repo.root, tmp_path), posted)


def test_one_url_scheme_rule_and_urls_in_text_are_found_in_linear_time() -> None:
    import time

    from cml_bot.secrets import redact_urls, url_scheme

    assert url_scheme("backup:v1/data.csv") == "" and url_scheme("C:\\data\\x.csv") == ""  # plain paths
    assert url_scheme("file:data/x.csv") == "file" and url_scheme("S3://b/k") == "s3"
    assert url_scheme("http://[::1/x") is None
    assert redact_urls("at https://u:p@h/x?token=1. Then") == "at https://h/x?.... Then"
    started = time.perf_counter()
    redact_urls("a" * 200_000)  # no URL: must not backtrack quadratically
    assert time.perf_counter() - started < 0.5
