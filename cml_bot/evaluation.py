"""What the change did: pull, train, collect this workspace's results, find the baseline, and build
the report (diff, plots, trend). Platform-agnostic; forges are reached only through the factories
in :class:`~cml_bot.runtime.Effects` (records, the merge-base when the clone cannot tell).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from cml_bot import plotserver, verdicts
from cml_bot.baseline import (
    Baseline,
    RememberedStore,
    ResultStore,
    base_branch,
    detect_checkout,
    exact_results,
    resolve_baseline,
    trend_history,
)
from cml_bot.config import Config, load_config
from cml_bot.context import CiContext, detect
from cml_bot.diff import Diff, diff, numeric
from cml_bot.errors import ForgeError, InputError
from cml_bot.findings import closest_files, describe_config, run_findings, threshold_notes, uncommitted_changes
from cml_bot.forges import token_kind
from cml_bot.git import Git
from cml_bot.metrics import Samples, WorkspaceTree
from cml_bot.model import Image
from cml_bot.plotserver import InProcess, Plotter
from cml_bot.report import PlotEntry, Report, RunFacts, Shard
from cml_bot.results import RunResults, aligned, read_results
from cml_bot.runtime import Effects, Options
from cml_bot.secrets import Secrets, without_tokens
from cml_bot.stats.history import HistoryNoise, history_noise

if TYPE_CHECKING:
    from cml_bot.data import DataChange
    from cml_bot.pipeline import PipelineResult
    from cml_bot.plots.jobs import PlotJob
    from cml_bot.verdicts import PredictionReport

log = logging.getLogger(__name__)


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
    shards: tuple[tuple[str, RunResults], ...] = ()  # MLflow runs compared one by one (``runs: shards``)


# --- collecting ---------------------------------------------------------------------------------


def collect_results(config: Config, sha: str | None) -> RunResults:
    """This workspace's metrics, params and plot files, bounded by ``limits:``; files missing or
    malformed are named in ``problems`` (see :func:`cml_bot.results.read_results`)."""
    tree = WorkspaceTree(config.root, config.limits.file_bytes)
    return read_results(config.declared, tree, sha, config.limits.names)


def pull_and_train(config: Config, effects: Effects) -> PipelineResult:
    from cml_bot import data, pipeline

    if config.data.files:
        data.pull(config, progress=effects.progress, transfer=effects.transfer)
    elif config.dvc and data.is_dvc_repo(config.root):
        data.dvc_pull(config.root, effects.echo, env=effects.env)
    # The project's own commands never see cml-bot's write token; their output is scrubbed of every
    # secret of cml-bot's environment (the one the report and the posting are scrubbed with).
    return pipeline.run_pipeline(
        config.pipeline,
        config.root,
        env=without_tokens(effects.env),
        echo=effects.echo,
        clock=effects.clock,
        secrets=Secrets.from_env(effects.env),
    )


def evaluate(
    options: Options,
    effects: Effects,
    draw: bool = False,
    before_pipeline: Callable[[Config, CiContext], None] | None = None,
) -> Evaluation:
    """Pull, train (for ``run``), collect this workspace's results and find the baseline. With
    ``draw``, a plot process starts at once, importing the drawing modules meanwhile.
    ``before_pipeline`` runs just before the pipeline (to show the report as pending)."""
    started = effects.clock()
    config = load_config(options.root, options.config_path, Git(options.root.resolve(), effects.git_runner))
    plotter = plotserver.start() if draw and config.may_draw else None
    context = detect(effects.env, effects.event)
    git = Git(config.root, effects.git_runner)
    head_sha = context.head_sha or git.rev("HEAD")
    head_ref = context.head_ref or git.current_branch()
    describe_config(config)
    # Checked before the pipeline runs: its outputs are expected to change the tree.
    dirty = () if options.compare else uncommitted_changes(git, config, outputs_expected=context.platform != "local")

    pipeline_result: PipelineResult | None = None
    if options.run_pipeline:
        if before_pipeline is not None:
            before_pipeline(config, context)
        pipeline_result = pull_and_train(config, effects)
    if options.compare:
        store = effects.store_factory(config, context, effects.env, sleep=effects.sleep)
        evaluation = _evaluate_revisions(options.compare, config, context, git, store, effects.clock() - started)
        return replace(evaluation, plotter=plotter)
    head = collect_results(config, head_sha)
    evaluation = judge(options, effects, config, context, git, head, pipeline_result, started, head_ref, dirty=dirty)
    return replace(evaluation, plotter=plotter)


def judge(
    options: Options,
    effects: Effects,
    config: Config,
    context: CiContext,
    git: Git,
    head: RunResults,
    pipeline_result: PipelineResult | None,
    started: float,
    head_ref: str | None,
    *,
    dirty: tuple[str, ...] = (),
    in_workspace: bool = True,
) -> Evaluation:
    """Find the baseline (records, history, data changes) for ``head`` with this side's config.
    ``in_workspace``: the checkout is the head (False when judging a saved bundle)."""
    store = effects.store_factory(config, context, effects.env, sleep=effects.sleep)
    records = RememberedStore(store)  # the baseline search and the trend read the same records
    branch = base_branch(config, git, context.base_ref, context.default_branch, context.platform)
    checkout = (
        detect_checkout(git, context.platform, context.head_sha, context.merged_results) if in_workspace else None
    )
    given_sha = None
    if checkout is None or not checkout.merge_parent:
        given_sha = _given_merge_base(options, effects, context, git, head.sha, branch.name)
    notes: list[str] = []

    def find_baseline(source: ResultStore) -> Baseline:
        return resolve_baseline(
            config,
            git,
            source,
            head.sha,
            branch=branch.name,
            given_sha=given_sha,
            base_rev=options.base_rev,
            explicit_file=options.baseline_file,
            checkout=checkout,
        )

    try:
        baseline = find_baseline(records)
        history = trend_history(git, records, baseline.sha, config.trend) if baseline.sha and baseline.branch else []
    except ForgeError as exc:
        # The recorded results could not be read: report without them rather than fail the review.
        notes.append(f"Recorded results could not be read ({exc}); compared without them.")
        baseline, history = find_baseline(_NoRecords()), []
    shards: tuple[tuple[str, RunResults], ...] = ()
    if config.mlflow is not None or config.tensorboard is not None:
        from cml_bot.sources import add_sources

        added = add_sources(config, git, effects.env, head, baseline)
        head, baseline, shards = added.head, added.baseline, added.shards
        notes += added.notes
    log.info("baseline: %s", baseline.source)  # after the sources: MLflow may have found the baseline
    head, baseline, history, shards = _named_alike(head, baseline, history, shards)
    notes += run_findings(config, git, head, baseline, dirty, (head.sha or "")[:7])
    facts = RunFacts(
        head_sha=head.sha,
        head_ref=head_ref,
        base_sha=baseline.sha,
        base_ref=baseline.ref,
        baseline_source=baseline.source,
        duration=effects.clock() - started,
        run_url=context.job_url or context.run_url,
        links=_run_links(head, baseline),
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
        shards=shards,
    )


def _evaluate_revisions(
    compare: tuple[str, str | None], config: Config, context: CiContext, git: Git, store: ResultStore, took: float
) -> Evaluation:
    """``cml-bot diff A [B]``: exactly revision A against exactly B (or the workspace), as
    ``dvc metrics diff A B`` compares them; no merge-base, no trend, nothing recorded."""
    base_rev, head_rev = compare
    records = RememberedStore(store)  # both revisions look in the same listing
    base, source, base_name, caveat = exact_results(config, git, records, base_rev)
    if head_rev is None:
        head_sha = git.rev("HEAD")
        head = collect_results(config, head_sha)
        head_name = "the workspace"
    else:
        found, _, head_name, head_caveat = exact_results(config, git, records, head_rev)
        head_sha = git.rev(head_rev)
        head = found or RunResults(sha=head_sha, metrics={})
        caveat = caveat or head_caveat
    base_sha = git.rev(base_rev)
    if base is None:
        why = caveat or "nothing recorded or committed"
        source = f"no baseline: {why} for {base_name} ({(base_sha or '')[:10]})"
    baseline = Baseline(base, base_sha, base_name, source, None, caveat, f"{head_name} with {base_name}, exactly")
    head, baseline, _, _ = _named_alike(head, baseline, [], ())
    notes = run_findings(config, git, head, baseline, (), head_name)
    facts = RunFacts(
        head_sha=head_sha if head_rev is not None else None,
        head_ref=head_name,
        base_sha=base_sha,
        base_ref=base_name,
        baseline_source=source,
        duration=took,
        compared=baseline.compared,
        caveat=caveat,
        head_label=head_name if head_rev is not None else None,  # `diff A B`: B by name, as A is
    )
    return Evaluation(config, context, head, baseline, None, facts, (), (), store, tuple(notes))


def _named_alike(
    head: RunResults,
    baseline: Baseline,
    history: list[RunResults],
    shards: tuple[tuple[str, RunResults], ...],
) -> tuple[RunResults, Baseline, list[RunResults], tuple[tuple[str, RunResults], ...]]:
    """Every revision compared here with its metrics and params named alike (a name defined in two
    files in any of them is prefixed with its file in all: :func:`cml_bot.results.aligned`), so a
    metric keeps its identity when a change adds another file using its name."""
    base = [] if baseline.results is None else [baseline.results]
    found = aligned([head, *base, *history, *(run for _, run in shards)])
    new_head, new_base, rest = found[0], found[1 : 1 + len(base)], found[1 + len(base) :]
    new_history, new_runs = rest[: len(history)], rest[len(history) :]
    named_shards = tuple((name, run) for (name, _), run in zip(shards, new_runs, strict=True))
    return new_head, replace(baseline, results=new_base[0] if new_base else None), new_history, named_shards


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
    options: Options, effects: Effects, context: CiContext, git: Git, head_sha: str | None, base_ref: str
) -> str | None:
    """The merge-base when local git cannot tell (a shallow clone, the base branch not fetched, or
    the head commit not here at all, as when publishing a fork's bundle): the CI's own (GitLab's
    CI_MERGE_REQUEST_DIFF_BASE_SHA), else the forge's answer. None: local git decides."""
    if not context.is_change or not head_sha or options.base_rev or options.baseline_file is not None:
        return None
    if git.branch_ref(base_ref) is not None and git.rev(head_sha) is not None and not git.is_shallow():
        return None
    if context.base_sha:
        return context.base_sha
    if token_kind(context, effects.env) == "none":
        return None
    return effects.forge_factory(context, effects.env, sleep=effects.sleep).merge_base(base_ref, head_sha)


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


# --- the report ---------------------------------------------------------------------------------


def start_plots(
    config: Config, head: RunResults, base: RunResults | None, base_label: str, plotter: Plotter | None = None
) -> Callable[[], tuple[tuple[PlotEntry, ...], tuple[Image, ...]]]:
    """One figure per plot (every file of its definition, at head and at the base; step histories
    from MLflow or TensorBoard drawn the same way), started: the returned function waits for the
    drawing and gives the report's entries and images."""
    specs = config.plots
    if any(":history/" in path for path in head.files):
        from cml_bot.sources import history_plot_specs

        specs = (*specs, *history_plot_specs(head.files))
    if not specs:
        return lambda: ((), ())
    from cml_bot import plots  # what to draw; drawing (matplotlib, pandas) is the plotter's

    entries: list[PlotEntry | None] = []
    jobs: list[tuple[int, str, plots.PlotJob]] = []  # (entry index, title, job)
    for number, (spec, title) in enumerate(zip(specs, plots.plot_titles(specs), strict=True), 1):
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
        jobs.append((len(entries), title, plots.PlotJob(spec, head_files, base_files or None, name, base_label)))
        entries.append(None)
    pending = (plotter or InProcess()).submit("cml_bot.plots.render:render_all", [j for _, _, j in jobs])
    return lambda: _plot_entries(config, base, base_label, entries, jobs, pending())


def _plot_entries(
    config: Config,
    base: RunResults | None,
    base_label: str,
    entries: list[PlotEntry | None],
    jobs: list[tuple[int, str, PlotJob]],
    drawn: list[list[Image] | str],
) -> tuple[tuple[PlotEntry, ...], tuple[Image, ...]]:
    images: list[Image] = []
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
        # A drawn plot names its revisions in its legend; a user's own image is labelled here.
        labels = ("this change", base_label)[: len(rendered)] if job.spec.template == "image" else ()
        entries[index] = PlotEntry(title, images_shown, "; ".join(notes) or None, problem=bool(gone), labels=labels)
    return tuple(entry for entry in entries if entry is not None), tuple(images)


def build_report(evaluation: Evaluation, draw: bool = True) -> tuple[Report, tuple[Image, ...]]:
    """The report and its images; ``draw=False`` skips the plots (for a verdict alone)."""
    config, head, baseline = evaluation.config, evaluation.head, evaluation.baseline
    base = baseline.results
    base_label = baseline.ref or "base"
    # The plots are drawn (by the plot process) while the change is judged here.
    drawing = start_plots(config, head, base, base_label, evaluation.plotter) if draw else (lambda: ((), ()))
    judgement = verdicts.judge(config, base, head, evaluation.history)
    result = judgement.diff
    base_metrics, base_params = (base.metrics, base.params) if base else (None, None)
    plot_entries, images = drawing()
    if draw and judgement.predictions is not None:
        delta_entry, delta_image = render_confusion_delta(evaluation, judgement.predictions, base_label)
        if delta_image is not None:
            plot_entries, images = (*plot_entries, delta_entry), (*images, delta_image)
    trend_entry, trend_image = (
        render_trend_plot(evaluation, result, judgement.history) if draw else (PlotEntry(""), None)
    )
    if trend_image is not None:
        plot_entries, images = (*plot_entries, trend_entry), (*images, trend_image)
    shards = tuple(  # each MLflow run of this change against the same baseline
        Shard(name, diff(base_metrics, run.metrics, config.thresholds, base_params, run.params))
        for name, run in evaluation.shards
    )
    notes = (*evaluation.notes, *judgement.notes, *threshold_notes(config, result), *_plot_notes(config, head))
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
        shards=shards,
        predictions=judgement.predictions,
        artifacts=judgement.artifacts,
    )
    return report, images


def render_confusion_delta(
    evaluation: Evaluation, predictions: PredictionReport, base_label: str
) -> tuple[PlotEntry, Image | None]:
    title = "Confusion change (this change minus base)"
    if not predictions.base_confusion:
        return PlotEntry(title), None
    plotter = evaluation.plotter or InProcess()
    image = plotter.call(
        "cml_bot.plots.figures:render_confusion_delta",
        predictions.class_names,
        predictions.base_confusion,
        predictions.head_confusion,
        "confusion-delta",
        base_label,
    )
    note = f"counts on the {predictions.common:,} common examples; blue: more than at {base_label}, red: fewer"
    return PlotEntry(title, (image.name,), note), image


def headline_metrics(result: Diff, limit: int = 4) -> list[str]:
    """The metrics a trend shows: those with gates, else the first numeric ones."""
    gated = [m.name for m in result.metrics if m.gated and numeric(m.head) is not None]
    if gated:
        return gated[:limit]
    return [m.name for m in result.metrics if numeric(m.head) is not None][:limit]


def render_trend_plot(
    evaluation: Evaluation, result: Diff, measured: Mapping[str, HistoryNoise] | None = None
) -> tuple[PlotEntry, Image | None]:
    """Main's recorded values of the headline metrics, this change at the right. ``measured``: the
    noise the verdict already measured on the same history (:attr:`verdicts.Judgement.history`),
    used where its values were the plotted ones (no repeated values), measured here otherwise."""
    measured = measured or {}
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
    shifts: dict[str, tuple[int, ...]] = {}
    bands: dict[str, tuple[int, float, float]] = {}
    for name in current:
        if not all(name in values for _, values in history):
            continue
        plain = all(not isinstance(results.metrics.get(name), Samples) for results in evaluation.history)
        noise = measured[name] if plain and name in measured else history_noise([values[name] for _, values in history])
        if noise is None:
            continue
        shifts[name] = noise.change_points
        if math.isfinite(noise.sigma):  # the level of the last segment ± 2 sigma of one run
            start = noise.change_points[-1] if noise.change_points else 0
            bands[name] = (start, noise.level - 2 * noise.sigma, noise.level + 2 * noise.sigma)
    try:
        plotter = evaluation.plotter or InProcess()
        image = plotter.call("cml_bot.plots.figures:render_trend", history, current, "trend", branch, shifts, bands)
    except InputError:
        return PlotEntry(title), None
    note = f"the last {len(history)} recorded commits of {branch}, this change at the right"
    if bands:
        note += "; shaded: the usual variation of one run (±2σ)"
    if any(shifts.values()):
        note += "; dashed lines: change points (real shifts on the branch, left out of its noise)"
    return PlotEntry(title, (image.name,), note), image


def _plot_notes(config: Config, head: RunResults) -> tuple[str, ...]:
    if config.metrics or head.metrics:
        return ()
    return ("No metrics files are configured: add `metrics:` to cml-bot.yaml or dvc.yaml.",)
