"""Benchmark: `cml-bot report` end to end against the DVC chain on the same repository, for two
projects (`--project synthetic|dvclive|all`, default all).

synthetic: a temp folder, real git, `dvc init`: 50 metrics, 20 params and 5 plots (four of 200
points, one of 1,000,000 points), a base commit on main and a head commit on a branch, with a
dvc.yaml declaring the metrics, params and plots so DVC diffs the very same files.

dvclive: what the real dvclive writes for a training run (`dvc init`, dvclive's own dvc.yaml, no
cml-bot.yaml but one threshold): 300 steps of train/val loss and accuracy, params, and dvclive's
scikit-learn ROC, precision-recall and confusion matrix plots of 2,000 predictions; trained on main,
then again on a branch. cml-bot must take at most 0.7x the time of DVC's three commands there,
measured side by side (each round runs every command once, in turns).

Measured (wall clock, median of --repeat runs after one warm-up run, each a new process):
- `cml-bot report --base main`: collect, diff against main, render (plots included), post the
  sticky comment to a local fake GitHub (tests/fake_github.py, served from this process) and set
  the commit status. The warm-up run posts the comment and uploads the images; the timed runs
  update it (the steady state of a PR). The first post is timed once too.
- the peer chain: `dvc metrics diff main` + `dvc params diff main` + `dvc plots diff main`,
  each timed alone (median of --repeat), summed.

Targets: cml-bot at least 3x faster than the DVC chain, and under 1.5 s on 2 cores.

Run: .venv/bin/python bench/report.py [--repeat 5] [--points 1000000] [--keep]
     add --profile to write a pyinstrument profile of one in-process run (pip install pyinstrument)
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
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

from _common import GIT_ENV, median_seconds, row, side_by_side, tool  # noqa: E402
from fake_github import HEAD_SHA, TOKEN, FakeGitHub, github_env  # noqa: E402

METRICS, PARAMS, SMALL_PLOTS = 50, 20, 4
TARGET_RATIO, TARGET_SECONDS = 3.0, 1.5
DVCLIVE_TARGET = 0.7  # cml-bot's report at most this share of DVC's three commands


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


def write_results(repo: Path, seed: int, points: int) -> None:
    """metrics.json (50 metrics, nested), params.yaml (20 params) and the 5 plot files."""
    rng = random.Random(seed)
    metrics: dict[str, dict[str, float]] = {}
    for i in range(METRICS):
        group = ("train", "val", "test", "calib", "ood")[i % 5]
        metrics.setdefault(group, {})[f"metric_{i:02d}"] = round(rng.uniform(0.5, 0.99), 4)
    (repo / "metrics.json").write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    lines = [f"param_{i:02d}: {rng.choice([0.1, 0.01, 32, 64, 'adam', 'sgd', True])}" for i in range(PARAMS)]
    (repo / "params.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    plots = repo / "plots"
    plots.mkdir(exist_ok=True)
    for p in range(SMALL_PLOTS):
        rows = ["epoch,loss,accuracy"] + [
            f"{e},{1 / (e + 1) + rng.random() / 50:.5f},{1 - 1 / (e + 2):.5f}" for e in range(200)
        ]
        (plots / f"curve_{p}.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    with (plots / "big.csv").open("w", encoding="utf-8") as handle:
        handle.write("step,loss\n")
        handle.writelines(f"{s},{math.exp(-s / points) + rng.random() * 0.01:.5f}\n" for s in range(points))


CML_BOT_YAML = """\
title: Benchmark model
thresholds:
  "val.*": {max_drop: 0.05}
"""


def dvc_yaml() -> str:
    plots = [f"  - plots/curve_{p}.csv:\n      x: epoch\n      y: [loss, accuracy]" for p in range(SMALL_PLOTS)]
    plots.append("  - plots/big.csv:\n      x: step\n      y: loss")
    return "metrics:\n  - metrics.json\nparams:\n  - params.yaml\nplots:\n" + "\n".join(plots) + "\n"


def make_repo(repo: Path, dvc: str | None, points: int) -> None:
    repo.mkdir(parents=True)
    git(repo, "init", "--quiet", "--initial-branch=main")
    if dvc:
        subprocess.run([dvc, "init", "-q"], cwd=repo, check=True, env={**os.environ, **GIT_ENV})
        subprocess.run([dvc, "config", "core.analytics", "false"], cwd=repo, check=True)
    (repo / "cml-bot.yaml").write_text(CML_BOT_YAML, encoding="utf-8")
    (repo / "dvc.yaml").write_text(dvc_yaml(), encoding="utf-8")
    (repo / ".gitignore").write_text("cml-bot-report/\ndvc_plots/\n", encoding="utf-8")
    write_results(repo, 1, points)
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", "base")
    git(repo, "checkout", "--quiet", "-b", "changes")
    write_results(repo, 2, points)
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", "head")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--points", type=int, default=1_000_000, help="points of the big plot")
    parser.add_argument("--project", choices=["synthetic", "dvclive", "all"], default="all")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--profile", action="store_true", help="profile one in-process run with pyinstrument")
    args = parser.parse_args()

    cml_bot = tool("cml-bot")
    if cml_bot is None:
        print("cml-bot is not installed: pip install -e .", file=sys.stderr)
        return 1
    dvc = tool("dvc")
    base = Path(tempfile.mkdtemp(prefix="cml-bot-bench-report-"))
    fake = FakeGitHub()
    fake.add_token(TOKEN, "cml-bot-user")
    fake.add_pull(2, HEAD_SHA)
    fake.start()
    print(f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.1f}")
    try:
        env = {
            **os.environ,
            **GIT_ENV,
            **github_env(fake, GITHUB_STEP_SUMMARY=str(base / "summary.md"), GITHUB_OUTPUT=str(base / "output")),
        }
        ok = True
        if args.project in ("synthetic", "all"):
            ok = synthetic(args, cml_bot, dvc, fake, env, base) and ok
        if args.project in ("dvclive", "all"):
            ok = dvclive_project(args, cml_bot, dvc, env, base) and ok
        return 0 if ok else 1
    finally:
        fake.stop()
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def synthetic(
    args: argparse.Namespace, cml_bot: str, dvc: str | None, fake: FakeGitHub, env: dict[str, str], base: Path
) -> bool:
    repo = base / "repo"
    started = time.perf_counter()
    make_repo(repo, dvc, args.points)
    size = (repo / "plots" / "big.csv").stat().st_size
    print(
        f"synthetic repo: {METRICS} metrics, {PARAMS} params, {SMALL_PLOTS + 1} plots (one of {args.points:,} "
        f"points, {size / 1e6:.1f} MB) in {time.perf_counter() - started:.1f} s"
    )
    command = [cml_bot, "report", "--base", "main", "-C", str(repo)]

    def report() -> None:
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"cml-bot failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")

    first = median_seconds(report, repeat=1)  # posts the comment and uploads the images
    requests_first = len(fake.log)
    ours = median_seconds(report, repeat=args.repeat)  # updates it in place
    per_update = (len(fake.log) - requests_first) / args.repeat
    comments = fake.comments_on(2)
    assert len(comments) == 1, f"expected one comment, found {len(comments)}"
    body = comments[0]["body"]
    images = body.count("![")
    print(
        f"cml-bot: one comment of {len(body):,} characters with {images} image(s); "
        f"{requests_first} HTTP requests for the first post, {per_update:.0f} per update"
    )

    peer: dict[str, float] = {}
    if dvc:
        dvc_env = {**os.environ, **GIT_ENV, "DVC_NO_ANALYTICS": "1"}
        chain = {
            "dvc metrics diff main": [dvc, "metrics", "diff", "main"],
            "dvc params diff main": [dvc, "params", "diff", "main"],
            "dvc plots diff main": [dvc, "plots", "diff", "main", "-o", str(base / "dvc_plots")],
        }
        for label, cmd in chain.items():

            def once(cmd: list[str] = cmd) -> None:
                subprocess.run(cmd, cwd=repo, env=dvc_env, check=True, capture_output=True)

            once()  # warm up (DVC builds its index and caches on the first call)
            peer[label] = median_seconds(once, repeat=args.repeat)
    else:
        print("dvc not installed: no peer chain (pip install dvc)")

    print()
    print(row("cml-bot report, first post (1 run)", first))
    print(
        row(
            f"cml-bot report, update (median of {args.repeat})",
            ours,
            f"target < {TARGET_SECONDS} s: {'met' if ours < TARGET_SECONDS else 'MISSED'}",
        )
    )
    for label, seconds in peer.items():
        print(row(f"{label} (median of {args.repeat})", seconds))
    ok = ours < TARGET_SECONDS
    if peer:
        total = sum(peer.values())
        print(row("DVC chain total", total))
        ratio = total / ours
        print(
            f"ratio DVC chain / cml-bot: {ratio:.1f}x (first post: {total / first:.1f}x); "
            f"target >= {TARGET_RATIO:.0f}x: {'met' if ratio >= TARGET_RATIO else 'MISSED'}"
        )
        ok = ok and ratio >= TARGET_RATIO
    if args.profile:
        profile(repo, env, base)
    print()
    return ok


DVCLIVE_TRAINING = """
import sys
import numpy as np
from dvclive import Live

seed, quality = int(sys.argv[1]), float(sys.argv[2])
rng = np.random.default_rng(seed)
with Live(save_dvc_exp=False) as live:
    live.log_params({"lr": 0.01 * quality, "batch_size": 64, "layers": [128, 64], "optimizer": "adam"})
    for step in range(300):
        decay = np.exp(-step / (80 * quality))
        live.log_metric("train/loss", float(decay + rng.normal(0, 0.01)))
        live.log_metric("train/acc", float(1 - 0.5 * decay + rng.normal(0, 0.005)))
        live.log_metric("val/loss", float(1.1 * decay + 0.05 + rng.normal(0, 0.01)))
        live.log_metric("val/acc", float(0.97 - 0.5 * decay + rng.normal(0, 0.005)))
        live.next_step()
    labels = rng.integers(0, 2, 2000)
    scores = np.clip(labels * quality * 0.6 + rng.normal(0.2, 0.25, 2000), 0, 1)
    live.log_sklearn_plot("roc", labels, scores)
    live.log_sklearn_plot("precision_recall", labels, scores)
    live.log_sklearn_plot("confusion_matrix", labels, (scores > 0.5).astype(int))
"""


def make_dvclive_repo(repo: Path, dvc: str) -> None:
    """A DVC project trained with the real dvclive on main, then trained again on a branch."""
    repo.mkdir(parents=True)
    git(repo, "init", "--quiet", "--initial-branch=main")
    env = {**os.environ, **GIT_ENV, "DVC_NO_ANALYTICS": "1"}
    subprocess.run([dvc, "init", "-q"], cwd=repo, check=True, env=env)
    (repo / "train.py").write_text(DVCLIVE_TRAINING, encoding="utf-8")
    (repo / "cml-bot.yaml").write_text('id: dvclive\nthresholds:\n  "val.acc": {max_drop: 0.05}\n', encoding="utf-8")
    (repo / ".gitignore").write_text("cml-bot-report/\ndvc_plots/\n", encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", "project")
    for seed, quality, branch in ((1, 1.0, None), (2, 1.1, "better-model")):
        if branch:
            git(repo, "checkout", "--quiet", "-b", branch)
        subprocess.run([sys.executable, "train.py", str(seed), str(quality)], cwd=repo, check=True, env=env)
        git(repo, "add", "-A")
        git(repo, "commit", "--quiet", "-m", f"train {seed}")


def dvclive_project(args: argparse.Namespace, cml_bot: str, dvc: str | None, env: dict[str, str], base: Path) -> bool:
    if dvc is None:
        print("dvclive project: dvc not installed (pip install -e '.[test]')")
        return False
    try:
        import dvclive  # noqa: F401
    except ImportError:
        print("dvclive project: dvclive not installed (pip install -e '.[test]')")
        return False
    repo = base / "dvclive-repo"
    started = time.perf_counter()
    make_dvclive_repo(repo, dvc)
    files = sum(1 for p in (repo / "dvclive").rglob("*") if p.is_file())
    took = time.perf_counter() - started
    print(f"dvclive repo: {files} files written by dvclive on main and on a branch, in {took:.1f} s")
    dvc_env = {**os.environ, **GIT_ENV, "DVC_NO_ANALYTICS": "1"}
    report_command = [cml_bot, "report", "--base", "main", "-C", str(repo)]

    def run(cmd: list[str], environment: dict[str, str]) -> None:
        result = subprocess.run(cmd, cwd=repo, env=environment, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(cmd[:3])} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")

    actions = {
        "cml-bot report (update)": lambda: run(report_command, env),
        "dvc metrics diff main": lambda: run([dvc, "metrics", "diff", "main"], dvc_env),
        "dvc params diff main": lambda: run([dvc, "params", "diff", "main"], dvc_env),
        "dvc plots diff main": lambda: run([dvc, "plots", "diff", "main", "-o", str(base / "dvclive_plots")], dvc_env),
    }
    for action in actions.values():  # warm up: the first report posts the comment, DVC builds its caches
        action()
    times = side_by_side(actions, repeat=args.repeat)
    print()
    for label, timing in times.items():
        print(row(f"{label} (median of {args.repeat}, side by side)", timing.wall, f"CPU {timing.cpu:.3f} s"))
    ours = times.pop("cml-bot report (update)")
    total = sum(t.wall for t in times.values())
    total_cpu = sum(t.cpu for t in times.values())
    share = ours.wall / total
    print(row("DVC's three commands", total, f"CPU {total_cpu:.3f} s"))
    verdict = "met" if share <= DVCLIVE_TARGET else "MISSED"
    print(
        f"cml-bot / DVC's three commands: {share:.2f}x wall (target <= {DVCLIVE_TARGET}x: {verdict}), "
        f"{ours.cpu / total_cpu:.2f}x CPU; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    return share <= DVCLIVE_TARGET


def profile(repo: Path, env: dict[str, str], base: Path) -> None:
    """One in-process run under pyinstrument; the text profile goes to stdout."""
    from pyinstrument import Profiler

    from cml_bot.cli import Console, main

    profiler = Profiler(interval=0.001)
    out = io.StringIO()
    profiler.start()
    code = main(["report", "--base", "main", "-C", str(repo)], env=env, console=Console(out, out))
    profiler.stop()
    print(f"\nin-process run under pyinstrument (exit {code}):")
    print(profiler.output_text(unicode=False, color=False, show_all=False))


if __name__ == "__main__":
    sys.exit(main())
