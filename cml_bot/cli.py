"""Command line: parse arguments, call the app, show the outcome. The only place that prints and exits.

Heavy modules (matplotlib, pandas, PyGithub, python-gitlab) are imported inside the commands so that
``cml-bot --help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import io
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from cml_bot import __version__, workflow
from cml_bot.secrets import ScrubFilter, Secrets

if TYPE_CHECKING:
    from cml_bot.app import Outcome
    from cml_bot.progress import TransferMeter

EXIT_OK = 0
EXIT_FAILED = 1  # pipeline failed, regression with --fail-on-regression, forge failure,
# inconclusive with --fail-on-inconclusive (by default an inconclusive verdict exits 0)
EXIT_USAGE = 2  # the user's input is wrong: config, files, arguments; a full disk
EXIT_INTERNAL = 3  # a bug in cml-bot: one line on stderr, the traceback in a log file


class Output:
    """A console stream that stops the printing, not the run, when its reader goes away
    (``cml-bot run | head -1``): the run still writes its report and exits with its own code.

    The first write that meets a closed pipe turns the stream quiet; the file descriptor behind it
    (stdout's, usually) is pointed at the null device, so the interpreter's last flush at exit finds
    nothing to complain about either (the recipe in Python's ``signal`` documentation).
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.gone = False  # the reader went away: everything written since is dropped

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                self.stream.write(text)
            except BrokenPipeError:
                self._go_quiet()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._go_quiet()

    def isatty(self) -> bool:
        return not self.gone and self.stream.isatty()

    def _go_quiet(self) -> None:
        self.gone = True
        try:
            fd = self.stream.fileno()
        except (AttributeError, OSError, ValueError):  # a stream without a descriptor (a test's)
            return
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)


class Console:
    """Where output goes; tests pass their own streams.

    Every line goes through one gate (:meth:`_lines`): secrets scrubbed, no raw line break, and in
    GitHub Actions a line that would read as a workflow command is fenced so the runner prints it
    without running it. Only :meth:`command` writes a command, from escaped parts.
    """

    def __init__(
        self,
        out: TextIO | None = None,
        err: TextIO | None = None,
        interactive: bool | None = None,
        *,
        secrets: Secrets | None = None,
        github_actions: bool = False,
    ) -> None:
        self.out = Output(out or sys.stdout)
        self.err = Output(err or sys.stderr)
        # A terminal gets one progress line redrawn in place; CI logs get plain lines.
        self.interactive = self.out.isatty() and not os.environ.get("CI") if interactive is None else interactive
        self.secrets = secrets or Secrets()
        self.github_actions = github_actions
        self._progress_shown = False
        self._lock = threading.Lock()  # the pipeline's reader thread and the main thread both print
        self._meter: TransferMeter | None = None  # byte-level download progress, while a pull runs

    def _lines(self, text: str) -> list[str]:
        line = workflow.one_physical_line(self.secrets.scrub(text))
        if self.github_actions and workflow.reads_as_command(line):
            return workflow.fenced(line)
        return [line]

    def say(self, line: str) -> None:
        self._print([line])

    def text(self, text: str) -> None:
        """Several lines as they are (the help); each line through the gate."""
        self._print(text.splitlines())

    def _print(self, lines: Sequence[str]) -> None:
        with self._lock:
            if self._meter is not None:  # whatever comes after a pull ends its progress
                self._meter.close()
                self._meter = None
            if self._progress_shown:
                self.out.write("\n")
                self._progress_shown = False
            for line in lines:
                for shown in self._lines(line):
                    print(shown, file=self.out, flush=True)

    def progress(self, line: str) -> None:
        if not self.interactive:
            with self._lock:
                for shown in self._lines(line):
                    print(shown, file=self.out, flush=True)
            return
        if self._meter is not None and self._meter.drawing:
            self._meter.note(" ".join(self._lines(line)))
            return
        with self._lock:
            width = shutil.get_terminal_size().columns - 1
            shown = " ".join(self._lines(line))
            self.out.write("\r" + shown[:width].ljust(width))
            self.out.flush()
            self._progress_shown = True

    def transfer(self, path: str, received: int, size: int | None) -> None:
        """Byte-level download progress (a ``cml_bot.data.Transfer``): a bar here, periodic lines in CI."""
        if self._meter is None:
            from cml_bot.progress import TransferMeter

            self._meter = TransferMeter(self.out, interactive=self.interactive)
        self._meter.update(path, received, size)

    def warn(self, line: str) -> None:
        with self._lock:
            for shown in self._lines(line):
                print(shown, file=self.err, flush=True)

    def command(self, name: str, message: str, **properties: str) -> None:
        """A GitHub workflow command (``::error title=...::message``); nothing outside Actions."""
        if not self.github_actions:
            return
        scrubbed = {key: self.secrets.scrub(value) for key, value in properties.items()}
        with self._lock:
            print(workflow.command(name, self.secrets.scrub(message), **scrubbed), file=self.out, flush=True)


class _ConsoleHandler(logging.Handler):
    """cml-bot's log handler: records go to the console's stderr, through its gate."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.warn(self.format(record))
        except Exception:
            self.handleError(record)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cml-bot",
        description="Pull data, train, diff metrics against the base branch and post one sticky report "
        "on the pull/merge request (or write it locally with --dry-run).",
    )
    parser.add_argument("--version", action="version", version=f"cml-bot {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = _command(sub, "demo", "run the whole loop on a built-in example project, offline (needs scikit-learn)")
    demo.add_argument("--out", type=Path, help="where to write the report (default: a new temp folder)")
    demo.add_argument("--workdir", type=Path, help="where to create the example repo (default: a temp folder)")

    for name, text in (
        ("report", "collect metrics, diff against the baseline, render and post the report"),
        ("run", "pull data and run the pipeline first, then do what 'report' does"),
    ):
        command = _command(sub, name, text)
        _report_options(command, pipeline=True)

    compare = sub.add_parser(
        "diff",
        help="compare two revisions exactly, as `dvc metrics diff A B` does (writes the report locally)",
        description="Compare the results of exactly revision A (no merge-base) with exactly revision B, or with "
        "the workspace: recorded results of that commit, else its committed files (and DVC's cache). The report "
        "is written locally; nothing is posted or recorded.",
    )
    compare.add_argument("a_rev", metavar="A", help="the baseline: a branch, tag or commit, taken as is")
    compare.add_argument("b_rev", metavar="B", nargs="?", help="the revision compared with A (default: the workspace)")
    _common(compare)
    compare.add_argument("--out", type=Path, help="report folder (default: cml-bot-report in the repo)")
    compare.add_argument("--junit", type=Path, help="write the gates as JUnit XML to this file")
    _verdict_options(compare)

    record = _command(sub, "record", "store this commit's results as a baseline for later pull requests")
    _common(record)

    merge = _command(sub, "merge", "post ONE report comparing the shards of a matrix with the baseline")
    merge.add_argument("shards", nargs="+", type=Path, metavar="SHARD_DIR", help="folders written with --shard")
    _report_options(merge, pipeline=False)

    pull = _command(sub, "pull", "pull pinned data (or `dvc pull` in a DVC repo)")
    _common(pull)

    data = _command(sub, "data", "manage pinned data entries in cml-bot.yaml")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    add = _command(data_sub, "add", "hash a local file and pin it with its source URL")
    add.add_argument("path", help="the file, relative to the repo")
    add.add_argument("--url", required=True, help="where CI downloads it from (https, http, file, s3, gs)")
    _common(add)

    publish = sub.add_parser(
        "publish",
        help="judge and post a bundle saved by a step or job that could not post (fork PRs, --no-post)",
        description="Post the results saved in a bundle. The bundle is data: the baseline, config, thresholds, "
        "run URL, repository and comment mode come from this side; it posts only on the pull/merge request "
        "whose head the forge says is --head-sha.",
    )
    publish.add_argument("--bundle", type=Path, required=True, help="the bundle folder")
    publish.add_argument(
        "--head-sha",
        help="the commit the bundle must be for (required in CI; e.g. github.event.workflow_run.head_sha)",
    )
    _publishing_options(publish)
    return parser


def _command(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, text: str) -> argparse.ArgumentParser:
    """A subcommand whose one-line ``text`` shows both in ``cml-bot --help`` and in its own ``--help``."""
    return sub.add_parser(name, help=text, description=text)


def _common(command: argparse.ArgumentParser) -> None:
    command.add_argument("-C", "--directory", type=Path, default=Path("."), help="the repo (default: .)")
    command.add_argument("--config", type=Path, help="config file (default: cml-bot.yaml in the repo)")
    # Also after the command (CML_BOT_ARGS=--verbose); SUPPRESS keeps the top-level value otherwise.
    command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log details")


def _publishing_options(command: argparse.ArgumentParser) -> None:
    """Options of every command that may post a report."""
    _common(command)
    command.add_argument("--out", type=Path, help="report folder (default: cml-bot-report in the repo)")
    command.add_argument(
        "--mode",
        choices=["update", "new", "recreate"],
        default="update",
        help="update the sticky comment in place (default), add a new one, or delete and re-add it",
    )
    _verdict_options(command)
    command.add_argument("--junit", type=Path, help="write the gates as JUnit XML to this file")


def _verdict_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--fail-on-regression", action="store_true", help="exit 1 when a threshold fails")
    command.add_argument(
        "--fail-on-inconclusive",
        action="store_true",
        help="exit 1 when a gate's worsening exceeds its threshold but is not significant (default: exit 0)",
    )


def _verdict_exit(outcome: Outcome, args: argparse.Namespace) -> int:
    """The exit code a finished run's verdict asks for under the --fail-on-* options."""
    verdict = outcome.verdict.value
    if verdict == "failed":
        return EXIT_FAILED
    if verdict == "regressed" and args.fail_on_regression:
        return EXIT_FAILED
    if verdict == "inconclusive" and args.fail_on_inconclusive:
        return EXIT_FAILED
    return EXIT_OK


def _report_options(command: argparse.ArgumentParser, pipeline: bool) -> None:
    _publishing_options(command)
    command.add_argument("--dry-run", action="store_true", help="write the report locally; post nothing")
    command.add_argument(
        "--no-post",
        dest="post",
        action="store_false",
        help="post nothing; save a bundle for `cml-bot publish` in a later step that holds the token "
        "(so the training never runs next to the token)",
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
    record.add_argument(
        "--no-record",
        dest="record",
        action="store_false",
        help="do not store this commit's results, even on the baseline branch",
    )


# How the forge client waits between retries; main() sets it (tests pass a no-op).
_SLEEP: contextvars.ContextVar[Callable[[float], None]] = contextvars.ContextVar("sleep", default=time.sleep)


def main(
    argv: Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    console: Console | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Entry point; returns the exit code (the console script exits with it)."""
    _SLEEP.set(sleep)
    console = console or Console()
    environ = dict(os.environ if env is None else env)
    secrets = Secrets.from_env(environ)
    console.secrets = secrets
    console.github_actions = environ.get("GITHUB_ACTIONS") == "true"
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if not arguments:
        # Bare `cml-bot` asks what the tool does, it is not a mistake: show the help and exit 0, as
        # pip, gh, docker and cargo do (argparse alone would print an error and exit 2).
        console.text(parser.format_help())
        return EXIT_OK
    shown, usage = io.StringIO(), io.StringIO()
    try:
        # argparse's help and errors quote arguments: through the gate, and the console's streams
        with contextlib.redirect_stdout(shown), contextlib.redirect_stderr(usage):
            args = parser.parse_args(arguments)
    except SystemExit as exc:  # --help, --version, or a usage error argparse already explained
        console.text(shown.getvalue())
        for line in usage.getvalue().splitlines():
            console.warn(line)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    handler = _ConsoleHandler(console)
    handler.setFormatter(logging.Formatter("cml-bot: %(message)s"))
    handler.addFilter(ScrubFilter(secrets))
    handler.setLevel(logging.INFO if args.verbose else logging.WARNING)
    root, ours = logging.getLogger(), logging.getLogger("cml_bot")
    previous = ours.level
    root.addHandler(handler)
    ours.setLevel(logging.INFO if args.verbose else logging.WARNING)
    try:
        return _dispatch(args, arguments, environ, console)
    finally:
        root.removeHandler(handler)
        ours.setLevel(previous)


def _dispatch(args: argparse.Namespace, argv: Sequence[str], environ: Mapping[str, str], console: Console) -> int:
    """Run the command; every failure becomes one line and an exit code, never a traceback."""
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
        "diff": _diff,
    }
    try:
        _check_paths(args)
        return commands[args.command](args, environ, console)
    except CmlBotError as exc:
        console.warn(f"cml-bot: error: {exc}")
        console.command("error", str(exc), title="cml-bot")
        return exc.exit_code
    except KeyboardInterrupt:
        console.warn("cml-bot: interrupted")
        return 130
    except Exception as exc:  # a bug, or the environment failing under us: one line and a log
        from cml_bot.crash import disk_error, write_crash_log

        disk = disk_error(exc)
        if disk is not None:
            console.warn(f"cml-bot: error: {disk}")
            console.command("error", disk, title="cml-bot")
            return EXIT_USAGE
        what = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        try:
            where = f"details in {write_crash_log(exc, argv, environ, console.secrets)}"
        except OSError as log_error:
            where = f"the details could not be written ({log_error.strerror or log_error})"
        console.warn(f"cml-bot: internal error: {what}; {where} (please report it)")
        console.command("error", f"internal error: {what}", title="cml-bot")
        return EXIT_INTERNAL


def _check_paths(args: argparse.Namespace) -> None:
    """The folders and files named on the command line, checked before anything runs: a typo in
    ``-C`` or ``--out`` is a one-line error now, not a crash after the training."""
    from cml_bot.errors import InputError
    from cml_bot.files import file_in_the_way, folder_problem
    from cml_bot.forges.local import ReportFolder

    directory: Path | None = getattr(args, "directory", None)
    problem = folder_problem(directory) if directory is not None else None
    if problem is not None:
        raise InputError(f"-C {directory}: {problem}")
    out: Path | None = getattr(args, "out", None)
    if out is not None:
        ReportFolder.check(out)
    junit: Path | None = getattr(args, "junit", None)
    if junit is not None and junit.is_dir():
        raise InputError(f"--junit {junit}: is a folder; give a file name (e.g. {junit / 'junit.xml'})")
    blocking = file_in_the_way(junit.parent) if junit is not None else None
    if blocking is not None:
        raise InputError(f"--junit {junit}: {blocking} is a file, not a folder")


def _report(args: argparse.Namespace, env: Mapping[str, str], console: Console) -> int:
    from cml_bot.app import Effects, Options, merge, run
    from cml_bot.forges.base import CommentMode

    options = Options(
        root=args.directory,
        run_pipeline=args.command == "run",
        config_path=args.config,
        dry_run=args.dry_run,
        post=args.post,
        report_dir=args.out,
        bundle_dir=args.bundle_dir,
        mode=CommentMode(args.mode),
        baseline_file=args.baseline,
        base_rev=args.base,
        junit=args.junit,
        record=getattr(args, "record", None),
        shard=getattr(args, "shard", None),
    )
    effects = Effects(
        env=env, echo=console.say, progress=console.progress, transfer=console.transfer, sleep=_SLEEP.get()
    )
    outcome = merge(args.shards, options, effects) if args.command == "merge" else run(options, effects)
    _show(outcome, env, console)
    if outcome.bundle_dir is not None and args.fail_if_not_posted:
        return EXIT_FAILED
    return _verdict_exit(outcome, args)


def _diff(args: argparse.Namespace, env: Mapping[str, str], console: Console) -> int:
    from cml_bot.app import Effects, Options, run

    options = Options(
        root=args.directory,
        config_path=args.config,
        dry_run=True,
        report_dir=args.out,
        junit=args.junit,
        record=False,
        compare=(args.a_rev, args.b_rev),
    )
    outcome = run(options, Effects(env=env, echo=console.say))
    _show(outcome, env, console)
    return _verdict_exit(outcome, args)


def _show(outcome: Outcome, env: Mapping[str, str], console: Console) -> None:
    for warning in outcome.report.warnings:
        console.warn(f"cml-bot: warning: {warning}")  # the console scrubs every line
    console.say(f"cml-bot: {outcome.summary}")
    for notice in outcome.notices:
        console.say(f"cml-bot: {notice}")
    if outcome.destination == "shard":
        return
    report_file = outcome.report_dir / "report.md"
    console.say(f"cml-bot: report written to {report_file} (preview: {outcome.report_dir / 'index.html'})")
    if outcome.publication is not None and outcome.publication.comment_url:
        action = "posted" if outcome.publication.created else "updated"
        console.say(f"cml-bot: comment {action}: {outcome.publication.comment_url}")
    if env.get("GITHUB_ACTIONS") == "true":
        from cml_bot.markdown import one_line

        for metric in outcome.report.diff.regressions:
            message = one_line(f"{metric.name} " + "; ".join(metric.failures))
            console.command("error", message, title="cml-bot regression")
        for metric in outcome.report.diff.metrics:
            if metric.improved is False and not metric.failures:
                console.command("warning", one_line(f"{metric.name} got worse"), title="cml-bot")
            if metric.inconclusive and not metric.failures:
                message = f"{metric.name} " + "; ".join(metric.inconclusive)
                console.command("warning", one_line(message), title="cml-bot inconclusive")
        _write_outputs(
            env,
            console.secrets,
            {
                "verdict": outcome.verdict.value,
                "report-path": str(report_file),
                "comment-url": (outcome.publication.comment_url if outcome.publication else None) or "",
            },
        )


def _write_outputs(env: Mapping[str, str], secrets: Secrets, outputs: Mapping[str, str]) -> None:
    """Append step outputs to ``$GITHUB_OUTPUT``, each with a random delimiter (values may hold
    anything, newlines included), scrubbed of secrets."""
    path = env.get("GITHUB_OUTPUT")
    if not path:
        return
    entries = "".join(workflow.output_entry(key, secrets.scrub(value)) for key, value in outputs.items())
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(entries)


def _demo(args: argparse.Namespace, env: Mapping[str, str], console: Console) -> int:
    from cml_bot.demo import run_demo

    outcome = run_demo(out=args.out, workdir=args.workdir, echo=console.say)
    console.say(f"cml-bot: demo {outcome.summary}")
    console.say(f"cml-bot: demo report: {outcome.report_dir / 'report.md'}")
    console.say(f"cml-bot: open {outcome.report_dir / 'index.html'} in a browser to preview the comment")
    return EXIT_OK


def _record(args: argparse.Namespace, env: Mapping[str, str], console: Console) -> int:
    from cml_bot.app import Effects, Options, record

    outcome = record(
        Options(root=args.directory, config_path=args.config), Effects(env=env, echo=console.say, sleep=_SLEEP.get())
    )
    console.say(f"cml-bot: {outcome.summary} in {outcome.recorded or '?'}")
    return EXIT_OK


def _pull(args: argparse.Namespace, env: Mapping[str, str], console: Console) -> int:
    from cml_bot import data
    from cml_bot.config import load_config

    config = load_config(args.directory, args.config)
    if config.data.files:
        result = data.pull(config, progress=console.progress, transfer=console.transfer)
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
    from cml_bot.forges.base import CommentMode

    options = Options(
        root=args.directory, config_path=args.config, report_dir=args.out, mode=CommentMode(args.mode), junit=args.junit
    )
    outcome = publish_bundle(
        args.bundle, options, Effects(env=env, echo=console.say, sleep=_SLEEP.get()), head_sha=args.head_sha
    )
    _show(outcome, env, console)
    return _verdict_exit(outcome, args)
