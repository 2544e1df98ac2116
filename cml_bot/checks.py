"""Misconfiguration said out loud (pure): a threshold pattern that matches no metric, a gate that
cannot tell better from worse, a declared file or plot column that is not there. Each finding is
one line naming the closest existing names (:mod:`difflib`), for stderr and the report's notes.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence

from cml_bot.config import Threshold
from cml_bot.diff import Diff, matches, rule_for

CLOSEST = 3


def closest(name: str, candidates: Iterable[str], count: int = CLOSEST) -> list[str]:
    """The candidates most like ``name`` (at most ``count``), best first."""
    pool = list(dict.fromkeys(candidates))
    found = difflib.get_close_matches(name, pool, n=count, cutoff=0.5)
    if not found:  # `acc` for `accuracy`: a prefix is a strong hint difflib's ratio undervalues
        lowered = name.lower()
        found = [c for c in pool if c.lower().startswith(lowered) or lowered in c.lower()][:count]
    return found


def closest_hint(found: Sequence[str]) -> str:
    """``"; closest: a, b"`` to end a finding with the names found, or ``""`` for none."""
    return f"; closest: {', '.join(found)}" if found else ""


def threshold_findings(thresholds: Sequence[Threshold], result: Diff) -> list[str]:
    """Threshold patterns that match no metric, and gates whose metrics have no direction."""
    names = [m.name for m in result.metrics]
    findings = []
    for rule in thresholds:
        matched = [n for n in names if matches(rule.pattern, n)]
        if not matched:
            stem = rule.pattern.replace("*", "").replace("?", "").strip(".:/_-") or rule.pattern
            findings.append(f"thresholds: {rule.pattern!r} matches no metric{closest_hint(closest(stem, names))}")
            continue
        if (rule.max_drop is None and rule.max_drop_pct is None) or rule.direction is not None:
            continue
        governed = [m for m in result.metrics if m.name in matched and rule_for(m.name, thresholds) is rule]
        blind = [m.name for m in governed if m.direction is None and not matches(rule.pattern, m.name, exactly=True)]
        if blind:
            shown = ", ".join(blind[:3]) + (f" and {len(blind) - 3} more" if len(blind) > 3 else "")
            findings.append(
                f"thresholds: {rule.pattern!r} has max_drop, but cml-bot cannot tell better from worse for "
                f"{shown}; set direction: higher or lower"
            )
    return findings


def file_findings(problems: Mapping[str, str], nearby: Mapping[str, Sequence[str]]) -> list[str]:
    """Declared metrics/params files that gave nothing, with files of similar names nearby."""
    findings = []
    for path, why in problems.items():
        found = closest(path, nearby.get(path, ()))
        findings.append(f"{why}{closest_hint(found)}" if "not found" in why else why)
    return findings
