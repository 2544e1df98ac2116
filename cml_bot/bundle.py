"""A run's results saved to a folder, to be reported later by trusted code.

Two uses, one format (``run.json``):

- the fork-PR / CI_JOB_TOKEN path: the token cannot write, so the run saves its evaluation; a
  trusted workflow (``workflow_run`` on GitHub) runs ``cml-bot publish --bundle DIR`` with a write
  token;
- matrix fan-in: each job saves a shard (``--shard NAME``); ``cml-bot merge`` reports them together.

A bundle is untrusted input (a fork wrote it, or the training step that ran the PR's code). It
carries data, never markdown: the publishing side renders the report and the plots itself, with its
own config, thresholds and baseline, escaping every value like any other run. Reading it is bounded
before anything is parsed: a regular file only (no FIFO, device or link to /dev/zero), at most
:data:`MAX_BYTES`, JSON nested at most :data:`MAX_DEPTH` levels, at most :data:`MAX_VALUES` metrics
or params per side, :data:`MAX_FILES` files of :data:`MAX_FILE_BYTES`, and strings cut to size.

Run links (``link:<label>`` facts, which :func:`cml_bot.sources.run_links` shows as "Run facts"
rows) are not taken from a bundle: label and URL would be the fork's choice, posted by the trusted
job (on GitLab a link to an issue or merge request of the same instance becomes a cross-reference).
The publishing side has no tracking server of its own to ask, so a published report has none.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cml_bot.data import DataChange
from cml_bot.errors import InputError
from cml_bot.files import read_limited
from cml_bot.pipeline import PipelineResult, StepResult
from cml_bot.results import RunResults, atomic_write, from_json, make_own_folder, to_json
from cml_bot.secrets import Secrets
from cml_bot.sources import LINK_FACT

RUN_FILE = "run.json"
FORMAT_VERSION = 2
MAX_BYTES = 64 * 1024 * 1024  # the whole run.json (plot data is base64 in it)
MAX_DEPTH = 32  # JSON nesting (a bundle needs 6)
MAX_VALUES = 20_000  # metrics, and params, per side (a report shows far fewer)
MAX_FILES = 200  # plot data and image files per side
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_HISTORY = 100  # recorded commits in the trend
MAX_STEPS = 100  # pipeline steps


@dataclass(frozen=True)
class SavedRun:
    platform: str  # "github" | "gitlab" | "local"
    repo: str | None
    change_number: int | None
    head_sha: str | None
    head_ref: str | None
    run_url: str | None
    mode: str  # CommentMode value
    shard: str | None  # set for matrix shards
    head: RunResults
    base: RunResults | None
    baseline_sha: str | None
    baseline_ref: str | None
    baseline_source: str
    pipeline: PipelineResult | None
    data_changes: tuple[DataChange, ...] = ()
    history: tuple[RunResults, ...] = ()  # recorded base-branch commits for the trend
    duration: float | None = None


def save_run(folder: Path, run: SavedRun, secrets: Secrets) -> None:
    """Write ``run`` to ``folder/run.json``, scrubbed of ``secrets`` (a bundle is uploaded as an
    artifact anyone who can read the run may download)."""
    run = secrets.scrub_tree(run)
    document = {
        "version": FORMAT_VERSION,
        "platform": run.platform,
        "repo": run.repo,
        "change_number": run.change_number,
        "head_sha": run.head_sha,
        "head_ref": run.head_ref,
        "run_url": run.run_url,
        "mode": run.mode,
        "shard": run.shard,
        "head": json.loads(to_json(run.head)),
        "base": json.loads(to_json(run.base)) if run.base is not None else None,
        "baseline": {"sha": run.baseline_sha, "ref": run.baseline_ref, "source": run.baseline_source},
        "pipeline": None
        if run.pipeline is None
        else [
            {
                "name": s.name,
                "command": s.command,
                "returncode": s.returncode,
                "duration": s.duration,
                "log_tail": list(s.log_tail),
                "timed_out": s.timed_out,
            }
            for s in run.pipeline.steps
        ],
        "data_changes": [
            {
                "path": c.path,
                "base_sha256": c.base_sha256,
                "head_sha256": c.head_sha256,
                "base_rows": c.base_rows,
                "head_rows": c.head_rows,
                "columns_added": list(c.columns_added),
                "columns_removed": list(c.columns_removed),
                "label_counts": [list(item) for item in c.label_counts],
            }
            for c in run.data_changes
        ],
        "history": [json.loads(to_json(RunResults(sha=h.sha, metrics=h.metrics))) for h in run.history],
        "duration": run.duration,
    }
    make_own_folder(folder)
    atomic_write(folder / RUN_FILE, secrets.scrub(json.dumps(document)).encode("utf-8"))


class _Reader:
    """Typed access to an untrusted document; any mismatch is an InputError naming the file."""

    def __init__(self, shown: str) -> None:
        self.shown = shown

    def fail(self, what: str) -> InputError:
        return InputError(f"{self.shown}: not a valid cml-bot bundle ({what})")

    def opt_str(self, value: object, what: str, limit: int = 10_000) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or len(value) > limit:
            raise self.fail(what)
        return value

    def text(self, value: object, what: str, limit: int = 10_000) -> str:
        checked = self.opt_str(value, what, limit)
        if checked is None:
            raise self.fail(what)
        return checked

    def opt_int(self, value: object, what: str) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(what)
        return value

    def opt_float(self, value: object, what: str) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(what)
        return float(value)

    def results(self, value: object, what: str) -> RunResults:
        if not isinstance(value, dict):
            raise self.fail(what)
        for key in ("metrics", "params"):
            values = value.get(key) or {}
            if not isinstance(values, dict) or len(values) > MAX_VALUES:
                raise self.fail(f"{what} {key}: at most {MAX_VALUES:,}")
            if any(len(name) > 1000 for name in values):
                raise self.fail(f"{what} {key}: a name longer than 1,000 characters")
        files = value.get("files") or {}
        if not isinstance(files, dict) or len(files) > MAX_FILES:
            raise self.fail(f"{what} files: at most {MAX_FILES}")
        if any(not isinstance(v, str) or len(v) > MAX_FILE_BYTES * 4 // 3 + 4 for v in files.values()):
            raise self.fail(f"{what} files: each at most {MAX_FILE_BYTES // (1024 * 1024)} MB")
        results = from_json(json.dumps(value), f"{self.shown} ({what})")
        if any(key.startswith(LINK_FACT) for key in results.facts):  # no links from a bundle (see above)
            facts = {key: fact for key, fact in results.facts.items() if not key.startswith(LINK_FACT)}
            results = replace(results, facts=facts)
        return results

    def strings(self, value: object, what: str) -> tuple[str, ...]:
        if not isinstance(value, list) or len(value) > 10_000:
            raise self.fail(what)
        return tuple(self.text(item, what) for item in value)


def load_run(folder: Path) -> SavedRun:
    path = folder / RUN_FILE
    shown = str(path)
    if not path.exists() and not path.is_symlink():
        raise InputError(f"{folder}: not a cml-bot bundle or shard folder (no {RUN_FILE})")
    # A regular file only, of bounded size: a FIFO or a link to /dev/zero is refused unread.
    document = json_document(read_limited(path, MAX_BYTES, shown), shown)
    r = _Reader(shown)
    if not isinstance(document, dict) or document.get("version") != FORMAT_VERSION:
        raise r.fail(f"version must be {FORMAT_VERSION}")
    baseline = document.get("baseline")
    if not isinstance(baseline, dict):
        raise r.fail("baseline")
    steps = document.get("pipeline")
    pipeline = None
    if steps is not None:
        if not isinstance(steps, list):
            raise r.fail("pipeline")
        if len(steps) > MAX_STEPS:
            raise r.fail(f"pipeline: at most {MAX_STEPS} steps")
        pipeline = PipelineResult(tuple(_step(r, step) for step in steps))
    changes = document.get("data_changes") or []
    history = document.get("history") or []
    if not isinstance(changes, list) or not isinstance(history, list):
        raise r.fail("data_changes/history")
    if len(history) > MAX_HISTORY or len(changes) > MAX_FILES:
        raise r.fail("too many history entries or data changes")
    base = document.get("base")
    return SavedRun(
        platform=r.text(document.get("platform"), "platform", 20),
        repo=r.opt_str(document.get("repo"), "repo", 300),
        change_number=r.opt_int(document.get("change_number"), "change_number"),
        head_sha=r.opt_str(document.get("head_sha"), "head_sha", 64),
        head_ref=r.opt_str(document.get("head_ref"), "head_ref", 1000),
        run_url=r.opt_str(document.get("run_url"), "run_url", 2000),
        mode=r.text(document.get("mode"), "mode", 20),
        shard=r.opt_str(document.get("shard"), "shard", 64),
        head=r.results(document.get("head"), "head"),
        base=None if base is None else r.results(base, "base"),
        baseline_sha=r.opt_str(baseline.get("sha"), "baseline.sha", 64),
        baseline_ref=r.opt_str(baseline.get("ref"), "baseline.ref", 1000),
        baseline_source=r.text(baseline.get("source"), "baseline.source"),
        pipeline=pipeline,
        data_changes=tuple(_change(r, change) for change in changes),
        history=tuple(r.results(item, "history") for item in history),
        duration=r.opt_float(document.get("duration"), "duration"),
    )


_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(rb"[\[\]{}]")


def json_document(data: bytes, shown: str) -> Any:
    """Parse JSON whose nesting was checked first (the parser recurses once per level)."""
    depth = deepest = 0
    for bracket in _BRACKETS.finditer(_STRINGS.sub(b'""', data)):
        depth += 1 if bracket.group() in (b"[", b"{") else -1
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            raise InputError(f"{shown}: not a valid cml-bot bundle (nested deeper than {MAX_DEPTH} levels)")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{shown}: unreadable ({str(exc)[:200]})") from None


def _step(r: _Reader, step: Any) -> StepResult:
    if not isinstance(step, dict):
        raise r.fail("pipeline step")
    return StepResult(
        name=r.text(step.get("name"), "step name", 200),
        command=r.text(step.get("command"), "step command"),
        returncode=r.opt_int(step.get("returncode"), "step returncode"),
        duration=r.opt_float(step.get("duration"), "step duration") or 0.0,
        log_tail=tuple(line[:2000] for line in r.strings(step.get("log_tail", []), "step log")[-50:]),
        timed_out=step.get("timed_out") is True,
    )


def _change(r: _Reader, change: Any) -> DataChange:
    if not isinstance(change, dict):
        raise r.fail("data change")
    labels = change.get("label_counts") or []
    if not isinstance(labels, list):
        raise r.fail("label counts")
    counts = []
    for item in labels:
        if not isinstance(item, list) or len(item) != 3:
            raise r.fail("label count")
        counts.append((r.text(item[0], "label"), r.opt_int(item[1], "count") or 0, r.opt_int(item[2], "count") or 0))
    return DataChange(
        path=r.text(change.get("path"), "data path", 1000),
        base_sha256=r.opt_str(change.get("base_sha256"), "hash", 128),
        head_sha256=r.opt_str(change.get("head_sha256"), "hash", 128),
        base_rows=r.opt_int(change.get("base_rows"), "rows"),
        head_rows=r.opt_int(change.get("head_rows"), "rows"),
        columns_added=r.strings(change.get("columns_added", []), "columns"),
        columns_removed=r.strings(change.get("columns_removed", []), "columns"),
        label_counts=tuple(counts),
    )
