"""Benchmark: scale of the diff and the comment, and HTTP requests per run on a busy pull request.

1. 10,000 metrics (base and head, every 50th regressed past its gate, 500 params) diffed and
   rendered within GitHub's 65,536-character comment limit: in-process, median of --repeat.
   Target: under 1 s.
2. The HTTP requests of one `cml-bot report` run (in-process, `cml_bot.cli.main`) against the fake
   GitHub (tests/fake_github.py) on a PR with 300 existing comments from other people: the first
   run (posts the comment and uploads one plot), then a run on the same commit (updates it), then
   a run on a new head commit whose sticky comment sits among the 300 (new plot uploaded).
   Target: at most 8 requests per run once the comment exists. Every request is listed.

Run: .venv/bin/python bench/scale.py [--repeat 5] [--metrics 10000] [--comments 300]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(HERE))

from _common import GIT_ENV, median_seconds, row  # noqa: E402
from fake_github import EVENTS, HEAD_SHA, TOKEN, FakeGitHub, github_env  # noqa: E402

from cml_bot.cli import Console  # noqa: E402
from cml_bot.cli import main as cli_main  # noqa: E402
from cml_bot.config import Threshold  # noqa: E402
from cml_bot.diff import diff  # noqa: E402
from cml_bot.forges.github import COMMENT_LIMIT  # noqa: E402
from cml_bot.report import Report, RunFacts, render_markdown  # noqa: E402

TARGET_SECONDS, TARGET_REQUESTS = 1.0, 8


def diff_and_render(count: int) -> str:
    base = {f"group{i // 100:03d}.metric_{i:05d}_accuracy": 0.5 + (i % 97) / 200 for i in range(count)}
    head = {name: value - (0.2 if i % 50 == 0 else -0.001) for i, (name, value) in enumerate(base.items())}
    params = {f"param_{i:04d}": i for i in range(500)}
    result = diff(base, head, (Threshold("*", max_drop=0.05),), params, {**params, "param_0000": -1})
    report = Report(
        title="Scale",
        report_id="default",
        diff=result,
        facts=RunFacts(head_sha="a" * 40, base_sha="b" * 40, base_ref="main", baseline_source="bench"),
    )
    return render_markdown(report, {}, limit=COMMENT_LIMIT)


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


def requests_per_run(base: Path, comments: int) -> list[tuple[str, list[tuple[str, str, int | str]]]]:
    """(scenario, requests) for three report runs on a PR with ``comments`` other comments."""
    repo = base / "repo"
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch=main")
    (repo / "cml-bot.yaml").write_text(
        "metrics: [metrics.json]\nparams: [params.yaml]\n"
        "plots:\n  - {path: log.csv, x: epoch, y: [loss]}\n"
        "thresholds:\n  accuracy: {max_drop: 0.01}\n",
        encoding="utf-8",
    )
    (repo / ".gitignore").write_text("cml-bot-report/\n", encoding="utf-8")
    (repo / "metrics.json").write_text(json.dumps({"accuracy": 0.8, "loss": 0.4}), encoding="utf-8")
    (repo / "params.yaml").write_text("lr: 0.1\n", encoding="utf-8")
    (repo / "log.csv").write_text("epoch,loss\n1,0.9\n2,0.5\n", encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", "base")
    git(repo, "checkout", "--quiet", "-b", "changes")
    (repo / "metrics.json").write_text(json.dumps({"accuracy": 0.85, "loss": 0.3}), encoding="utf-8")
    (repo / "log.csv").write_text("epoch,loss\n1,0.8\n2,0.4\n3,0.3\n", encoding="utf-8")
    git(repo, "commit", "--quiet", "-am", "head")

    fake = FakeGitHub()
    fake.add_token(TOKEN, "cml-bot-user")
    fake.add_pull(2, HEAD_SHA)
    for i in range(comments):
        fake.add_comment(2, f"review comment {i}", login=f"reviewer{i % 7}")
    event = json.loads((EVENTS / "pull_request.opened.json").read_text(encoding="utf-8"))
    scenarios = []
    with fake:
        env = {**github_env(fake), **GIT_ENV, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}

        def run(label: str) -> None:
            start = len(fake.log)
            out = io.StringIO()
            code = cli_main(["report", "--base", "main", "-C", str(repo)], env=env, console=Console(out, out))
            if code != 0:
                raise SystemExit(f"cml-bot failed ({code}):\n{out.getvalue()}")
            scenarios.append((label, list(fake.log[start:])))

        run(f"first run: {comments} comments from others, none of ours")
        run("second run, same commit: the sticky comment is updated")
        for i in range(comments, comments + 20):  # the conversation goes on after our comment
            fake.add_comment(2, f"review comment {i}", login=f"reviewer{i % 7}")
        (repo / "log.csv").write_text("epoch,loss\n1,0.8\n2,0.4\n3,0.3\n4,0.25\n", encoding="utf-8")
        git(repo, "commit", "--quiet", "-am", "head 2")
        new_head = git(repo, "rev-parse", "HEAD").strip()
        event["pull_request"]["head"]["sha"] = new_head
        fake.add_pull(2, new_head)
        event_path = base / "event.json"
        event_path.write_text(json.dumps(event), encoding="utf-8")
        env["GITHUB_EVENT_PATH"] = str(event_path)
        run("third run, a new commit: new plot uploaded, comment updated")
        ours = [c for c in fake.comments_on(2) if c["login"] == "cml-bot-user"]
        assert len(ours) == 1, f"expected one comment of ours, found {len(ours)}"
        assert fake.violations == [], fake.violations
    return scenarios


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--metrics", type=int, default=10_000)
    parser.add_argument("--comments", type=int, default=300)
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, Python {sys.version.split()[0]}")

    body = diff_and_render(args.metrics)  # warm-up, and the result checked below
    seconds = median_seconds(lambda: diff_and_render(args.metrics), repeat=args.repeat)
    fits = len(body) <= COMMENT_LIMIT and body.count("<!-- cml-bot report (id: default) -->") == 1
    print(
        row(
            f"{args.metrics:,} metrics: diff + render (median of {args.repeat})",
            seconds,
            f"target < {TARGET_SECONDS} s: {'met' if seconds < TARGET_SECONDS else 'MISSED'}",
        )
    )
    print(f"  comment: {len(body):,} characters (limit {COMMENT_LIMIT:,}): {'fits' if fits else 'DOES NOT FIT'}")

    base = Path(tempfile.mkdtemp(prefix="cml-bot-bench-scale-"))
    ok = seconds < TARGET_SECONDS and fits
    try:
        started = time.perf_counter()
        scenarios = requests_per_run(base, args.comments)
        print(f"\nHTTP requests per `cml-bot report` run ({time.perf_counter() - started:.1f} s for all three runs):")
        for label, log in scenarios:
            print(f"- {label}: {len(log)} requests")
            for method, path, status in log:
                print(f"    {method:<6} {path}  -> {status}")
        steady = [len(log) for _, log in scenarios[1:]]
        met = max(steady) <= TARGET_REQUESTS
        print(
            f"requests once the comment exists: {', '.join(map(str, steady))}; "
            f"target <= {TARGET_REQUESTS}: {'met' if met else 'MISSED'} (first run: {len(scenarios[0][1])})"
        )
        ok = ok and met
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
