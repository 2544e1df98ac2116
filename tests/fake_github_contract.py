"""The GitHub REST contract the fake GitHub serves, and the checks of each exchange against it.

The contract is ``tests/contracts/github/openapi-subset.json``, cut from GitHub's own OpenAPI
description (octokit/openapi). A request is checked with openapi-core; so is a successful answer.
An error answer is checked against the schema the contract documents for that status (GitHub's
``basic-error``, ``validation-error`` ...), and an error status the contract does not list for the
operation (a 5xx, a 403 on an edit, a secondary rate limit) against ``basic-error``: GitHub can answer
those on any endpoint, and they carry ``message`` and ``documentation_url`` like every error.
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_schema_validator import OAS30Validator
from werkzeug.datastructures import Headers, ImmutableMultiDict

CONTRACTS = Path(__file__).resolve().parent / "contracts"
SPEC_PATH = CONTRACTS / "github" / "openapi-subset.json"
EVENTS = CONTRACTS / "github" / "events"
GENERIC_DOCS = "https://docs.github.com/rest"

_SPEC: dict[str, Any] | None = None
_OPENAPI: OpenAPI | None = None
_LOCK = threading.Lock()


def spec() -> tuple[dict[str, Any], OpenAPI]:
    """The parsed contract and its openapi-core object, loaded once per test session."""
    global _SPEC, _OPENAPI
    with _LOCK:
        if _SPEC is None or _OPENAPI is None:
            _SPEC = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
            _OPENAPI = OpenAPI.from_dict(_SPEC)
        return _SPEC, _OPENAPI


def resolve(node: Any) -> Any:
    """``node`` with its ``$ref`` chain followed (one level: nested refs stay refs)."""
    root, _ = spec()
    while isinstance(node, dict) and "$ref" in node:
        target: Any = root
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def operation(template: str, method: str) -> dict[str, Any]:
    root, _ = spec()
    op: dict[str, Any] = root["paths"][template][method.lower()]
    return op


def example(template: str, method: str, status: int) -> Any:
    """A deep copy of the contract's first response example for one operation and status."""
    response = resolve(operation(template, method)["responses"][str(status)])
    media = response["content"]["application/json"]
    value = resolve(next(iter(media["examples"].values())))["value"]
    if isinstance(value, dict) and "$ref" in value:  # an example whose value is another example
        value = resolve(value)["value"]
    return copy.deepcopy(value)


def docs_url(template: str, method: str) -> str:
    """The operation's documentation page, which GitHub names in ``documentation_url`` of its errors."""
    url = operation(template, method).get("externalDocs", {}).get("url")
    return str(url) if url else GENERIC_DOCS


@dataclass
class Request:
    """What openapi-core needs to check a request (its Request protocol)."""

    host_url: str
    path: str
    method: str
    parameters: RequestParameters
    body: bytes | None
    content_type: str


@dataclass
class _Response:
    """A response for openapi-core (its Response protocol)."""

    status_code: int
    content_type: str
    headers: Headers
    data: bytes | None


def _problem(exc: Exception) -> str:
    detail = "; ".join(str(e) for e in getattr(exc, "schema_errors", [])) or str(exc)
    if exc.__cause__ is not None:
        detail += f" ({exc.__cause__})"
    return detail


def check_request(
    spec_path: str,
    method: str,
    query: list[tuple[str, str]],
    headers: list[tuple[str, str]],
    raw: bytes,
    content_type: str,
) -> tuple[Request, str | None]:
    """The request as openapi-core sees it, and what is wrong with it (None when it matches).

    ``spec_path`` is the request path with each path parameter percent-encoded (openapi-core does
    not match a parameter holding '/', such as a ref or a file path).
    """
    request = Request(
        host_url="https://api.github.com",
        path=spec_path,
        method=method.lower(),
        parameters=RequestParameters(query=ImmutableMultiDict(query), header=Headers(headers)),
        body=raw or None,
        content_type=content_type.lower() if raw else "",
    )
    _, openapi = spec()
    try:
        openapi.validate_request(request)
    except Exception as exc:
        return request, _problem(exc)
    return request, None


def check_response(
    request: Request, template: str, method: str, status: int, body: Any, headers: dict[str, str]
) -> str | None:
    """What is wrong with an answer of the fake (None when it matches the contract)."""
    if status >= 400:
        return _check_error(template, method, status, body)
    payload = b"" if body is None else json.dumps(body).encode()
    response = _Response(status, "application/json" if payload else "", Headers(headers), payload)
    _, openapi = spec()
    try:
        openapi.validate_response(request, response)
    except Exception as exc:
        return _problem(exc)[:500]
    return None


def _check_error(template: str, method: str, status: int, body: Any) -> str | None:
    root, _ = spec()
    documented = operation(template, method)["responses"].get(str(status))
    schema: Any = None
    if documented is not None:
        schema = resolve(documented).get("content", {}).get("application/json", {}).get("schema")
    if schema is None:  # not listed for this operation (5xx, rate limits, ...): GitHub's basic error
        schema = {"$ref": "#/components/schemas/basic-error"}
    schema = resolve(schema)
    # GitHub's error schemas are property bags without required keys, so its oneOf of two of them
    # matches both; what is meant is "one of these shapes": any of them.
    alternatives = schema.get("oneOf") or [schema]
    problems = []
    for alternative in alternatives:
        validator = OAS30Validator({**resolve(alternative), "components": root["components"]})
        errors = [e.message for e in validator.iter_errors(body)]
        if not errors:
            if not isinstance(body, dict) or not isinstance(body.get("message"), str):
                return "an error answer without a message"
            return None
        problems.append("; ".join(errors))
    return " | ".join(problems)[:500]
