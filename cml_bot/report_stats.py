"""Report sections about the statistics: how each change was judged, and the per-example results
(prediction flips, per-class changes, evaluation-set changes). Pure; every untrusted string (ids,
labels, metric names) goes through :mod:`cml_bot.markdown`."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from cml_bot import markdown as md
from cml_bot import numbers
from cml_bot.diff import CORRECTION_NAMES, Diff, Gate, Margin, MetricChange, Outcome
from cml_bot.stats.evidence import CONFIDENCE, POWER

if TYPE_CHECKING:
    from cml_bot.verdicts import PredictionReport


# Marks for gates: an emoji of its own colour AND shape (readable in light and dark themes and
# without colour vision) and a word (for screen readers and plain text).
REGRESSED = "❌ regressed"
INCONCLUSIVE = "⚠️ inconclusive"
PASSED = "✅"
NBSP = "\u00a0"  # keeps a number with its unit or arrow when a wide table wraps its cells


def interval_cell(change: MetricChange) -> str:
    """The interval as written by cml-bot (trusted text: no escaping, so no zero-width space),
    on one line."""
    evidence = change.evidence
    if evidence is None or evidence.low is None or evidence.high is None:
        return "—"
    return numbers.interval(evidence.low, evidence.high, evidence.percent_points).replace(" ", NBSP)


def mark(change: MetricChange) -> str | None:
    """What the evidence says about a judged metric's change (None: no evidence, the caller
    decides); the gate has its own mark (:func:`gate_mark`)."""
    if change.outcome is None:
        return None
    return {
        Outcome.BETTER: "✓ better",
        Outcome.WORSE: "↘ worse",
        Outcome.CHANGED: "changed",
        Outcome.NO_CHANGE: "≈ no detectable change",
    }[change.outcome]


def gate_mark(change: MetricChange) -> str:
    """The mark of a gate that did not pass ("" when every gate passed, or there is none)."""
    if change.failures:
        return REGRESSED
    return INCONCLUSIVE if change.gate is Gate.INCONCLUSIVE else ""


def margins(change: MetricChange) -> str | None:
    """For a metric whose gates all passed, how far each was from failing ("0.0081 (max_drop
    0.01), 0.26 (max 0.5)"); None otherwise, or when no gate could be checked (a drop gate
    without a baseline)."""
    if change.gate is not Gate.PASS or not change.margins:
        return None
    return ", ".join(f"{_room(m)} ({m.rule})" for m in change.margins)


def _room(margin: Margin) -> str:
    room = numbers.number(margin.room, 2)
    return f"{room}%" if margin.percent else room


def inconclusive_section(diff: Diff) -> list[str]:
    changes = diff.inconclusive
    if not changes:
        return []
    lines = ["**Inconclusive gates**", ""]
    lines += [f"- {md.text(m.name)} {md.cell('; '.join(m.inconclusive))}" for m in changes]
    return lines


def rules_section(diff: Diff) -> list[str]:
    """How each judged metric was judged, and the rules common to all, in a collapsible block."""
    judged = [m for m in diff.metrics if m.evidence is not None]
    if not judged:
        return []
    settings = diff.statistics
    correction = CORRECTION_NAMES[settings.correction]
    items = []
    for change in judged:
        evidence = change.evidence
        assert evidence is not None
        parts = [evidence.rule, f"two-sided {numbers.p_value(evidence.p_two_sided())}"]
        if change.p_adjusted is not None and change.alpha is not None:
            adjusted = " after correction" if diff.corrected else ""
            parts.append(f"gate: one-sided {numbers.p_value(change.p_adjusted)}{adjusted}, α = {change.alpha:g}")
        if change.detectable is not None:
            parts.append(
                f"can detect a worsening of >= {numbers.change(change.detectable, evidence.percent_points, False)} "
                f"({POWER:.0%} power)"
            )
        items.append(f"- {md.text(change.name)}: {md.cell('; '.join(parts))}")
    common = (
        f"A metric is marked better or worse only when a two-sided test at α = {settings.alpha:g} says so; "
        f"intervals are {CONFIDENCE:.0%} confidence intervals. A gate (max_drop) fails only when the worsening "
        "exceeds its threshold and is significant (one-sided, in the bad direction"
        + (f"; {correction} across {diff.tested_gates} tested gates" if diff.corrected else "")
        + "); beyond the threshold but not significant, it is inconclusive. "
        "Changes without evidence (single runs, no recorded history) are shown without a claim and gates "
        "apply to them as configured. Marks are not corrected for the number of metrics: of many metrics "
        f"that did not change, about {settings.alpha:.0%} are marked better or worse by chance."
    )
    body = "\n".join([common, "", *items])
    count = f"{len(judged)} metric{'s' if len(judged) != 1 else ''} with evidence"
    return [md.details(f"How changes were judged ({count})", body), ""]


def examples_section(report: PredictionReport, details: bool) -> list[str]:
    """Per-example results: what was paired, the evaluation set's changes, flips and classes."""
    lines = ["### Per-example results", ""]
    paired = (
        f"{report.common:,} examples of {md.code_span(report.path)} paired by {md.cell(report.matched_by)}"
        + (f"; {report.dropped:,} rows without a label or prediction left out" if report.dropped else "")
        + "."
    )
    lines += [paired]
    if report.added or report.removed:
        change = f"**The evaluation set changed**: {report.added:,} examples added, {report.removed:,} removed"
        shown = []
        if report.added_ids:
            shown.append("added " + ", ".join(md.code_span(i[:40]) for i in report.added_ids))
        if report.removed_ids:
            shown.append("removed " + ", ".join(md.code_span(i[:40]) for i in report.removed_ids))
        lines += [
            "",
            change + (f" (first: {'; '.join(shown)})" if shown else "") + "; paired tests use the common ones.",
        ]
    if report.relabelled:
        lines += [
            "",
            f"{report.relabelled:,} common examples have another true label than at the base; theirs here is used.",
        ]
    if report.fixed is not None and report.broken is not None:
        flips = f"**Predictions: {report.fixed:,} examples fixed, {report.broken:,} broken**"
        if report.changed:
            flips += f", {report.changed:,} still wrong with another prediction"
        if report.flips_file:
            flips += f" (all of them in {md.code_span(report.flips_file)} in the report folder)"
        lines += ["", flips + "."]
        if details and report.broken_rows:
            rows = [
                [md.cell(flip.id), md.cell(flip.label), f"{md.cell(flip.base)} → {md.cell(flip.head)}"]
                for flip in report.broken_rows
            ]
            table = md.table(["Example", "Label", "Base → this change"], rows)
            count = len(report.broken_rows)
            title = f"First {count} broken example{'s' if count != 1 else ''}"
            lines += ["", md.details(title, table)]
    if details and report.classes:
        rows = [
            [
                md.cell(row.name),
                f"{row.support:,}",
                *numbers.pair(row.base_f1, row.head_f1)[:2],
                numbers.change(row.head_f1 - row.base_f1, True).replace(" ", NBSP),
                numbers.interval(row.low, row.high, True).replace(" ", NBSP) if math.isfinite(row.low) else "—",
                ("✓ better" if row.low > 0 else "↘ worse") if row.significant else "",
            ]
            for row in report.classes
        ]
        headers = ["Class", "Examples", "F1 base", "F1 this change", "Change", f"{CONFIDENCE:.0%} CI", ""]
        table = md.table(headers, rows, numeric={1, 2, 3, 4, 5})
        listed = len(report.classes)
        more = (
            f" ({listed} of {report.class_count} classes, largest changes first)" if listed < report.class_count else ""
        )
        note = "_Per-class intervals are not corrected for the number of classes; read them as a guide._"
        lines += ["", md.details(f"F1 per class{more}", f"{table}\n\n{note}")]
    return [*lines, ""]
