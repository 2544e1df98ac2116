"""One run of cml-bot: pull -> train -> collect -> diff against the baseline -> render -> deliver.

Platform-agnostic: everything external arrives in :class:`Effects` (environment, clock, output,
git, the forge connector), and what a run does is decided by the pure :func:`cml_bot.plan.plan`.
Tests drive the real code with fakes only at the boundary (fake GitHub/GitLab servers, temp git
repositories). Nothing here prints or exits: the CLI shows the :class:`Outcome`.
"""

from __future__ import annotations

import logging
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
from cml_bot.diff import Diff, diff, numeric
from cml_bot.errors import ForgeError, InputError, ReadOnlyTokenError
from cml_bot.files import FILE_LIMIT_SETTING, read_limited
from cml_bot.forges.sticky import CommentMode, Publication
from cml_bot.git import Git, Runner, run_git
from cml_bot.junit import junit_xml
from cml_bot.metrics import read_all
from cml_bot.model import Image, Verdict
from cml_bot.plan import Access, access_for, plan
from cml_bot.plan import Request as Asked
from cml_bot.report import PlotEntry, Report, RunFacts, Shard, marker_for, render_markdown, verdict_summary
from cml_bot.results import LocalStore, RunResults, atomic_write
from cml_bot.secrets import Secrets, without_tokens

if TYPE_CHECKING:
    from cml_bot.data import DataChange
    from cml_bot.forges.base import Forge
    from cml_bot.pipeline import PipelineResult

log = logging.getLogger(__name__)

DEFAULT_REPORT_DIR = "cml-bot-report"
DEFAULT_BUNDLE_DIR = "cml-bot-bundle"
DEFAULT_SHARDS_DIR = "cml-bot-shards"
RECORDS_DIR = ".cml-bot/records"
SUMMARY_LIMIT = 1_000_000  # GITHUB_STEP_SUMMARY takes 1 MiB; leave room for multi-byte characters


class ForgeFactory(Protocol):
    def __call__(self, context: CiContext, env: Mapping[str, str], *, sleep: Callable[[float], None]) -> Forge: ...


class StoreFactory(Protocol):
    def __call__(
        self, config: Config, context: CiContext, env: Mapping[str, str], *, sleep: Callable[[float], None] = ...
    ) -> ResultStore: ...


def connect_forge(context: CiContext, env: Mapping[str, str], *, sleep: Callable[[float], None]) -> Forge:
    """The real drivers, imported only when a run talks to a forge."""
    from cml_bot.forges import connect

    return connect(context, env, sleep=sleep)


def token_kind(context: CiContext, env: Mapping[str, str]) -> str:
    """ "write", "read" (GitLab's job token) or "none": what the configured token is meant for."""
    if context.platform == "github":
        from cml_bot.forges.github import github_token

        return "write" if github_token(env) else "none"
    if context.platform == "gitlab":
        from cml_bot.forges.gitlab import token_from_env

        kind = token_from_env(env)[1]
        return {"private": "write", "job": "read"}.get(kind, "none")
    if context.platform == "bitbucket":
        from cml_bot.forges.bitbucket import bitbucket_token

        return "write" if bitbucket_token(env) else "none"
    return "none"


def default_store_factory(
    config: Config, context: CiContext, env: Mapping[str, str], *, sleep: Callable[[float], None] = time.sleep
) -> ResultStore:
    """Results live in the forge's data branch when a token can read it, else in a local folder."""
    if context.platform in ("github", "gitlab", "bitbucket") and token_kind(context, env) != "none":
        return connect_forge(context, env, sleep=sleep).result_store(config.data_branch)
    if context.platform != "local":
        log.warning("Recorded results stay in %s: no token to read the %s data branch", RECORDS_DIR, context.platform)
    return LocalStore(config.root / RECORDS_DIR)


@dataclass(frozen=True)
class Effects:
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    echo: Callable[[str], None] = lambda line: None  # live output of the pipeline and of dvc
    progress: Callable[[str], None] = lambda line: None  # one line per pulled file (redrawn on a terminal)
    transfer: Callable[[str, int, int | None], None] = lambda path, received, size: None  # bytes of a download
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep  # retry backoff of the forge client
    git_runner: Runner = run_git
    forge_factory: ForgeFactory = connect_forge
    store_factory: StoreFactory = default_store_factory
    event: Mapping[str, Any] | None = None  # GitHub event payload; None: read GITHUB_EVENT_PATH


@dataclass(frozen=True)
class Options:
    root: Path
    run_pipeline: bool = False  # `run`: pull data and run the pipeline first
    config_path: Path | None = None
    dry_run: bool = False
    post: bool = True  # False (`--no-post`): save a bundle for `cml-bot publish` in a step with the token
    report_dir: Path | None = None
    bundle_dir: Path | None = None
    mode: CommentMode = CommentMode.UPDATE
    baseline_file: Path | None = None
    base_rev: str | None = None
    junit: Path | None = None
    record: bool | None = None  # None: record when running on the baseline branch outside a PR
    shard: str | None = None  # a matrix job: save a shard bundle for `cml-bot merge` instead of posting


@dataclass(frozen=True)
class Outcome:
    report: Report
    verdict: Verdict
    summary: str
    report_dir: Path
    destination: str  # "github" | "gitlab" | "local" | "shard" | "store"
    publication: Publication | None = None
    bundle_dir: Path | None = None
    notices: tuple[str, ...] = ()  # what the user should know, one line each
    recorded: str | None = None


# --- collecting ---------------------------------------------------------------------------------


def collect_results(config: Config, sha: str | None, missing_ok: bool) -> RunResults:
    """This workspace's metrics, params and plot files."""
    limits = config.limits
    metrics = read_all(
        config.root, config.metrics, missing_ok=missing_ok, max_bytes=limits.file_bytes, max_names=limits.names
    )
    params = read_all(
        config.root, config.params, missing_ok=True, max_bytes=limits.file_bytes, max_names=limits.names - len(metrics)
    )
    files = {}
    root = config.root.resolve()
    for spec in config.plots:
        path = config.root / spec.path
        if not path.exists() or path.is_dir():
            continue
        if not path.resolve().is_relative_to(root):  # a symlink committed by a PR
            raise InputError(f"{spec.path}: points outside the repository (symlink); refusing to read it")
        files[spec.path] = read_limited(path, limits.file_bytes, spec.path, setting=FILE_LIMIT_SETTING)
    return RunResults(sha=sha, metrics=metrics, params=params, files=files)


def render_plots(
    config: Config, head: RunResults, base: RunResults | None, base_label: str
) -> tuple[tuple[PlotEntry, ...], tuple[Image, ...]]:
    specs = config.plots
    if any(":history/" in path for path in head.files):  # step histories from MLflow or TensorBoard
        from cml_bot.sources import history_plot_specs

        specs = (*specs, *history_plot_specs(head.files))
    if not specs:
        return (), ()
    from cml_bot import plots  # matplotlib and pandas load only when there is something to draw

    entries: list[PlotEntry | None] = []
    jobs: list[tuple[int, str, plots.PlotJob]] = []  # (entry index, title, job)
    for number, spec in enumerate(specs, start=1):
        title = spec.title or spec.path
        head_data = head.files.get(spec.path)
        if head_data is None:
            entries.append(PlotEntry(title, note=f"{spec.path} was not produced by this change"))
            continue
        base_data = base.files.get(spec.path) if base is not None else None
        name = f"plot-{number:02d}-{plots.safe_name(title)}"
        jobs.append((len(entries), title, plots.PlotJob(spec, head_data, base_data, name, base_label)))
        entries.append(None)
    images: list[Image] = []
    for (index, title, job), rendered in zip(jobs, plots.render_all([j for _, _, j in jobs]), strict=True):
        if isinstance(rendered, str):
            entries[index] = PlotEntry(title, note=f"could not draw: {rendered}")
            continue
        images.extend(rendered)
        note = None if base is None or job.base is not None else f"not in {base_label}: this change only"
        entries[index] = PlotEntry(title, tuple(image.name for image in rendered), note)
    return tuple(entry for entry in entries if entry is not None), tuple(images)


# --- the evaluation -------------------------------------------------------------------------------


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
    shards: tuple[tuple[str, RunResults], ...] = ()  # MLflow runs compared one by one (``runs: shards``)


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
    return _judge(options, effects, config, context, git, head, pipeline_result, started, head_ref)


def _judge(
    options: Options,
    effects: Effects,
    config: Config,
    context: CiContext,
    git: Git,
    head: RunResults,
    pipeline_result: PipelineResult | None,
    started: float,
    head_ref: str | None,
) -> Evaluation:
    """Find the baseline (records, history, data changes) for ``head`` with this side's config."""
    store = effects.store_factory(config, context, effects.env, sleep=effects.sleep)
    notes: list[str] = []

    def find_baseline(source: ResultStore) -> Baseline:
        return resolve_baseline(
            config,
            git,
            source,
            head.sha,
            branch=context.base_ref,
            given_sha=_given_merge_base(options, effects, context, git, head.sha, config.baseline_branch),
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
    shards: tuple[tuple[str, RunResults], ...] = ()
    if config.mlflow is not None or config.tensorboard is not None:
        from cml_bot.sources import add_sources

        added = add_sources(config, git, effects.env, head, baseline)
        head, baseline, shards = added.head, added.baseline, added.shards
        notes += added.notes
    facts = RunFacts(
        head_sha=head.sha,
        head_ref=head_ref,
        base_sha=baseline.sha,
        base_ref=baseline.ref,
        baseline_source=baseline.source,
        duration=effects.clock() - started,
        run_url=context.job_url or context.run_url,
        links=_run_links(head, baseline),
    )
    changes: tuple[DataChange, ...] = ()
    if config.data.files or config.dvc:
        from cml_bot.data import collect_data_changes

        changes = collect_data_changes(config, git, baseline.sha)
    return Evaluation(
        config, context, head, baseline, pipeline_result, facts, tuple(history), changes, store, tuple(notes), shards
    )


def _run_links(head: RunResults, baseline: Baseline) -> tuple[tuple[str, str], ...]:
    """Links to the tracking-server runs behind both sides' metrics (MLflow), when there are any."""
    from cml_bot.sources import run_links  # no client: the sources' clients load only when configured

    return run_links(head, baseline.results, baseline.ref or "base")


class _NoRecords:
    """A store with nothing in it, for when the real one cannot be read."""

    def recorded(self) -> set[str]:
        return set()

    def load(self, sha: str) -> RunResults | None:
        return None

    def save(self, results: RunResults) -> str:
        raise ForgeError("recorded results are unavailable in this run")


def _given_merge_base(
    options: Options, effects: Effects, context: CiContext, git: Git, head_sha: str | None, default_branch: str
) -> str | None:
    """The merge-base when local git cannot tell (a shallow clone, the base branch not fetched, or
    the head commit not here at all, as when publishing a fork's bundle): the CI's own (GitLab's
    CI_MERGE_REQUEST_DIFF_BASE_SHA), else the forge's answer. None: local git decides."""
    if not context.is_change or not head_sha or options.base_rev or options.baseline_file is not None:
        return None
    base_ref = context.base_ref or default_branch
    if git.branch_ref(base_ref) is not None and git.rev(head_sha) is not None and not git.is_shallow():
        return None
    if context.base_sha:
        return context.base_sha
    if token_kind(context, effects.env) == "none":
        return None
    return effects.forge_factory(context, effects.env, sleep=effects.sleep).merge_base(base_ref, head_sha)


def run(options: Options, effects: Effects) -> Outcome:
    evaluation = evaluate(options, effects)
    if options.shard:
        return save_shard(options, evaluation, Secrets.from_env(effects.env))
    report, images = build_report(evaluation)
    return deliver(options, effects, evaluation, report, images)


def build_report(evaluation: Evaluation, draw: bool = True) -> tuple[Report, tuple[Image, ...]]:
    """The report and its images; ``draw=False`` skips the plots (for a verdict alone)."""
    config, head, baseline = evaluation.config, evaluation.head, evaluation.baseline
    base = baseline.results
    result = diff(
        base.metrics if base else None, head.metrics, config.thresholds, base.params if base else None, head.params
    )
    base_label = baseline.ref or config.baseline_branch
    plot_entries, images = render_plots(config, head, base, base_label) if draw else ((), ())
    trend_entry, trend_image = render_trend_plot(evaluation, result) if draw else (PlotEntry(""), None)
    if trend_image is not None:
        plot_entries, images = (*plot_entries, trend_entry), (*images, trend_image)
    base_params = base.params if base else None
    shards = tuple(  # each MLflow run of this change against the same baseline
        Shard(name, diff(base.metrics if base else None, run.metrics, config.thresholds, base_params, run.params))
        for name, run in evaluation.shards
    )
    report = Report(
        title=config.title,
        report_id=config.report_id,
        diff=result,
        facts=evaluation.facts,
        plots=plot_entries,
        pipeline=evaluation.pipeline,
        data_changes=evaluation.data_changes,
        notes=(*evaluation.notes, *_plot_notes(config, head)),
        shards=shards,
    )
    return report, images


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

    try:
        image = plots.render_trend(history, current, "trend", title)
    except InputError:
        return PlotEntry(title), None
    note = f"the last {len(history)} recorded commits of {branch}, this change at the right"
    return PlotEntry(title, (image.name,), note), image


def _plot_notes(config: Config, head: RunResults) -> tuple[str, ...]:
    if config.metrics or head.metrics:
        return ()
    return ("No metrics files are configured: add `metrics:` to cml-bot.yaml or dvc.yaml.",)


def pull_and_train(config: Config, effects: Effects) -> PipelineResult:
    from cml_bot import data, pipeline

    if config.data.files:
        data.pull(config, progress=effects.progress, transfer=effects.transfer)
    elif config.dvc and data.is_dvc_repo(config.root):
        data.dvc_pull(config.root, effects.echo)
    # The project's own commands never see cml-bot's write token.
    return pipeline.run_pipeline(
        config.pipeline, config.root, env=without_tokens(effects.env), echo=effects.echo, clock=effects.clock
    )


# --- delivering: the report folder, records, the forge, bundles -----------------------------------


def deliver(
    options: Options,
    effects: Effects,
    evaluation: Evaluation,
    report: Report,
    images: tuple[Image, ...],
    *,
    publishing: bool = False,
) -> Outcome:
    """Write the report folder (always), then do what :func:`plan` decides: record, post or save."""
    from cml_bot.forges.local import ReportFolder

    config, context = evaluation.config, evaluation.context
    # The trust boundary: everything below renders or writes a scrubbed model (see cml_bot.secrets),
    # and every rendered text is scrubbed once more before it is written or posted.
    secrets = Secrets.from_env(effects.env)
    report, images = secrets.scrub_tree(report), secrets.scrub_tree(images)
    evaluation = replace(evaluation, head=secrets.scrub_tree(evaluation.head))
    head = evaluation.head
    folder = ReportFolder(options.report_dir or config.root / DEFAULT_REPORT_DIR, report.title)
    folder.prepare()
    folder.write_report(secrets.scrub(render_markdown(report, folder.write_images(images))))
    if options.junit is not None:
        atomic_write(options.junit, secrets.scrub(junit_xml(report)).encode("utf-8"))

    branch = context.head_ref if context.platform != "local" else Git(config.root, effects.git_runner).current_branch()
    access = access_for(context, token_kind(context, effects.env)) if context.platform != "local" else Access(False)
    asked = Asked(dry_run=options.dry_run, post=options.post, record=options.record, publishing=publishing)
    decided = plan(context, asked, access, branch, config.baseline_branch)
    if decided.record and not (head.sha and head.metrics):
        decided = replace(decided, record=False)
    outcome = Outcome(report, report.verdict, verdict_summary(report), folder.folder, "local")
    notices: list[str] = []
    if decided.record:
        store = evaluation.store or effects.store_factory(config, context, effects.env, sleep=effects.sleep)
        recorded = store.save(head)
        outcome = replace(outcome, recorded=recorded)
        notices.append(f"recorded this commit's results for later comparisons: {recorded}")
    if decided.post:
        try:
            publication, urls, posted_notes = post(
                effects, context, report, images, options.mode, secrets, verify=publishing
            )
        except ReadOnlyTokenError as exc:
            if publishing:
                raise
            decided = replace(decided, save_bundle=True, why_not_posted=str(exc))
        else:
            notices.extend(posted_notes)
            _write_summary(effects.env, secrets.scrub(render_markdown(report, urls, limit=SUMMARY_LIMIT)))
            return replace(outcome, destination=context.platform, publication=publication, notices=tuple(notices))
    if decided.why_not_posted:
        notices.append(decided.why_not_posted)
    if decided.save_bundle:
        bundle_dir = options.bundle_dir or config.root / DEFAULT_BUNDLE_DIR
        save_run(bundle_dir, saved_run(evaluation, shard=None), secrets)
        notices.append(f"report saved for a trusted step to post: cml-bot publish --bundle {bundle_dir}")
        outcome = replace(outcome, destination=context.platform, bundle_dir=bundle_dir)
    if context.platform != "local":
        _write_summary(effects.env, secrets.scrub(render_markdown(report, {}, limit=SUMMARY_LIMIT)))
    return replace(outcome, notices=tuple(notices))


def post(
    effects: Effects,
    context: CiContext,
    report: Report,
    images: Sequence[Image],
    mode: CommentMode,
    secrets: Secrets,
    *,
    verify: bool,
) -> tuple[Publication, Mapping[str, str], list[str]]:
    """Post the report on the forge: images, the sticky comment, the status. With ``verify``, the
    pull/merge request's head must be the report's commit, asked from the forge now. Returns the
    publication, the images' URLs and notes for the user."""
    from cml_bot.forges.base import CodeInsights
    from cml_bot.forges.sticky import upsert

    forge = effects.forge_factory(context, effects.env, sleep=effects.sleep)
    notes: list[str] = []
    change = forge.change()
    if verify:
        sha = report.facts.head_sha or ""
        if change is None:
            if context.is_change:
                raise ForgeError(f"{forge.name}: no open pull/merge request has {sha[:12]} as its head; not posting")
        else:
            forge.verify_head(change, sha)
    try:
        urls = forge.upload_images(change, images)
    except ReadOnlyTokenError as exc:
        urls = {}
        notes.append(f"plots not posted: {exc}")
    publication = Publication(None, False)
    if change is not None:
        where_full = f"The full report is in {forge.full_report_hint}."
        body = secrets.scrub(
            render_markdown(report, urls, limit=forge.comment_limit, where_full=where_full, flavour=forge.flavour)
        )
        publication = upsert(forge.thread(change), body, marker_for(report.report_id, forge.flavour), mode)
    else:
        notes.append(
            f"no open pull/merge request has this commit as its head: the report is in {forge.full_report_hint}"
        )
    try:
        forge.set_status(report.verdict, verdict_summary(report), context.run_url)
    except ReadOnlyTokenError as exc:
        notes.append(f"commit status not set: {exc}")
    if isinstance(forge, CodeInsights):  # Bitbucket: the verdict, metrics and gates as a report
        try:
            forge.code_insights(report, context.run_url)
        except ForgeError as exc:
            notes.append(f"Code Insights report not written: {exc}")
    return publication, urls, notes


def _write_summary(env: Mapping[str, str], body: str) -> None:
    path = env.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    data = body.encode("utf-8")
    if len(data) > 1024 * 1024:
        data = b"cml-bot: the report is larger than the job summary allows; see the report artifact.\n"
    with open(path, "ab") as handle:
        handle.write(data)


# --- matrix fan-in: shards and merge --------------------------------------------------------------

SHARD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=-]{0,63}$")


def saved_run(evaluation: Evaluation, shard: str | None) -> SavedRun:
    """The evaluation as data, for a bundle or a shard (no rendered text: see cml_bot.bundle)."""
    context, baseline, facts = evaluation.context, evaluation.baseline, evaluation.facts
    return SavedRun(
        platform=context.platform,
        repo=context.repo,
        change_number=context.change_number,
        head_sha=facts.head_sha,
        head_ref=facts.head_ref,
        run_url=facts.run_url,
        mode=CommentMode.UPDATE.value,
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


def save_shard(options: Options, evaluation: Evaluation, secrets: Secrets) -> Outcome:
    """Write this job's results and baseline for ``cml-bot merge``; post nothing."""
    name = options.shard or ""
    if not SHARD_NAME.match(name):
        raise InputError(f"--shard {name!r}: use letters, digits, '.', '_', '=', '-' (at most 64)")
    folder = (options.bundle_dir or evaluation.config.root / DEFAULT_SHARDS_DIR) / name
    save_run(folder, saved_run(evaluation, shard=name), secrets)
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
        saved = load_run(folder)
        if not saved.shard or not SHARD_NAME.match(saved.shard):
            raise InputError(f"{folder}: not a shard (saved without --shard)")
        if saved.shard in {r.shard for r in runs}:
            raise InputError(f"{folder}: shard {saved.shard} appears twice")
        runs.append(saved)
        base = saved.base
        result = diff(
            base.metrics if base else None,
            saved.head.metrics,
            config.thresholds,
            base.params if base else None,
            saved.head.params,
        )
        failed = saved.pipeline.failed_step if saved.pipeline is not None else None
        shards.append(Shard(saved.shard, result, failed.name if failed else None))
    first = runs[0]
    baseline = Baseline(first.base, first.baseline_sha, first.baseline_ref, first.baseline_source)
    facts = RunFacts(
        head_sha=context.head_sha or first.head_sha,
        head_ref=context.head_ref or first.head_ref,
        base_sha=first.baseline_sha,
        base_ref=first.baseline_ref,
        baseline_source=first.baseline_source,
        run_url=context.job_url or context.run_url,
    )
    evaluation = Evaluation(config, context, first.head, baseline, first.pipeline, facts)
    report = Report(
        title=config.title,
        report_id=config.report_id,
        diff=shards[0].diff,
        facts=facts,
        shards=tuple(shards),
    )
    return deliver(replace(options, record=False), effects, evaluation, report, ())


def record(options: Options, effects: Effects) -> Outcome:
    """Store this commit's results (run on pushes to the baseline branch)."""
    evaluation = evaluate(replace(options, base_rev=None), effects)
    if not evaluation.head.sha:
        raise InputError("record: this directory has no commit to record results for")
    if not evaluation.head.metrics:
        raise InputError("record: no metrics found; run the pipeline first or check `metrics:` in the config")
    assert evaluation.store is not None
    where = evaluation.store.save(Secrets.from_env(effects.env).scrub_tree(evaluation.head))
    report, _ = build_report(evaluation, draw=False)
    return Outcome(
        report=report,
        verdict=report.verdict,
        summary=f"recorded {len(evaluation.head.metrics)} metrics for {evaluation.head.sha[:10]}",
        report_dir=options.report_dir or evaluation.config.root / DEFAULT_REPORT_DIR,
        destination="store",
        recorded=where,
    )


# --- publishing a saved bundle: data judged by trusted code ---------------------------------------


def publish_bundle(folder: Path, options: Options, effects: Effects, head_sha: str | None) -> Outcome:
    """Report a bundle saved by a step or job that could not post (a fork's pull request, or the
    Action's training step, which never holds the token).

    The bundle is untrusted data: from it come only this commit's results (metrics, params, plot
    data, the pipeline's outcome and logs, data changes). Everything that judges them comes from
    this side: the config and thresholds of this checkout, the baseline (its own records and git),
    the run URL, platform, host and repository (the environment), the comment mode (the command
    line). It posts only on the pull/merge request whose head the forge says is ``head_sha``.
    """
    context = detect(effects.env, effects.event)
    if context.platform != "local" and not head_sha:
        raise InputError("publish: --head-sha is required in CI (the commit the bundle must be for)")
    if head_sha and context.merged_results and head_sha == context.checked_out_sha and context.head_sha:
        head_sha = context.head_sha  # GitLab's temporary merge commit of this head: the CI says which head
    saved = load_run(folder)
    if saved.shard:
        raise InputError(f"{folder}: this is a matrix shard; post shards with `cml-bot merge`")
    if not saved.head_sha:
        raise InputError(f"{folder}: bundle names no commit; refusing to post")
    if head_sha and saved.head_sha != head_sha:
        raise InputError(f"{folder}: bundle is for commit {saved.head_sha[:10]}, not {head_sha[:10]}; refusing to post")
    sha = head_sha or saved.head_sha
    config = load_config(options.root, options.config_path)
    git = Git(config.root, effects.git_runner)
    trusted = replace(
        context, head_sha=sha, change_number=context.change_number if head_sha == context.head_sha else None
    )
    files, file_notes = _files_to_publish(config, saved.head.files)
    head = replace(saved.head, sha=sha, files=files)
    evaluation = _judge(
        replace(options, record=None),
        effects,
        config,
        trusted,
        git,
        head,
        saved.pipeline,
        effects.clock(),
        context.head_ref or saved.head_ref,
    )
    evaluation = replace(evaluation, data_changes=saved.data_changes, notes=(*evaluation.notes, *file_notes))
    report, images = build_report(evaluation)
    return deliver(options, effects, evaluation, report, images, publishing=True)


def _files_to_publish(config: Config, files: Mapping[str, bytes]) -> tuple[dict[str, bytes], list[str]]:
    """The bundle's files this side's config plots; images only when they really are PNG/JPEG/GIF."""
    wanted = {spec.path: spec for spec in config.plots}
    kept: dict[str, bytes] = {}
    notes: list[str] = []
    for path, data in files.items():
        spec = wanted.get(path)
        if spec is None:
            continue
        if spec.template == "image":
            from cml_bot.plots import untrusted_image_problem

            problem = untrusted_image_problem(data)
            if problem is not None:
                notes.append(f"The image {path} from the saved run was left out: {problem}.")
                continue
        kept[path] = data
    return kept, notes


__all__ = [
    "DEFAULT_BUNDLE_DIR",
    "DEFAULT_REPORT_DIR",
    "RECORDS_DIR",
    "Effects",
    "Evaluation",
    "Options",
    "Outcome",
    "build_report",
    "deliver",
    "evaluate",
    "merge",
    "publish_bundle",
    "record",
    "run",
]
