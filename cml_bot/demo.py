"""``cml-bot demo``: the whole loop on a real example, offline.

Creates a git repo with a small training project (scikit-learn's bundled digits data set and an SGD
classifier) and gives ``main`` a recorded history: a few commits that retrain with another seed
(main's usual variation), then the baseline, run and recorded like CI does on pushes to main. A
branch then changes a hyperparameter, runs the pipeline again and writes the dry-run report: with
per-example predictions of both revisions it shows confidence intervals, prediction flips, the
confusion delta and the trend of main with its change points.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path

from cml_bot import __version__
from cml_bot.app import RECORDS_DIR, Effects, Options, Outcome, run
from cml_bot.config import Step
from cml_bot.errors import CmlBotError
from cml_bot.git import Git
from cml_bot.metrics import read_values
from cml_bot.results import LocalStore, RunResults

PROJECT_FILES = ("train.py", "params.yaml", "cml-bot.yaml")
BRANCH = "higher-learning-rate"
GITIGNORE = "metrics.json\ntrain_log.csv\nconfusion.csv\npredictions.csv\ncml-bot-report/\n.cml-bot/\n"
HISTORY_SEEDS = (1, 2, 3, 4, 5, 6)  # earlier commits of main, each retrained with another seed
BASE_SEED = 7


def _clean_env(env: Mapping[str, str]) -> dict[str, str]:
    """The demo is always local: drop CI variables so it never tries to post anywhere."""
    ci_prefixes = ("GITHUB_", "GITLAB_", "CI_", "INPUT_", "CML_BOT_TOKEN")
    clean = {k: v for k, v in env.items() if not k.startswith(ci_prefixes) and k not in ("CI", "GITLAB_CI")}
    clean.update(
        {
            "GIT_AUTHOR_NAME": "cml-bot demo",
            "GIT_AUTHOR_EMAIL": "demo@cml-bot.invalid",
            "GIT_COMMITTER_NAME": "cml-bot demo",
            "GIT_COMMITTER_EMAIL": "demo@cml-bot.invalid",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
        }
    )
    return clean


def _git(repo: Path, env: Mapping[str, str], *args: str) -> None:
    """Write operations on the demo repo (cml-bot itself only reads git, see cml_bot.git)."""
    result = subprocess.run(["git", *args], cwd=repo, env=dict(env), capture_output=True, check=False)
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise CmlBotError(f"demo: git {' '.join(args)} failed: {message[-1] if message else result.returncode}")


def create_project(repo: Path, python: str = sys.executable) -> None:
    """Write the example project's files into ``repo``."""
    repo.mkdir(parents=True, exist_ok=True)
    source = resources.files("cml_bot") / "demo_project"
    for name in PROJECT_FILES:
        text = (source / name).read_text(encoding="utf-8")
        if name == "cml-bot.yaml":
            text = text.replace("{python}", shlex.quote(python))
        (repo / name).write_text(text, encoding="utf-8")
    (repo / ".gitignore").write_text(GITIGNORE, encoding="utf-8")


def _set_seed(repo: Path, seed: int) -> None:
    params = repo / "params.yaml"
    lines = params.read_text(encoding="utf-8").splitlines()
    params.write_text(
        "\n".join(f"  seed: {seed}" if line.strip().startswith("seed:") else line for line in lines) + "\n",
        encoding="utf-8",
    )


def record_history(repo: Path, outputs: Path, env: Mapping[str, str], echo: Callable[[str], None]) -> None:
    """One commit of main per seed, with the results that running the pipeline there records.

    Training is deterministic for a seed, so all seeds are trained by one process (``train.py
    --seeds``) instead of starting Python (and importing scikit-learn) once per commit; each commit's
    recorded results are that seed's outputs, as ``cml-bot run --record`` would store them."""
    from cml_bot.pipeline import run_pipeline

    seeds = ",".join(str(seed) for seed in HISTORY_SEEDS)
    command = f"{shlex.quote(sys.executable)} train.py --seeds {seeds} --out {shlex.quote(str(outputs))}"
    result = run_pipeline((Step("history", command, timeout=600),), repo, env=env, echo=lambda line: None)
    if not result.ok:
        tail = result.steps[-1].log_tail[-1:] if result.steps else ()
        raise CmlBotError(f"demo: training main's history failed: {' '.join(tail) or 'see the log'}")
    store = LocalStore(repo / RECORDS_DIR)
    for seed in HISTORY_SEEDS:
        _set_seed(repo, seed)
        _git(repo, env, "commit", "--quiet", "-am", f"Retrain with seed {seed}")
        sha = Git(repo).rev("HEAD")
        if sha is None:
            raise CmlBotError(f"demo: the commit for seed {seed} does not resolve")
        folder = outputs / str(seed)
        store.save(
            RunResults(
                sha=sha,
                metrics=read_values(folder / "metrics.json"),
                params=read_values(repo / "params.yaml"),
                files={"predictions.csv": (folder / "predictions.csv").read_bytes()},
            )
        )
        echo(f"cml-bot demo: recorded seed {seed} on main ({sha[:7]})")


def run_demo(
    out: Path | None = None,
    workdir: Path | None = None,
    echo: Callable[[str], None] = print,
    env: Mapping[str, str] | None = None,
) -> Outcome:
    if importlib.util.find_spec("sklearn") is None:
        raise CmlBotError(
            "the demo trains a scikit-learn model: pip install scikit-learn "
            f"(or install cml-bot with its demo extra: pip install 'cml-bot[demo]=={__version__}')"
        )
    if shutil.which("git") is None:
        raise CmlBotError("the demo needs git on PATH")
    base = workdir or Path(tempfile.mkdtemp(prefix="cml-bot-demo-"))
    repo = base / "digits"
    if repo.exists() and any(repo.iterdir()):
        raise CmlBotError(f"{repo} already exists and is not empty; pass another --workdir")
    clean = _clean_env(os.environ if env is None else env)
    effects = Effects(env=clean, echo=echo)

    echo(f"cml-bot demo: creating the example project in {repo}")
    create_project(repo)
    _git(repo, clean, "init", "--quiet", "--initial-branch=main")
    _git(repo, clean, "add", "-A")
    _git(repo, clean, "commit", "--quiet", "-m", "Digits classifier: baseline")

    echo(f"cml-bot demo: giving main a history: {len(HISTORY_SEEDS)} commits retrained with other seeds")
    record_history(repo, base / "history", clean, echo)
    _set_seed(repo, BASE_SEED)
    _git(repo, clean, "commit", "--quiet", "-am", f"Back to seed {BASE_SEED}")

    echo("cml-bot demo: training on main (the baseline) and recording its results")
    main_report = base / "report-main"
    first = run(Options(root=repo, run_pipeline=True, dry_run=True, report_dir=main_report, record=True), effects)
    if first.verdict.value == "failed":
        raise CmlBotError(f"demo: training on main failed; see {main_report / 'report.md'}")

    echo(f"cml-bot demo: branch {BRANCH} raises the learning rate from 0.01 to 0.1")
    _git(repo, clean, "checkout", "--quiet", "-b", BRANCH)
    params = repo / "params.yaml"
    params.write_text(
        params.read_text(encoding="utf-8").replace("learning_rate: 0.01", "learning_rate: 0.1"), encoding="utf-8"
    )
    _git(repo, clean, "commit", "--quiet", "-am", "Raise the learning rate")

    echo("cml-bot demo: training on the branch and comparing with main's merge-base")
    report_dir = out or base / "report"
    return run(Options(root=repo, run_pipeline=True, dry_run=True, report_dir=report_dir, record=False), effects)
