"""The one sanitiser for secrets: every output channel passes its text through :class:`Secrets`.

Standard library only: the CLI imports it at start, before anything can print.

What counts as a secret (:meth:`Secrets.from_env`):

- the forge tokens (:data:`TOKEN_VARIABLES`);
- every variable whose name marks a secret: ``*TOKEN*``, ``*PASSWORD*``, ``*PASSWD*``, ``*SECRET*``,
  ``*JWT*``, ``*_KEY`` (GitLab's ``CI_REGISTRY_PASSWORD``, ``CI_DEPENDENCY_PROXY_PASSWORD``, its
  signed job JWTs ``CI_JOB_JWT``/``_V1``/``_V2`` and ``id_tokens`` such as ``AWS_ID_TOKEN`` or
  ``AWS_OIDC_JWT`` among them);
- every variable whose value is a JWT (``eyJ...``, two or three dots: a signed or encrypted token
  for Vault or a cloud's OIDC login), whatever its name (``OIDC`` in a name alone is no sign: a
  role ARN or an issuer URL is not a secret, and masking it would garble every output);
- the password (or a token used as the user name) in the userinfo of a URL in any variable, such as
  GitLab's ``CI_REPOSITORY_URL`` (``https://gitlab-ci-token:<job token>@host/...``).

Each is replaced by :data:`MASK` in every form it is likely to take in text: as is, URL-encoded,
JSON-escaped, as Python's ``repr`` shows it (``print(os.environ)``, a dict: ``\\'`` when the value
holds both quotes), quoted for a shell (``shlex.quote``, bash's ``set -x`` trace), and base64
encoded, alone, after git's ``x-access-token:`` / ``gitlab-ci-token:``
basic-auth prefixes (``git config --list`` after ``actions/checkout`` prints the
``http.extraheader``), and at each of the three byte alignments inside longer base64 text. Userinfo
in any URL in the text is replaced too, known or not.

Values shorter than :data:`MIN_SECRET_LENGTH` are not replaced: such a value is a flag (``true``,
``1``, ``main``) rather than a secret, and replacing it everywhere would garble every output. It is
the minimum GitLab accepts for a masked variable.

Where to scrub: untrusted data is scrubbed as data (:meth:`Secrets.scrub_tree`) *before* it is
escaped for a channel, because escaping can split a secret (markdown turns ``ghp_x`` into
``ghp\\_x``); each writer then scrubs the final text once more.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import logging
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

MASK = "***"
MIN_SECRET_LENGTH = 8

# The forge tokens: never shown, never written, never passed to the project's own commands.
TOKEN_VARIABLES = (
    "CML_BOT_TOKEN",
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "GITLAB_TOKEN",
    "CI_JOB_TOKEN",
    "INPUT_GITHUB-TOKEN",
    "INPUT_GITHUB_TOKEN",
    # MLflow's client reads these (cml_bot.sources.mlflow); the project's commands never get them.
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "DATABRICKS_TOKEN",
    # GitLab's signed job JWTs (Vault / cloud OIDC login as this project's pipeline), given to every
    # job before GitLab 17.0 without the user asking. A job that needs one declares ``id_tokens``
    # (GitLab's replacement): those are the user's to pass, scrubbed but kept for the commands.
    "CI_JOB_JWT",
    "CI_JOB_JWT_V1",
    "CI_JOB_JWT_V2",
)
# GitLab variables that carry the job token under another name.
_FORGE_DERIVED = ("CI_REPOSITORY_URL", "CI_REGISTRY_PASSWORD", "CI_DEPENDENCY_PROXY_PASSWORD")
_SECRET_NAME = re.compile(r"TOKEN|PASSWORD|PASSWD|SECRET|JWT|_KEY$", re.IGNORECASE)
# A JWT: base64url JSON header ("eyJ" is '{"'), then payload and signature (JWS), or four more parts
# (JWE); the signature of an unsigned token is empty.
_JWT_VALUE = re.compile(r"eyJ[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*){2}(?:(?:\.[A-Za-z0-9_-]*){2})?")
# git sends "Authorization: basic base64(<user>:<token>)"; these are the users it takes for tokens.
_BASIC_AUTH_USERS = (b"x-access-token:", b"gitlab-ci-token:", b"oauth2:", b"git:", b":")
# scheme://userinfo@ : the userinfo ends at the last "@" before the path (as browsers parse it);
# bounded so that a long run of text after "://" cannot make the search quadratic.
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]{0,30}://)[^\s/?#\\<>\"'`]{1,256}@")
# The most characters one match of _URL_USERINFO covers: a scheme, "://", the userinfo, "@".
_URL_USERINFO_SPAN = 1 + 30 + 3 + 256 + 1
_URL_IN_TEXT = re.compile(r"(?i)\b[a-z][a-z0-9+.\-]{0,30}://[^\s<>\"'`]+")

T = TypeVar("T")


def secret_variable(name: str) -> bool:
    """True when an environment variable's name says it holds a secret."""
    return name in TOKEN_VARIABLES or name in _FORGE_DERIVED or bool(_SECRET_NAME.search(name))


def looks_like_jwt(value: str) -> bool:
    """True when ``value`` (surrounding space aside) is a JSON Web Token, whatever names it."""
    return _JWT_VALUE.fullmatch(value.strip()) is not None


@dataclass(frozen=True)
class Secrets:
    """The secret values of one run, and how to remove them from text. ``repr`` shows no value."""

    values: frozenset[str] = frozenset()
    _forms: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        values = frozenset(v for v in self.values if len(v) >= MIN_SECRET_LENGTH)
        forms: set[str] = set()
        for value in values:
            forms.update(_forms_of(value))
        object.__setattr__(self, "values", values)
        # Longest first: a base64 header is replaced whole, before the shorter core inside it.
        object.__setattr__(self, "_forms", tuple(sorted(forms, key=lambda f: (-len(f), f))))

    def __repr__(self) -> str:
        return f"Secrets(<{len(self.values)} values>)"

    @classmethod
    def from_env(cls, env: Mapping[str, str], extra: Iterable[str] = ()) -> Secrets:
        """The secrets in ``env`` (see the module docstring) plus ``extra`` (e.g. a token the forge
        layer obtained at run time)."""
        found = {value for value in extra if value}
        for name, value in env.items():
            if not value:
                continue
            if secret_variable(name) or looks_like_jwt(value):
                found.add(value)
                found.add(value.strip())
            if "://" in value and "@" in value:
                found.update(_userinfo_secrets(value))
        return cls(frozenset(found))

    @property
    def empty(self) -> bool:
        return not self.values

    @property
    def span(self) -> int:
        """The most characters one replacement covers (the longest form, or a URL's userinfo). Text
        cut into pieces is only safe to scrub piece by piece when each cut was scrubbed with at
        least this many characters seen past it (see ``cml_bot.pipeline``)."""
        return max(_URL_USERINFO_SPAN, max((len(form) for form in self._forms), default=0))

    def scrub(self, text: str) -> str:
        """``text`` with every form of every secret, and any URL userinfo, replaced by ``***``."""
        return _scrub(text, self._forms)

    def scrub_bytes(self, data: bytes) -> bytes:
        """UTF-8 text scrubbed like :meth:`scrub`; other bytes (images) are returned unchanged."""
        return _scrub_bytes(data, self._forms)

    def scrub_tree(self, value: T) -> T:
        """A copy of ``value`` (dataclasses, tuples, lists, mappings, strings, UTF-8 bytes) with every
        string scrubbed; unchanged parts are shared, and ``value`` itself is returned when nothing
        needed scrubbing. Use it on a report or a bundle before it is rendered or written.

        Fast when nothing is found (the usual case): the strings are gathered once and searched as
        one text; only the forms found there are looked for string by string."""
        strings: list[str] = []
        _Walker(None).walk(value, strings)
        joined = "\0".join(strings)
        present = tuple(form for form in self._forms if form in joined)
        if not present and not ("://" in joined and _URL_USERINFO.search(joined)):
            return value
        return _Walker(present).walk(value, None)  # type: ignore[no-any-return]


def _scrub(text: str, forms: tuple[str, ...]) -> str:
    for form in forms:
        if form in text:
            text = text.replace(form, MASK)
    if "://" in text:
        text = _URL_USERINFO.sub(lambda m: m.group(1) + MASK + "@", text)
    return text


def _scrub_bytes(data: bytes, forms: tuple[str, ...]) -> bytes:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data
    scrubbed = _scrub(text, forms)
    return data if scrubbed == text else scrubbed.encode("utf-8")


def _forms_of(value: str) -> set[str]:
    forms = {value}
    errors = "surrogateescape"  # os.environ keeps bytes that are not UTF-8 as lone surrogates
    for encoded in (
        urllib.parse.quote(value, safe="", errors=errors),
        urllib.parse.quote(value, errors=errors),
        urllib.parse.quote_plus(value, errors=errors),
        json.dumps(value)[1:-1],
    ):
        forms.add(encoded)
        forms.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), encoded))
    forms.update(_quoted_forms(value))
    raw = value.encode("utf-8", errors)
    for prefix in (b"", *_BASIC_AUTH_USERS):
        data = prefix + raw
        whole = base64.b64encode(data).decode("ascii")
        forms.update((whole, whole.rstrip("="), _urlsafe(whole), _urlsafe(whole).rstrip("=")))
    for shift in (0, 1, 2):
        core = _base64_core(raw, shift)
        forms.update((core, _urlsafe(core)))
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


def _quoted_forms(value: str) -> set[str]:
    """``value`` as code prints it quoted, without the outer quotes (a match inside is enough):
    Python's ``repr`` of the str and of its UTF-8 bytes (what ``print(dict)``, ``print(os.environ)``
    and tracebacks show: backslashes doubled, ``\\'`` when both quote kinds occur, non-printables
    escaped), JSON without ``ensure_ascii``, and a shell's quoting of a single quote:
    ``'"'"'`` (``shlex.quote``) and ``'\\''`` (bash's ``set -x`` trace)."""
    return {
        repr(value)[1:-1],
        repr(value.encode("utf-8", "surrogateescape"))[2:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        value.replace("'", "'\"'\"'"),
        value.replace("'", "'\\''"),
    }


def _base64_core(data: bytes, shift: int) -> str:
    """The base64 characters that depend only on ``data`` when it starts ``shift`` bytes after a
    3-byte boundary inside longer base64 text: the partial characters at both ends are dropped."""
    encoded = base64.b64encode(b"\0" * shift + data).decode("ascii")
    start = (8 * shift + 5) // 6
    end = (8 * (shift + len(data))) // 6
    return encoded[start:end]


def _urlsafe(text: str) -> str:
    return text.replace("+", "-").replace("/", "_")


def _userinfo_secrets(text: str) -> set[str]:
    """Passwords (or token user names) in the userinfo of URLs found in ``text``."""
    found: set[str] = set()
    for match in _URL_IN_TEXT.finditer(text):
        authority = match.group(0).split("://", 1)[1].split("/", 1)[0]
        if "@" not in authority:
            continue
        userinfo = authority.rsplit("@", 1)[0]
        user, has_password, password = userinfo.partition(":")
        for part in (password,) if has_password else (user,):
            if part:
                found.add(part)
                found.add(urllib.parse.unquote(part))
    return found


def redact_url(url: str) -> str:
    """``url`` safe to show: no user, password, query string or fragment (they may hold tokens;
    a query that was there shows as ``?...``). A local path or ``file:`` URL keeps its ``?`` and ``#``
    (they are part of the name). Never raises, whatever the URL looks like
    (``http://u:p@host:99999/x`` included)."""
    shown = without_userinfo(url)
    if url_scheme(shown) in ("", "file"):  # None (not even a URL) goes on: nothing after ? is shown
        return shown
    before_query, has_query, query = shown.split("#", 1)[0].partition("?")
    return before_query + ("?..." if has_query and query else "")


def url_scheme(url: str) -> str | None:
    """The scheme of a data source or server URL, lower-case; ``""`` for a plain path (a Windows
    drive, or no ``://`` and no ``file:``: ``backup:v1/data.csv`` is a path); None when it is not
    even a URL (an unbalanced IPv6 bracket). The one rule config, the data pull and messages share."""
    if re.match(r"^[A-Za-z]:[\\/]", url) or ("://" not in url and not url.lower().startswith("file:")):
        return ""
    try:
        return urllib.parse.urlsplit(url).scheme.lower()
    except ValueError:
        return None


# Query parameters that carry a credential: pre-signed S3/GCS URLs, Azure SAS (sig), and the
# token/key/secret/password parameters of web APIs (access_token, private_token, api_key, ...).
_CREDENTIAL_PARAMETER = re.compile(
    r"x-(amz|goog)-(signature|credential|security-token)|sig|signature|.*token|.*secret|.*passw(or)?d|pass"
    r"|(api|access|account|private|secret)?[-_]?key|auth|authorization|credentials?|session",
    re.IGNORECASE,
)


def is_credential_parameter(name: str) -> bool:
    """Whether a URL's query parameter ``name`` looks like it carries a credential."""
    return bool(_CREDENTIAL_PARAMETER.fullmatch(name.strip()))


_SENTENCE_END = ".,;:)]}"  # punctuation after a URL in a message belongs to the sentence


def redact_urls(text: str) -> str:
    """``text`` with every URL in it shown as :func:`redact_url` shows one. An exception's text
    names the URL it was at, which may be where a redirect led, with a query the configured URL
    lacked."""

    def shown(match: re.Match[str]) -> str:
        url = match.group(0).rstrip(_SENTENCE_END)
        return redact_url(url) + match.group(0)[len(url) :]

    return _URL_IN_TEXT.sub(shown, text)


def without_userinfo(url: str) -> str:
    """``url`` with its userinfo (user and password) left out, for naming a server or a source in a
    message. Never raises, whatever the URL looks like (``http://u:p@host:99999/x`` included: no
    ``urlsplit(...).port``)."""
    return _URL_USERINFO.sub(lambda m: m.group(1), url)


_ATOMS = (int, float, bool, type(None))
_NOT_A_DATACLASS: tuple[str, ...] = ("<not a dataclass>",)


class _Walker:
    """Walks a tree of data. With ``forms`` None it only gathers the strings (into ``found``);
    otherwise it rebuilds containers where a scrubbed string changed, sharing the rest.

    Dispatch is on the exact type first (a report may hold 100,000 metric rows)."""

    _fields: ClassVar[dict[type, tuple[str, ...]]] = {}  # dataclass field names, per type

    def __init__(self, forms: tuple[str, ...] | None) -> None:
        self.forms = forms

    def walk(self, value: Any, found: list[str] | None) -> Any:
        kind = type(value)
        if kind is str:
            if self.forms is None:
                found.append(value)  # type: ignore[union-attr]
                return value
            return _scrub(value, self.forms)
        if kind in _ATOMS:
            return value
        if kind is tuple or kind is list:
            return self._sequence(value, found)
        names = self._fields.get(kind)
        if names is None:
            is_dataclass = dataclasses.is_dataclass(value) and not isinstance(value, type)
            names = tuple(f.name for f in dataclasses.fields(value) if f.init) if is_dataclass else _NOT_A_DATACLASS
            self._fields[kind] = names
        if names is not _NOT_A_DATACLASS:
            changes = {}
            for name in names:
                old = getattr(value, name)
                new = self.walk(old, found)
                if new is not old:
                    changes[name] = new
            return dataclasses.replace(value, **changes) if changes else value
        if isinstance(value, str):  # a str subclass (an enum's value is not walked: no free text)
            return value if isinstance(value, enum.Enum) else self.walk(str(value), found)
        if isinstance(value, bytes):
            if self.forms is None:
                found.append(value.decode("utf-8", "replace"))  # type: ignore[union-attr]
                return value
            return _scrub_bytes(value, self.forms)
        if isinstance(value, tuple | list):
            return self._sequence(value, found)
        if isinstance(value, Mapping):
            pairs = [(self.walk(k, found), self.walk(v, found)) for k, v in value.items()]
            if self.forms is None or all(
                nk is k and nv is v for (nk, nv), (k, v) in zip(pairs, value.items(), strict=True)
            ):
                return value
            return dict(pairs)
        return value  # enums, paths and other values without free text

    def _sequence(self, value: Any, found: list[str] | None) -> Any:
        items = [self.walk(item, found) for item in value]
        if self.forms is None or all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)


def without_tokens(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for the project's own commands: no forge token (GitLab's job JWTs among them), under
    its own name or inside another variable (GitLab's ``CI_REPOSITORY_URL``,
    ``CI_REGISTRY_PASSWORD``, ...). Other secrets (cloud credentials, ``id_tokens`` the training
    needs) are the user's to pass and stay; they are scrubbed from every output all the same."""
    tokens = [env[name] for name in TOKEN_VARIABLES if len(env.get(name) or "") >= MIN_SECRET_LENGTH]
    kept = {}
    for key, value in env.items():
        if key in TOKEN_VARIABLES or key in _FORGE_DERIVED:
            continue
        if any(token in value for token in tokens):
            continue
        kept[key] = value
    return kept


class ScrubFilter(logging.Filter):
    """A logging filter for cml-bot's handler: the record's message (and exception) scrubbed, as one
    line; the traceback itself is left to the crash log, which is scrubbed too."""

    def __init__(self, secrets: Secrets) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string in a library's log call: show it raw
            message = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            message = f"{message}: {type(error).__name__}: {error}"
        record.msg = self.secrets.scrub(message)
        record.args = ()
        record.exc_info = None
        record.exc_text = None
        return True
