"""One commit's results (metrics, params, plot files, facts) and the local folder that stores them.

Results are recorded for commits on the main branch so a pull request can compare against its
merge-base without retraining main. The JSON form keeps NaN/Infinity (as JSON extensions, the way
dvclive writes them) and repeated values.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cml_bot.config import Declarations
from cml_bot.errors import InputError
from cml_bot.metrics import Samples, Tree, Value, collect

FORMAT_VERSION = 1


@dataclass(frozen=True)
class RunResults:
    sha: str | None
    metrics: Mapping[str, Value]
    params: Mapping[str, Value] = field(default_factory=dict)
    files: Mapping[str, bytes] = field(default_factory=dict)  # plot data/images by repo path
    facts: Mapping[str, str] = field(default_factory=dict)
    origins: Mapping[str, str] = field(default_factory=dict)  # metric name -> the file it came from
    problems: Mapping[str, str] = field(default_factory=dict)  # metrics/params file -> why it gave nothing


def read_results(declared: Declarations, tree: Tree, sha: str | None) -> RunResults:
    """The declared metrics, params and plot files of one revision (the workspace, a commit).
    Files that are missing or malformed are named in ``problems`` instead of failing the run."""
    metrics = collect(tree, declared.metrics)
    params = collect(tree, declared.params, params=True, keys=declared.keys_of)
    plot_files = list(dict.fromkeys(file for spec in declared.plots for file in spec.files))
    files = {path: data for path, data in tree.read_many(plot_files).items() if data is not None}
    return RunResults(
        sha=sha,
        metrics=metrics.values,
        params=params.values,
        files=files,
        origins=metrics.origins,
        problems={**metrics.problems, **params.problems},
    )


def _encode_value(value: Value) -> Any:
    if isinstance(value, Samples):
        return {"samples": list(value.values)}
    return value


def _decode_value(value: Any) -> Value:
    if isinstance(value, dict) and set(value) == {"samples"}:
        return Samples(tuple(float(v) for v in value["samples"]))
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return json.dumps(value)


def to_json(results: RunResults) -> str:
    document = {
        "version": FORMAT_VERSION,
        "sha": results.sha,
        "metrics": {k: _encode_value(v) for k, v in results.metrics.items()},
        "params": {k: _encode_value(v) for k, v in results.params.items()},
        "files": {k: base64.b64encode(v).decode("ascii") for k, v in results.files.items()},
        "facts": dict(results.facts),
        "origins": dict(results.origins),
        "problems": dict(results.problems),
    }
    return json.dumps(document, indent=1, sort_keys=True)


def from_json(text: str | bytes, shown: str) -> RunResults:
    try:
        document = json.loads(text)
        if not isinstance(document, dict) or document.get("version") != FORMAT_VERSION:
            raise ValueError("not a cml-bot results file of version 1")
        return RunResults(
            sha=document.get("sha"),
            metrics={str(k): _decode_value(v) for k, v in document.get("metrics", {}).items()},
            params={str(k): _decode_value(v) for k, v in document.get("params", {}).items()},
            files={str(k): base64.b64decode(v) for k, v in document.get("files", {}).items()},
            facts={str(k): str(v) for k, v in document.get("facts", {}).items()},
            origins={str(k): str(v) for k, v in document.get("origins", {}).items()},
            problems={str(k): str(v) for k, v in document.get("problems", {}).items()},
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise InputError(f"{shown}: unreadable results ({exc})") from None


def atomic_write(path: Path, data: bytes) -> None:
    """Write through a temp file and rename, so a killed run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class LocalStore:
    """Results kept in a folder, one JSON file per commit: ``<folder>/<sha>.json``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def load(self, sha: str) -> RunResults | None:
        path = self.folder / f"{sha}.json"
        if not path.is_file():
            return None
        return from_json(path.read_bytes(), str(path))

    def recorded(self) -> set[str]:
        """The commits with results, from one listing (no file is read)."""
        if not self.folder.is_dir():
            return set()
        return {path.stem for path in self.folder.glob("*.json")}

    def save(self, results: RunResults) -> str:
        if not results.sha:
            raise InputError("cannot record results without a commit sha")
        path = self.folder / f"{results.sha}.json"
        atomic_write(path, to_json(results).encode("utf-8"))
        return str(path)
