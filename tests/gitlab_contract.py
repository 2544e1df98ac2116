"""The GitLab REST contract the fake GitLab serves: one explicit entry per endpoint.

GitLab publishes no offline OpenAPI description of these endpoints (its ``openapi_v2.yaml`` covers
only part of the API), so each endpoint is declared here by hand from its REST documentation page,
cited next to the entry: method, path template, path parameters, and the query or body attributes
with their types, which are required, and documented limits.

GitLab's API (Grape) reads an attribute from the query string or from the body alike (its docs
send ``POST .../notes?body=note``), so one table serves both; the pagination attributes ``page`` and
``per_page`` come from https://docs.gitlab.com/ee/api/rest/#offset-based-pagination.

:func:`check` compares one request with its entry and returns every way it departs from the
contract (for the fake's violation list) together with the answer GitLab gives to such a request
(Grape's ``400 {"error": "state is missing"}`` and the like). Attributes the docs do not list are
violations too, although GitLab ignores them: a typo there (``pipeline-id``) silently changes
behaviour, which is exactly what the contract is for.

``job_token`` says whether the endpoint is listed under "Job token access" in
https://docs.gitlab.com/ee/ci/jobs/ci_job_token.html#job-token-access; elsewhere GitLab ignores a
job token and treats the request as unauthenticated. ``unauthenticated`` is the status GitLab then
answers: 401 where the endpoint class calls ``authenticate!`` (notes, commit statuses, ``/user``,
writes), 404 "Project Not Found" where it only looks the private project up (``find_project!``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

ParamType = Literal["integer", "string", "boolean", "float", "array", "file"]

DOCS = "https://docs.gitlab.com/ee/api"


@dataclass(frozen=True)
class Param:
    type: ParamType
    required: bool = False
    values: tuple[str, ...] = ()  # documented enumeration, if any
    max_length: int | None = None  # documented limit ("Must be 255 characters or fewer")
    items: Mapping[str, Param] | None = None  # for an array of hashes (``actions[]``)


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    template: str  # below /api/v4, GitLab's own notation: /projects/:id/...
    doc: str
    path: Mapping[str, Param] = field(default_factory=dict)
    params: Mapping[str, Param] = field(default_factory=dict)
    paginated: bool = False
    body: Literal["none", "json_or_form", "multipart"] = "none"
    job_token: bool = False
    unauthenticated: int = 404
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pattern = re.sub(r":(\w+)", r"(?P<\1>[^/]+)", self.template)
        object.__setattr__(self, "regex", re.compile(f"/api/v4{pattern}"))


PROJECT = {"id": Param("string", required=True)}  # numeric id or URL-encoded path
MR = {**PROJECT, "merge_request_iid": Param("integer", required=True)}
NOTE = {**MR, "note_id": Param("integer", required=True)}
SHA = {**PROJECT, "sha": Param("string", required=True)}
PAGINATION = {"page": Param("integer"), "per_page": Param("integer")}
NOTE_BODY_LIMIT = 1_000_000  # "The content of a note. Limited to 1,000,000 characters."

# Empty fields a real client adds that GitLab ignores: python-gitlab's RequestsBackend.prepare_send_data
# puts an ``avatar`` part (empty unless an avatar is uploaded) in every multipart request.
CLIENT_QUIRKS: Mapping[str, tuple[str, ...]] = {"multipart": ("avatar",)}

COMMIT_ACTION = {
    # https://docs.gitlab.com/ee/api/commits.html#create-a-commit ("actions[] attribute" table)
    "action": Param("string", required=True, values=("create", "delete", "move", "update", "chmod")),
    "file_path": Param("string", required=True),
    "content": Param("string"),
    "encoding": Param("string", values=("text", "base64")),
    "execute_filemode": Param("boolean"),
    "last_commit_id": Param("string"),
    "previous_path": Param("string"),
}

ENDPOINTS: tuple[Endpoint, ...] = (
    # https://docs.gitlab.com/ee/api/users.html#get-the-current-user
    Endpoint("current user", "GET", "/user", f"{DOCS}/users.html#get-the-current-user", unauthenticated=401),
    # https://docs.gitlab.com/ee/api/projects.html#get-a-single-project
    Endpoint(
        "get project",
        "GET",
        "/projects/:id",
        f"{DOCS}/projects.html#get-a-single-project",
        path=PROJECT,
        params={
            "license": Param("boolean"),
            "statistics": Param("boolean"),
            "with_custom_attributes": Param("boolean"),
        },
    ),
    # https://docs.gitlab.com/ee/api/merge_requests.html#get-single-mr
    Endpoint(
        "get merge request",
        "GET",
        "/projects/:id/merge_requests/:merge_request_iid",
        f"{DOCS}/merge_requests.html#get-single-mr",
        path=MR,
        job_token=True,
        params={
            "include_diverged_commits_count": Param("boolean"),
            "include_rebase_in_progress": Param("boolean"),
            "render_html": Param("boolean"),
        },
    ),
    # https://docs.gitlab.com/ee/api/notes.html#list-all-merge-request-notes
    Endpoint(
        "list merge request notes",
        "GET",
        "/projects/:id/merge_requests/:merge_request_iid/notes",
        f"{DOCS}/notes.html#list-all-merge-request-notes",
        path=MR,
        paginated=True,
        job_token=True,
        unauthenticated=401,
        params={
            "sort": Param("string", values=("asc", "desc")),
            "order_by": Param("string", values=("created_at", "updated_at")),
        },
    ),
    # https://docs.gitlab.com/ee/api/notes.html#get-single-merge-request-note
    Endpoint(
        "get merge request note",
        "GET",
        "/projects/:id/merge_requests/:merge_request_iid/notes/:note_id",
        f"{DOCS}/notes.html#get-single-merge-request-note",
        path=NOTE,
        job_token=True,
        unauthenticated=401,
    ),
    # https://docs.gitlab.com/ee/api/notes.html#create-new-merge-request-note
    Endpoint(
        "create merge request note",
        "POST",
        "/projects/:id/merge_requests/:merge_request_iid/notes",
        f"{DOCS}/notes.html#create-new-merge-request-note",
        path=MR,
        body="json_or_form",
        unauthenticated=401,
        params={
            "body": Param("string", required=True, max_length=NOTE_BODY_LIMIT),
            "created_at": Param("string"),
            "internal": Param("boolean"),
            "merge_request_diff_head_sha": Param("string"),
        },
    ),
    # https://docs.gitlab.com/ee/api/notes.html#modify-existing-merge-request-note
    Endpoint(
        "update merge request note",
        "PUT",
        "/projects/:id/merge_requests/:merge_request_iid/notes/:note_id",
        f"{DOCS}/notes.html#modify-existing-merge-request-note",
        path=NOTE,
        body="json_or_form",
        unauthenticated=401,
        params={"body": Param("string", required=True, max_length=NOTE_BODY_LIMIT), "confidential": Param("boolean")},
    ),
    # https://docs.gitlab.com/ee/api/notes.html#delete-a-merge-request-note
    Endpoint(
        "delete merge request note",
        "DELETE",
        "/projects/:id/merge_requests/:merge_request_iid/notes/:note_id",
        f"{DOCS}/notes.html#delete-a-merge-request-note",
        path=NOTE,
        unauthenticated=401,
    ),
    # https://docs.gitlab.com/ee/api/project_markdown_uploads.html#upload-a-file
    Endpoint(
        "upload a file",
        "POST",
        "/projects/:id/uploads",
        f"{DOCS}/project_markdown_uploads.html#upload-a-file",
        path=PROJECT,
        body="multipart",
        unauthenticated=401,
        params={"file": Param("file", required=True)},
    ),
    # https://docs.gitlab.com/ee/api/project_markdown_uploads.html#list-uploads (Maintainer role)
    Endpoint(
        "list uploads",
        "GET",
        "/projects/:id/uploads",
        f"{DOCS}/project_markdown_uploads.html#list-uploads",
        path=PROJECT,
        paginated=True,
    ),
    # https://docs.gitlab.com/ee/api/project_markdown_uploads.html#download-an-uploaded-file-by-secret-and-filename
    Endpoint(
        "download an upload",
        "GET",
        "/projects/:id/uploads/:secret/:filename",
        f"{DOCS}/project_markdown_uploads.html#download-an-uploaded-file-by-secret-and-filename",
        path={**PROJECT, "secret": Param("string", required=True), "filename": Param("string", required=True)},
    ),
    # https://docs.gitlab.com/ee/api/commits.html#set-commit-pipeline-status
    Endpoint(
        "set commit status",
        "POST",
        "/projects/:id/statuses/:sha",
        f"{DOCS}/commits.html#set-commit-pipeline-status",
        path=SHA,
        body="json_or_form",
        unauthenticated=401,
        params={
            "state": Param(
                "string", required=True, values=("pending", "running", "success", "failed", "canceled", "skipped")
            ),
            "ref": Param("string", max_length=255),
            "name": Param("string"),
            "context": Param("string"),
            "target_url": Param("string", max_length=255),
            "description": Param("string", max_length=255),
            "coverage": Param("float"),
            "pipeline_id": Param("integer"),
        },
    ),
    # https://docs.gitlab.com/ee/api/commits.html#list-commit-statuses
    Endpoint(
        "list commit statuses",
        "GET",
        "/projects/:id/repository/commits/:sha/statuses",
        f"{DOCS}/commits.html#list-commit-statuses",
        path=SHA,
        paginated=True,
        unauthenticated=401,
        params={
            "all": Param("boolean"),
            "name": Param("string"),
            "ref": Param("string"),
            "stage": Param("string"),
            "pipeline_id": Param("integer"),
            "order_by": Param("string", values=("id", "pipeline_id")),
            "sort": Param("string", values=("asc", "desc")),
        },
    ),
    # https://docs.gitlab.com/ee/api/commits.html#list-merge-requests-associated-with-a-commit
    Endpoint(
        "merge requests of a commit",
        "GET",
        "/projects/:id/repository/commits/:sha/merge_requests",
        f"{DOCS}/commits.html#list-merge-requests-associated-with-a-commit",
        path=SHA,
        paginated=True,
        job_token=True,
        params={"state": Param("string", values=("opened", "closed", "locked", "merged"))},
    ),
    # https://docs.gitlab.com/ee/api/commits.html#retrieve-a-commit
    Endpoint(
        "get commit",
        "GET",
        "/projects/:id/repository/commits/:sha",
        f"{DOCS}/commits.html#retrieve-a-commit",
        path=SHA,
        job_token=True,
        params={"stats": Param("boolean")},
    ),
    # https://docs.gitlab.com/ee/api/commits.html#create-a-commit
    Endpoint(
        "create commit",
        "POST",
        "/projects/:id/repository/commits",
        f"{DOCS}/commits.html#create-a-commit",
        path=PROJECT,
        body="json_or_form",
        unauthenticated=401,
        params={
            "branch": Param("string", required=True),
            "commit_message": Param("string", required=True),
            "actions": Param("array", items=COMMIT_ACTION),
            "allow_empty": Param("boolean"),
            "author_email": Param("string"),
            "author_name": Param("string"),
            "force": Param("boolean"),
            "start_branch": Param("string"),
            "start_project": Param("string"),
            "start_sha": Param("string"),
            "stats": Param("boolean"),
        },
    ),
    # https://docs.gitlab.com/ee/api/repositories.html#list-repository-tree
    Endpoint(
        "list repository tree",
        "GET",
        "/projects/:id/repository/tree",
        f"{DOCS}/repositories.html#list-repository-tree",
        path=PROJECT,
        paginated=True,
        params={
            "ref": Param("string"),
            "path": Param("string"),
            "recursive": Param("boolean"),
            "pagination": Param("string", values=("legacy", "keyset", "none")),
            "page_token": Param("string"),
        },
    ),
    # https://docs.gitlab.com/ee/api/repository_files.html#get-raw-file-from-repository
    Endpoint(
        "get raw file",
        "GET",
        "/projects/:id/repository/files/:file_path/raw",
        f"{DOCS}/repository_files.html#get-raw-file-from-repository",
        job_token=True,
        path={**PROJECT, "file_path": Param("string", required=True)},
        params={"ref": Param("string"), "lfs": Param("boolean")},
    ),
    # https://docs.gitlab.com/ee/api/repository_files.html#get-file-from-repository
    Endpoint(
        "get file",
        "GET",
        "/projects/:id/repository/files/:file_path",
        f"{DOCS}/repository_files.html#get-file-from-repository",
        path={**PROJECT, "file_path": Param("string", required=True)},
        params={"ref": Param("string", required=True)},
    ),
    # https://docs.gitlab.com/ee/api/branches.html#list-repository-branches
    Endpoint(
        "list branches",
        "GET",
        "/projects/:id/repository/branches",
        f"{DOCS}/branches.html#list-repository-branches",
        path=PROJECT,
        paginated=True,
        job_token=True,
        params={"search": Param("string"), "regex": Param("string")},
    ),
    # https://docs.gitlab.com/ee/api/branches.html#get-single-repository-branch
    Endpoint(
        "get branch",
        "GET",
        "/projects/:id/repository/branches/:branch",
        f"{DOCS}/branches.html#get-single-repository-branch",
        path={**PROJECT, "branch": Param("string", required=True)},
    ),
)


@dataclass(frozen=True)
class Match:
    endpoint: Endpoint
    path: dict[str, str]  # raw (still percent-encoded) path parameters


def match(method: str, raw_path: str) -> Match | str | None:
    """The endpoint serving ``method raw_path``; the literal "method" if only the method differs; else None."""
    other_method = False
    for endpoint in ENDPOINTS:
        found = endpoint.regex.fullmatch(raw_path)
        if found is None:
            continue
        if endpoint.method == method:
            return Match(endpoint, found.groupdict())
        other_method = True
    return "method" if other_method else None


@dataclass(frozen=True)
class Problem:
    violation: str  # what the fake records
    error: str  # Grape's wording in the 400 answer: "state is missing"


_INTEGER = re.compile(r"-?\d+")
_BOOLEANS = {"true", "false", "1", "0", "t", "f", "yes", "no"}


def check(found: Match, query: Mapping[str, list[str]], body: Mapping[str, Any] | None) -> list[Problem]:
    """Every departure of one request from its contract entry (empty when the request conforms)."""
    endpoint = found.endpoint
    where = f"{endpoint.method} {endpoint.template}"
    problems: list[Problem] = []
    for name, value in found.path.items():
        problems += _check_value(where, name, endpoint.path[name], value, from_query=True)
    allowed = dict(endpoint.params)
    if endpoint.paginated:
        allowed.update(PAGINATION)
    given: dict[str, Any] = {}
    for name, values in query.items():
        if len(values) > 1:
            problems.append(Problem(f"{where}: query attribute {name!r} given {len(values)} times", ""))
        given[name] = values[-1]
    for name, value in (body or {}).items():
        if name in given:
            problems.append(Problem(f"{where}: attribute {name!r} both in the query and the body", ""))
        given[name] = value
    for name, value in given.items():
        if name in CLIENT_QUIRKS.get(endpoint.body, ()) and value in ("", b""):
            continue
        param = allowed.get(name)
        if param is None:
            problems.append(Problem(f"{where}: attribute {name!r} is not documented ({endpoint.doc})", ""))
            continue
        problems += _check_value(where, name, param, value, from_query=name in query)
    for name, param in allowed.items():
        if param.required and name not in given:
            problems.append(
                Problem(f"{where}: required attribute {name!r} is missing ({endpoint.doc})", f"{name} is missing")
            )
    return problems


def _check_value(where: str, name: str, param: Param, value: Any, *, from_query: bool) -> list[Problem]:
    invalid = [Problem(f"{where}: {name}={_show(value)} is not a valid {param.type}", f"{name} is invalid")]
    if param.type == "file":
        return [] if isinstance(value, FilePart) else invalid
    if param.type == "array":
        if not isinstance(value, list):
            return invalid
        problems: list[Problem] = []
        for index, item in enumerate(value):
            if not isinstance(item, dict) or param.items is None:
                return invalid
            for key, item_value in item.items():
                item_param = param.items.get(key)
                label = f"{name}[{index}][{key}]"
                if item_param is None:
                    problems.append(Problem(f"{where}: attribute {label!r} is not documented", ""))
                else:
                    problems += _check_value(where, label, item_param, item_value, from_query=False)
            for key, item_param in param.items.items():
                if item_param.required and key not in item:
                    problems.append(
                        Problem(
                            f"{where}: required {name}[{index}][{key}] is missing", f"{name}[{index}][{key}] is missing"
                        )
                    )
        return problems
    text = value if isinstance(value, str) else None
    if param.type == "integer":
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (text is not None and _INTEGER.fullmatch(text))
    elif param.type == "boolean":
        ok = isinstance(value, bool) or (text is not None and text.lower() in _BOOLEANS)
    elif param.type == "float":
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)) or (text is not None and _is_float(text))
    else:  # a string: a JSON string, or any query value
        ok = text is not None
    if not ok:
        return invalid
    if param.values and value not in param.values:
        return [
            Problem(
                f"{where}: {name}={_show(value)} is not one of {list(param.values)}",
                f"{name} does not have a valid value",
            )
        ]
    if param.max_length is not None and text is not None and len(text) > param.max_length:
        return [Problem(f"{where}: {name} is {len(text):,} characters, over the documented {param.max_length:,}", "")]
    return []


@dataclass(frozen=True)
class FilePart:
    """A file field of a multipart body."""

    filename: str
    content_type: str
    data: bytes


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
