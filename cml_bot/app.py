"""One run of cml-bot: pull -> train -> collect -> diff against the baseline -> render -> publish.

Everything external arrives in :class:`Effects` (environment, clock, output, git, forge factory), so
tests drive the real code with fakes only at the boundary (a fake GitHub/GitLab server, a temp git
repo). Nothing here prints or exits: the CLI shows the :class:`Outcome`.
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

from cml_bot import plotserver
from cml_bot.baseline import (
    Baseline,
    ResultStore,
    base_branch,
    detect_checkout,
    exact_results,
    resolve_baseline,
    trend_history,
)
from cml_bot.bundle import SavedRun, load_run, save_run
from cml_bot.config import Config, load_config
from cml_bot.context import CiContext, detect
from cml_bot.diff import Diff, diff, missing_metrics, numeric
from cml_bot.errors import CmlBotError, ForgeError, InputError, ReadOnlyTokenError
from cml_bot.findings import closest_files, describe_config, run_findings, threshold_notes, uncommitted_changes
from cml_bot.forges.base import CommentMode, Forge, Publication
from cml_bot.forges.local import LocalForge, prepare_folder
from cml_bot.git import Git, Runner, run_git
from cml_bot.junit import junit_xml
from cml_bot.metrics import WorkspaceTree
from cml_bot.model import Image, Verdict
from cml_bot.plotserver import InProcess, Plotter
from cml_bot.report import PlotEntry, Report, RunFacts, Shard, render_markdown, verdict_summary
from cml_bot.results import LocalStore, RunResults, atomic_write, read_results
from cml_bot.secrets import without_tokens

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
    compare: tuple[str, str | None] | None = None  # `cml-bot diff A [B]`: exactly A against B (None: workspace)
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


def collect_results(config: Config, sha: str | None) -> RunResults:
    """This workspace's metrics, params and plot files; files missing or malformed are named in
    ``problems`` (see :func:`cml_bot.results.read_results`)."""
    return read_results(config.declared, WorkspaceTree(config.root), sha)


def render_plots(
    config: Config, head: RunResults, base: RunResults | None, base_label: str, plotter: Plotter | None = None
) -> tuple[tuple[PlotEntry, ...], tuple[Image, ...]]:
    """One figure per plot: every file of its definition, at head and at the base."""
    if not config.plots:
        return (), ()
    from cml_bot import plots  # what to draw; drawing (matplotlib, pandas) is the plotter's

    entries: list[PlotEntry | None] = []
    jobs: list[tuple[int, str, plots.PlotJob]] = []  # (entry index, title, job)
    for number, (spec, title) in enumerate(zip(config.plots, plots.plot_titles(config.plots), strict=True), 1):
        head_files = {f: data for f in spec.files if (data := head.files.get(f)) is not None}
        missing = [f for f in spec.files if f not in head_files]
        if not head_files or (spec.template == "image" and missing):
            note = f"{', '.join(missing)} was not produced by this change{closest_files(config.root, missing)}"
            entries.append(PlotEntry(title, note=note, problem=True))
            continue
        base_files = None
        if base is not None:
            base_files = {f: data for f in spec.files if (data := base.files.get(f)) is not None}
        name = f"plot-{number:02d}-{plots.safe_name(title)}"
        job = plots.PlotJob(spec, head_files, base_files or None, name, base_label)
        jobs.append((len(entries), title, job))
        entries.append(None)
    images: list[Image] = []
    drawn = (plotter or InProcess()).call("cml_bot.plots.render:render_all", [j for _, _, j in jobs])
    for (index, title, job), rendered in zip(jobs, drawn, strict=True):
        if isinstance(rendered, str):
            entries[index] = PlotEntry(title, note=f"could not draw: {rendered}", problem=True)
            continue
        images.extend(rendered)
        notes = []
        gone = [f for f in job.spec.files if f not in job.head]
        if gone:
            notes.append(f"{', '.join(gone)} not found in this change{closest_files(config.root, gone)}")
        if base is not None and job.base is None:
            notes.append(f"not in {base_label}: this change only")
        images_shown = tuple(image.name for image in rendered)
        entries[index] = PlotEntry(title, images_shown, "; ".join(notes) or None, problem=bool(gone))
    return tuple(entry for entry in entries if entry is not None), tuple(images)


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
    dirty: tuple[str, ...] = ()  # tracked files with uncommitted changes: never record such results
    plotter: Plotter | None = None  # draws the plots, started early (see cml_bot.plotserver)


def evaluate(options: Options, effects: Effects, draw: bool = False) -> Evaluation:
    """Pull, train (for ``run``), collect this workspace's results and find the baseline. With
    ``draw``, a plot process starts at once, importing the drawing modules meanwhile."""
    started = effects.clock()
    config = load_config(options.root, options.config_path, Git(options.root.resolve(), effects.git_runner))
    plotter = plotserver.start() if draw and (config.plots or config.trend) else None
    context = detect(effects.env, effects.event)
    git = Git(config.root, effects.git_runner)
    head_sha = context.head_sha or git.rev("HEAD")
    head_ref = context.head_ref or git.current_branch()
    describe_config(config)
    # Checked before the pipeline runs: its outputs are expected to change the tree.
    dirty = () if options.compare else uncommitted_changes(git, config, outputs_expected=context.platform != "local")

    pipeline_result: PipelineResult | None = None
    if options.run_pipeline:
        pipeline_result = pull_and_train(config, effects)
    store = effects.store_factory(config, context, effects.env, sleep=effects.sleep)
    if options.compare:
        evaluation = _evaluate_revisions(options.compare, config, context, git, store, effects.clock() - started)
        return replace(evaluation, plotter=plotter)
    head = collect_results(config, head_sha)

    branch = base_branch(config, git, context.base_ref, context.default_branch, context.platform)
    merged_results = effects.env.get("CI_MERGE_REQUEST_EVENT_TYPE") == "merged_result"
    checkout = detect_checkout(git, context.platform, context.head_sha, merged_results)
    given_sha = context.base_sha
    if given_sha is None and not checkout.merge_parent:
        given_sha = _github_merge_base(options, effects, context, git)
    notes: list[str] = []

    def find_baseline(source: ResultStore) -> Baseline:
        return resolve_baseline(
            config,
            git,
            source,
            head_sha,
            branch=branch.name,
            given_sha=given_sha,
            base_rev=options.base_rev,
            explicit_file=options.baseline_file,
            checkout=checkout,
        )

    try:
        baseline = find_baseline(store)
        history = trend_history(git, store, baseline.sha, config.trend) if baseline.sha and baseline.branch else []
    except ForgeError as exc:
        # The recorded results could not be read: report without them rather than fail the review.
        notes.append(f"Recorded results could not be read ({exc}); compared without them.")
        baseline, history = find_baseline(_NoRecords()), []
    log.info("baseline: %s", baseline.source)
    notes += run_findings(config, head, baseline, dirty, (head_sha or "")[:7])
    facts = RunFacts(
        head_sha=head_sha,
        head_ref=head_ref,
        base_sha=baseline.sha,
        base_ref=baseline.ref,
        baseline_source=baseline.source,
        duration=effects.clock() - started,
        run_url=context.job_url or context.run_url,
        base_branch=None if options.base_rev or baseline.branch != branch.name else f"{branch.name} ({branch.how})",
        compared=baseline.compared,
        caveat=baseline.caveat,
    )
    changes: tuple[DataChange, ...] = ()
    if config.data.files or config.dvc:
        from cml_bot.data import collect_data_changes

        changes = collect_data_changes(config, git, baseline.sha)
    return Evaluation(
        config,
        context,
        head,
        baseline,
        pipeline_result,
        facts,
        tuple(history),
        changes,
        store,
        tuple(notes),
        dirty,
        plotter,
    )


def _evaluate_revisions(
    compare: tuple[str, str | None], config: Config, context: CiContext, git: Git, store: ResultStore, took: float
) -> Evaluation:
    """``cml-bot diff A [B]``: exactly revision A against exactly B (or the workspace), as
    ``dvc metrics diff A B`` compares them; no merge-base, no trend, nothing recorded."""
    base_rev, head_rev = compare
    base, source, base_name, caveat = exact_results(config, git, store, base_rev)
    if head_rev is None:
        head_sha = git.rev("HEAD")
        head = collect_results(config, head_sha)
        head_name = "the workspace"
    else:
        found, _, head_name, head_caveat = exact_results(config, git, store, head_rev)
        head_sha = git.rev(head_rev)
        head = found or RunResults(sha=head_sha, metrics={})
        caveat = caveat or head_caveat
    base_sha = git.rev(base_rev)
    if base is None:
        why = caveat or "nothing recorded or committed"
        source = f"no baseline: {why} for {base_name} ({(base_sha or '')[:10]})"
    baseline = Baseline(base, base_sha, base_name, source, None, caveat, f"{head_name} with {base_name}, exactly")
    notes = run_findings(config, head, baseline, (), head_name)
    facts = RunFacts(
        head_sha=head_sha if head_rev is not None else None,
        head_ref=head_name,
        base_sha=base_sha,
        base_ref=base_name,
        baseline_source=source,
        duration=took,
        compared=baseline.compared,
        caveat=caveat,
    )
    return Evaluation(config, context, head, baseline, None, facts, (), (), store, tuple(notes))


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
    evaluation = evaluate(options, effects, draw=not options.shard)
    if options.shard:
        return save_shard(options, evaluation)
    try:
        report, images = build_report(evaluation)
    finally:
        if evaluation.plotter is not None:
            evaluation.plotter.close()
    return publish_report(options, effects, evaluation, report, images)


def build_report(evaluation: Evaluation, draw: bool = True) -> tuple[Report, tuple[Image, ...]]:
    """The report and its images; ``draw=False`` skips the plots (for a verdict alone)."""
    config, head, baseline = evaluation.config, evaluation.head, evaluation.baseline
    base = baseline.results
    missing = missing_metrics(base.metrics, base.origins, head.metrics, head.problems) if base else {}
    result = diff(
        base.metrics if base else None,
        head.metrics,
        config.thresholds,
        base.params if base else None,
        head.params,
        missing=missing,
    )
    base_label = baseline.ref or "base"
    plotter = evaluation.plotter
    plot_entries, images = render_plots(config, head, base, base_label, plotter) if draw else ((), ())
    trend_entry, trend_image = render_trend_plot(evaluation, result) if draw else (PlotEntry(""), None)
    if trend_image is not None:
        plot_entries, images = (*plot_entries, trend_entry), (*images, trend_image)
    notes = (*evaluation.notes, *threshold_notes(config, result), *_plot_notes(config, head))
    report = Report(
        title=config.title,
        report_id=config.report_id,
        diff=result,
        facts=evaluation.facts,
        plots=plot_entries,
        pipeline=evaluation.pipeline,
        data_changes=evaluation.data_changes,
        notes=notes,
        warnings=(*notes, *(f"plot {p.title!r}: {p.note}" for p in plot_entries if p.problem)),
    )
    return report, images


def headline_metrics(result: Diff, limit: int = 4) -> list[str]:
    """The metrics a trend shows: those with gates, else the first numeric ones."""
    gated = [m.name for m in result.metrics if m.gated and numeric(m.head) is not None]
    if gated:
        return gated[:limit]
    return [m.name for m in result.metrics if numeric(m.head) is not None][:limit]


def render_trend_plot(evaluation: Evaluation, result: Diff) -> tuple[PlotEntry, Image | None]:
    branch = evaluation.baseline.branch or evaluation.baseline.ref or "the base branch"
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
    try:
        plotter = evaluation.plotter or InProcess()
        image = plotter.call("cml_bot.plots.figures:render_trend", history, current, "trend", title)
    except InputError:
        return PlotEntry(title), None
    note = f"the last {len(history)} recorded commits of {branch}, this change at the right"
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
        base = run.base
        result = diff(
            base.metrics if base else None,
            run.head.metrics,
            config.thresholds,
            base.params if base else None,
            run.head.params,
        )
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
    refusal = record_refusal(evaluation)
    if refusal:
        raise InputError(f"record: {refusal}")
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
    full = render_markdown(report, local_urls)
    local.upsert_comment(full, report.marker, options.mode)
    notices: list[str] = []
    summary = verdict_summary(report)
    if options.junit is not None:
        atomic_write(options.junit, junit_xml(report).encode("utf-8"))

    recorded = None
    if _should_record(options, context, config, head, evaluation.baseline.branch):
        refusal = record_refusal(evaluation)
        if refusal and options.record:
            raise InputError(f"--record: {refusal}")
        if refusal:
            notices.append(f"not recorded: {refusal}")
        else:
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


def _should_record(options: Options, context: CiContext, config: Config, head: RunResults, branch: str | None) -> bool:
    if options.compare:
        return False
    if options.record is not None:
        return options.record
    if context.is_change or not head.sha or not head.metrics:
        return False
    current = context.head_ref if context.platform != "local" else Git(config.root).current_branch()
    return branch is not None and current == branch


def record_refusal(evaluation: Evaluation) -> str | None:
    """Why this run's results must not be recorded as its commit's (None: they may)."""
    if evaluation.dirty:
        shown = ", ".join(evaluation.dirty[:5]) + (" ..." if len(evaluation.dirty) > 5 else "")
        return f"uncommitted changes in {shown}; commit or stash them (results recorded for a commit must be its own)"
    metrics = evaluation.config.metrics
    unreadable = [
        why
        for file, why in evaluation.head.problems.items()
        if file in metrics or any(file.startswith(m.rstrip("/") + "/") for m in metrics)
    ]
    if unreadable:
        return f"metrics files missing or unreadable ({'; '.join(unreadable)})"
    return None


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
