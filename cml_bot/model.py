"""Core types shared by the pure core (diff, report, plots) and the adapters that publish them.

They live here, not in ``cml_bot.forges``, so the core never imports an adapter.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Verdict(str, enum.Enum):
    """The one-word outcome of a run, shown at the top of the report and as a status."""

    PASS = "pass"
    REGRESSED = "regressed"
    INCONCLUSIVE = "inconclusive"  # a gate's worsening exceeds its threshold but is not significant
    NO_BASELINE = "no-baseline"
    FAILED = "failed"  # a pipeline step failed; metrics may be missing


@dataclass(frozen=True)
class Image:
    """A rendered plot or user image. ``name`` is a plain file name, unique within one report."""

    name: str
    data: bytes


@dataclass(frozen=True)
class Artifact:
    """A file written next to the report (e.g. the full list of prediction flips), never posted."""

    name: str
    data: bytes
