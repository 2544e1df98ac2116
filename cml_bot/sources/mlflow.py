"""Runs on an MLflow tracking server -> results for this change and for the baseline.

"This change" is the finished runs of the configured experiment whose ``mlflow.source.git.commit``
tag (MLflow sets it when it runs inside a git checkout) is the head commit, narrowed by the
optional filter string and run name. Several such runs (seeds) make repeated values, which feed the
noise rule; with ``runs: shards`` each run is also compared on its own. The baseline is the runs of
the base commit, else of its nearest first-parent ancestor with runs.

The official client (``mlflow-skinny``) talks to the server. It reads the tracking URI's
credentials (MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_USERNAME/PASSWORD, DATABRICKS_TOKEN) from the
process environment only, so :func:`open_tracking` puts the given environment's MLflow variables in
place for the duration of the calls and restores the process environment after. Those variables
are in :data:`cml_bot.secrets.TOKEN_VARIABLES`: scrubbed from messages, never passed to the
project's commands. Every failure is one :class:`SourceError` line naming the server (without any
user:password part or query string of the URL), never a traceback.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cml_bot.baseline import ANCESTOR_SEARCH_LIMIT, Baseline
from cml_bot.config import MLFLOW_ARTIFACT_PREFIX, MlflowSource
from cml_bot.errors import ConfigError, SourceError
from cml_bot.metrics import Samples, Value
from cml_bot.results import RunResults
from cml_bot.secrets import Secrets, is_credential_parameter, redact_url, redact_urls, without_userinfo
from cml_bot.sources import (
    LINK_FACT,
    MLFLOW_HISTORY,
    SourceResults,
    envelope,
    history_csv,
    history_path,
    merged,
    missing_extra,
    plotted,
)

if TYPE_CHECKING:
    from cml_bot.git import Git

__all__ = ["COMMIT_TAG", "MlflowFound", "RunData", "Tracking", "mlflow_results", "open_tracking", "tracking_uri"]

log = logging.getLogger(__name__)

COMMIT_TAG = "mlflow.source.git.commit"
PAGE_SIZE = 1000  # runs per search request
MAX_PAGES = 5  # search pages read when looking for an ancestor with runs (the newest runs first)
HISTORY_WORKERS = 8  # metric histories fetched at once (one request each)
BULK_RUNS = 100  # runs per bulk history request (the server's limit)
BULK_POINTS = 2500  # points per run and metric in a bulk answer (the server's limit; more are sampled)
MAX_ARTIFACT_BYTES = 20_000_000
# Bounded waits: MLflow's defaults (7 retries, 120 s each) keep a review waiting for minutes on a
# server that is down. A value set in the environment wins.
CLIENT_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
# cml-bot sends nothing anywhere but the tracking server, and only the CLI prints (no progress bars).
CLIENT_FIXED = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
_CLIENT_VARIABLE = re.compile(r"^(MLFLOW_|DATABRICKS_)")


@dataclass(frozen=True)
class RunData:
    """What cml-bot uses of one MLflow run (plain data: the tests and the core never see mlflow's types)."""

    run_id: str
    name: str
    experiment_id: str
    commit: str | None
    start_time: int
    metrics: Mapping[str, float]
    params: Mapping[str, str]
    last_steps: Mapping[str, int] = field(default_factory=dict)  # step of each latest value, when known


class Tracking:
    """The tracking server through the official client: the few calls cml-bot makes."""

    def __init__(self, uri: str, secrets: Secrets) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise missing_extra("mlflow", "the MLflow client (mlflow-skinny)") from None
        self.uri = uri
        self.secrets = secrets  # scrubbed from every message, before it is cut to length
        self.client = MlflowClient(tracking_uri=uri)
        self._no_bulk = False

    def experiment_id(self, name: str) -> str | None:
        experiment = self._call(self.client.get_experiment_by_name, name)
        return None if experiment is None else str(experiment.experiment_id)

    def search(self, experiment_id: str, filter_string: str, pages: int) -> list[RunData]:
        """Active runs matching ``filter_string``, newest first, at most ``pages`` pages."""
        found: list[RunData] = []
        token: str | None = None
        for _ in range(pages):
            page = self._call(
                self.client.search_runs,
                [experiment_id],
                filter_string=filter_string,
                max_results=PAGE_SIZE,
                order_by=["attributes.start_time DESC"],
                page_token=token,
            )
            found += [_run_data(run) for run in page]
            token = page.token
            if not token:
                break
        return found

    def history(self, run_id: str, key: str) -> list[tuple[float, float]]:
        metrics = self._call(self.client.get_metric_history, run_id, key)
        return sorted((float(m.step), float(m.value)) for m in metrics)

    def bulk_history(self, run_ids: Sequence[str], key: str) -> dict[str, list[tuple[float, float]]] | None:
        """One metric's history in several runs from ONE request (the server's
        ``metrics/get-history-bulk-interval``, MLflow 2.11+, which its own UI uses; at most
        :data:`BULK_POINTS` points per run, sampled by step beyond that). None when the server or
        the client does not offer it (GitLab's and Databricks' APIs, older servers): the caller
        asks run by run. Sent with the client's own transport (its auth and retries); the answer
        is read as JSON, not parsed into protobuf messages, which took a quarter of the time."""
        if self._no_bulk:
            return None
        try:
            from mlflow.protos.service_pb2 import GetMetricHistoryBulkInterval
            from mlflow.utils.rest_utils import http_request, verify_rest_response

            store = self.client._tracking_client.store
            endpoint, method = store._METHOD_TO_INFO[GetMetricHistoryBulkInterval]  # not public API:
            credentials = store.get_host_creds()  # any mismatch falls back below
        except (ImportError, AttributeError, KeyError, TypeError):
            self._no_bulk = True
            return None
        from mlflow.exceptions import MlflowException

        found: dict[str, list[tuple[float, float]]] = {run_id: [] for run_id in run_ids}
        for start in range(0, len(run_ids), BULK_RUNS):
            query = {"run_ids": list(run_ids[start : start + BULK_RUNS]), "metric_key": key, "max_results": BULK_POINTS}
            try:
                answer = http_request(host_creds=credentials, endpoint=endpoint, method=method, params=query)  # type: ignore[no-untyped-call]  # mlflow is untyped here
                metrics = json.loads(verify_rest_response(answer, endpoint).text).get("metrics", [])
            except MlflowException as exc:
                if exc.get_http_status_code() in (400, 404, 405, 501):  # type: ignore[no-untyped-call]  # not served
                    shown = redact_url(self.uri)
                    log.info("MLflow: no bulk histories at %s (%s); one request per run", shown, self._reason(exc))
                    self._no_bulk = True
                    return None
                raise SourceError(f"MLflow at {redact_url(self.uri)}: {self._reason(exc)}") from None
            except (ValueError, AttributeError, TypeError):  # not JSON, or another client version's internals
                self._no_bulk = True
                return None
            for metric in metrics if isinstance(metrics, list) else ():
                point = _point(metric)
                if point is not None and metric.get("run_id") in found:
                    found[metric["run_id"]].append(point)
        return {run_id: sorted(points) for run_id, points in found.items()}

    def artifact(self, run_id: str, path: str) -> bytes | None:
        """A logged file's bytes; None when the run has no such file."""
        folder = str(Path(path).parent) if "/" in path else ""
        listing = self._call(self.client.list_artifacts, run_id, folder or None)
        entry = next((item for item in listing if item.path == path and not item.is_dir), None)
        if entry is None:
            return None
        if entry.file_size is not None and entry.file_size > MAX_ARTIFACT_BYTES:
            raise SourceError(f"MLflow artifact {path} of run {run_id}: over {MAX_ARTIFACT_BYTES:,} bytes")
        with tempfile.TemporaryDirectory(prefix="cml-bot-mlflow-") as folder_out:
            local = Path(self._call(self.client.download_artifacts, run_id, path, folder_out))
            return local.read_bytes() if local.is_file() else None

    def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one client call; the client's exceptions become one line naming the server."""
        from mlflow.exceptions import MlflowException

        try:
            return function(*args, **kwargs)
        except MlflowException as exc:
            raise SourceError(f"MLflow at {redact_url(self.uri)}: {self._reason(exc)}") from None
        except OSError as exc:  # an artifact store's own transport
            raise SourceError(f"MLflow at {redact_url(self.uri)}: {self._hidden(str(exc))[:300]}") from None

    def _reason(self, exc: Exception) -> str:
        return _reason(exc, self._hidden)

    def _hidden(self, text: str) -> str:
        """``text`` without the secrets: the environment's, the URI's query values (a token may be
        passed there), and any URL's userinfo and query (the client names the URL it asked)."""
        text = self.secrets.scrub(text)
        for value in _query_values(self.uri):
            text = text.replace(value, "***")
        return redact_urls(text)


def _run_data(run: Any) -> RunData:
    info, data = run.info, run.data
    tags = dict(data.tags)
    return RunData(
        run_id=str(info.run_id),
        name=str(info.run_name or tags.get("mlflow.runName") or info.run_id),
        experiment_id=str(info.experiment_id),
        commit=tags.get(COMMIT_TAG),
        start_time=int(info.start_time or 0),
        metrics={str(k): float(v) for k, v in data.metrics.items()},
        params={str(k): str(v) for k, v in data.params.items()},
        # The search answer carries each latest value's step; the client keeps it only here.
        last_steps={str(m.key): int(m.step) for m in getattr(data, "_metric_objs", ())},
    )


def _point(metric: object) -> tuple[float, float] | None:
    """(step, value) of one metric record of a JSON answer; None for a record that is not one.
    MLflow's JSON leaves out a field at its default (step 0) and writes NaN and infinities as
    strings ("NaN", "Infinity")."""
    if not isinstance(metric, dict):
        return None
    try:
        return float(metric.get("step", 0)), float(metric.get("value", 0.0))
    except (TypeError, ValueError):
        return None


def _query_values(uri: str) -> list[str]:
    """The values in ``uri``'s query string, raw and decoded (longest first), to hide in messages."""
    query = uri.split("#", 1)[0].partition("?")[2]
    values = {query} if query else set()
    for pair in query.split("&"):
        raw = pair.partition("=")[2]
        values |= {raw, urllib.parse.unquote_plus(raw)}
    return sorted((v for v in values if len(v) >= 4), key=len, reverse=True)  # not "1", "true"


def _reason(exc: Exception, hidden: Callable[[str], str]) -> str:
    """The client's exception as a short reason: what happened and, for auth, what to check.
    ``hidden`` takes the secrets out of the exception's text."""
    text = hidden(str(exc))
    code = getattr(exc, "error_code", "")
    status = re.search(r"error code (\d{3})", text)
    if code in ("UNAUTHENTICATED", "PERMISSION_DENIED") or (status and status.group(1) in ("401", "403")):
        return (
            "access refused (401/403): check MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD"
        )
    # The client retries 5xx answers (500, 502, 503, 504) and then says "too many 500 error responses".
    failed = re.search(r"too many (5\d\d) error responses", text) or re.search(r"error code (5\d\d)", text)
    if failed:
        return f"the server answered HTTP {failed.group(1)} (server error); its own log says why"
    if "Failed to establish a new connection" in text or "Connection refused" in text:
        return "cannot connect (connection refused); is the server running and the URI right?"
    if "Max retries exceeded" in text or "timed out" in text.lower():
        return "no answer (retries exhausted or timed out)"
    line = " ".join(text.split())
    return line[:300] + ("…" if len(line) > 300 else "")


def tracking_uri(source: MlflowSource, env: Mapping[str, str]) -> str:
    from_env = env.get("MLFLOW_TRACKING_URI", "").strip()
    if source.tracking_uri and from_env and source.tracking_uri.rstrip("/") != from_env.rstrip("/"):
        raise ConfigError(
            "cml-bot.yaml at mlflow.tracking_uri: differs from MLFLOW_TRACKING_URI in the environment; "
            "set one of them (credentials go only to the server named once)"
        )
    uri = source.tracking_uri or from_env
    if not uri:
        raise ConfigError("cml-bot.yaml at mlflow: no tracking server; set mlflow.tracking_uri or MLFLOW_TRACKING_URI")
    return uri


@contextmanager
def open_tracking(source: MlflowSource, env: Mapping[str, str]) -> Iterator[Tracking]:
    """The client for the configured server, with ``env``'s MLflow variables in the process
    environment while it is used (the client reads credentials nowhere else)."""
    uri = tracking_uri(source, env)
    wanted = {key: value for key, value in env.items() if _CLIENT_VARIABLE.match(key)}
    wanted = {**CLIENT_DEFAULTS, **wanted, **CLIENT_FIXED, "MLFLOW_TRACKING_URI": uri}
    names = set(wanted) | {key for key in os.environ if _CLIENT_VARIABLE.match(key)}
    saved = {key: os.environ.get(key) for key in names}
    try:
        for key in names:
            if key in wanted:
                os.environ[key] = wanted[key]
            else:
                os.environ.pop(key, None)
        yield Tracking(uri, Secrets.from_env(env))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# --- this change and the baseline -------------------------------------------------------------------


@dataclass(frozen=True)
class MlflowFound:
    head: SourceResults
    baseline: Baseline
    notes: tuple[str, ...] = field(default=())


def mlflow_results(
    source: MlflowSource,
    env: Mapping[str, str],
    git: Git,
    head_sha: str | None,
    baseline: Baseline,
    tracking: Tracking | None = None,
) -> MlflowFound:
    """This change's runs and the baseline's, from one tracking server."""
    if tracking is None:
        with open_tracking(source, env) as opened:
            return mlflow_results(source, env, git, head_sha, baseline, opened)
    experiment = tracking.experiment_id(source.experiment)
    if experiment is None:
        raise SourceError(
            f"MLflow at {redact_url(tracking.uri)}: no experiment named {source.experiment!r} "
            "(check mlflow.experiment in cml-bot.yaml)"
        )
    head = _head(source, tracking, experiment, head_sha)
    new_baseline, notes = _baseline(source, tracking, experiment, git, baseline)
    return MlflowFound(head, new_baseline, notes)


def _head(source: MlflowSource, tracking: Tracking, experiment: str, sha: str | None) -> SourceResults:
    if sha is None:
        return SourceResults(RunResults(sha=None, metrics={}), ("MLflow: this directory has no commit to look up",))
    runs = tracking.search(experiment, filter_string(source, sha), pages=1)
    if not runs:
        return SourceResults(
            RunResults(sha=sha, metrics={}),
            (
                f"MLflow: no finished run of experiment {source.experiment} has {COMMIT_TAG} = {sha[:10]}"
                f"{_narrowed(source)}; this change's MLflow metrics are missing.",
            ),
        )
    return _results(source, tracking, runs, sha)


def _baseline(
    source: MlflowSource, tracking: Tracking, experiment: str, git: Git, baseline: Baseline
) -> tuple[Baseline, tuple[str, ...]]:
    start = baseline.merge_base or baseline.sha
    if start is None:
        return baseline, ()
    runs = tracking.search(experiment, filter_string(source, start), pages=1)
    commit, distance = start, 0
    if not runs:
        by_commit: dict[str, list[RunData]] = {}
        for run in tracking.search(experiment, filter_string(source, None), pages=MAX_PAGES):
            if run.commit:
                by_commit.setdefault(run.commit, []).append(run)
        ancestors = git.ancestors(start, ANCESTOR_SEARCH_LIMIT)[1:]
        for distance, ancestor in enumerate(ancestors, start=1):  # noqa: B007 - distance is used below
            if ancestor in by_commit:
                commit, runs = ancestor, by_commit[ancestor]
                break
    if not runs:
        note = (
            f"MLflow: no finished run of experiment {source.experiment} at the base commit {start[:10]} or a "
            f"first-parent ancestor{_narrowed(source)} among its newest {PAGE_SIZE * MAX_PAGES:,} runs; "
            "the MLflow metrics have no baseline."
        )
        return baseline, (note,)
    found = _results(source, tracking, runs, commit)
    if distance == 0:
        how = f"MLflow runs of the base commit ({commit[:10]})"
    else:
        plural = "s" if distance > 1 else ""
        how = (
            f"MLflow runs of {commit[:10]}, {distance} commit{plural} older than the base commit ({start[:10]}), "
            "the nearest with runs"
        )
    if baseline.results is None:
        updated = replace(baseline, results=found.results, sha=commit, source=how)
    else:
        source_line = f"{baseline.source}; MLflow metrics from {how[0].lower()}{how[1:]}"
        updated = replace(baseline, results=merged(baseline.results, found.results), source=source_line)
    return updated, found.notes


def filter_string(source: MlflowSource, sha: str | None) -> str:
    """MLflow's search syntax for the configured runs (of one commit, unless ``sha`` is None)."""
    clauses = ["attributes.status = 'FINISHED'"]
    if sha is not None:
        clauses.append(f"tags.`{COMMIT_TAG}` = '{sha}'")  # a hex sha from git: nothing to quote
    if source.run_name is not None:
        clauses.append(f"attributes.run_name = {_quoted(source.run_name)}")
    if source.filter is not None:
        clauses.append(source.filter)
    return " AND ".join(clauses)


def _quoted(text: str) -> str:
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    raise ConfigError("cml-bot.yaml at mlflow.run_name: expected a name without both ' and \" quotes")


def _narrowed(source: MlflowSource) -> str:
    parts = []
    if source.run_name is not None:
        parts.append(f"run name {source.run_name!r}")
    if source.filter is not None:
        parts.append(f"filter {source.filter!r}")
    return f" (with {' and '.join(parts)})" if parts else ""


# --- runs -> results ----------------------------------------------------------------------------------


def _results(source: MlflowSource, tracking: Tracking, runs: Sequence[RunData], sha: str) -> SourceResults:
    runs = sorted(runs, key=lambda run: (run.name, run.start_time, run.run_id))
    names = sorted({key for run in runs for key in run.metrics if _wanted(source, key)})
    metrics: dict[str, Value] = {}
    for name in names:
        values = [run.metrics[name] for run in runs if name in run.metrics]
        metrics[name] = values[0] if len(runs) == 1 else Samples(tuple(values))
    params = _params(runs)
    files: dict[str, bytes] = {}
    notes: list[str] = []
    # Only metrics with steps compete for the step plots (as TensorBoard's): a latest value at step 0
    # has no steps before it (a metric logged once), and 30 of those left the only curve out.
    with_steps = [name for name in names if any(_has_steps(run, name) for run in runs)]
    drawn, left_out = plotted(source.history, with_steps, "MLflow")
    notes += left_out
    if drawn:
        files.update(_histories(tracking, runs, drawn))
    for logged in [spec.path for spec in source.artifacts] + list(source.carried):
        path = logged[len(MLFLOW_ARTIFACT_PREFIX) :]
        data = tracking.artifact(runs[0].run_id, path)
        if data is None:
            notes.append(f"MLflow: run {runs[0].name} at {sha[:10]} has no artifact {path}.")
        else:
            files[logged] = data
    facts = {f"{LINK_FACT}MLflow run {run.name}": url for run in runs if (url := run_url(source, tracking.uri, run))}
    results = RunResults(sha=sha, metrics=metrics, params=params, files=files, facts=facts)
    shards: tuple[tuple[str, RunResults], ...] = ()
    if source.runs == "shards" and len(runs) > 1:
        named: dict[str, RunResults] = {}
        for index, run in enumerate(runs, start=1):
            shard = _shard_name(run, index)
            named[shard if shard not in named else f"{shard[:58]}-{index}"] = RunResults(
                sha=sha,
                metrics={k: v for k, v in run.metrics.items() if _wanted(source, k)},
                params=dict(run.params),
            )
        shards = tuple(named.items())
    return SourceResults(results, tuple(notes), shards)


def _wanted(source: MlflowSource, name: str) -> bool:
    return not source.metrics or any(fnmatch.fnmatchcase(name, pattern) for pattern in source.metrics)


def _params(runs: Sequence[RunData]) -> dict[str, Value]:
    """Each param's value; one that differs between the runs (a seed) lists its values."""
    params: dict[str, Value] = {}
    for key in sorted({key for run in runs for key in run.params}):
        values = list(dict.fromkeys(run.params[key] for run in runs if key in run.params))
        params[key] = values[0] if len(values) == 1 else ", ".join(values)
    return params


def _histories(tracking: Tracking, runs: Sequence[RunData], names: Sequence[str]) -> dict[str, bytes]:
    """One plot file per metric: its step history in every run. One request per metric for all runs
    where the server offers it, else one per run and metric; eight requests at a time."""
    wanted = {name: [run for run in runs if _has_steps(run, name)] for name in names}
    wanted = {name: having for name, having in wanted.items() if having}
    fetched: dict[tuple[str, str], list[tuple[float, float]]] = {}  # (run id, metric) -> points

    def by_metric(name: str) -> None:
        having = wanted[name]
        bulk = tracking.bulk_history([run.run_id for run in having], name)
        if bulk is None:
            bulk = {run.run_id: tracking.history(run.run_id, name) for run in having}
        fetched.update({(run_id, name): points for run_id, points in bulk.items()})

    with ThreadPoolExecutor(max_workers=min(HISTORY_WORKERS, max(1, len(wanted)))) as pool:
        list(pool.map(by_metric, wanted))
    columns = {run.run_id: (run.name if len(runs) == 1 else f"run {i}") for i, run in enumerate(runs, start=1)}
    series: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for name, having in wanted.items():
        for run in having:
            series.setdefault(name, {})[columns[run.run_id]] = envelope(fetched[(run.run_id, name)])
    return {
        history_path(MLFLOW_HISTORY, name): history_csv(by_run, name)
        for name, by_run in series.items()
        if any(len(points) > 1 for points in by_run.values())  # one logged value is no history
    }


def _has_steps(run: RunData, name: str) -> bool:
    """Whether ``run`` may have a step history of ``name``: it logged the metric, and its latest
    value is not at step 0 (one value logged once; an unknown step may have a history)."""
    return name in run.metrics and run.last_steps.get(name) != 0


def _shard_name(run: RunData, index: int) -> str:
    """A shard name the report accepts: the run name's safe characters, or the run's position."""
    name = re.sub(r"[^A-Za-z0-9_.=-]", "-", run.name).strip("-.")[:64]
    return name if name and name[0].isalnum() else f"run-{index}"


def run_url(source: MlflowSource, uri: str, run: RunData) -> str | None:
    """The run's page in the tracking server's UI: ``mlflow.run_url``'s template, else the MLflow UI
    of an http(s) server (not GitLab's API endpoint, whose UI pages have other ids)."""
    base = without_userinfo(uri).split("#", 1)[0].split("?", 1)[0].rstrip("/")  # a query may hold a token
    template = source.run_url
    if template is None:
        if not base.startswith(("http://", "https://")) or "/api/v4/projects/" in base:
            return None
        template = "{tracking_uri}/#/experiments/{experiment_id}/runs/{run_id}"
    url = template
    for key, value in (
        ("{tracking_uri}", base),
        ("{experiment_id}", urllib.parse.quote(run.experiment_id, safe="")),
        ("{run_id}", urllib.parse.quote(run.run_id, safe="")),
    ):
        url = url.replace(key, value)
    return _without_credential_parameters(url) if url.startswith(("http://", "https://")) else None


def _without_credential_parameters(url: str) -> str:
    """``url`` without the query parameters that look like credentials (``token=``, ``sig=``): the
    link is posted where every reader of the pull request sees it. Other parameters stay as written."""
    before, has_query, rest = url.partition("?")
    if not has_query:
        return url
    query, has_fragment, fragment = rest.partition("#")
    kept = [
        pair
        for pair in query.split("&")
        if pair and not is_credential_parameter(urllib.parse.unquote_plus(pair.partition("=")[0]))
    ]
    return before + (f"?{'&'.join(kept)}" if kept else "") + (f"#{fragment}" if has_fragment else "")
