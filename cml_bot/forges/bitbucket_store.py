"""Recorded results in a Bitbucket data branch: ``records/<sha>.json`` on ``cml-bot-data``.

``cml-bot record`` on pushes to main commits one file per commit with ``POST /src`` (multipart: the
file under its path, then ``message``, ``branch`` and ``parents`` as form fields); pull request
pipelines list ``records/`` at the branch's tip (``GET /src/{commit}/records/``, every page) and read
the merge-base's file from the same commit. Nothing is cloned or pushed.

``POST /src`` cannot make an orphan branch: the first record creates the branch from the main
branch's tip, so it shares main's history and only adds ``records/``. Every record commit says
``[skip ci]``, so Pipelines does not build the data branch.

Concurrency: a commit names the tip it was planned on (``parents``); when another record landed in
between, Bitbucket answers 409 and the commit is planned again on the new tip, so records of
different commits made at the same time all land. After a failure that may have gone through, the
file is read back at the tip before committing again (:meth:`JsonClient.create`).
"""

from __future__ import annotations

import logging
import re
import urllib.parse

from cml_bot import answers
from cml_bot.errors import ForgeError, InputError
from cml_bot.forges.base import FULL_SHA, write_refusal
from cml_bot.forges.bitbucket import next_page, page_values
from cml_bot.forges.http import HttpError, JsonClient, Request, Response
from cml_bot.results import RunResults, from_json, to_json

__all__ = ["RECORDS_FOLDER", "BitbucketStore"]

log = logging.getLogger(__name__)

RECORDS_FOLDER = "records"
MAX_SAVE_ROUNDS = 10
ROUND_PAUSE = 0.25  # seconds times the round number between rounds, so racing jobs spread out (capped)
_RECORD_PATH = re.compile(rf"{RECORDS_FOLDER}/({FULL_SHA.pattern})\.json")
_MOVED = frozenset({409})  # "parents" is no longer the branch's tip


class BitbucketStore:
    """A :class:`~cml_bot.baseline.ResultStore` in a branch of a Bitbucket repository."""

    def __init__(self, client: JsonClient, repo_path: str, branch: str, *, web_url: str) -> None:
        if not branch.strip():
            raise InputError("baseline.data_branch: empty branch name")
        self.client = client
        self.repo_path = repo_path
        self.branch = branch
        self.web_url = web_url.rstrip("/")
        self._listing: set[str] | None = None
        self._listed_at: str | None = None  # the commit the listing was read from

    def __repr__(self) -> str:
        return f"BitbucketStore({self.repo_path!r}, branch={self.branch!r})"

    # -- reading ---------------------------------------------------------------------------

    def _tip(self) -> str | None:
        """The branch's head commit, or None when the branch does not exist yet."""
        request = Request("GET", f"{self.repo_path}/refs/branches/{urllib.parse.quote(self.branch, safe='')}")
        found = self.client.json_unless(request, frozenset({404}))
        if found is None:
            return None
        commit = answers.text(answers.dig(found, "target", "hash"))
        if commit is None or not FULL_SHA.fullmatch(commit):
            raise ForgeError(f"Bitbucket {request.describe()}: the answer names no commit")
        return commit

    def recorded(self) -> set[str]:
        """The commits with a record, from one listing of ``records/`` at the tip (cached)."""
        if self._listing is None:
            tip = self._tip()
            found: set[str] = set()
            if tip is not None:
                first = Request("GET", f"{self.repo_path}/src/{tip}/{RECORDS_FOLDER}/", {"pagelen": 100})
                try:
                    for page in self.client.pages(first, next_page):
                        for entry in page_values(self.client.decode(page, first)):
                            match = _RECORD_PATH.fullmatch(str(entry.get("path", "")))
                            if entry.get("type") == "commit_file" and match:
                                found.add(match.group(1))
                except HttpError as exc:
                    if exc.status != 404:  # 404: the branch has no records/ folder yet
                        raise
            self._listing, self._listed_at = found, tip
            log.info("Bitbucket: %d recorded commit(s) in %s", len(found), self.branch)
        return set(self._listing)

    def load(self, sha: str) -> RunResults | None:
        if not FULL_SHA.fullmatch(sha):
            return None
        at = self._listed_at or self._tip()
        if at is None:
            return None
        data = self._read(at, sha)
        return from_json(data, f"{self.branch}:{_path(sha)}") if data is not None else None

    def _read(self, commit: str, sha: str) -> bytes | None:
        answer = self.client.send(
            Request("GET", f"{self.repo_path}/src/{commit}/{_path(sha)}"), accept=frozenset({404})
        )
        return None if answer.status == 404 else answer.body

    # -- writing ---------------------------------------------------------------------------

    def save(self, results: RunResults) -> str:
        """Commit ``records/<sha>.json`` on the data branch; returns its commit-pinned URL."""
        sha = results.sha
        if not sha or not FULL_SHA.fullmatch(sha):
            raise InputError(f"cannot record results without a full commit sha (got {sha!r})")
        data = to_json(results).encode("utf-8")
        try:
            for attempt in range(1, MAX_SAVE_ROUNDS + 1):
                commit = self._commit(sha, data)
                if commit is not None:
                    if self._listing is not None:
                        self._listing.add(sha)
                    log.info("Bitbucket: recorded the results of %s in %s", sha[:10], self.branch)
                    return f"{self.web_url}/src/{commit}/{_path(sha)}"
                log.info("Bitbucket: %s moved meanwhile (attempt %d), committing again", self.branch, attempt)
                self.client.sleep(min(ROUND_PAUSE * attempt, 2.0))
        except HttpError as exc:
            raise write_refusal(exc, f"write branch {self.branch}") from None
        raise ForgeError(f"Bitbucket: could not update branch {self.branch} after {MAX_SAVE_ROUNDS} attempts")

    def _commit(self, sha: str, data: bytes) -> str | None:
        """One commit on the current tip: its id (or the branch name when only a read-back saw it
        land); None when the branch moved meanwhile."""
        tip = self._tip()
        form = {"message": f"cml-bot: results of {sha} [skip ci]", "branch": self.branch}
        if tip is not None:
            form["parents"] = tip
        request = Request(
            "POST", f"{self.repo_path}/src", files={_path(sha): (f"{sha}.json", data, "application/json")}, form=form
        )

        def landed() -> Response | None:
            now = self._tip()
            return Response(201, {}, b"") if now is not None and self._read(now, sha) == data else None

        answer = self.client.create(request, lambda response: response, landed, accept=_MOVED)
        if answer.status in _MOVED:
            return None
        created = (answer.header("location") or "").rstrip("/").rsplit("/", 1)[-1]
        return created if FULL_SHA.fullmatch(created) else urllib.parse.quote(self.branch, safe="")


def _path(sha: str) -> str:
    return f"{RECORDS_FOLDER}/{sha}.json"
