"""One run of cml-bot: pull -> train -> collect -> diff against the baseline -> render -> deliver.

Platform-agnostic: everything external arrives in :class:`~cml_bot.runtime.Effects` (environment,
clock, output, git, the forge connector), what the change did is found by :mod:`cml_bot.evaluation`,
and where the report goes is decided by the pure :func:`cml_bot.plan.plan` and done by
:mod:`cml_bot.delivery`. Tests drive the real code with fakes only at the boundary (fake forges,
temp git repositories). Nothing here prints or exits: the CLI shows the :class:`Outcome`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from cml_bot import verdicts
from cml_bot.baseline import Baseline
from cml_bot.bundle import SavedRun, load_run, save_run
from cml_bot.config import load_config
from cml_bot.context import detect
from cml_bot.delivery import announce_running, deliver, publish_bundle, saved_run
from cml_bot.errors import InputError
from cml_bot.evaluation import Evaluation, build_report, evaluate, record_refusal
from cml_bot.report import Report, RunFacts, Shard, verdict_summary
from cml_bot.runtime import (
    DEFAULT_BUNDLE_DIR,
    DEFAULT_REPORT_DIR,
    DEFAULT_SHARDS_DIR,
    RECORDS_DIR,
    Effects,
    Options,
    Outcome,
    default_store_factory,
)
from cml_bot.secrets import Secrets

__all__ = [
    "DEFAULT_BUNDLE_DIR",
    "DEFAULT_REPORT_DIR",
    "RECORDS_DIR",
    "Effects",
    "Evaluation",
    "Options",
    "Outcome",
    "build_report",
    "default_store_factory",
    "deliver",
    "evaluate",
    "merge",
    "publish_bundle",
    "record",
    "run",
]


def run(options: Options, effects: Effects) -> Outcome:
    evaluation = evaluate(options, effects, draw=not options.shard, before_pipeline=announce_running(options, effects))
    if options.shard:
        return save_shard(options, evaluation, Secrets.from_env(effects.env))
    try:
        report, images = build_report(evaluation)
    finally:
        if evaluation.plotter is not None:
            evaluation.plotter.close()
    return deliver(options, effects, evaluation, report, images)


# --- matrix fan-in: shards and merge --------------------------------------------------------------

SHARD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=-]{0,63}$")


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
        result = verdicts.judge(config, saved.base, saved.head, saved.history).diff
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
    refusal = record_refusal(evaluation)
    if refusal:
        raise InputError(f"record: {refusal}")
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
