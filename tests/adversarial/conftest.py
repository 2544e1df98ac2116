"""Fixtures of the adversarial suite: a project (a real git repository on a feature branch, with
its output paths) copied from a template made once, and HTTP sources that misbehave."""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import markdown_it  # noqa: F401 - imported once here, inherited by every forked case
import pytest
import requests  # noqa: F401

import cml_bot.app
import cml_bot.data
import cml_bot.evaluation
import cml_bot.forges.local  # noqa: F401
from adversarial.harness import Run, run_cli, secret_env

BASE_CONFIG = "title: Adversarial\nmetrics: [metrics.json]\nparams: [params.yaml]\n"


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with one commit on main (config, metrics, params), checked out on a branch."""
    root = tmp_path_factory.mktemp("template") / "repo"
    root.mkdir()
    (root / "cml-bot.yaml").write_text(BASE_CONFIG, encoding="utf-8")
    (root / "metrics.json").write_text(json.dumps({"accuracy": 0.8, "loss": 0.3}), encoding="utf-8")
    (root / "params.yaml").write_text("lr: 0.1\n", encoding="utf-8")

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)

    git("init", "--quiet", "--initial-branch=main")
    git("add", "-A")
    git("commit", "--quiet", "-m", "main")
    git("checkout", "--quiet", "-b", "feature")
    return root


@dataclass
class Project:
    """One case's repository and everything around it; :meth:`run` drives the CLI."""

    root: Path
    home: Path
    out: Path = field(init=False)
    junit: Path = field(init=False)
    bundle: Path = field(init=False)
    tmp: Path = field(init=False)
    cache: Path = field(init=False)
    summary: Path = field(init=False)
    outputs: Path = field(init=False)

    def __post_init__(self) -> None:
        self.out = self.home / "report"
        self.junit = self.home / "junit.xml"
        self.bundle = self.home / "bundle"
        self.tmp = self.home / "tmp"
        self.cache = self.home / "cache"
        self.summary = self.home / "summary.md"
        self.outputs = self.home / "github_output"
        self.tmp.mkdir()

    def write(self, path: str, content: str | bytes | dict[str, object]) -> Path:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, dict):
            content = json.dumps(content)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
        return target

    def commit(self) -> None:
        """Commit the tree as it is (results are only recorded for a clean commit)."""
        for args in (("add", "-A"), ("commit", "--quiet", "-m", "case")):
            subprocess.run(["git", *args], cwd=self.root, check=True, capture_output=True)

    def config(self, extra: str) -> None:
        """cml-bot.yaml: the base config followed by ``extra``."""
        self.write("cml-bot.yaml", BASE_CONFIG + extra)

    def env(self, *, github: bool = True, actions: bool = False, **extra: str) -> dict[str, str]:
        env = secret_env(github=github, TMPDIR=str(self.tmp), CML_BOT_CACHE=str(self.cache), HOME=str(self.home))
        if actions:  # a GitHub Actions push job, nothing to post to: annotations, outputs, summary
            env.update(
                GITHUB_ACTIONS="true",
                GITHUB_EVENT_NAME="push",
                GITHUB_REF="refs/heads/feature",
                GITHUB_REPOSITORY="octo/repo",
                GITHUB_STEP_SUMMARY=str(self.summary),
                GITHUB_OUTPUT=str(self.outputs),
            )
            for name in ("GITHUB_TOKEN", "CML_BOT_TOKEN"):
                env.pop(name, None)
        env.update(extra)
        return env

    def run(self, *args: str, env: dict[str, str] | None = None, report: bool = True, seconds: int = 20) -> Run:
        """``cml-bot ARGS -C root``; ``report`` adds the output options of run/report."""
        argv = [*args, "-C", str(self.root)]
        if report:
            argv += ["--out", str(self.out), "--junit", str(self.junit), "--bundle-dir", str(self.bundle)]
        return run_cli(argv, self.env() if env is None else env, watch=[self.root, self.home], seconds=seconds)


@pytest.fixture
def project(template: Path, tmp_path: Path) -> Project:
    root = tmp_path / "repo"
    shutil.copytree(template, root, symlinks=True)
    home = tmp_path / "home"
    home.mkdir()
    return Project(root, home)


# --- HTTP sources that misbehave -------------------------------------------------------------------


@dataclass
class Behaviour:
    """What the server does for one path: serve ``body``; ``announce`` a Content-Length (default:
    the body's); trickle it at ``rate`` bytes per second; ``endless`` (after the body, zeros forever);
    ``silent`` (accept and never answer)."""

    body: bytes = b""
    announce: int | None = None
    rate: float | None = None
    endless: bool = False
    silent: bool = False
    status: int = 200


@dataclass
class Source:
    url: str
    paths: dict[str, Behaviour] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def source() -> Iterator[Source]:
    """A real HTTP/1.1 server on 127.0.0.1 serving :class:`Behaviour` per path."""
    served = Source("")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            served.requests.append(path)
            how = served.paths.get(path)
            if how is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if how.silent:
                served.stop.wait(30)
                return
            self.send_response(how.status)
            if how.endless:
                self.send_header("Connection", "close")
            else:
                length = how.announce if how.announce is not None else len(how.body)
                self.send_header("Content-Length", str(length))
            self.end_headers()
            try:
                if how.rate:
                    for byte in how.body:
                        if served.stop.is_set():
                            return
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(1 / how.rate)
                else:
                    self.wfile.write(how.body)
                if how.endless:
                    block = b"\0" * 65536
                    while not served.stop.is_set():
                        self.wfile.write(block)
            except OSError:  # the client gave up: as it should
                return

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    served.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield served
    finally:
        served.stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
