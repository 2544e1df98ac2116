"""Recorded results in a GitHub data branch: ``records/<sha>.json`` on ``cml-bot-data``.

``cml-bot record`` on pushes to main commits one file per commit through the Git Data API (blob,
tree on top of the branch tip's tree, commit, fast-forward of the ref), creating the branch as an
orphan on first use; nothing is cloned or pushed. Pull request runs list ``records/`` once (ref ->
commit -> recursive tree, cached per store) and read the merge-base's file through the contents API.

Concurrency: the ref is only ever fast-forwarded (``force: false``). When another record landed in
between, GitHub answers 422 and the commit is rebuilt on the new tip, so records of different
commits made at the same time all land. Requests go through the GitHub adapter's client and retries
(:func:`cml_bot.forges.github.call_github`); a token that may only read (fork pull requests) can
still list and load, and :meth:`GitHubStore.save` raises :class:`ReadOnlyTokenError`.

The contents API returns files of up to 1 MB, so a record is kept under that: plot files are left
out, largest first, when metrics, params and files together would not fit (with a warning).

:func:`github_merge_base` asks the compare API for the merge-base of a pull request when the local
clone cannot tell (shallow, or the base branch not fetched).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import github

from cml_bot.context import CiContext
from cml_bot.errors import ForgeError, InputError, ReadOnlyTokenError
from cml_bot.forges.github import GitHubApiError, call_github, git_blob_sha, github_client, github_token
from cml_bot.results import RunResults, from_json, to_json

__all__ = ["RECORDS_FOLDER", "RECORD_LIMIT", "GitHubStore", "github_merge_base", "github_store"]

log = logging.getLogger(__name__)

RECORDS_FOLDER = "records"
RECORD_LIMIT = 1_000_000  # bytes; the contents API returns files of up to 1 MB
MAX_SAVE_ROUNDS = 10  # read tip -> commit -> fast-forward, again when a concurrent record moved the ref
ROUND_PAUSE = 0.25  # seconds times the round number between rounds, so racing jobs spread out (capped)
DROPPED_FACT = "cml-bot.files_left_out"

_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_RECORD_PATH = re.compile(rf"{RECORDS_FOLDER}/([0-9a-f]{{40}}|[0-9a-f]{{64}})\.json")


def github_store(
    context: CiContext, env: Mapping[str, str], branch: str, *, sleep: Callable[[float], None] = time.sleep
) -> GitHubStore:
    """The results store in ``branch`` of the repository this job runs for."""
    token = github_token(env)
    if not token:
        raise ForgeError("GitHub: no token for the data branch; set CML_BOT_TOKEN or GITHUB_TOKEN")
    if not context.repo or "/" not in context.repo:
        raise ForgeError("GitHub: the repository is unknown; set GITHUB_REPOSITORY (owner/name)")
    if not branch.strip():
        raise InputError("baseline.data_branch: empty branch name")
    return GitHubStore(
        repo=context.repo,
        token=token,
        branch=branch,
        api_url=context.api_url or "https://api.github.com",
        server_url=context.server_url or "https://github.com",
        sleep=sleep,
    )


def github_merge_base(
    context: CiContext,
    env: Mapping[str, str],
    base_ref: str,
    head_sha: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> str | None:
    """The merge-base of ``head_sha`` and branch ``base_ref`` from GitHub's compare API.

    None when GitHub cannot tell (no token or repository, an unknown branch or commit, or the
    request failing after retries); the reason is logged and the caller falls back to local git.
    """
    token = github_token(env)
    if not token or not context.repo or "/" not in context.repo:
        log.info("GitHub: no token or repository; the merge-base comes from local git only")
        return None
    api = _Api(context.api_url or "https://api.github.com", token, sleep)
    basehead = f"{urllib.parse.quote(base_ref, safe='')}...{urllib.parse.quote(head_sha, safe='')}"
    try:
        data = api.request("GET", f"/repos/{context.repo}/compare/{basehead}", parameters={"per_page": 1})
    except ForgeError as exc:
        log.warning("GitHub: no merge-base of %s and %s from the compare API: %s", base_ref, head_sha[:10], exc)
        return None
    sha = _dig(data, "merge_base_commit", "sha")
    if not isinstance(sha, str) or not _SHA.fullmatch(sha):
        log.warning("GitHub: the compare API gave no merge-base for %s...%s", base_ref, head_sha[:10])
        return None
    log.info("GitHub: merge-base of %s and %s is %s (compare API)", base_ref, head_sha[:10], sha[:10])
    return sha


@dataclass
class _Api:
    """JSON requests through PyGithub's requester with the adapter's retries and error mapping."""

    api_url: str
    token: str = field(repr=False)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    _gh: github.Github | None = field(init=False, default=None, repr=False)

    def request(
        self,
        verb: str,
        path: str,
        *,
        parameters: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Any:
        if self._gh is None:
            self._gh = github_client(self.api_url, self.token)
        gh = self._gh
        url = self.api_url.rstrip("/") + path

        def send() -> Any:
            _, data = gh.requester.requestJsonAndCheck(verb, url, parameters=parameters, input=body)
            return data

        return call_github(f"{verb} {path}", send, self.sleep)


@dataclass(frozen=True)
class _Tip:
    commit: str
    tree: str


class GitHubStore:
    """A :class:`~cml_bot.baseline.ResultStore` in a branch of a GitHub repository."""

    def __init__(
        self,
        repo: str,
        token: str,
        branch: str,
        *,
        api_url: str = "https://api.github.com",
        server_url: str = "https://github.com",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.repo = repo
        self.branch = branch
        self.server_url = server_url.rstrip("/")
        self._api = _Api(api_url, token, sleep)
        self._listing: set[str] | None = None
        self._listed_at: str | None = None  # the commit the listing was read from

    def __repr__(self) -> str:
        return f"GitHubStore(repo={self.repo!r}, branch={self.branch!r})"

    @property
    def _repo_path(self) -> str:
        return f"/repos/{self.repo}"

    def _ref_path(self, kind: str) -> str:
        return f"{self._repo_path}/git/{kind}/heads/{urllib.parse.quote(self.branch)}"

    def _record_path(self, sha: str) -> str:
        return f"{RECORDS_FOLDER}/{sha}.json"

    # -- reading ---------------------------------------------------------------------------

    def _tip(self) -> _Tip | None:
        """The branch's commit and its tree, or None when the branch does not exist yet."""
        try:
            ref = self._api.request("GET", self._ref_path("ref"))
        except GitHubApiError as exc:
            if exc.status == 404:
                return None
            raise
        commit = str(_dig(ref, "object", "sha"))
        data = self._api.request("GET", f"{self._repo_path}/git/commits/{commit}")
        return _Tip(commit, str(_dig(data, "tree", "sha")))

    def recorded(self) -> set[str]:
        """The commits with a record, from one recursive tree listing (cached in this store)."""
        if self._listing is None:
            tip = self._tip()
            if tip is None:
                log.info("GitHub: no results recorded yet (no branch %s)", self.branch)
                self._listing = set()
            else:
                tree = self._api.request(
                    "GET", f"{self._repo_path}/git/trees/{tip.tree}", parameters={"recursive": "1"}
                )
                if isinstance(tree, dict) and tree.get("truncated"):
                    log.warning("GitHub: the tree of %s is truncated; some records may not be seen", self.branch)
                entries = tree.get("tree", []) if isinstance(tree, dict) else []
                self._listing = {
                    match.group(1)
                    for entry in entries
                    if isinstance(entry, dict)
                    and entry.get("type") == "blob"
                    and (match := _RECORD_PATH.fullmatch(str(entry.get("path", ""))))
                }
                self._listed_at = tip.commit
                log.info("GitHub: %d recorded commit(s) in %s", len(self._listing), self.branch)
        return set(self._listing)

    def load(self, sha: str) -> RunResults | None:
        """The results recorded for ``sha``, or None when there are none."""
        if not _SHA.fullmatch(sha):
            return None
        path = self._record_path(sha)
        shown = f"{self.repo}@{self.branch}:{path}"
        try:
            data = self._api.request(
                "GET",
                f"{self._repo_path}/contents/{path}",
                parameters={"ref": self._listed_at or self.branch},
            )
        except GitHubApiError as exc:
            if exc.status == 404:
                return None
            raise
        except ReadOnlyTokenError as exc:  # GitHub answers 403 for files over 1 MB
            if "too large" not in exc.message:
                raise
            data = {"type": "file", "encoding": "none"}
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
        if not results.sha or not _SHA.fullmatch(results.sha):
            raise InputError(f"cannot record results without a full commit sha (got {results.sha!r})")
        data = _fitting(results)
        path = self._record_path(results.sha)
        blob = git_blob_sha(data)
        uploaded = False
        for attempt in range(1, MAX_SAVE_ROUNDS + 1):
            tip = self._tip()
            if not uploaded:
                content = base64.b64encode(data).decode("ascii")
                answer = self._api.request(
                    "POST", f"{self._repo_path}/git/blobs", body={"content": content, "encoding": "base64"}
                )
                if answer.get("sha") != blob:
                    raise ForgeError(f"GitHub: blob for {path} is {answer.get('sha')}, not {blob}")
                uploaded = True
            tree_body: dict[str, Any] = {"tree": [{"path": path, "mode": "100644", "type": "blob", "sha": blob}]}
            if tip is not None:
                tree_body["base_tree"] = tip.tree
            tree = self._api.request("POST", f"{self._repo_path}/git/trees", body=tree_body)
            commit = self._api.request(
                "POST",
                f"{self._repo_path}/git/commits",
                body={
                    "message": f"cml-bot: results of {results.sha[:10]}",
                    "tree": tree["sha"],
                    "parents": [tip.commit] if tip is not None else [],
                },
            )
            commit_sha = str(commit["sha"])
            try:
                if tip is None:
                    self._api.request(
                        "POST",
                        f"{self._repo_path}/git/refs",
                        body={"ref": f"refs/heads/{self.branch}", "sha": commit_sha},
                    )
                    log.info("GitHub: created the orphan branch %s", self.branch)
                else:
                    self._api.request("PATCH", self._ref_path("refs"), body={"sha": commit_sha, "force": False})
            except GitHubApiError as exc:
                if exc.status != 422:
                    raise
                now = self._tip()
                if now is not None and now.commit == commit_sha:  # an earlier try went through after all
                    return self._saved(results.sha, commit_sha, path)
                if now == tip:  # the branch did not move: not a race, a refusal
                    raise
                log.info("GitHub: %s moved meanwhile (attempt %d), committing again", self.branch, attempt)
                self._api.sleep(min(ROUND_PAUSE * attempt, 2.0))
                continue
            return self._saved(results.sha, commit_sha, path)
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


def _dig(value: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value
