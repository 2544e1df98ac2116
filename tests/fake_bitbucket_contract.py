"""The Bitbucket Cloud contract the fake Bitbucket serves, and the checks of each exchange against it.

Two sources, both under ``tests/contracts/bitbucket/``:

- ``openapi-subset.json``, cut from Atlassian's published description, checked with openapi-core.
  It needs three mechanical repairs to be checked with at all, each undone nowhere else:
  ``comment_content`` and ``comment_inline`` came out of the conversion with ``type`` (and
  ``required``) inside ``properties`` (the README: "the comment content schema came out of the
  conversion mangled"), which is moved back where it belongs; and the operations' ``security`` is
  dropped, because openapi-core cannot check OAuth 2 (it warns) and the API-key alternative only asks
  for an ``Authorization`` header: the fake checks every token itself.
- What the README lists outside that description, as small explicit JSON schemas below: Code
  Insights reports and annotations (the "Reports" group of the REST reference) and the merge-base.

Where the description disagrees with Bitbucket's documented behaviour (the README's list), the fake
follows the behaviour and the check knows it, each case in :data:`DEVIATIONS`.
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from openapi_core import OpenAPI
from openapi_core.configurations import Config
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

SPEC_PATH = Path(__file__).resolve().parent / "contracts" / "bitbucket" / "openapi-subset.json"
HOST = "https://api.bitbucket.org"  # the description's server is {HOST}/2.0

DEVIATIONS = {
    "type": "request bodies are checked as if they named their `type`: Atlassian's examples omit it",
    "src-post": "POST /src answers 201 with the new commit in Location (the reference), not 200",
    "src-file": "GET /src/{node}/{path} on a file answers the file's bytes, not a listing",
    "downloads": "the downloads operations document only an error default: successes are not checked",
    "errors": "errors carry `error.detail` as an object for missing scopes: checked with ERROR below",
    "comment-get": "a single comment GET is described as a list; the fake does not serve it",
    "too-long": "a comment over 32,768 characters gets Django's HTML 400 page (atlantis#1251)",
}

_LOCK = threading.Lock()
_SPEC: dict[str, Any] | None = None
_OPENAPI: OpenAPI | None = None


def spec() -> tuple[dict[str, Any], OpenAPI]:
    """The repaired description and its openapi-core object, loaded once per test session."""
    global _SPEC, _OPENAPI
    with _LOCK:
        if _SPEC is None or _OPENAPI is None:
            loaded = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
            schemas = loaded["components"]["schemas"]
            for name in ("comment_content", "comment_inline"):
                properties = schemas[name]["properties"]
                for key in ("type", "required"):
                    if key in properties and not isinstance(properties[key], dict):
                        schemas[name][key] = properties.pop(key)
            for operations in loaded["paths"].values():
                for operation in operations.values():
                    if isinstance(operation, dict):
                        operation.pop("security", None)
            # The description does not pass openapi-spec-validator (a duplicated `files` parameter
            # of POST /src, among others), so it is used without that check.
            _SPEC, _OPENAPI = loaded, OpenAPI.from_dict(loaded, config=Config(spec_validator_cls=None))
        return _SPEC, _OPENAPI


def scopes(template: str, method: str) -> list[str]:
    """The OAuth scopes the description gives an operation (read before the repair drops them)."""
    raw = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    operation = raw["paths"].get(template, {}).get(method.lower(), {})
    return [scope for entry in operation.get("security", []) for scope in entry.get("oauth2", [])]


@dataclass
class CheckedRequest:
    """What openapi-core needs to check a request (its Request protocol)."""

    host_url: str
    path: str
    method: str
    parameters: RequestParameters
    body: bytes | None
    content_type: str


@dataclass
class _Answer:
    status_code: int
    content_type: str
    headers: Headers
    data: bytes | None


def _problem(exc: Exception) -> str:
    detail = "; ".join(str(e) for e in getattr(exc, "schema_errors", [])) or str(exc)
    if exc.__cause__ is not None:
        detail += f" ({exc.__cause__})"
    return detail[:500]


def check_request(
    spec_path: str,
    method: str,
    query: list[tuple[str, str]],
    headers: list[tuple[str, str]],
    raw: bytes,
    content_type: str,
) -> tuple[CheckedRequest, str | None]:
    """The request as openapi-core sees it, and what is wrong with it (None when it matches).
    ``spec_path`` starts with ``/2.0`` and has each path parameter percent-encoded."""
    body = raw
    if raw and content_type.lower().startswith("application/json"):
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and "type" not in parsed:  # DEVIATIONS["type"]
            body = json.dumps({**parsed, "type": "(left out)"}).encode()
    request = CheckedRequest(
        host_url=HOST,
        path=spec_path,
        method=method.lower(),
        parameters=RequestParameters(query=ImmutableMultiDict(query), header=Headers(headers)),
        body=body or None,
        content_type=content_type.lower() if body else "",
    )
    try:
        spec()[1].validate_request(request)
    except Exception as exc:
        return request, _problem(exc)
    return request, None


def check_response(request: CheckedRequest, status: int, body: Any, headers: dict[str, str]) -> str | None:
    """What is wrong with a JSON answer of the fake to a request of the description."""
    if status >= 400:
        return check(ERROR, body)
    payload = b"" if body is None else json.dumps(body).encode()
    answer = _Answer(status, "application/json" if payload else "", Headers(headers), payload)
    try:
        spec()[1].validate_response(request, answer)
    except Exception as exc:
        return _problem(exc)
    return None


def check(schema: dict[str, Any], value: Any) -> str | None:
    """What is wrong with ``value`` under one of the explicit schemas below (None when nothing)."""
    errors = sorted(Draft202012Validator(schema).iter_errors(value), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    return "; ".join(f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {_said(e)}" for e in errors)[:500]


def _said(error: Any) -> str:
    """jsonschema's message, unless it quotes a long instance: then the rule that failed."""
    return str(error.message) if len(error.message) <= 160 else f"fails {error.validator}: {error.validator_value!r}"


def example(template: str, method: str, status: int) -> Any:
    """A deep copy of the description's example answer, where it has one."""
    operation = spec()[0]["paths"][template][method.lower()]
    media = operation["responses"][str(status)]["content"]["application/json"]
    return copy.deepcopy(media["example"])


# -- outside the description -------------------------------------------------------------------------

ERROR: dict[str, Any] = {
    # {"type": "error", "error": {"message": ..., "detail": ...}}: every error body of the API.
    "type": "object",
    "required": ["type", "error"],
    "properties": {
        "type": {"const": "error"},
        "error": {
            "type": "object",
            "required": ["message"],
            "properties": {"message": {"type": "string"}, "detail": {"type": ["string", "object"]}},
        },
    },
}

_TYPED_VALUE: list[dict[str, Any]] = [
    {"if": {"properties": {"type": {"const": kind}}}, "then": {"properties": {"value": value}}}
    for kind, value in (
        ("BOOLEAN", {"type": "boolean"}),
        ("DATE", {"type": "number"}),  # a timestamp in milliseconds
        ("DURATION", {"type": "number"}),  # milliseconds
        ("NUMBER", {"type": "number"}),
        ("PERCENTAGE", {"type": "number", "minimum": 0, "maximum": 100}),
        ("TEXT", {"type": "string"}),
        ("LINK", {"type": "object", "required": ["href"], "properties": {"text": {"type": "string"}}}),
    )
]

REPORT: dict[str, Any] = {
    # PUT .../commit/{commit}/reports/{reportId}: the "Reports" reference of Bitbucket Cloud.
    "type": "object",
    "required": ["title", "details", "report_type"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string", "minLength": 1},
        "details": {"type": "string"},
        "external_id": {"type": "string"},
        "reporter": {"type": "string"},
        "link": {"type": "string", "pattern": "^https?://"},
        "remote_link_enabled": {"type": "boolean"},
        "logo_url": {"type": "string", "pattern": "^https?://"},
        "report_type": {"enum": ["SECURITY", "COVERAGE", "TEST", "BUG"]},
        "result": {"enum": ["PASSED", "FAILED", "PENDING"]},
        "data": {
            "type": "array",
            "maxItems": 10,  # "An array of data fields to display information on the report. Maximum 10."
            "items": {
                "type": "object",
                "required": ["title", "type", "value"],
                "properties": {
                    "title": {"type": "string"},
                    "type": {"enum": ["BOOLEAN", "DATE", "DURATION", "LINK", "NUMBER", "PERCENTAGE", "TEXT"]},
                },
                "allOf": _TYPED_VALUE,
            },
        },
    },
}

ANNOTATION: dict[str, Any] = {
    "type": "object",
    "required": ["external_id", "annotation_type", "summary"],
    "properties": {
        "type": {"type": "string"},
        "external_id": {"type": "string", "minLength": 1},
        "annotation_type": {"enum": ["VULNERABILITY", "CODE_SMELL", "BUG"]},
        "path": {"type": "string"},
        "line": {"type": "integer", "minimum": 1},
        "summary": {"type": "string", "minLength": 1},
        "details": {"type": "string"},
        "result": {"enum": ["PASSED", "FAILED", "SKIPPED", "IGNORED"]},
        "severity": {"enum": ["CRITICAL", "HIGH", "MEDIUM", "LOW"]},
        "link": {"type": "string", "pattern": "^https?://"},
    },
}

ANNOTATIONS: dict[str, Any] = {
    # POST .../reports/{reportId}/annotations: "up to 100 annotations" per request.
    "type": "array",
    "minItems": 1,
    "maxItems": 100,
    "items": ANNOTATION,
}

REPORT_ANSWER: dict[str, Any] = {
    "allOf": [
        REPORT,
        {"type": "object", "required": ["type", "uuid", "external_id"], "properties": {"type": {"const": "report"}}},
    ]
}

ANNOTATIONS_ANSWER: dict[str, Any] = {
    "type": "array",
    "items": {"allOf": [ANNOTATION, {"type": "object", "required": ["uuid"]}]},
}

MERGE_BASE_ANSWER: dict[str, Any] = {
    # GET .../merge-base/{revspec}: "the best common ancestor between two commits", a commit.
    "type": "object",
    "required": ["type", "hash"],
    "properties": {"type": {"const": "commit"}, "hash": {"type": "string", "pattern": "^[0-9a-f]{40}$"}},
}
