"""Reliability: many report runs through fake GitHub/GitLab servers that fail ~30% of requests, and a
property test of the whole render path.

Fault injection: the fakes' own fault hook (``_take_fault``) is overridden to fail each request with
probability ``rate`` from a seeded RNG: 5xx answers, connections dropped before the request takes
effect, dropped after it took effect (the client never hears of a write that happened), and 403 or
429 with Retry-After (secondary rate limits). Runs go through :func:`cml_bot.app.deliver`
with the real forge adapters and a no-op sleep. A run may give up with :class:`ForgeError` once
retries run out; the invariant is checked after every run (see :func:`check_comment`).
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import GitRepo
from fake_github import HEAD_SHA, TOKEN, FakeGitHub, github_env
from fake_github import Fault as GitHubFault
from fake_gitlab import FakeGitLab
from fake_gitlab import Fault as GitLabFault
from gitlab_fixtures import MR_IID, ci_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from markdown_it.rules_block.table import escapedSplit

from cml_bot.app import Effects, Evaluation, Options, build_report, deliver, evaluate
from cml_bot.config import Config, Threshold
from cml_bot.context import CiContext
from cml_bot.diff import diff
from cml_bot.errors import ForgeError
from cml_bot.forges.gitlab import COMMENT_LIMIT as GITLAB_LIMIT
from cml_bot.metrics import Value
from cml_bot.model import Image
from cml_bot.report import COMMENT_FOOTER, SUMMARY_FOOTER, PlotEntry, Report, RunFacts, render_markdown
from cml_bot.results import LocalStore

MARKER = "<!-- cml-bot report (id: default) -->"
CONFIG = "title: Reliability\nmetrics: [metrics.json]\nthresholds:\n  accuracy: {max_drop: 0.05}\n"
RATE = 0.3
KINDS = ("500", "502", "503", "drop", "drop-after", "403+retry-after", "429+retry-after")


def two_commit_repo(repo: GitRepo) -> None:
    repo.write("cml-bot.yaml", CONFIG)
    repo.write("metrics.json", {"accuracy": 0.8})
    repo.commit("main")
    repo.git("checkout", "--quiet", "-b", "changes")
    repo.write("metrics.json", {"accuracy": 0.81})
    repo.commit("change")


class FlakyGitHub(FakeGitHub):
    """The fake GitHub failing each request with probability ``rate`` (seeded)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.rng = random.Random(seed)
        self.rate = 0.0
        self.kinds = KINDS
        self.injected: Counter[str] = Counter()
        self.served = 0

    def _take_fault(self, method: str, path: str, query: str = "") -> GitHubFault | None:
        with self._lock:
            self.served += 1
            if self.rng.random() >= self.rate:
                return None
            kind = self.rng.choice(self.kinds)
            self.injected[kind] += 1
            if kind in ("drop", "drop-after"):
                return GitHubFault(method, "", kind)
            if kind.endswith("+retry-after"):
                status = int(kind[:3])
                retry = {"Retry-After": "1"}
                return GitHubFault(method, "", status=status, message="secondary rate limit", headers=retry)
            return GitHubFault(method, "", status=int(kind))


class FlakyGitLab(FakeGitLab):
    def __init__(self, seed: int) -> None:
        super().__init__()
        self.rng = random.Random(seed)
        self.rate = 0.0
        self.kinds = ("500", "502", "503", "drop", "drop_after", "status_after", "429+retry-after")
        self.injected: Counter[str] = Counter()
        self.served = 0

    def _take_fault(self, method: str, path: str) -> GitLabFault | None:
        self.served += 1  # called with the lock held
        if self.rng.random() >= self.rate:
            return None
        kind = self.rng.choice(self.kinds)
        self.injected[kind] += 1
        if kind in ("drop", "drop_after"):
            return GitLabFault(method, "", kind)  # type: ignore[arg-type]
        if kind == "status_after":
            return GitLabFault(method, "", "status_after", status=502)
        if kind == "429+retry-after":
            return GitLabFault(method, "", status=429, retry_after=1, message="Retry later")
        return GitLabFault(method, "", status=int(kind))


def _local_store(
    config: Config, context: CiContext, env: Mapping[str, str], *, sleep: Callable[[float], None] = time.sleep
) -> LocalStore:
    return LocalStore(config.root / ".cml-bot" / "records")


def _with_run(evaluation: Evaluation, run: int) -> Evaluation:
    """This run's results: a body that differs from every other run's."""
    head = replace(evaluation.head, metrics={"accuracy": 0.8 + (run % 11) / 1000, "run": run})
    return replace(evaluation, head=head)


def _image(run: int) -> Image:
    return Image("plot-01-loss.png", b"\x89PNG\r\n\x1a\n fake image %d" % (run // 3))


def _report(evaluation: Evaluation, run: int) -> tuple[Report, tuple[Image, ...]]:
    """The run's report with one plot (a new image every third run, so uploads happen too)."""
    report, _ = build_report(evaluation)
    image = _image(run)
    return replace(report, plots=(PlotEntry("Loss", (image.name,)),)), (image,)


def check_comment(bodies: list[str], expected: str | None) -> None:
    """The invariant after a run: at most one comment carries the marker (no duplicate, ever);
    after a run that succeeded, exactly one, and its body is that run's body."""
    assert len(bodies) <= 1, f"{len(bodies)} comments carry the marker"
    if expected is not None:
        assert bodies == [expected]


def run_many(
    runs: int,
    set_rate: Any,
    publish: Any,
    marked_bodies: Any,
) -> tuple[list[int], str]:
    """``runs`` runs; every 50th with all requests failing (so some runs must give up). Returns the
    failed runs and the last successful body."""
    failed: list[int] = []
    last_body = ""
    for run in range(runs):
        set_rate(1.0 if run % 50 == 25 else RATE)
        try:
            body = publish(run)
        except ForgeError:
            failed.append(run)
            check_comment(marked_bodies(), None)
            continue
        check_comment(marked_bodies(), body)
        last_body = body
    return failed, last_body


@pytest.fixture
def flaky_github() -> Iterator[FlakyGitHub]:
    fake = FlakyGitHub(seed=20240607)
    fake.add_token(TOKEN, "cml-bot-user")
    fake.add_pull(2, HEAD_SHA)
    fake.add_comment(2, f"quoting the bot:\n> {MARKER}", login="someone")  # not ours: never edited
    with fake:
        yield fake


def test_github_200_flaky_runs_end_with_one_up_to_date_comment(
    flaky_github: FlakyGitHub, repo: GitRepo, tmp_path: Path
) -> None:
    fake = flaky_github
    two_commit_repo(repo)
    sleeps: list[float] = []
    env = github_env(fake)
    base = Effects(env=env, sleep=sleeps.append, store_factory=_local_store)
    options = Options(root=repo.root, base_rev="main", report_dir=tmp_path / "report")
    evaluation = evaluate(options, base)
    assert evaluation.context.change_number == 2

    def publish(run: int) -> str:
        summary = tmp_path / f"summary-{run}.md"
        effects = replace(base, env={**env, "GITHUB_STEP_SUMMARY": str(summary)})
        current = _with_run(evaluation, run)
        report, images = _report(current, run)
        outcome = deliver(options, effects, current, report, images)
        assert outcome.publication is not None and outcome.publication.comment_url
        # The full report, as posted (it is under the limit); only the last line says where it is shown.
        body = summary.read_text(encoding="utf-8").replace(SUMMARY_FOOTER, COMMENT_FOOTER)
        assert re.search(rf"^\| run +\| [^|]*\| {run} +\|", body, re.M) and body.count(MARKER) == 1
        # the image link points at a commit of the assets branch holding this run's image
        [(commit, path)] = re.findall(r"/raw/([0-9a-f]{40})/([^)\s]+)\)", body)
        assert fake.commit_files(commit)[path] == _image(run).data
        return body

    def marked() -> list[str]:
        return [c["body"] for c in fake.comments_on(2) if MARKER in c["body"] and c["login"] == "cml-bot-user"]

    failed, last = run_many(200, lambda rate: setattr(fake, "rate", rate), publish, marked)
    print(f"github: {fake.served} requests, faults {dict(fake.injected)}, runs that gave up {failed}")

    if failed and failed[-1] == 199:  # the last run gave up: one more, without faults, must converge
        fake.rate = 0.0
        last = publish(200)
    mine = [c for c in fake.comments_on(2) if c["login"] == "cml-bot-user"]
    assert [c["body"] for c in mine] == [last]  # exactly one comment of ours: the last run's body
    assert fake.comments_on(2)[0]["body"].startswith("quoting the bot")
    # the faults really happened, at about the planned rate, of every kind; few runs gave up
    assert set(fake.injected) == set(KINDS)
    assert 0.2 < sum(fake.injected.values()) / fake.served < 0.45
    assert {25, 75, 125, 175} <= set(failed) and len(failed) <= 20, failed
    assert sleeps and max(sleeps) <= 60
    assert fake.violations == []


@pytest.fixture
def flaky_gitlab() -> Iterator[FlakyGitLab]:
    fake = FlakyGitLab(seed=7)
    with fake:
        fake.add_merge_request(MR_IID, sha=HEAD_SHA)
        fake.add_note(MR_IID, f"quoting the bot: {MARKER}", author=7)
        yield fake


def test_gitlab_100_flaky_runs_end_with_one_up_to_date_note(
    flaky_gitlab: FlakyGitLab, repo: GitRepo, tmp_path: Path
) -> None:
    fake = flaky_gitlab
    two_commit_repo(repo)
    env = ci_env(fake, CI_MERGE_REQUEST_DIFF_BASE_SHA=None, CI_COMMIT_SHA=HEAD_SHA)
    sleeps: list[float] = []
    base = Effects(env=env, sleep=sleeps.append, store_factory=_local_store)
    options = Options(root=repo.root, base_rev="main", report_dir=tmp_path / "report")
    evaluation = evaluate(options, base)

    def publish(run: int) -> str:
        current = _with_run(evaluation, run)
        report, images = _report(current, run)
        outcome = deliver(options, base, current, report, images)
        assert outcome.publication is not None and outcome.publication.comment_url
        # the body this run posts: its report, the image linked by an upload holding this run's image
        [url] = [u["url"] for u in fake.uploads if u["data"] == images[0].data][-1:]
        return render_markdown(report, {images[0].name: url}, limit=GITLAB_LIMIT)

    def marked() -> list[str]:
        return [n["body"] for n in fake.marked_notes(MR_IID, MARKER) if n["author"]["id"] == fake.bot.id]

    failed, last = run_many(100, lambda rate: setattr(fake, "rate", rate), publish, marked)
    print(f"gitlab: {fake.served} requests, faults {dict(fake.injected)}, runs that gave up {failed}")

    if failed and failed[-1] == 99:
        fake.rate = 0.0
        last = publish(100)
    assert marked() == [last]
    assert fake.notes(MR_IID)[0]["author"]["id"] == 7  # someone else's quote: never touched
    assert set(fake.injected) == set(fake.kinds)
    assert 0.2 < sum(fake.injected.values()) / fake.served < 0.45
    assert {25, 75} <= set(failed) and len(failed) <= 12, failed
    assert sleeps
    assert fake.violations == []  # every request, faulted or not, kept to the GitLab contract


# --- the whole render path, fuzzed ----------------------------------------------------------------

PARSER = MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough")


def table_rows(markdown: str) -> list[list[list[str]]]:
    """Every table's source lines split into cells the way the GFM table rule splits them."""
    lines = markdown.split("\n")
    tables = []
    for token in PARSER.parse(markdown):
        if token.type == "table_open" and token.map:
            start, end = token.map
            rows = []
            for line in lines[start:end]:
                text = line.strip()
                text = text[1:] if text.startswith("|") else text
                text = text[:-1] if text.endswith("|") and not text.endswith("\\|") else text
                rows.append(escapedSplit(text))
            tables.append(rows)
    return tables


def assert_tables_sound(markdown: str) -> list[list[list[str]]]:
    tables = table_rows(markdown)
    for rows in tables:
        width = len(rows[0])
        assert all(len(cells) == width for cells in rows), [len(c) for c in rows]
    return tables


names = st.text(min_size=1, max_size=40).filter(lambda s: s.strip() != "")
values: st.SearchStrategy[Value] = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.booleans(),
    st.text(max_size=40),
    st.none(),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.dictionaries(names, values, max_size=12),
    head=st.dictionaries(names, values, min_size=1, max_size=12),
    params=st.dictionaries(names, values, max_size=6),
    title=st.text(max_size=60),
    ref=st.text(min_size=1, max_size=30),
)
def test_any_metric_names_and_values_render_sound_tables(
    base: dict[str, Value], head: dict[str, Value], params: dict[str, Value], title: str, ref: str
) -> None:
    result = diff(base, head, (Threshold("*", max_drop=0.1),), params, {**params, "extra": 1})
    report = Report(
        title=title or "t",
        report_id="default",
        diff=result,
        facts=RunFacts(head_sha="a" * 40, head_ref=ref, base_sha="b" * 40, base_ref=ref, baseline_source="fuzz"),
    )
    markdown = render_markdown(report, {}, limit=65536)

    assert markdown.count(MARKER) == 1 and markdown.startswith(MARKER)
    tables = assert_tables_sound(markdown)
    # the metrics table has one row per metric (no row split in two, none merged)
    metric_rows = [rows for rows in tables if rows and "Metric" in rows[0][0]]
    assert len(metric_rows) == 1
    assert len(metric_rows[0]) - 2 == len(result.metrics)
    html = PARSER.render(markdown)
    assert "<script" not in html.lower()
