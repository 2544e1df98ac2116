"""Point 7: a data pull is bounded in time and bytes and never trusts the cache's file system.

Sources are a real HTTP server on 127.0.0.1 (conftest.py): a source trickling one byte a second,
one that never stops, one that lies about its length, one that never answers. The cache is attacked
in place: a ``.part`` that is a symlink or a folder, a blob that is a folder, a symlink or a FIFO,
a lock held by someone else. Each case checks the one-line error, that nothing half-written stays
(no ``.part``), and that nothing outside the cache was written through a link.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adversarial.conftest import Behaviour, Project, Source
from adversarial.harness import JOB_TOKEN, SECRETS, assert_clean, run_cli, unshare_available
from cml_bot.data import cache as cache_module
from cml_bot.data import sources as sources_module
from cml_bot.secrets import TOKEN_VARIABLES

BODY = bytes(range(256)) * 40  # 10 KB
DIGEST = hashlib.sha256(BODY).hexdigest()


@pytest.fixture(autouse=True)
def _fast_clocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deadlines in seconds rather than minutes: the same rules, scaled down (inherited by the
    forked case)."""
    monkeypatch.setattr(cache_module, "DEADLINE_SLACK", 1.0)
    monkeypatch.setattr(cache_module, "MIN_THROUGHPUT", 20_000)
    monkeypatch.setattr(cache_module, "BACKOFF", 0.01)
    monkeypatch.setattr(cache_module, "LOCK_TIMEOUT", 0.6)
    monkeypatch.setattr(sources_module, "READ_TIMEOUT", 0.5)
    monkeypatch.setattr(sources_module, "CONNECT_TIMEOUT", 0.5)


def pin(
    project: Project, url: str, *, sha256: str = DIGEST, size: int | None = len(BODY), path: str = "data/d.bin"
) -> None:
    size_line = f"      size: {size}\n" if size is not None else ""
    project.config(
        f"data:\n  cache: {project.cache}\n  files:\n    - path: {json.dumps(path)}\n      url: {json.dumps(url)}\n"
        f"      sha256: {sha256}\n{size_line}"
    )


def pull(project: Project, seconds: int = 20) -> object:
    return project.run("pull", report=False, seconds=seconds)


def blob(project: Project, digest: str = DIGEST) -> Path:
    return project.cache / "sha256" / digest[:2] / digest


def clean(project: Project, run: object, code: int, **kwargs: object) -> None:
    assert_clean(run, code=code, roots=(project.root, project.home, project.cache), **kwargs)  # type: ignore[arg-type]


def test_a_source_trickling_one_byte_a_second(project: Project, source: Source) -> None:
    source.paths["/d.bin"] = Behaviour(BODY, rate=1)
    pin(project, f"{source.url}/d.bin")
    run = pull(project)
    clean(project, run, 2, seconds=6)
    assert "too slow" in run.err and "nothing was placed" in run.err  # type: ignore[attr-defined]
    assert not (project.root / "data" / "d.bin").exists()


def test_a_slow_source_without_a_pinned_size(project: Project, source: Source) -> None:
    source.paths["/d.bin"] = Behaviour(BODY, rate=1)
    pin(project, f"{source.url}/d.bin", size=None)
    run = pull(project)
    clean(project, run, 2, seconds=6)
    assert "too slow" in run.err  # type: ignore[attr-defined]


def test_a_response_that_never_ends(project: Project, source: Source) -> None:
    source.paths["/d.bin"] = Behaviour(BODY, endless=True)
    pin(project, f"{source.url}/d.bin")
    run = pull(project)
    clean(project, run, 2, seconds=6)
    assert "sends more than the pinned size of 10,240 bytes" in run.err  # type: ignore[attr-defined]
    assert sum(f.stat().st_size for f in project.cache.rglob("*") if f.is_file()) < 100_000


def test_a_response_that_never_ends_without_a_pinned_size(
    project: Project, source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_module, "UNPINNED_MAX_BYTES", 1_000_000)
    source.paths["/d.bin"] = Behaviour(BODY, endless=True)
    pin(project, f"{source.url}/d.bin", size=None)
    run = pull(project)
    clean(project, run, 2, seconds=6)
    assert "the limit for an entry without `size:`" in run.err  # type: ignore[attr-defined]


def test_a_source_announcing_more_than_the_pin(project: Project, source: Source) -> None:
    source.paths["/d.bin"] = Behaviour(BODY * 1000)
    pin(project, f"{source.url}/d.bin")
    run = pull(project)
    clean(project, run, 2)
    assert "announces 10,240,000 bytes" in run.err  # type: ignore[attr-defined]


def test_a_source_that_never_answers(project: Project, source: Source) -> None:
    source.paths["/d.bin"] = Behaviour(silent=True)
    pin(project, f"{source.url}/d.bin")
    run = pull(project)
    clean(project, run, 2, seconds=8)


def test_a_wrong_sha256_places_nothing(project: Project, source: Source) -> None:
    source.paths["/d.bin"] = Behaviour(BODY)
    pin(project, f"{source.url}/d.bin", sha256="f" * 64)
    run = pull(project)
    clean(project, run, 2)
    assert "sha256 mismatch" in run.err and not (project.root / "data" / "d.bin").exists()  # type: ignore[attr-defined]


def test_a_part_file_that_links_outside_the_cache(project: Project, source: Source) -> None:
    victim = project.home / "victim.txt"
    victim.write_text("keep me\n", encoding="utf-8")
    part = blob(project).with_name(DIGEST + ".part")
    part.parent.mkdir(parents=True)
    part.symlink_to(victim)
    source.paths["/d.bin"] = Behaviour(BODY)
    pin(project, f"{source.url}/d.bin")
    run = pull(project)
    clean(project, run, 0)
    assert victim.read_text(encoding="utf-8") == "keep me\n"
    assert (project.root / "data" / "d.bin").read_bytes() == BODY


@pytest.mark.parametrize("kind", ["part-folder", "blob-folder", "blob-fifo", "blob-link", "shard-file"])
def test_a_cache_entry_that_is_not_a_regular_file_is_replaced(project: Project, source: Source, kind: str) -> None:
    target = blob(project)
    target.parent.mkdir(parents=True)
    outside = project.home / "outside.bin"
    outside.write_bytes(BODY)
    if kind == "part-folder":
        target.with_name(DIGEST + ".part").mkdir()
        (target.with_name(DIGEST + ".part") / "x").write_text("x")
    elif kind == "blob-folder":
        target.mkdir()
    elif kind == "blob-fifo":
        os.mkfifo(target)
    elif kind == "blob-link":
        target.symlink_to(outside)  # right content, but not ours: replaced by a real file
    else:
        target.parent.rmdir()
        target.parent.write_text("not a folder")
    source.paths["/d.bin"] = Behaviour(BODY)
    pin(project, f"{source.url}/d.bin")
    run = pull(project)
    clean(project, run, 0, seconds=8)
    assert target.is_file() and not target.is_symlink() and target.read_bytes() == BODY
    assert outside.read_bytes() == BODY


def test_a_cache_locked_by_another_pull_names_the_holder(project: Project, source: Source) -> None:
    project.cache.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, json, os, socket, sys, time\n"
            f"f = open({str(project.cache / '.lock')!r}, 'a+')\n"
            "fcntl.flock(f, fcntl.LOCK_EX)\n"
            "f.write(json.dumps({'pid': os.getpid(), 'host': socket.gethostname(), 'since': 'now'})); f.flush()\n"
            "print('locked', flush=True); time.sleep(30)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        source.paths["/d.bin"] = Behaviour(BODY)
        pin(project, f"{source.url}/d.bin")
        run = pull(project)
        clean(project, run, 2, seconds=5)
        assert f"locked by pid {holder.pid} on " in run.err  # type: ignore[attr-defined]
    finally:
        holder.kill()
        holder.communicate()


def test_a_lock_file_that_is_a_fifo(project: Project, source: Source) -> None:
    project.cache.mkdir()
    os.mkfifo(project.cache / ".lock")
    source.paths["/d.bin"] = Behaviour(BODY)
    pin(project, f"{source.url}/d.bin")
    run = pull(project)
    clean(project, run, 0, seconds=5)
    assert json.loads((project.cache / ".lock").read_text())["pid"] > 0


@pytest.mark.parametrize("path", [".git/hooks/post-checkout", "sub/.GIT/config", ".git"])
def test_a_data_path_inside_git_is_refused(project: Project, source: Source, path: str) -> None:
    pin(project, f"{source.url}/d.bin", path=path)
    run = pull(project)
    clean(project, run, 2)
    assert "inside .git/" in run.err  # type: ignore[attr-defined]
    assert not (project.root / ".git" / "hooks" / "post-checkout").exists()


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://user:pw0rdsecret@host:99999/x", id="port-out-of-range"),
        pytest.param("http://user:pw0rdsecret@[::1/x", id="bad-ipv6"),
        pytest.param("https:///nohost/x", id="no-host"),
        pytest.param("gopher://host/x", id="scheme"),
        pytest.param("http://host/x\x07y", id="control-character"),
    ],
)
def test_a_malformed_url_is_one_line(project: Project, url: str) -> None:
    pin(project, url)
    run = pull(project)
    clean(project, run, 2, extra_secrets=["pw0rdsecret"])
    assert "data.files[0].url" in run.err  # type: ignore[attr-defined]


def test_data_add_refuses_a_malformed_url_and_records_the_size(project: Project, source: Source) -> None:
    project.write("data/d.bin", BODY)
    run = project.run("data", "add", "data/d.bin", "--url", "http://u:pw0rdsecret@h:99999/d", report=False)
    clean(project, run, 2, extra_secrets=["pw0rdsecret"])
    run = project.run("data", "add", "data/d.bin", "--url", f"{source.url}/d.bin", report=False)
    clean(project, run, 0)
    config = (project.root / "cml-bot.yaml").read_text(encoding="utf-8")
    assert f"sha256: {DIGEST}" in config and f"size: {len(BODY)}" in config


def test_credentials_in_a_failing_url_are_not_shown(project: Project, source: Source) -> None:
    url = source.url.replace("http://", "http://robot:pw0rdsecret@") + "/missing.bin?token=querysecret0"
    pin(project, url)
    run = pull(project)
    clean(project, run, 2, extra_secrets=["pw0rdsecret", "querysecret0"])
    assert "HTTP 404" in run.err  # type: ignore[attr-defined]


@pytest.mark.skipif(not unshare_available(), reason="needs unprivileged user and mount namespaces")
def test_a_full_disk_in_the_cache_is_one_line(project: Project, source: Source) -> None:
    """A real ENOSPC: the cache is a 64 KB tmpfs in a private mount namespace."""
    big = bytes(range(256)) * 1000
    source.paths["/big.bin"] = Behaviour(big)
    pin(project, f"{source.url}/big.bin", sha256=hashlib.sha256(big).hexdigest(), size=len(big))
    project.cache.mkdir()
    script = (
        f"mount -t tmpfs -o size=64k tmpfs {project.cache} && exec {sys.executable} -m cml_bot pull -C {project.root}"
    )
    started = time.monotonic()
    done = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
        env=project.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "No space left on device" in done.stderr, done.stderr
    assert time.monotonic() - started < 30
    assert not (project.root / "data" / "d.bin").exists()


def test_the_lock_is_released_and_reused(project: Project, source: Source) -> None:
    source.paths["/d.bin"] = Behaviour(BODY)
    pin(project, f"{source.url}/d.bin")
    clean(project, pull(project), 0)
    (project.root / "data" / "d.bin").unlink()
    run = run_cli(["pull", "-C", str(project.root)], project.env(), watch=[project.root])
    clean(project, run, 0)
    assert (project.root / "data" / "d.bin").read_bytes() == BODY


# --- dvc pull never holds the forge tokens ------------------------------------------------------------


@pytest.fixture
def dvc_stub(project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``dvc`` first on PATH that writes the environment it got (NUL-separated) and succeeds; the
    project is a DVC repository. cml-bot's own environment holds a forge token too, as in CI."""
    stub_dir = tmp_path / "stub"  # outside the folders whose every written file is searched for secrets
    stub_dir.mkdir()
    dump = tmp_path / "dvc-env"
    stub = stub_dir / "dvc"
    stub.write_text(f"#!/bin/sh\nenv -0 > {dump}\n", encoding="utf-8")
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stub_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("GITHUB_TOKEN", SECRETS["GITHUB_TOKEN"])
    monkeypatch.setenv("CI_JOB_TOKEN", JOB_TOKEN)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRETS["AWS_SECRET_ACCESS_KEY"])
    project.write(".dvc/config", "[core]\n    remote = r\n")
    project.commit()
    return dump


def dvc_saw(dump: Path) -> dict[str, str]:
    entries = [entry.split("=", 1) for entry in dump.read_text(encoding="utf-8").split("\0") if "=" in entry]
    return dict(entries)


@pytest.mark.parametrize("command", ["run", "pull"])
def test_dvc_pull_gets_no_forge_token(project: Project, dvc_stub: Path, command: str) -> None:
    """``dvc pull`` follows the change's own ``.dvc/config`` (an S3 ``configpath`` to a profile with
    a ``credential_process`` runs a command): it gets the environment the training gets."""
    run = project.run(command, report=command == "run")
    assert_clean(run, code=0, roots=(project.root, project.home), one_line=False)
    seen = dvc_saw(dvc_stub)
    leaked = [name for name in seen if name in TOKEN_VARIABLES or name.startswith(("CI_REPOSITORY", "CI_REGISTRY"))]
    assert not leaked, leaked
    assert not [name for name, value in seen.items() if JOB_TOKEN in value or SECRETS["GITHUB_TOKEN"] in value]
    # what a DVC remote needs stays: cloud credentials, PATH, HOME
    assert seen["AWS_SECRET_ACCESS_KEY"] == SECRETS["AWS_SECRET_ACCESS_KEY"] and "PATH" in seen and "HOME" in seen
