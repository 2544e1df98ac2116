"""Command line: parse arguments, call the app, show the outcome. The only place that prints and exits.

Heavy modules (matplotlib, pandas, PyGithub, python-gitlab) are imported inside the commands so that
``cml-bot --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from cml_bot import __version__
from cml_bot.secrets import TOKEN_VARIABLES, scrub

if TYPE_CHECKING:
    from cml_bot.app import Outcome

EXIT_OK = 0
EXIT_FAILED = 1  # pipeline failed, regression with --fail-on-regression, forge failure,
# inconclusive with --fail-on-inconclusive (by default an inconclusive verdict exits 0)
EXIT_USAGE = 2  # the user's input is wrong: config, files, arguments


class Console:
    """Where output goes; tests pass their own streams."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None, interactive: bool | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        # A terminal gets one progress line redrawn in place; CI logs get plain lines.
        self.interactive = self.out.isatty() and not os.environ.get("CI") if interactive is None else interactive
        self._progress_shown = False

    def say(self, line: str) -> None:
        if self._progress_shown:
            self.out.write("\n")
            self._progress_shown = False
        print(line, file=self.out, flush=True)

    def progress(self, line: str) -> None:
        if not self.interactive:
            self.say(line)
            return
        width = shutil.get_terminal_size().columns - 1
        self.out.write("\r" + line[:width].ljust(width))
        self.out.flush()
        self._progress_shown = True

    def warn(self, line: str) -> None:
        print(line, file=self.err, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cml-bot",
        description="Pull data, train, diff metrics against the base branch and post one sticky report "
        "on the pull/merge request (or write it locally with --dry-run).",
    )
    parser.add_argument("--version", action="version", version=f"cml-bot {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser("demo", help="run the whole loop on a built-in example project, offline")
    demo.add_argument("--out", type=Path, help="where to write the report (default: a new temp folder)")
    demo.add_argument("--workdir", type=Path, help="where to create the example repo (default: a temp folder)")

    for name, text in (
        ("report", "collect metrics, diff against the baseline, render and post the report"),
        ("run", "pull data and run the pipeline first, then do what 'report' does"),
    ):
        command = sub.add_parser(name, help=text, description=text)
        _report_options(command, pipeline=True)

    record = sub.add_parser("record", help="store this commit's results as a baseline (pushes to main)")
    _common(record)

    merge = sub.add_parser("merge", help="post ONE report comparing the shards of a matrix with the baseline")
    merge.add_argument("shards", nargs="+", type=Path, metavar="SHARD_DIR", help="folders written with --shard")
    _report_options(merge, pipeline=False)

    pull = sub.add_parser("pull", help="pull pinned data (or `dvc pull` in a DVC repo)")
    _common(pull)

    data = sub.add_parser("data", help="manage pinned data entries in cml-bot.yaml")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    add = data_sub.add_parser("add", help="hash a local file and pin it with its source URL")
    add.add_argument("path", help="the file, relative to the repo")
    add.add_argument("--url", required=True, help="where CI downloads it from (https, http, file, s3, gs)")
    _common(add)

    publish = sub.add_parser(
        "publish",
        help="post a bundle saved by a run with a read-only token (rendered here, with this checkout's config)",
    )
    publish.add_argument("--bundle", type=Path, required=True, help="the bundle folder")
    publish.add_argument("--out", type=Path, help="report folder (default: cml-bot-report in the repo)")
    _common(publish)
    publish.add_argument(
        "--head-sha", help="refuse unless the bundle is for this commit (pass github.event.workflow_run.head_sha)"
    )
    return parser


def _common(command: argparse.ArgumentParser) -> None:
    command.add_argument("-C", "--directory", type=Path, default=Path("."), help="the repo (default: .)")
    command.add_argument("--config", type=Path, help="config file (default: cml-bot.yaml in the repo)")


def _report_options(command: argparse.ArgumentParser, pipeline: bool) -> None:
    _common(command)
    command.add_argument("--dry-run", action="store_true", help="write the report locally; post nothing")
    command.add_argument("--out", type=Path, help="report folder (default: cml-bot-report in the repo)")
    command.add_argument(
        "--mode",
        choices=["update", "new", "recreate"],
        default="update",
        help="update the sticky comment in place (default), add a new one, or delete and re-add it",
    )
    command.add_argument("--fail-on-regression", action="store_true", help="exit 1 when a threshold fails")
    command.add_argument(
        "--fail-on-inconclusive",
        action="store_true",
        help="exit 1 when a gate's worsening exceeds its threshold but is not significant (default: exit 0)",
    )
    command.add_argument(
        "--baseline", type=Path, help="a metrics file to compare against instead of the base branch's results"
    )
    command.add_argument(
        "--base",
        help="compare with this commit (a sha), or with the merge-base of this branch "
        "(default: the merge-base with baseline.branch)",
    )
    command.add_argument(
        "--bundle-dir", type=Path, help="where to save the report when the token is read-only (default: cml-bot-bundle)"
    )
    command.add_argument("--junit", type=Path, help="write the gates as JUnit XML to this file")
    command.add_argument(
        "--fail-if-not-posted",
        action="store_true",
        help="exit 1 when the token cannot write (fork PRs, CI_JOB_TOKEN) and the report was only saved as a bundle",
    )
    if not pipeline:
        return
    command.add_argument(
        "--shard",
        help="a matrix job: save results to a shard folder (under --bundle-dir, default cml-bot-shards) "
        "for `cml-bot merge` instead of posting",
    )
    record = command.add_mutually_exclusive_group()
    record.add_argument(
        "--record",
        dest="record",
        action="store_true",
        default=None,
        help="store this commit's results as a baseline for later runs",
    )
    record.add_argument("--no-record", dest="record", action="store_false")


def main(
    argv: Sequence[str] | None = None, *, env: Mapping[str, str] | None = None, console: Console | None = None
) -> int:
    """Entry point; returns the exit code (the console script exits with it)."""
    console = console or Console()
    environ = dict(os.environ if env is None else env)
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse already explained
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="cml-bot: %(message)s", stream=console.err
    )
    from cml_bot.errors import CmlBotError

    commands: dict[str, Callable[[argparse.Namespace, Mapping[str, str], Console], int]] = {
        "demo": _demo,
        "report": _report,
        "run": _report,
        "pull": _pull,
        "data": _data,
        "publish": _publish,
        "record": _record,
        "merge": _report,
    }
    try:
        return commands[args.command](args, environ, console)
    except CmlBotError as exc:
        console.warn(f"cml-bot: error: {scrub(str(exc), environ)}")
        if environ.get("GITHUB_ACTIONS") == "true":
            console.say(f"::error title=cml-bot::{_workflow_escape(scrub(str(exc), environ))}")
        return exc.exit_code
    except KeyboardInterrupt:
        console.warn("cml-bot: interrupted")
        return 130


def _workflow_escape(text: str) -> str:
    """Escape data for a GitHub workflow command (``::error::``): it must stay one command."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _report(args: argparse.Namespace, env: Mapping[str, str], console: Console) -> int:
    from cml_bot.app import Effects, Options, merge, run
    from cml_bot.forges.base import CommentMode

    _mask_tokens(env, console)
    options = Options(
        root=args.directory,
        run_pipeline=args.command == "run",
        config_path=args.config,
        dry_run=args.dry_run,
        report_dir=args.out,
        bundle_dir=args.bundle_dir,
        mode=CommentMode(args.mode),
        baseline_file=args.baseline,
        base_rev=args.base,
        junit=args.junit,
        record=getattr(args, "record", None),
        shard=getattr(args, "shard", None),
    )
    effects = Effects(env=env, echo=console.say, progress=console.progress)
    outcome = merge(args.shards, options, effects) if args.command == "merge" else run(options, effects)
    _show(outcome, env, console)
    if outcome.verdict.value == "failed":
        return EXIT_FAILED
    if outcome.bundle_dir is not None and args.fail_if_not_posted:
        return EXIT_FAILED
    if outcome.verdict.value == "regressed" and args.fail_on_regression:
        return EXIT_FAILED
    if outcome.verdict.value == "inconclusive" and args.fail_on_inconclusive:
        return EXIT_FAILED
    return EXIT_OK


def _show(outcome: Outcome, env: Mapping[str, str], console: Console) -> None:
    console.say(f"cml-bot: {outcome.summary}")
    for notice in outcome.notices:
        console.say(f"cml-bot: {scrub(notice, env)}")
    if outcome.destination == "shard":
        return
    report_file = outcome.report_dir / "report.md"
    console.say(f"cml-bot: report written to {report_file} (preview: {outcome.report_dir / 'index.html'})")
    if outcome.publication is not None and outcome.publication.comment_url:
        action = "posted" if outcome.publication.created else "updated"
        console.say(f"cml-bot: comment {action}: {outcome.publication.comment_url}")
    if env.get("GITHUB_ACTIONS") == "true":
        for metric in outcome.report.diff.regressions:
            message = f"{metric.name} " + "; ".join(metric.failures)
            console.say(f"::error title=cml-bot regression::{_workflow_escape(message)}")
        for metric in outcome.report.diff.metrics:
            if metric.improved is False and not metric.failures:
                console.say(f"::warning title=cml-bot::{_workflow_escape(metric.name + ' got worse')}")
            if metric.inconclusive and not metric.failures:
                message = f"{metric.name} " + "; ".join(metric.inconclusive)
                console.say(f"::warning title=cml-bot inconclusive::{_workflow_escape(message)}")
        _write_outputs(
            env,
            {
                "verdict": outcome.verdict.value,
                "report-path": str(report_file),
                "comment-url": (outcome.publication.comment_url if outcome.publication else None) or "",
            },
        )


def _write_outputs(env: Mapping[str, str], outputs: Mapping[str, str]) -> None:
    path = env.get("GITHUB_OUTPUT")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as handle:
        for key, value in outputs.items():
            handle.write(f"{key}={value.replace(chr(10), ' ').replace(chr(13), ' ')}\n")


def _demo(args: argparse.Namespace, env: Mapping[str, str], console: Console) -> int:
    from cml_bot.demo import run_demo

    outcome = run_demo(out=args.out, workdir=args.workdir, echo=console.say)
    console.say(f"cml-bot: demo {outcome.summary}")
    console.say(f"cml-bot: demo report: {outcome.report_dir / 'report.md'}")
    console.say(f"cml-bot: open {outcome.report_dir / 'index.html'} in a browser to preview the comment")
    return EXIT_OK


def _record(args: argparse.Namespace, env: Mapping[str, str], console: Console) -> int:
    from cml_bot.app import Effects, Options, record

    outcome = record(Options(root=args.directory, config_path=args.config), Effects(env=env, echo=console.say))
    console.say(f"cml-bot: {outcome.summary} in {scrub(outcome.recorded or '?', env)}")
    return EXIT_OK


def _pull(args: argparse.Namespace, env: Mapping[str, str], console: Console) -> int:
    from cml_bot import data
    from cml_bot.config import load_config

    config = load_config(args.directory, args.config)
    if config.data.files:
        result = data.pull(config, progress=console.progress)
        console.say(f"cml-bot: {result.summary}")
    elif data.is_dvc_repo(config.root):
        data.dvc_pull(config.root, console.say)
    else:
        console.say("cml-bot: nothing to pull: no data.files in cml-bot.yaml and not a DVC repo")
    return EXIT_OK


def _data(args: argparse.Namespace, env: Mapping[str, str], console: Console) -> int:
    from cml_bot import data
    from cml_bot.config import CONFIG_FILE

    root = args.directory.resolve()
    config_file = args.config or root / CONFIG_FILE
    entry = data.add_file(root, args.path, args.url, config_file)
    console.say(f"cml-bot: pinned {entry.path} ({entry.sha256[:12]}) in {config_file}")
    return EXIT_OK


def _publish(args: argparse.Namespace, env: Mapping[str, str], console: Console) -> int:
    from cml_bot.app import Effects, Options, publish_bundle

    _mask_tokens(env, console)
    options = Options(root=args.directory, config_path=args.config, report_dir=args.out)
    outcome = publish_bundle(args.bundle, options, Effects(env=env, echo=console.say), expected_head_sha=args.head_sha)
    _show(outcome, env, console)
    return EXIT_OK


def _mask_tokens(env: Mapping[str, str], console: Console) -> None:
    """Ask the Actions runner to mask every token value in the log (the runner consumes this line)."""
    if env.get("GITHUB_ACTIONS") == "true":
        for name in TOKEN_VARIABLES:
            if env.get(name):
                console.say(f"::add-mask::{env[name]}")
