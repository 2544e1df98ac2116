"""Recorded results in a GitHub data branch: ``records/<sha>.json`` on ``cml-bot-data``.

``cml-bot record`` on pushes to main commits one file per commit through the Git Data API (blob,
tree on top of the branch tip's tree, commit, fast-forward of the ref), creating the branch as an
orphan on first use; nothing is cloned or pushed. Pull request runs list ``records/`` once (ref ->
commit -> recursive tree, cached per store) and read the merge-base's file through the contents API.

Concurrency: the ref is only ever fast-forwarded (``force: false``). When another record landed in
between, GitHub answers 422 and the commit is rebuilt on the new tip, so records of different
commits made at the same time all land. A 409 (the repository briefly unavailable) is retried.
Requests go through the driver's :class:`~cml_bot.forges.http.JsonClient` (one retry policy); a
token that may only read (fork pull requests) can still list and load, and :meth:`GitHubStore.save`
raises :class:`ReadOnlyTokenError`.

The contents API returns files of up to 1 MB, so a record is kept under that: plot files are left
out, largest first, when metrics, params and files together would not fit (with a warning).

"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import urllib.parse
from dataclasses import dataclass, replace

from cml_bot import answers
from cml_bot.errors import ForgeError, InputError
from cml_bot.forges.base import FULL_SHA, write_refusal
from cml_bot.forges.github import git_commit, tree_files
from cml_bot.forges.http import HttpError, JsonClient, Request
from cml_bot.results import RunResults, from_json, to_json

__all__ = ["RECORDS_FOLDER", "RECORD_LIMIT", "GitHubStore"]

log = logging.getLogger(__name__)

RECORDS_FOLDER = "records"
RECORD_LIMIT = 1_000_000  # bytes; the contents API returns files of up to 1 MB
MAX_SAVE_ROUNDS = 10  # read tip -> commit -> fast-forward, again when a concurrent record moved the ref
ROUND_PAUSE = 0.25  # seconds times the round number between rounds, so racing jobs spread out (capped)
DROPPED_FACT = "cml-bot.files_left_out"
_MOVED = frozenset({422})  # "Update is not a fast forward" / "Reference already exists"

_RECORD_PATH = re.compile(rf"{RECORDS_FOLDER}/({FULL_SHA.pattern})\.json")


@dataclass(frozen=True)
class _Tip:
    commit: str
    tree: str


class GitHubStore:
    """A :class:`~cml_bot.baseline.ResultStore` in a branch of a GitHub repository."""

    def __init__(self, client: JsonClient, repo: str, branch: str, *, server_url: str = "https://github.com") -> None:
        if not branch.strip():
            raise InputError("baseline.data_branch: empty branch name")
        self.client = client
        self.repo = repo
        self.branch = branch
        self.server_url = server_url.rstrip("/")
        self._listing: set[str] | None = None
        self._listed_at: str | None = None  # the commit the listing was read from

    def __repr__(self) -> str:
        return f"GitHubStore(repo={self.repo!r}, branch={self.branch!r})"

    @property
    def _repo_path(self) -> str:
        return f"/repos/{self.repo}"

    def _ref_path(self, kind: str) -> str:
        return f"{self._repo_path}/git/{kind}/heads/{urllib.parse.quote(self.branch)}"

    # -- reading ---------------------------------------------------------------------------

    def _tip(self) -> _Tip | None:
        """The branch's commit and its tree, or None when the branch does not exist yet."""
        ref = self.client.json_unless(Request("GET", self._ref_path("ref")), frozenset({404}))
        if ref is None:
            return None
        commit = str(answers.dig(ref, "object", "sha"))
        data = self.client.json(Request("GET", f"{self._repo_path}/git/commits/{commit}"))
        return _Tip(commit, str(answers.dig(data, "tree", "sha")))

    def recorded(self) -> set[str]:
        """The commits with a record, from one recursive tree listing (cached in this store)."""
        if self._listing is None:
            tip = self._tip()
            if tip is None:
                log.info("GitHub: no results recorded yet (no branch %s)", self.branch)
                self._listing = set()
            else:
                files = tree_files(self.client, self._repo_path, tip.tree, self.branch, "some records may not be seen")
                self._listing = {match.group(1) for path in files if (match := _RECORD_PATH.fullmatch(path))}
                self._listed_at = tip.commit
                log.info("GitHub: %d recorded commit(s) in %s", len(self._listing), self.branch)
        return set(self._listing)

    def load(self, sha: str) -> RunResults | None:
        """The results recorded for ``sha``, or None when there are none."""
        if not FULL_SHA.fullmatch(sha):
            return None
        path = f"{RECORDS_FOLDER}/{sha}.json"
        shown = f"{self.repo}@{self.branch}:{path}"
        request = Request("GET", f"{self._repo_path}/contents/{path}", {"ref": self._listed_at or self.branch})
        # 403 "too_large": over 100 MB; files of 1-100 MB come back with encoding "none".
        answer = self.client.send(request, accept=frozenset({403, 404}))
        if answer.status == 404:
            return None
        data = self.client.decode(answer, request) if answer.status != 403 else {"type": "file", "encoding": "none"}
        if not isinstance(data, dict) or data.get("type") != "file":
            return None
        if data.get("encoding") != "base64":
            log.warning("GitHub: %s is over 1 MB and cannot be read through the contents API; skipped", shown)
            return None
        try:
            raw = base64.b64decode(str(data.get("content", "")))
        except (binascii.Error, ValueError):
            raise ForgeError(f"GitHub: {shown}: undecodable base64 content") from None
        return from_json(raw, shown)

    # -- writing ---------------------------------------------------------------------------

    def save(self, results: RunResults) -> str:
        """Commit ``records/<sha>.json`` on the data branch; returns its commit-pinned URL."""
        if not results.sha or not FULL_SHA.fullmatch(results.sha):
            raise InputError(f"cannot record results without a full commit sha (got {results.sha!r})")
        try:
            return self._save(results, results.sha)
        except HttpError as exc:
            raise write_refusal(exc, f"write branch {self.branch}") from None

    def _save(self, results: RunResults, sha: str) -> str:
        data = _fitting(results)
        path = f"{RECORDS_FOLDER}/{sha}.json"
        for attempt in range(1, MAX_SAVE_ROUNDS + 1):
            tip = self._tip()
            parent = (tip.commit, tip.tree) if tip is not None else None
            commit_sha, _ = git_commit(
                self.client, self._repo_path, {path: data}, f"cml-bot: results of {sha[:10]}", parent
            )

            if tip is None:
                # Repeating it after a lost answer gets 422 "Reference already exists": read below.
                move = Request(
                    "POST",
                    f"{self._repo_path}/git/refs",
                    json={"ref": f"refs/heads/{self.branch}", "sha": commit_sha},
                    repeatable=True,
                    conflict_is_transient=True,  # 409: the repository is briefly unavailable (Git database guide)
                )
            else:
                move = Request(
                    "PATCH",
                    self._ref_path("refs"),
                    json={"sha": commit_sha, "force": False},
                    conflict_is_transient=True,
                )
            answer = self.client.send(move, accept=_MOVED)
            if answer.status in _MOVED:
                now = self._tip()
                if now is not None and now.commit == commit_sha:  # an earlier try went through after all
                    return self._saved(sha, commit_sha, path)
                if now == tip:  # the branch did not move: not a race, a refusal
                    raise self.client.error(move, answer)
                log.info("GitHub: %s moved meanwhile (attempt %d), committing again", self.branch, attempt)
                self.client.sleep(min(ROUND_PAUSE * attempt, 2.0))
                continue
            if tip is None:
                log.info("GitHub: created the orphan branch %s", self.branch)
            return self._saved(sha, commit_sha, path)
        raise ForgeError(
            f"GitHub: could not update branch {self.branch} after {MAX_SAVE_ROUNDS} attempts (it kept moving)"
        )

    def _saved(self, sha: str, commit: str, path: str) -> str:
        if self._listing is not None:
            self._listing.add(sha)
        log.info("GitHub: recorded the results of %s in %s at %s", sha[:10], self.branch, commit[:7])
        return f"{self.server_url}/{self.repo}/blob/{commit}/{path}"


def _fitting(results: RunResults) -> bytes:
    """The record's JSON, with plot files left out (largest first) until it fits :data:`RECORD_LIMIT`."""
    data = to_json(results).encode("utf-8")
    if len(data) <= RECORD_LIMIT:
        return data
    files = dict(results.files)
    dropped: list[str] = []
    for name in sorted(files, key=lambda n: len(files[n]), reverse=True):
        del files[name]
        dropped.append(name)
        facts = {**results.facts, DROPPED_FACT: ", ".join(dropped)}
        data = to_json(replace(results, files=files, facts=facts)).encode("utf-8")
        if len(data) <= RECORD_LIMIT:
            log.warning(
                "GitHub: the record of %s is over %d bytes; left out the plot file(s) %s",
                str(results.sha)[:10],
                RECORD_LIMIT,
                ", ".join(dropped),
            )
            return data
    raise InputError(
        f"the results of {str(results.sha)[:10]} take {len(data)} bytes without plot files, "
        f"over the {RECORD_LIMIT} GitHub's contents API can read back; record fewer metrics"
    )
