"""The adversarial suite's harness: run ``cml_bot.cli.main`` as an attacker would drive it, then look
at every output channel.

Each case runs the real CLI on a real git repository in a forked child of the test process, with
its address space capped (``RLIMIT_AS``) and a wall-clock alarm, so a case that blows up memory or
hangs fails instead of taking the machine with it. The child inherits the parent's imports (no
interpreter start per case) and talks to servers running in the parent (fake forges, HTTP sources).

After the run, :class:`Run` holds the exit code, stdout, stderr and every file cml-bot wrote (report
folder, preview, JUnit, bundle, job summary, ``GITHUB_OUTPUT``, crash logs, anything new in the
repository). :func:`assert_clean` then checks the common promises: no secret in any of its forms in
any channel, no half-written file, and (for failures) one line on stderr.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import os
import re
import resource
import shlex
import shutil
import signal
import subprocess
import time
import urllib.parse
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cml_bot.cli import Console, main

JOB_TOKEN = "glcbt-64_ADVjob0token0YYzz22ab"
SECRETS = {
    "GITHUB_TOKEN": "ghp_ADV0github0token0for0the0suite0000001",
    "CML_BOT_TOKEN": "ghp_ADV0cmlbot0token0write0scope000000002",
    "GITLAB_TOKEN": "glpat-ADV0gitlab0token0xx11",
    "CI_JOB_TOKEN": JOB_TOKEN,
    "CI_REPOSITORY_URL": f"https://gitlab-ci-token:{JOB_TOKEN}@gitlab.example.com/group/project.git",
    "CI_REGISTRY_PASSWORD": JOB_TOKEN,
    "CI_DEPENDENCY_PROXY_PASSWORD": JOB_TOKEN,
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYADV0KEY003",
    "MY_SERVICE_KEY": "sk-ADV0api+key/with=odd0chars004",
    "DB_PASSWORD": "p@ss w0rd:with%odd&chars'\"005",
    "HF_TOKEN": "hf_ADV0huggingface0token0006",
    "DEPLOY_SECRET": "ADVdeploy0secret0value0007",
}
# Values a case must never see in any output, once per distinct value.
SECRET_VALUES = sorted({value for value in SECRETS.values() if "://" not in value})
GITHUB_TOKENS = ("GITHUB_TOKEN", "CML_BOT_TOKEN")
BOUND_SECONDS = 20  # a case that takes longer fails (the alarm ends it)
MEMORY_BUDGET = 768 * 1024 * 1024  # bytes of address space a case may add to the test process


def secret_forms(value: str) -> set[str]:
    """How a secret may appear in text, computed here independently of cml_bot.secrets: as is,
    URL-encoded, JSON-escaped, as Python's ``repr`` shows it (``print(os.environ)``), quoted for a
    shell (``shlex.quote``, and bash's ``set -x`` trace), base64 alone and after git's basic-auth
    users, and the base64 text it leaves inside a longer base64 blob at each of the three byte
    alignments (two characters trimmed at each end, where neighbouring bytes decide the character)."""
    raw = value.encode()
    forms = {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value), json.dumps(value)[1:-1]}
    forms.update({repr(value)[1:-1], shlex.quote(value).strip("'"), value.replace("'", "'\\''")})
    for prefix in (b"", b"x-access-token:", b"gitlab-ci-token:"):
        encoded = base64.b64encode(prefix + raw).decode()
        forms.update({encoded.rstrip("="), encoded.replace("+", "-").replace("/", "_").rstrip("=")})
    for shift in range(3):
        blob = base64.b64encode(b"A" * shift + raw + b"ZZZ").decode()
        start = (shift * 4 + 2) // 3 + 2
        inner = blob[start : start + (len(raw) * 4) // 3 - 4]
        forms.add(inner)
    return {form for form in forms if len(form) >= 8}


ALL_FORMS = {value: secret_forms(value) for value in SECRET_VALUES}


def secret_env(*, github: bool = True, **extra: str) -> dict[str, str]:
    """The secrets above plus a minimal process environment; ``github=False`` leaves out the two
    variables cml-bot takes as a GitHub token (cases that must not reach a forge)."""
    env = {key: value for key, value in SECRETS.items() if github or key not in GITHUB_TOKENS}
    env.update(
        PATH=os.environ.get("PATH", "/usr/bin:/bin"),
        HOME=os.environ.get("HOME", "/tmp"),
        LANG="C.UTF-8",
        **{k: v for k, v in os.environ.items() if k.startswith("GIT_")},
    )
    env.update(extra)
    return env


@dataclass
class Run:
    code: int
    out: str
    err: str
    seconds: float
    files: dict[str, bytes] = field(default_factory=dict)  # every file written, by path
    signal: int | None = None  # set when the child was killed (alarm, memory)
    env: dict[str, str] = field(default_factory=dict)  # the environment the case ran with

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()

    def text(self, name_part: str) -> str:
        """The decoded content of the one written file whose path ends with ``name_part``."""
        matches = [path for path in self.files if path.endswith(name_part)]
        assert len(matches) == 1, (name_part, sorted(self.files))
        return self.files[matches[0]].decode("utf-8", "replace")

    def channels(self) -> dict[str, str]:
        """Every output as text, also as a reader sees it: HTML entities decoded, markdown escapes
        and the zero-width spaces that break mentions removed (a secret escaped is still a leak)."""
        found = {"stdout": self.out, "stderr": self.err}
        for path, data in self.files.items():
            found[path] = data.decode("utf-8", "replace")
            found[path + " (as latin-1)"] = data.decode("latin-1")
        for channel, text in list(found.items()):
            found[channel + " (as read)"] = html.unescape(html.unescape(text)).replace("\u200b", "").replace("\\", "")
        return found


def _snapshot(roots: Iterable[Path]) -> dict[str, str]:
    found = {}
    for root in roots:
        if not root.exists():
            continue
        for path in [root] if root.is_file() else root.rglob("*"):
            if ".git" in path.relative_to(root).parts or not path.is_file() or path.is_symlink():
                continue
            found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _address_space() -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def run_cli(
    argv: list[str],
    env: Mapping[str, str],
    *,
    watch: Iterable[Path] = (),
    seconds: int = BOUND_SECONDS,
    memory: int = MEMORY_BUDGET,
) -> Run:
    """Run ``cml-bot argv`` in a forked child under the alarm and the memory cap; collect what it
    wrote under ``watch`` (new or changed files)."""
    watch = [Path(p) for p in watch]
    before = _snapshot(watch)
    read_end, write_end = os.pipe()
    started = time.monotonic()
    with warnings.catch_warnings():  # Python 3.12 warns about fork() with threads (the servers')
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: never returns into pytest, whatever happens
        status = 70
        try:
            os.close(read_end)
            signal.alarm(seconds)
            limit = _address_space() + memory
            resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
            out, err = io.StringIO(), io.StringIO()
            try:
                code = main(argv, env=dict(env), console=Console(out, err, interactive=False))
                payload = {"code": code, "out": out.getvalue(), "err": err.getvalue()}
            except BaseException as exc:  # anything escaping main is a finding
                payload = {"code": -1, "out": out.getvalue(), "err": f"harness: main raised {exc!r}"}
            with os.fdopen(write_end, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(payload))
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, encoding="utf-8") as handle:
        data = handle.read()
    _, status = os.waitpid(pid, 0)
    elapsed = time.monotonic() - started
    if os.WIFSIGNALED(status):
        killed = os.WTERMSIG(status)
        return Run(-1, "", f"killed by signal {killed}", elapsed, signal=killed, env=dict(env))
    assert os.WEXITSTATUS(status) == 0 and data, f"the harness child failed (status {status})"
    payload = json.loads(data)
    after = _snapshot(watch)
    written = {}
    for path, digest in after.items():
        if before.get(path) != digest:
            written[path] = Path(path).read_bytes()
    return Run(payload["code"], payload["out"], payload["err"], elapsed, written, env=dict(env))


HALF_WRITTEN = (".part", ".tmp")


def half_written(*roots: Path) -> list[str]:
    """Temporary files a killed or failed write would leave: ``*.part``, ``*.tmp``."""
    found = []
    for root in roots:
        if root.exists():
            found += [str(p) for p in root.rglob("*") if p.name.endswith(HALF_WRITTEN) and ".git" not in p.parts]
    return found


def leaks(run: Run, extra_values: Iterable[str] = ()) -> list[str]:
    """Every (channel, secret name) where a form of a secret of the run's environment appears."""
    present = {value for name, value in SECRETS.items() if run.env.get(name) == value}
    values = {value: forms for value, forms in ALL_FORMS.items() if value in present}
    values.update({value: secret_forms(value) for value in extra_values})
    found = []
    for channel, text in run.channels().items():
        for value, forms in values.items():
            for form in forms:
                if form in text:
                    name = next((k for k, v in SECRETS.items() if v == value), "extra")
                    found.append(f"{channel}: {name} as {form[:12]}...")
    return found


def assert_clean(
    run: Run,
    *,
    code: int | tuple[int, ...],
    roots: Iterable[Path] = (),
    one_line: bool | None = None,
    extra_secrets: Iterable[str] = (),
    seconds: float = BOUND_SECONDS,
) -> None:
    """The promises every case checks: exit code, bounded time (no signal: no alarm, no memory
    blow-up), a one-line message for failures, nothing half-written, no secret anywhere."""
    codes = code if isinstance(code, tuple) else (code,)
    assert run.signal is None, f"the case was killed ({run.err})"
    assert run.code in codes, f"exit {run.code}, expected {codes}\nstdout: {run.out}\nstderr: {run.err}"
    assert run.seconds < seconds, f"took {run.seconds:.1f} s"
    if one_line if one_line is not None else run.code in (2, 3):
        assert len(run.err_lines) == 1, run.err
        assert run.err_lines[0].startswith(("cml-bot: error: ", "cml-bot: internal error: ")), run.err
    for line in unfenced(run.err_lines):
        assert line.startswith("cml-bot: "), run.err
    assert not half_written(*roots), half_written(*roots)
    found = leaks(run, extra_secrets)
    assert not found, found


_FENCE = re.compile(r"::stop-commands::([0-9a-f]{32})")


def unfenced(lines: list[str]) -> list[str]:
    """``lines`` with cml-bot's fences around lines that would read as workflow commands removed
    (``::stop-commands::TOKEN``, the line, ``::TOKEN::``); a fence that is not whole fails."""
    shown = []
    at = 0
    while at < len(lines):
        opening = _FENCE.fullmatch(lines[at])
        if opening is None:
            shown.append(lines[at])
            at += 1
            continue
        assert at + 2 < len(lines) and lines[at + 2] == f"::{opening.group(1)}::", lines[at : at + 3]
        shown.append(lines[at + 1])
        at += 3
    return shown


def unshare_available() -> bool:
    """Unprivileged user and mount namespaces (a private tmpfs to fill up), as on most Linux CI."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True, check=False
    )
    return probe.returncode == 0
