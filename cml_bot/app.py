"""One run of cml-bot: pull -> train -> collect -> diff against the baseline -> render -> publish.

Everything external arrives in :class:`Effects` (environment, clock, output, git, forge factory), so
tests drive the real code with fakes only at the boundary (a fake GitHub/GitLab server, a temp git
repo). Nothing here prints or exits: the CLI shows the :class:`Outcome`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cml_bot.baseline import Baseline, resolve_baseline
from cml_bot.bundle import Bundle, BundleMeta, read_bundle, write_bundle
from cml_bot.config import Config, load_config
from cml_bot.context import CiContext, detect
from cml_bot.diff import diff
from cml_bot.errors import CmlBotError, InputError, ReadOnlyTokenError
from cml_bot.forges.base import CommentMode, Forge, Image, Publication, Verdict
from cml_bot.forges.local import LocalForge, prepare_folder
from cml_bot.git import Git, Runner, run_git
from cml_bot.junit import junit_xml
from cml_bot.metrics import read_all
from cml_bot.report import PlotEntry, Report, RunFacts, render_markdown, verdict_summary
from cml_bot.results import LocalStore, RunResults, atomic_write

if TYPE_CHECKING:
    from cml_bot.pipeline import PipelineResult

log = logging.getLogger(__name__)

DEFAULT_REPORT_DIR = "cml-bot-report"
DEFAULT_BUNDLE_DIR = "cml-bot-bundle"
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
    ) -> Forge: ...


def default_forge_factory(
    context: CiContext, env: Mapping[str, str], *, change_number: int | None = None, head_sha: str | None = None
) -> Forge:
    """The real adapters, imported only when needed (PyGithub and python-gitlab load slowly)."""
    if context.platform == "github":
        from cml_bot.forges.github import github_forge

        return github_forge(context, env, change_number=change_number, head_sha=head_sha)
    if context.platform == "gitlab":
        from cml_bot.forges.gitlab import gitlab_forge

        return gitlab_forge(context, env, change_number=change_number, head_sha=head_sha)
    raise CmlBotError(f"no forge for platform {context.platform}")


@dataclass(frozen=True)
class Effects:
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    echo: Callable[[str], None] = lambda line: None  # live output of pull and pipeline
    clock: Callable[[], float] = time.monotonic
    git_runner: Runner = run_git
    forge_factory: ForgeFactory = default_forge_factory
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
    recorded: Path | None = None


# --- collecting ---------------------------------------------------------------------------------


def collect_results(config: Config, sha: str | None, missing_ok: bool) -> RunResults:
    """This workspace's metrics, params and plot files."""
    metrics = read_all(config.root, config.metrics, missing_ok=missing_ok)
    params = read_all(config.root, config.params, missing_ok=True)
    files = {}
    for spec in config.plots:
        path = config.root / spec.path
        if path.is_file():
            files[spec.path] = path.read_bytes()
    return RunResults(sha=sha, metrics=metrics, params=params, files=files)


def render_plots(
    config: Config, head: RunResults, base: RunResults | None, base_label: str
) -> tuple[tuple[PlotEntry, ...], tuple[Image, ...]]:
    if not config.plots:
        return (), ()
    from cml_bot import plots  # matplotlib and pandas load only when there is something to draw

    entries: list[PlotEntry] = []
    images: list[Image] = []
    for number, spec in enumerate(config.plots, start=1):
        title = spec.title or spec.path
        head_data = head.files.get(spec.path)
        if head_data is None:
            entries.append(PlotEntry(title, note=f"{spec.path} was not produced by this change"))
            continue
        base_data = base.files.get(spec.path) if base is not None else None
        name = f"plot-{number:02d}-{plots.safe_name(title)}"
        try:
            rendered = plots.render_plot(spec, head_data, base_data, name, base_label=base_label)
        except InputError as exc:
            entries.append(PlotEntry(title, note=f"could not draw: {exc}"))
            continue
        images.extend(rendered)
        note = None if base is None or base_data is not None else f"not in {base_label}: this change only"
        entries.append(PlotEntry(title, tuple(image.name for image in rendered), note))
    return tuple(entries), tuple(images)


# --- the run ------------------------------------------------------------------------------------


def run(options: Options, effects: Effects) -> Outcome:
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

    store = LocalStore(config.root / RECORDS_DIR)
    baseline = resolve_baseline(
        config,
        git,
        store,
        head_sha,
        branch=context.base_ref,
        given_sha=context.base_sha,
        base_rev=options.base_rev,
        explicit_file=options.baseline_file,
    )
    base = baseline.results
    result = diff(
        base.metrics if base else None, head.metrics, config.thresholds, base.params if base else None, head.params
    )
    base_label = baseline.ref or config.baseline_branch
    plot_entries, images = render_plots(config, head, base, base_label)
    report = Report(
        title=config.title,
        report_id=config.report_id,
        diff=result,
        facts=RunFacts(
            head_sha=head_sha,
            head_ref=head_ref,
            base_sha=baseline.sha,
            base_ref=baseline.ref,
            baseline_source=baseline.source,
            duration=effects.clock() - started,
            run_url=context.job_url or context.run_url,
        ),
        plots=plot_entries,
        pipeline=pipeline_result,
        notes=_plot_notes(config, head),
    )
    return publish_report(options, effects, config, context, report, images, head, baseline)


def pull_and_train(config: Config, effects: Effects) -> PipelineResult:
    from cml_bot import data, pipeline

    if config.data.files:
        data.pull(config, progress=effects.echo)
    elif config.dvc and data.is_dvc_repo(config.root):
        data.dvc_pull(config.root, effects.echo)
    return pipeline.run_pipeline(config.pipeline, config.root, env=effects.env, echo=effects.echo, clock=effects.clock)


def _plot_notes(config: Config, head: RunResults) -> tuple[str, ...]:
    if config.metrics or head.metrics:
        return ()
    return ("No metrics files are configured: add `metrics:` to cml-bot.yaml or dvc.yaml.",)


def publish_report(
    options: Options,
    effects: Effects,
    config: Config,
    context: CiContext,
    report: Report,
    images: tuple[Image, ...],
    head: RunResults,
    baseline: Baseline,
) -> Outcome:
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
    if _should_record(options, context, config, head):
        recorded = LocalStore(config.root / RECORDS_DIR).save(head)
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

    forge = effects.forge_factory(context, effects.env)
    try:
        urls = forge.upload_images(images)
        body = render_markdown(report, urls, limit=forge.comment_limit)
        publication = forge.upsert_comment(body, report.marker, options.mode)
    except ReadOnlyTokenError as exc:
        bundle_dir = options.bundle_dir or config.root / DEFAULT_BUNDLE_DIR
        _save_bundle(bundle_dir, context, report, images, options.mode, forge.comment_limit, summary)
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


def _save_bundle(
    folder: Path,
    context: CiContext,
    report: Report,
    images: tuple[Image, ...],
    mode: CommentMode,
    limit: int,
    summary: str,
) -> None:
    # Image URLs are longer than bare names: keep room for them when trimming to the forge's limit.
    margin = 300 * len(images)
    body = render_markdown(report, {image.name: image.name for image in images}, limit=max(limit - margin, 1000))
    meta = BundleMeta(
        platform=context.platform,
        repo=context.repo,
        change_number=context.change_number,
        head_sha=context.head_sha,
        marker=report.marker,
        mode=mode.value,
        verdict=report.verdict.value,
        description=summary,
        target_url=context.run_url,
    )
    write_bundle(folder, Bundle(meta=meta, report=body, images=images))


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


def publish_bundle(folder: Path, effects: Effects, expected_head_sha: str | None = None) -> Outcome:
    """Post a bundle written by a run whose token could not write (fork PRs)."""
    bundle = read_bundle(folder)
    meta = bundle.meta
    if meta.platform not in ("github", "gitlab"):
        raise InputError(f"{folder}: bundle for platform {meta.platform!r} cannot be published")
    if expected_head_sha and meta.head_sha != expected_head_sha:
        raise InputError(
            f"{folder}: bundle is for commit {str(meta.head_sha)[:10]}, not {expected_head_sha[:10]}; refusing to post"
        )
    context = detect(effects.env, effects.event)
    if context.platform != meta.platform:
        context = replace(context, platform=meta.platform)  # type: ignore[arg-type]
    if meta.repo and not context.repo:
        context = replace(context, repo=meta.repo)
    forge = effects.forge_factory(context, effects.env, change_number=meta.change_number, head_sha=meta.head_sha)
    verify = getattr(forge, "verify_change_head", None)
    if verify is not None and meta.head_sha:
        verify(meta.head_sha)
    urls = forge.upload_images(bundle.images)
    publication = forge.upsert_comment(bundle.body_with(urls), meta.marker, CommentMode(meta.mode))
    forge.set_status(Verdict(meta.verdict), meta.description, meta.target_url)
    report = Report(title="", report_id="bundle", diff=diff({}, {}))
    return Outcome(
        report=report,
        verdict=Verdict(meta.verdict),
        summary=meta.description,
        report_dir=folder,
        destination=meta.platform,
        publication=publication,
    )
