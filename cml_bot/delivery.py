"""Where a report goes: the report folder (always), records, the forge, or a bundle for later.

What is done is decided by the pure :func:`cml_bot.plan.plan`; this module does it. Everything it
writes or posts passes the trust boundary first (:class:`cml_bot.secrets.Secrets`). A bundle saved
for ``cml-bot publish`` is judged here again, as data, by this side's config and baseline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from cml_bot import markdown as md
from cml_bot.bundle import SavedRun, load_run, save_run
from cml_bot.config import Config, load_config
from cml_bot.context import CiContext, detect
from cml_bot.errors import CmlBotError, ForgeError, HeadMovedError, InputError, ReadOnlyTokenError
from cml_bot.evaluation import Evaluation, build_report, judge, record_refusal
from cml_bot.forges import token_kind
from cml_bot.forges.sticky import CommentMode, Publication
from cml_bot.git import Git
from cml_bot.junit import junit_xml
from cml_bot.model import Image
from cml_bot.plan import Access, access_for, plan
from cml_bot.plan import Request as Asked
from cml_bot.plots.jobs import untrusted_image_problem
from cml_bot.report import (
    COMMENT_FOOTER,
    FOLDER_FOOTER,
    NEW_COMMENT_FOOTER,
    SUMMARY_FOOTER,
    Report,
    marker_for,
    render_markdown,
    verdict_summary,
)
from cml_bot.results import atomic_write
from cml_bot.runtime import DEFAULT_BUNDLE_DIR, DEFAULT_REPORT_DIR, Effects, Options, Outcome
from cml_bot.secrets import Secrets

log = logging.getLogger(__name__)

SUMMARY_LIMIT = 1_000_000  # GITHUB_STEP_SUMMARY takes 1 MiB; leave room for multi-byte characters


def deliver(
    options: Options,
    effects: Effects,
    evaluation: Evaluation,
    report: Report,
    images: tuple[Image, ...],
    *,
    publishing: bool = False,
    kept_bundle: Path | None = None,
) -> Outcome:
    """Write the report folder (always), then do what :func:`plan` decides: record, post or save.

    ``kept_bundle``: the bundle being published when it stays for another job if this one may not
    post (the Action's posting step on a pull request; not the trusted workflow_run job)."""
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
    folder.write_artifacts(report.artifacts)
    folder.write_report(secrets.scrub(render_markdown(report, folder.write_images(images), footer=FOLDER_FOOTER)))
    if options.junit is not None:
        atomic_write(options.junit, secrets.scrub(junit_xml(report)).encode("utf-8"))

    branch = context.head_ref if context.platform != "local" else Git(config.root, effects.git_runner).current_branch()
    access = access_for(context, token_kind(context, effects.env)) if context.platform != "local" else Access(False)
    asked = Asked(dry_run=options.dry_run, post=options.post, record=options.record, publishing=publishing)
    decided = plan(context, asked, access, branch, evaluation.baseline.branch)
    if options.compare or not (head.sha and head.metrics):  # `diff A B` records nothing
        decided = replace(decided, record=False)
    outcome = Outcome(report, report.verdict, verdict_summary(report), folder.folder, "local")
    notices: list[str] = []
    refusal = record_refusal(evaluation) if decided.record else None
    if refusal and options.record:
        raise InputError(f"--record: {refusal}")
    if refusal:
        notices.append(f"not recorded: {refusal}")
    elif decided.record:
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
            if publishing and kept_bundle is None:
                raise
            if kept_bundle is not None:
                why = f"{exc}; the results stay in {kept_bundle} for a trusted publish workflow"
                decided = replace(decided, save_bundle=False, why_not_posted=why)
                outcome = replace(outcome, destination=context.platform, bundle_dir=kept_bundle)
            else:
                decided = replace(decided, save_bundle=True, why_not_posted=str(exc))
        else:
            notices.extend(posted_notes)
            _write_summary(
                effects.env, secrets.scrub(render_markdown(report, urls, limit=SUMMARY_LIMIT, footer=SUMMARY_FOOTER))
            )
            return replace(outcome, destination=context.platform, publication=publication, notices=tuple(notices))
    if decided.why_not_posted:
        notices.append(decided.why_not_posted)
    if decided.save_bundle:
        bundle_dir = options.bundle_dir or config.root / DEFAULT_BUNDLE_DIR
        save_run(bundle_dir, saved_run(evaluation, shard=None), secrets)
        notices.append(f"report saved for a trusted step to post: cml-bot publish --bundle {bundle_dir}")
        outcome = replace(outcome, destination=context.platform, bundle_dir=bundle_dir)
    if context.platform != "local" and options.post:  # --no-post: the publish step writes the summary
        _write_summary(
            effects.env, secrets.scrub(render_markdown(report, {}, limit=SUMMARY_LIMIT, footer=SUMMARY_FOOTER))
        )
    return replace(outcome, notices=tuple(notices))


def announce_running(options: Options, effects: Effects) -> Callable[[Config, CiContext], None]:
    """What to show on the forge while the pipeline runs, when this run will post: a pending Code
    Insights report on Bitbucket. A forge that cannot show it costs a log line, never the run."""
    from cml_bot.forges.base import CodeInsights

    def announce(config: Config, context: CiContext) -> None:
        if context.platform == "local":
            return
        access = access_for(context, token_kind(context, effects.env))
        asked = Asked(dry_run=options.dry_run, post=options.post, record=options.record)
        if options.shard or options.compare or not plan(context, asked, access, None, None).post:
            return
        try:
            forge = effects.forge_factory(context, effects.env, sleep=effects.sleep)
            if isinstance(forge, CodeInsights):
                forge.code_insights_pending(config.title, config.report_id, context.run_url)
        except CmlBotError as exc:
            log.warning("could not show the report as pending: %s", exc)

    return announce


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
    """Post the report on the forge: the status, images, the sticky comment. With ``verify``, the
    pull/merge request's head must be the report's commit, asked from the forge now (else an error).
    Without it, a request whose head has moved on since this run started (a newer push) gets no
    comment: the newer run's report stays, this one is in the report folder, and a note says so.
    Returns the publication, the images' URLs and notes for the user."""
    from cml_bot.forges.base import CodeInsights
    from cml_bot.forges.sticky import upsert

    forge = effects.forge_factory(context, effects.env, sleep=effects.sleep)
    notes: list[str] = []
    change = forge.change()
    # GitLab refuses a token that may not write here (ReadOnlyTokenError), before anything is asked.
    thread = forge.thread(change) if change is not None else None
    moved = False
    if verify:
        sha = report.facts.head_sha or ""
        if change is None:
            if context.is_change:
                raise ForgeError(f"{forge.name}: no open pull/merge request has {sha[:12]} as its head; not posting")
        else:
            forge.verify_head(change, sha)
    elif change is not None and change.head_sha is None and context.head_sha:
        # The request came from the CI's environment, not from the forge just now: ask for its head
        # (one request), so that a run for an older push never overwrites a newer run's comment.
        try:
            forge.verify_head(change, context.head_sha)
        except HeadMovedError as exc:
            notes.append(f"comment not posted: {exc} (a newer push); this report is in the report folder")
            moved = True
    # The status first: on GitHub its answer names the token's identity when nothing else can (a
    # GitHub App's installation token), which the sticky comment needs to find its earlier comment.
    # It is this commit's verdict, so it is set even when the request has moved on.
    try:
        forge.set_status(report.verdict, verdict_summary(report), context.run_url)
    except ReadOnlyTokenError as exc:
        notes.append(f"commit status not set: {exc}")
    publication = Publication(None, False)
    urls: Mapping[str, str] = {}
    if not moved:
        try:
            urls = forge.upload_images(change, images)
        except ReadOnlyTokenError as exc:
            notes.append(f"plots not posted: {exc}")
    if thread is not None and not moved:
        run = context.job_url or context.run_url  # from the CI's environment, never from the change
        where_full = f"The full report is in {forge.full_report_hint}" + (
            f" ([open the run]({md.link_target(run)}))." if run else "."
        )
        body = secrets.scrub(
            render_markdown(
                report,
                urls,
                limit=forge.comment_limit,
                where_full=where_full,
                flavour=forge.flavour,
                footer=NEW_COMMENT_FOOTER if CommentMode(mode) is CommentMode.NEW else COMMENT_FOOTER,
            )
        )
        publication = upsert(thread, body, marker_for(report.report_id, forge.flavour), mode)
    elif not moved:
        notes.append(
            f"no open pull/merge request has this commit as its head: the report is in {forge.full_report_hint}"
        )
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
    evaluation = judge(
        replace(options, record=None),
        effects,
        config,
        trusted,
        git,
        head,
        saved.pipeline,
        effects.clock(),
        context.head_ref or saved.head_ref,
        in_workspace=False,
    )
    evaluation = replace(evaluation, data_changes=saved.data_changes, notes=(*evaluation.notes, *file_notes))
    report, images = build_report(evaluation)
    # In the job that made the bundle (the Action's posting step), a token that may not write leaves
    # the bundle for the fork workflow's upload; in the trusted workflow_run job it is an error.
    kept = folder if context.event_name != "workflow_run" else None
    return deliver(options, effects, evaluation, report, images, publishing=True, kept_bundle=kept)


def _files_to_publish(config: Config, files: Mapping[str, bytes]) -> tuple[dict[str, bytes], list[str]]:
    """The bundle's files this side's config plots or carries (per-example predictions); images only
    when they really are PNG/JPEG/GIF."""
    templates = {file: spec.template for spec in config.plots for file in spec.files}
    if config.predictions is not None:
        templates.setdefault(config.predictions.path, "predictions")
    kept: dict[str, bytes] = {}
    notes: list[str] = []
    for path, data in files.items():
        template = templates.get(path)
        if template is None:
            continue
        if template == "image":
            problem = untrusted_image_problem(data)
            if problem is not None:
                notes.append(f"The image {path} from the saved run was left out: {problem}.")
                continue
        kept[path] = data
    return kept, notes
