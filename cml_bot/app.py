"""One run of cml-bot: pull -> train -> collect -> diff against the baseline -> render -> publish.

Everything external arrives in :class:`Effects` (environment, clock, output, git, forge factory), so
tests drive the real code with fakes only at the boundary (a fake GitHub/GitLab server, a temp git
repo). Nothing here prints or exits: the CLI shows the :class:`Outcome`.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cml_bot.baseline import Baseline, ResultStore, resolve_baseline, trend_history
from cml_bot.bundle import SavedRun, load_run, save_run
from cml_bot.config import Config, load_config
from cml_bot.context import CiContext, detect
from cml_bot.diff import Diff, numeric
from cml_bot.errors import CmlBotError, ForgeError, InputError, ReadOnlyTokenError
from cml_bot.forges.base import CommentMode, Forge, Publication
from cml_bot.forges.local import LocalForge, prepare_folder
from cml_bot.git import Git, Runner, run_git
from cml_bot.junit import junit_xml
from cml_bot.metrics import read_all
from cml_bot.model import Image, Verdict
from cml_bot.report import PlotEntry, Report, RunFacts, Shard, render_markdown, verdict_summary
from cml_bot.results import LocalStore, RunResults, atomic_write
from cml_bot.secrets import without_tokens
from cml_bot.verdicts import FLIPS_FILE, PredictionReport, judge

if TYPE_CHECKING:
    from cml_bot.data import DataChange
    from cml_bot.pipeline import PipelineResult

log = logging.getLogger(__name__)

DEFAULT_REPORT_DIR = "cml-bot-report"
DEFAULT_BUNDLE_DIR = "cml-bot-bundle"
DEFAULT_SHARDS_DIR = "cml-bot-shards"
RECORDS_DIR = ".cml-bot/records"
SUMMARY_LIMIT = 1_000_000  # GITHUB_STEP_SUMMARY takes 1 MiB; leave room for multi-byte characters


class ForgeFactory(Protocol):
    def __call__(
        self,
        context: CiContext,
        env: Mapping[str, str],
        *,
        change_number: int | None = None,
        head_sha: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Forge: ...


def default_forge_factory(
    context: CiContext,
    env: Mapping[str, str],
    *,
    change_number: int | None = None,
    head_sha: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Forge:
    """The real adapters, imported only when needed (PyGithub and python-gitlab load slowly)."""
    if context.platform == "github":
        from cml_bot.forges.github import github_forge

        return github_forge(context, env, change_number=change_number, head_sha=head_sha, sleep=sleep)
    if context.platform == "gitlab":
        from cml_bot.forges.gitlab import gitlab_forge

        return gitlab_forge(context, env, change_number=change_number, head_sha=head_sha, sleep=sleep)
    raise CmlBotError(f"no forge for platform {context.platform}")


def default_store_factory(
    config: Config, context: CiContext, env: Mapping[str, str], *, sleep: Callable[[float], None] = time.sleep
) -> ResultStore:
    """Results live in a local folder; on GitHub/GitLab, in the data branch when the adapter has one."""
    if context.platform == "gitlab":
        from cml_bot.forges.gitlab_store import gitlab_store

        try:
            return gitlab_store(context, env, config.data_branch, sleep=sleep)
        except ReadOnlyTokenError as exc:
            log.warning("Recorded results stay in %s: %s", RECORDS_DIR, exc)
    if context.platform == "github":
        from cml_bot.forges.github import github_token

        if github_token(env) and context.repo:
            from cml_bot.forges.github_store import github_store

            return github_store(context, env, config.data_branch, sleep=sleep)
        log.warning("Recorded results stay in %s: no GitHub token (CML_BOT_TOKEN or GITHUB_TOKEN)", RECORDS_DIR)
    return LocalStore(config.root / RECORDS_DIR)


class StoreFactory(Protocol):
    def __call__(
        self, config: Config, context: CiContext, env: Mapping[str, str], *, sleep: Callable[[float], None] = ...
    ) -> ResultStore: ...


@dataclass(frozen=True)
class Effects:
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    echo: Callable[[str], None] = lambda line: None  # live output of the pipeline and of dvc
    progress: Callable[[str], None] = lambda line: None  # one line per pulled file (redrawn on a terminal)
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep  # retry backoff of the forge adapters
    git_runner: Runner = run_git
    forge_factory: ForgeFactory = default_forge_factory
    store_factory: StoreFactory = default_store_factory
    event: Mapping[str, Any] | None = None  # GitHub event payload; None: read GITHUB_EVENT_PATH


@dataclass(frozen=True)
class Options:
    root: Path
    run_pipeline: bool = False  # `run`: pull data and run the pipeline first
    config_path: Path | None = None
    dry_run: bool = False
    report_dir: Path | None = None
    bundle_dir: Path | None = None
    mode: CommentMode = CommentMode.UPDATE
    baseline_file: Path | None = None
    base_rev: str | None = None
    junit: Path | None = None
    record: bool | None = None  # None: record when running on the baseline branch outside a PR
    shard: str | None = None  # a matrix job: save a shard bundle for `cml-bot merge` instead of posting
    may_bundle: bool = True  # on a read-only token, save a bundle (False: fail, as `publish` must)
    verify_head: str | None = None  # refuse to post unless the PR/MR head is this commit


@dataclass(frozen=True)
class Outcome:
    report: Report
    verdict: Verdict
    summary: str
    report_dir: Path
    destination: str  # "github" | "gitlab" | "local"
    publication: Publication | None = None
    bundle_dir: Path | None = None
    notices: tuple[str, ...] = ()  # what the user should know, one line each
    recorded: str | None = None


# --- collecting ---------------------------------------------------------------------------------


def collect_results(config: Config, sha: str | None, missing_ok: bool) -> RunResults:
    """This workspace's metrics, params and plot files."""
    metrics = read_all(config.root, config.metrics, missing_ok=missing_ok)
    params = read_all(config.root, config.params, missing_ok=True)
    files = {}
    root = config.root.resolve()
    # Per-example predictions ride with the plot files: recorded with main's results, read at the base.
    predictions = [config.predictions.path] if config.predictions is not None else []
    for relative in [spec.path for spec in config.plots] + predictions:
        path = config.root / relative
        if not path.is_file():
            continue
        if not path.resolve().is_relative_to(root):  # a symlink committed by a PR
            raise InputError(f"{relative}: points outside the repository (symlink); refusing to read it")
        files[relative] = path.read_bytes()
    return RunResults(sha=sha, metrics=metrics, params=params, files=files)


def render_plots(
    config: Config, head: RunResults, base: RunResults | None, base_label: str
) -> tuple[tuple[PlotEntry, ...], tuple[Image, ...]]:
    return start_plots(config, head, base, base_label)()


def start_plots(
    config: Config, head: RunResults, base: RunResults | None, base_label: str
) -> Callable[[], tuple[tuple[PlotEntry, ...], tuple[Image, ...]]]:
    """Start drawing the plots (in forked workers where possible); the returned function waits for
    them. The run judges the change meanwhile instead of idling while the workers draw."""
    if not config.plots:
        return lambda: ((), ())
    from cml_bot import plots  # matplotlib and pandas load only when there is something to draw

    entries: list[PlotEntry | None] = []
    jobs: list[tuple[int, str, plots.PlotJob]] = []  # (entry index, title, job)
    for number, spec in enumerate(config.plots, start=1):
        title = spec.title or spec.path
        head_data = head.files.get(spec.path)
        if head_data is None:
            entries.append(PlotEntry(title, note=f"{spec.path} was not produced by this change"))
            continue
        base_data = base.files.get(spec.path) if base is not None else None
        name = f"plot-{number:02d}-{plots.safe_name(title)}"
        jobs.append((len(entries), title, plots.PlotJob(spec, head_data, base_data, name, base_label)))
        entries.append(None)
    pending = plots.start_render_all([j for _, _, j in jobs])

    def finish() -> tuple[tuple[PlotEntry, ...], tuple[Image, ...]]:
        images: list[Image] = []
        for (index, title, job), rendered in zip(jobs, pending(), strict=True):
            if isinstance(rendered, str):
                entries[index] = PlotEntry(title, note=f"could not draw: {rendered}")
                continue
            images.extend(rendered)
            note = None if base is None or job.base is not None else f"not in {base_label}: this change only"
            entries[index] = PlotEntry(title, tuple(image.name for image in rendered), note)
        return tuple(entry for entry in entries if entry is not None), tuple(images)

    return finish


# --- the run ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    """Everything a run knows before it renders: inputs to a report or to a shard bundle."""

    config: Config
    context: CiContext
    head: RunResults
    baseline: Baseline
    pipeline: PipelineResult | None
    facts: RunFacts
    history: tuple[RunResults, ...] = ()  # recorded base-branch commits for the trend, oldest first
    data_changes: tuple[DataChange, ...] = ()
    store: ResultStore | None = None  # where this run's results are recorded, made once per run
    notes: tuple[str, ...] = ()  # for the reader of the report


def evaluate(options: Options, effects: Effects) -> Evaluation:
    """Pull, train (for ``run``), collect this workspace's results and find the baseline."""
    started = effects.clock()
    config = load_config(options.root, options.config_path)
    context = detect(effects.env, effects.event)
    git = Git(config.root, effects.git_runner)
    head_sha = context.head_sha or git.rev("HEAD")
    head_ref = context.head_ref or git.current_branch()

    pipeline_result: PipelineResult | None = None
    if options.run_pipeline:
        pipeline_result = pull_and_train(config, effects)
    head = collect_results(config, head_sha, missing_ok=pipeline_result is not None and not pipeline_result.ok)

    store = effects.store_factory(config, context, effects.env, sleep=effects.sleep)
    given_sha = context.base_sha or _github_merge_base(options, effects, context, git)
    notes: list[str] = []

    def find_baseline(source: ResultStore) -> Baseline:
        return resolve_baseline(
            config,
            git,
            source,
            head_sha,
            branch=context.base_ref,
            given_sha=given_sha,
            base_rev=options.base_rev,
            explicit_file=options.baseline_file,
        )

    try:
        baseline = find_baseline(store)
        history = trend_history(git, store, baseline.sha, config.trend) if baseline.sha else []
    except ForgeError as exc:
        # The recorded results could not be read: report without them rather than fail the review.
        log.warning("recorded results unavailable: %s", exc)
        notes.append(f"Recorded results could not be read ({exc}); compared without them.")
        baseline, history = find_baseline(_NoRecords()), []
    facts = RunFacts(
        head_sha=head_sha,
        head_ref=head_ref,
        base_sha=baseline.sha,
        base_ref=baseline.ref,
        baseline_source=baseline.source,
        duration=effects.clock() - started,
        run_url=context.job_url or context.run_url,
    )
    changes: tuple[DataChange, ...] = ()
    if config.data.files or config.dvc:
        from cml_bot.data import collect_data_changes

        changes = collect_data_changes(config, git, baseline.sha)
    return Evaluation(
        config, context, head, baseline, pipeline_result, facts, tuple(history), changes, store, tuple(notes)
    )


class _NoRecords:
    """A store with nothing in it, for when the real one cannot be read."""

    def recorded(self) -> set[str]:
        return set()

    def load(self, sha: str) -> RunResults | None:
        return None

    def save(self, results: RunResults) -> str:
        raise ForgeError("recorded results are unavailable in this run")


def _github_merge_base(options: Options, effects: Effects, context: CiContext, git: Git) -> str | None:
    """On a GitHub pull request whose clone cannot tell the merge-base (shallow, or the base branch
    not fetched), GitHub's compare API does; None otherwise (local git decides)."""
    if context.platform != "github" or not context.is_change or not context.base_ref or not context.head_sha:
        return None
    if options.base_rev or options.baseline_file is not None:
        return None
    if git.branch_ref(context.base_ref) is not None and not git.is_shallow():
        return None
    from cml_bot.forges.github_store import github_merge_base

    return github_merge_base(context, effects.env, context.base_ref, context.head_sha, sleep=effects.sleep)


def run(options: Options, effects: Effects) -> Outcome:
    evaluation = evaluate(options, effects)
    if options.shard:
        return save_shard(options, evaluation)
    report, images = build_report(evaluation)
    return publish_report(options, effects, evaluation, report, images)


def build_report(evaluation: Evaluation, draw: bool = True) -> tuple[Report, tuple[Image, ...]]:
    """The report and its images; ``draw=False`` skips the plots (for a verdict alone)."""
    config, head, baseline = evaluation.config, evaluation.head, evaluation.baseline
    base = baseline.results
    base_label = baseline.ref or config.baseline_branch
    plots_drawn = start_plots(config, head, base, base_label) if draw else (lambda: ((), ()))
    try:
        judgement = judge(config, base, head, evaluation.history)
    except BaseException:
        plots_drawn()  # never leave the plot workers behind
        raise
    result = judgement.diff
    # Drawn here, while the plot workers (if any) still draw theirs.
    delta_entry, delta_image = (
        render_confusion_delta(judgement.predictions, base_label)
        if draw and judgement.predictions is not None
        else (PlotEntry(""), None)
    )
    plot_entries, images = plots_drawn()
    if delta_image is not None:
        plot_entries, images = (*plot_entries, delta_entry), (*images, delta_image)
    trend_entry, trend_image = render_trend_plot(evaluation, result) if draw else (PlotEntry(""), None)
    if trend_image is not None:
        plot_entries, images = (*plot_entries, trend_entry), (*images, trend_image)
    report = Report(
        title=config.title,
        report_id=config.report_id,
        diff=result,
        facts=evaluation.facts,
        plots=plot_entries,
        pipeline=evaluation.pipeline,
        data_changes=evaluation.data_changes,
        notes=(*evaluation.notes, *judgement.notes, *_plot_notes(config, head)),
        predictions=judgement.predictions,
        artifacts=judgement.artifacts,
    )
    return report, images


def render_confusion_delta(predictions: PredictionReport, base_label: str) -> tuple[PlotEntry, Image | None]:
    title = "Confusion change (this change minus base)"
    if not predictions.base_confusion:
        return PlotEntry(title), None
    from cml_bot import plots

    image = plots.render_confusion_delta(
        predictions.class_names, predictions.base_confusion, predictions.head_confusion, "confusion-delta", title
    )
    note = f"counts on the {predictions.common:,} common examples; blue: more than at {base_label}, red: fewer"
    return PlotEntry(title, (image.name,), note), image


def headline_metrics(result: Diff, limit: int = 4) -> list[str]:
    """The metrics a trend shows: those with gates, else the first numeric ones."""
    gated = [m.name for m in result.metrics if m.gated and numeric(m.head) is not None]
    if gated:
        return gated[:limit]
    return [m.name for m in result.metrics if numeric(m.head) is not None][:limit]


def render_trend_plot(evaluation: Evaluation, result: Diff) -> tuple[PlotEntry, Image | None]:
    branch = evaluation.baseline.ref or evaluation.config.baseline_branch
    title = f"Trend on {branch}"
    if len(evaluation.history) < 2:
        return PlotEntry(title), None
    names = headline_metrics(result)
    current = {name: value for name in names if (value := numeric(evaluation.head.metrics.get(name))) is not None}
    history = [
        ((results.sha or "?")[:7], {n: v for n in names if (v := numeric(results.metrics.get(n))) is not None})
        for results in evaluation.history
    ]
    if not current:
        return PlotEntry(title), None
    from cml_bot import plots
    from cml_bot.stats.history import history_noise

    shifts: dict[str, tuple[int, ...]] = {}
    bands: dict[str, tuple[int, float, float]] = {}
    for name in current:
        if not all(name in values for _, values in history):
            continue
        noise = history_noise([values[name] for _, values in history])
        if noise is None:
            continue
        shifts[name] = noise.change_points
        if math.isfinite(noise.sigma):  # the level of the last segment ± 2 sigma of one run
            start = noise.change_points[-1] if noise.change_points else 0
            bands[name] = (start, noise.level - 2 * noise.sigma, noise.level + 2 * noise.sigma)
    try:
        image = plots.render_trend(history, current, "trend", title, change_points=shifts, bands=bands)
    except InputError:
        return PlotEntry(title), None
    note = f"the last {len(history)} recorded commits of {branch}, this change at the right"
    if bands:
        note += "; shaded: the usual variation of one run (±2σ)"
    if any(shifts.values()):
        note += "; dashed lines: change points (real shifts on the branch, left out of its noise)"
    return PlotEntry(title, (image.name,), note), image


# --- matrix fan-in: shards and merge --------------------------------------------------------------

SHARD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=-]{0,63}$")


def saved_run(evaluation: Evaluation, mode: CommentMode, shard: str | None = None) -> SavedRun:
    """The evaluation as data, for a bundle or a shard (no rendered text: see cml_bot.bundle)."""
    context, baseline, facts = evaluation.context, evaluation.baseline, evaluation.facts
    return SavedRun(
        platform=context.platform,
        repo=context.repo,
        change_number=context.change_number,
        head_sha=facts.head_sha,
        head_ref=facts.head_ref,
        run_url=facts.run_url,
        mode=mode.value,
        shard=shard,
        head=evaluation.head,
        base=baseline.results,
        baseline_sha=baseline.sha,
        baseline_ref=baseline.ref,
        baseline_source=baseline.source,
        pipeline=evaluation.pipeline,
        data_changes=evaluation.data_changes,
        history=evaluation.history,
        duration=facts.duration,
    )


def evaluation_from(run: SavedRun, config: Config, context: CiContext) -> Evaluation:
    """Rebuild an evaluation from saved data, to be judged with ``config`` (the trusted side's)."""
    baseline = Baseline(run.base, run.baseline_sha, run.baseline_ref, run.baseline_source)
    facts = RunFacts(
        head_sha=run.head_sha,
        head_ref=run.head_ref,
        base_sha=run.baseline_sha,
        base_ref=run.baseline_ref,
        baseline_source=run.baseline_source,
        duration=run.duration,
        run_url=run.run_url,
    )
    return Evaluation(config, context, run.head, baseline, run.pipeline, facts, run.history, run.data_changes)


def save_shard(options: Options, evaluation: Evaluation) -> Outcome:
    """Write this job's results and baseline for ``cml-bot merge``; post nothing."""
    name = options.shard or ""
    if not SHARD_NAME.match(name):
        raise InputError(f"--shard {name!r}: use letters, digits, '.', '_', '=', '-' (at most 64)")
    folder = (options.bundle_dir or evaluation.config.root / DEFAULT_SHARDS_DIR) / name
    save_run(folder, saved_run(evaluation, options.mode, shard=name))
    report, _ = build_report(evaluation, draw=False)
    return Outcome(
        report=report,
        verdict=report.verdict,
        summary=f"shard {name}: {verdict_summary(report)}",
        report_dir=folder,
        destination="shard",
        notices=(f"shard saved to {folder}: run `cml-bot merge` on all shard folders to post one report",),
    )


def merge(folders: Sequence[Path], options: Options, effects: Effects) -> Outcome:
    """One report comparing every shard of a matrix with the baseline, posted once."""
    if not folders:
        raise InputError("merge: name at least one shard folder")
    config = load_config(options.root, options.config_path)
    context = detect(effects.env, effects.event)
    shards: list[Shard] = []
    runs: list[SavedRun] = []
    for folder in folders:
        run = load_run(folder)
        if not run.shard or not SHARD_NAME.match(run.shard):
            raise InputError(f"{folder}: not a shard (saved without --shard)")
        if run.shard in {r.shard for r in runs}:
            raise InputError(f"{folder}: shard {run.shard} appears twice")
        runs.append(run)
        result = judge(config, run.base, run.head, run.history).diff
        failed = run.pipeline.failed_step if run.pipeline is not None else None
        shards.append(Shard(run.shard, result, failed.name if failed else None))
    evaluation = evaluation_from(runs[0], config, context)
    report = Report(
        title=config.title,
        report_id=config.report_id,
        diff=shards[0].diff,
        facts=replace(evaluation.facts, head_ref=context.head_ref or evaluation.facts.head_ref, duration=None),
        shards=tuple(shards),
    )
    return publish_report(replace(options, record=False), effects, evaluation, report, ())


def record(options: Options, effects: Effects) -> Outcome:
    """Store this commit's results (run on pushes to the baseline branch)."""
    evaluation = evaluate(replace(options, base_rev=None), effects)
    if not evaluation.head.sha:
        raise InputError("record: this directory has no commit to record results for")
    if not evaluation.head.metrics:
        raise InputError("record: no metrics found; run the pipeline first or check `metrics:` in the config")
    assert evaluation.store is not None
    where = evaluation.store.save(evaluation.head)
    report, _ = build_report(evaluation, draw=False)
    return Outcome(
        report=report,
        verdict=report.verdict,
        summary=f"recorded {len(evaluation.head.metrics)} metrics for {evaluation.head.sha[:10]}",
        report_dir=options.report_dir or evaluation.config.root / DEFAULT_REPORT_DIR,
        destination="store",
        recorded=where,
    )


def pull_and_train(config: Config, effects: Effects) -> PipelineResult:
    from cml_bot import data, pipeline

    if config.data.files:
        data.pull(config, progress=effects.progress)
    elif config.dvc and data.is_dvc_repo(config.root):
        data.dvc_pull(config.root, effects.echo)
    # The project's own commands never see cml-bot's write token.
    return pipeline.run_pipeline(
        config.pipeline, config.root, env=without_tokens(effects.env), echo=effects.echo, clock=effects.clock
    )


def _plot_notes(config: Config, head: RunResults) -> tuple[str, ...]:
    if config.metrics or head.metrics:
        return ()
    return ("No metrics files are configured: add `metrics:` to cml-bot.yaml or dvc.yaml.",)


def publish_report(
    options: Options, effects: Effects, evaluation: Evaluation, report: Report, images: tuple[Image, ...]
) -> Outcome:
    config, context, head = evaluation.config, evaluation.context, evaluation.head
    report_dir = options.report_dir or config.root / DEFAULT_REPORT_DIR
    prepare_folder(report_dir)
    local = LocalForge(report_dir, config.title)
    local_urls = local.upload_images(images)
    (report_dir / FLIPS_FILE).unlink(missing_ok=True)  # an earlier run's list must not look current
    for artifact in report.artifacts:  # files beside the report (e.g. all prediction flips), never posted
        atomic_write(report_dir / artifact.name, artifact.data)
    full = render_markdown(report, local_urls)
    local.upsert_comment(full, report.marker, options.mode)
    notices: list[str] = []
    summary = verdict_summary(report)
    if options.junit is not None:
        atomic_write(options.junit, junit_xml(report).encode("utf-8"))

    recorded = None
    if _should_record(options, context, config, head):
        store = evaluation.store or effects.store_factory(config, context, effects.env, sleep=effects.sleep)
        recorded = store.save(head)
        notices.append(f"recorded this commit's results for later comparisons: {recorded}")

    outcome = Outcome(
        report=report,
        verdict=report.verdict,
        summary=summary,
        report_dir=report_dir,
        destination="local",
        recorded=recorded,
    )
    if options.dry_run or context.platform == "local":
        if context.platform != "local":
            notices.append("dry run: nothing posted")
        return replace(outcome, notices=tuple(notices))

    forge = effects.forge_factory(context, effects.env, sleep=effects.sleep)
    if options.verify_head is not None:
        verify = getattr(forge, "verify_change_head", None)
        if verify is None:
            raise CmlBotError(f"{context.platform}: cannot check which commit the merge request is at")
        verify(options.verify_head)
    try:
        urls = forge.upload_images(images)
        body = render_markdown(report, urls, limit=forge.comment_limit)
        publication = forge.upsert_comment(body, report.marker, options.mode)
    except ReadOnlyTokenError as exc:
        if not options.may_bundle:
            raise
        bundle_dir = options.bundle_dir or config.root / DEFAULT_BUNDLE_DIR
        save_run(bundle_dir, saved_run(evaluation, options.mode))
        notices.append(f"{exc}")
        notices.append(f"report saved for a trusted workflow to post: cml-bot publish --bundle {bundle_dir}")
        _write_summary(effects.env, render_markdown(report, {}, limit=SUMMARY_LIMIT))
        return replace(outcome, destination=context.platform, bundle_dir=bundle_dir, notices=tuple(notices))
    try:
        forge.set_status(report.verdict, summary, context.run_url)
    except ReadOnlyTokenError as exc:
        notices.append(f"commit status not set: {exc}")
    if publication.comment_url is None:
        notices.append("no pull request for this commit: the report is in the job summary only")
    _write_summary(effects.env, render_markdown(report, urls, limit=SUMMARY_LIMIT))
    return replace(outcome, destination=context.platform, publication=publication, notices=tuple(notices))


def _should_record(options: Options, context: CiContext, config: Config, head: RunResults) -> bool:
    if options.record is not None:
        return options.record
    if context.is_change or not head.sha or not head.metrics:
        return False
    branch = context.head_ref if context.platform != "local" else Git(config.root).current_branch()
    return branch == config.baseline_branch


def _write_summary(env: Mapping[str, str], body: str) -> None:
    path = env.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    data = body.encode("utf-8")
    if len(data) > 1024 * 1024:
        data = b"cml-bot: the report is larger than the job summary allows; see the report artifact.\n"
    with open(path, "ab") as handle:
        handle.write(data)


# --- publishing a saved bundle --------------------------------------------------------------------


def publish_bundle(folder: Path, options: Options, effects: Effects, expected_head_sha: str | None = None) -> Outcome:
    """Report a bundle saved by a run whose token could not write (fork PRs), with this checkout's
    config and thresholds: the bundle's data is re-rendered and escaped here, never posted as is."""
    run = load_run(folder)
    if run.shard:
        raise InputError(f"{folder}: this is a matrix shard; post shards with `cml-bot merge`")
    if run.platform not in ("github", "gitlab"):
        raise InputError(f"{folder}: bundle for platform {run.platform!r} cannot be published")
    if not run.head_sha:
        raise InputError(f"{folder}: bundle names no commit; refusing to post")
    if expected_head_sha and run.head_sha != expected_head_sha:
        raise InputError(
            f"{folder}: bundle is for commit {str(run.head_sha)[:10]}, not {expected_head_sha[:10]}; refusing to post"
        )
    try:
        mode = CommentMode(run.mode)
    except ValueError:
        raise InputError(f"{folder}: bundle has an unknown comment mode {run.mode!r}") from None
    config = load_config(options.root, options.config_path)
    here = detect(effects.env, effects.event)
    context = CiContext(
        platform=run.platform,  # type: ignore[arg-type]  # checked above
        repo=here.repo or run.repo,
        api_url=here.api_url,
        server_url=here.server_url,
        change_number=run.change_number,
        head_sha=run.head_sha,
        head_ref=run.head_ref,
        base_ref=run.baseline_ref,
        run_url=run.run_url,
    )
    evaluation = evaluation_from(run, config, context)
    report, images = build_report(evaluation)
    publish_options = replace(
        options, mode=mode, record=False, dry_run=False, may_bundle=False, verify_head=run.head_sha
    )
    return publish_report(publish_options, effects, evaluation, report, images)
