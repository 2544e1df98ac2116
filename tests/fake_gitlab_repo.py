"""The repository part of the fake GitLab: commits, branches, files, tree and the Commits API.

Used by :mod:`fake_gitlab` (which owns the state and the lock); kept apart so neither module grows
past what one can read. Each answer cites the GitLab docs page it follows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

if TYPE_CHECKING:
    from fake_gitlab import FakeGitLab


class Reply(Exception):
    """An answer (raised to stop handling, or returned)."""

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def message(status: int, text: Any) -> Reply:
    return Reply(status, {"message": text})


@dataclass(frozen=True)
class Commit:
    id: str
    parent_ids: tuple[str, ...]
    message: str
    files: dict[str, bytes]  # the whole tree at this commit: path -> content
    last_commit: dict[str, str]  # path -> id of the commit that last changed it
    created_at: str

    def as_json(self) -> dict[str, Any]:
        title = self.message.splitlines()[0] if self.message else ""
        return {
            "id": self.id,
            "short_id": self.id[:8],
            "title": title,
            "message": self.message,
            "parent_ids": list(self.parent_ids),
            "author_name": "project_42_bot_cml",
            "author_email": "project_42_bot_cml@noreply.gitlab.example",
            "authored_date": self.created_at,
            "committer_name": "project_42_bot_cml",
            "committer_email": "project_42_bot_cml@noreply.gitlab.example",
            "created_at": self.created_at,
            "committed_date": self.created_at,
        }


def blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def paginated(items: list[Any], params: dict[str, Any], base: str, *, totals: bool = True) -> Reply:
    """One page with GitLab's offset pagination headers (https://docs.gitlab.com/ee/api/rest/#pagination):
    ``page`` from 1, ``per_page`` 20 by default and at most 100, ``X-Next-Page`` empty on the last page,
    and a ``Link`` header with ``prev``/``next``/``first``/``last``. Without ``totals`` (the Commits API,
    https://docs.gitlab.com/ee/api/commits.html#pagination-response-headers) there is no ``X-Total``,
    ``X-Total-Pages`` nor ``last`` link."""
    page = max(1, int(params.get("page", 1)))
    per_page = int(params.get("per_page", 20))
    per_page = 20 if per_page < 1 else min(100, per_page)
    total = len(items)
    pages = max(1, -(-total // per_page))
    chunk = items[(page - 1) * per_page : page * per_page]
    rest = {k: v for k, v in params.items() if k not in ("page", "per_page") and isinstance(v, str)}
    extra = "".join(f"&{k}={quote(v)}" for k, v in sorted(rest.items()))

    def link(p: int) -> str:
        return f"<{base}?page={p}&per_page={per_page}{extra}>"

    links = []
    if page > 1:
        links.append(f'{link(page - 1)}; rel="prev"')
    if page < pages:
        links.append(f'{link(page + 1)}; rel="next"')
    links.append(f'{link(1)}; rel="first"')
    if totals:
        links.append(f'{link(pages)}; rel="last"')
    headers = {
        "X-Page": str(page),
        "X-Per-Page": str(per_page),
        "X-Next-Page": str(page + 1) if page < pages else "",
        "X-Prev-Page": str(page - 1) if page > 1 else "",
        "Link": ", ".join(links),
    }
    if totals:
        headers.update({"X-Total": str(total), "X-Total-Pages": str(pages)})
    return Reply(200, chunk, headers)


class RepositoryApi:
    """Answers the repository endpoints of the contract for one fake (called with its lock held)."""

    def __init__(self, fake: FakeGitLab) -> None:
        self.fake = fake

    def answer(self, name: str, path: dict[str, str], params: dict[str, Any], may_push_protected: bool) -> Reply:
        if name == "get commit":
            return self._get_commit(unquote(path["sha"]))
        if name == "create commit":
            return self._create_commit(params, may_push_protected)
        if name == "list repository tree":
            return self._tree(self._resolve(params.get("ref"), "404 Tree Not Found"), params)
        if name in ("get file", "get raw file"):
            return self._file(unquote(path["file_path"]), params, raw=name == "get raw file")
        if name == "list branches":
            return self._branches(params)
        if name == "get branch":
            return self._branch(unquote(path["branch"]))
        raise AssertionError(f"no behaviour for {name}")  # pragma: no cover

    def _resolve(self, ref: str | None, missing: str) -> Commit:
        """A branch, ``HEAD`` (the default branch) or a commit id."""
        project = self.fake.project
        if ref is None or ref == "HEAD":
            ref = project.default_branch
        sha = project.branches.get(ref) or project.refs.get(ref) or (ref if ref in project.commits else None)
        if sha is None:
            raise message(404, missing)
        return project.commits[sha]

    # https://docs.gitlab.com/ee/api/commits.html#retrieve-a-commit
    def _get_commit(self, sha: str) -> Reply:
        project = self.fake.project
        commit = self._resolve(sha, "404 Commit Not Found")
        pipelines = [p for p in project.pipelines if p.sha == commit.id]
        last = pipelines[-1].as_json(self.fake.web_url) if pipelines else None
        return Reply(200, {**commit.as_json(), "last_pipeline": last, "status": last["status"] if last else None})

    # https://docs.gitlab.com/ee/api/repository_files.html: JSON with base64 content and
    # last_commit_id (``ref`` required), or raw (``ref`` optional: the default branch).
    def _file(self, file_path: str, params: dict[str, Any], *, raw: bool) -> Reply:
        commit = self._resolve(params.get("ref"), "404 Commit Not Found")
        if file_path not in commit.files:
            raise message(404, "404 File Not Found")
        content = commit.files[file_path]
        if raw:
            return Reply(200, content)
        return Reply(
            200,
            {
                "file_name": file_path.rsplit("/", 1)[-1],
                "file_path": file_path,
                "size": len(content),
                "encoding": "base64",
                "content": base64.b64encode(content).decode("ascii"),
                "content_sha256": hashlib.sha256(content).hexdigest(),
                "ref": params["ref"],
                "blob_id": blob_id(content),
                "commit_id": commit.id,
                "last_commit_id": commit.last_commit[file_path],
                "execute_filemode": False,
            },
        )

    def _branch_json(self, name: str) -> dict[str, Any]:
        project = self.fake.project
        return {
            "name": name,
            "commit": project.commits[project.branches[name]].as_json(),
            "default": name == project.default_branch,
            "protected": name == project.default_branch,
            "merged": False,
            "developers_can_push": False,
            "developers_can_merge": False,
            "can_push": True,
            "web_url": f"{self.fake.web_url}/-/tree/{quote(name, safe='')}",
        }

    # https://docs.gitlab.com/ee/api/branches.html#get-single-repository-branch
    def _branch(self, name: str) -> Reply:
        if name not in self.fake.project.branches:
            raise message(404, "404 Branch Not Found")
        return Reply(200, self._branch_json(name))

    # https://docs.gitlab.com/ee/api/branches.html#list-repository-branches
    def _branches(self, params: dict[str, Any]) -> Reply:
        names = sorted(self.fake.project.branches)
        if params.get("search"):
            names = [n for n in names if params["search"].lower() in n.lower()]
        base = f"{self.fake.api_url}/projects/{self.fake.project.id}/repository/branches"
        return paginated([self._branch_json(n) for n in names], params, base)

    # https://docs.gitlab.com/ee/api/repositories.html#list-repository-tree: direct children of
    # ``path``, folders first, then files, each by name; 404 "Tree Not Found" for a missing path.
    def _tree(self, commit: Commit, params: dict[str, Any]) -> Reply:
        folder = str(params.get("path", "")).strip("/")
        prefix = f"{folder}/" if folder else ""
        folders: set[str] = set()
        files: list[str] = []
        for path in commit.files:
            if not path.startswith(prefix):
                continue
            name, _, deeper = path[len(prefix) :].partition("/")
            if deeper:
                folders.add(name)
            else:
                files.append(name)
        if folder and not folders and not files:
            raise message(404, "404 Tree Not Found")
        entries = [
            {
                "id": hashlib.sha1(f"tree:{prefix}{n}".encode()).hexdigest(),
                "name": n,
                "type": "tree",
                "path": f"{prefix}{n}",
                "mode": "040000",
            }
            for n in sorted(folders)
        ] + [
            {
                "id": blob_id(commit.files[f"{prefix}{n}"]),
                "name": n,
                "type": "blob",
                "path": f"{prefix}{n}",
                "mode": "100644",
            }
            for n in sorted(files)
        ]
        base = f"{self.fake.api_url}/projects/{self.fake.project.id}/repository/tree"
        return paginated(entries, params, base)

    # https://docs.gitlab.com/ee/api/commits.html#create-a-commit: one commit on the branch's current
    # head (or on start_branch/start_sha, creating the branch), with GitLab's 400 messages.
    def _create_commit(self, data: dict[str, Any], may_push_protected: bool) -> Reply:
        fake = self.fake
        project = fake.project
        branch, actions = data["branch"], data.get("actions") or []
        if not actions and str(data.get("allow_empty", "false")).lower() not in ("true", "1"):
            raise Reply(400, {"error": "actions is missing"})
        if branch == project.default_branch and not may_push_protected:
            raise message(403, "403 Forbidden - You are not allowed to push into this branch")
        start = data.get("start_sha") or data.get("start_branch") or branch
        if start not in project.branches and start not in project.commits:
            raise message(400, "You can only create or edit files when you are on a branch")
        if start != branch and branch in project.branches:
            raise message(
                400, f"Something went wrong when we tried to create '{branch}' for you: Branch already exists"
            )
        base = project.commits[project.branches.get(start) or start]
        changes: dict[str, bytes | None] = {}
        for action in actions:
            kind, path = action["action"], action["file_path"]
            content = action.get("content")
            encoded: bytes | None = None
            if isinstance(content, str):
                try:
                    encoded = (
                        base64.b64decode(content, validate=True)
                        if action.get("encoding") == "base64"
                        else (content.encode("utf-8"))
                    )
                except (binascii.Error, ValueError):
                    raise message(400, "400 Bad request - content is not valid base64") from None
            exists = path in base.files or (path in changes and changes[path] is not None)
            if kind == "create" and exists:
                raise message(400, "A file with this name already exists")
            if kind in ("update", "delete", "move", "chmod") and not exists and kind != "move":
                raise message(400, "A file with this name doesn't exist")
            last = action.get("last_commit_id")
            if (
                kind in ("update", "delete", "move")
                and last
                and path in base.last_commit
                and (last != base.last_commit[path])
            ):
                raise message(400, "You are attempting to update a file that has changed since you started editing it.")
            if kind in ("create", "update"):
                if encoded is None:
                    raise Reply(400, {"error": f"actions[content] is missing for {kind}"})
                changes[path] = encoded
            elif kind == "delete":
                changes[path] = None
            elif kind == "move":
                previous = action.get("previous_path") or ""
                if previous not in base.files:
                    raise message(400, "A file with this name doesn't exist")
                changes[previous] = None
                changes[path] = encoded if encoded is not None else base.files[previous]
        commit = fake._commit_to(branch, data["commit_message"], changes, start=start if start != branch else None)
        return Reply(
            201,
            {
                **commit.as_json(),
                "stats": {"additions": 0, "deletions": 0, "total": 0},
                "status": None,
                "web_url": f"{fake.web_url}/-/commit/{commit.id}",
            },
        )
