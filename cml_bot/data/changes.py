"""What changed in the data between the base and this change (rows, columns, label counts)."""

from __future__ import annotations

import csv
import hashlib
import io
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import yaml

from cml_bot.config import CONFIG_FILE, Config, parse_config
from cml_bot.data.cache import blob_path, default_cache
from cml_bot.errors import CmlBotError, ConfigError
from cml_bot.files import read_limited
from cml_bot.git import Git

if TYPE_CHECKING:
    pass


# --------------------------------------------------------------------------------------- data changes


@dataclass(frozen=True)
class DataChange:
    path: str
    base_sha256: str | None  # None: new at head
    head_sha256: str | None  # None: removed at head
    base_rows: int | None = None
    head_rows: int | None = None
    columns_added: tuple[str, ...] = ()
    columns_removed: tuple[str, ...] = ()
    label_counts: tuple[tuple[str, int, int], ...] = ()  # (label, base count, head count), only when changed

    @property
    def changed(self) -> bool:
        return self.base_sha256 != self.head_sha256


@dataclass(frozen=True)
class _Table:
    rows: int
    columns: tuple[str, ...]
    labels: Counter[str] | None  # None: no label column in this table


def data_changes(
    base: Mapping[str, bytes | None],
    head: Mapping[str, bytes | None],
    label_column: str | None,
) -> list[DataChange]:
    """Compare data files at base and head (path -> content, None or absent: not there). Pure.

    One entry per path present on either side, sorted by path, unchanged ones included (``changed``
    tells). CSV/TSV (and Parquet when pyarrow is installed) also get row counts, column changes
    and, when ``label_column`` is present, the labels whose count changed.
    """
    changes = []
    for path in sorted(set(base) | set(head)):
        old, new = base.get(path), head.get(path)
        if old is None and new is None:
            continue
        old_sha = hashlib.sha256(old).hexdigest() if old is not None else None
        new_sha = hashlib.sha256(new).hexdigest() if new is not None else None
        old_table = _table(path, old, label_column)
        new_table = old_table if new_sha == old_sha else _table(path, new, label_column)
        if old_table is None and new_table is None:
            changes.append(DataChange(path, old_sha, new_sha))
            continue
        both = old_table is not None and new_table is not None
        old_cols = old_table.columns if old_table else ()
        new_cols = new_table.columns if new_table else ()
        labels: tuple[tuple[str, int, int], ...] = ()
        old_labels = old_table.labels if old_table else None
        new_labels = new_table.labels if new_table else None
        if old_labels is not None or new_labels is not None:
            before, after = old_labels or Counter(), new_labels or Counter()
            labels = tuple(
                (label, before[label], after[label])
                for label in sorted(set(before) | set(after))
                if before[label] != after[label]
            )
        changes.append(
            DataChange(
                path,
                old_sha,
                new_sha,
                base_rows=old_table.rows if old_table else None,
                head_rows=new_table.rows if new_table else None,
                columns_added=tuple(c for c in new_cols if c not in old_cols) if both else (),
                columns_removed=tuple(c for c in old_cols if c not in new_cols) if both else (),
                label_counts=labels,
            )
        )
    return changes


def _table(path: str, content: bytes | None, label_column: str | None) -> _Table | None:
    if content is None:
        return None
    suffix = PurePosixPath(path).suffix.lower()
    if suffix in (".csv", ".tsv"):
        return _csv_table(content, "\t" if suffix == ".tsv" else ",", label_column)
    if suffix in (".parquet", ".pq"):
        return _parquet_table(content, label_column)
    return None


def _csv_table(content: bytes, delimiter: str, label_column: str | None) -> _Table | None:
    text = content.decode("utf-8-sig", errors="replace")
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            return _Table(0, (), None)
        columns = tuple(c.strip() for c in header)
        index = columns.index(label_column) if label_column and label_column in columns else None
        labels: Counter[str] | None = Counter() if index is not None else None
        rows = 0
        for row in reader:
            if not row:
                continue
            rows += 1
            if labels is not None and index is not None:
                labels[row[index].strip() if index < len(row) else ""] += 1
    except csv.Error:
        return None
    return _Table(rows, columns, labels)


def _parquet_table(content: bytes, label_column: str | None) -> _Table | None:
    import importlib.util

    if importlib.util.find_spec("pyarrow") is None:
        return None
    import pandas as pd

    try:
        frame = pd.read_parquet(io.BytesIO(content))
    except Exception:  # a damaged or foreign file: report its hash only
        return None
    columns = tuple(str(c) for c in frame.columns)
    labels: Counter[str] | None = None
    if label_column and label_column in frame.columns:
        labels = Counter({str(k): int(v) for k, v in frame[label_column].value_counts(dropna=False).items()})
    return _Table(len(frame), columns, labels)


# --- which files changed: pinned sha256s and DVC hashes at both commits ---

SUMMARY_LIMIT_BYTES = 200 * 1024 * 1024  # larger files are compared by hash only
_Source = Mapping[str, tuple[str, Path]]  # path -> (hash, where its content would be cached)


def collect_data_changes(config: Config, git: Git, base_sha: str | None) -> tuple[DataChange, ...]:
    head = {**_pinned(config), **_dvc_tracked(config.root, _workspace_reader(config.root), git.files(None))}
    base: dict[str, tuple[str, Path]] = {}
    if base_sha is not None:
        base_config = _config_at(config, git, base_sha)
        if base_config is not None:
            base.update(_pinned(base_config))
        base.update(_dvc_tracked(config.root, lambda path: git.show(base_sha, path), git.files(base_sha)))
    if not head and not base:
        return ()
    changes: list[DataChange] = []
    for path in sorted(set(head) | set(base)):
        old, new = base.get(path), head.get(path)
        old_bytes, new_bytes = _content(old), _content(new)
        if (old is None or old_bytes is not None) and (new is None or new_bytes is not None):
            changes.extend(
                data_changes(
                    {path: old_bytes} if old else {}, {path: new_bytes} if new else {}, config.data.label_column
                )
            )
        else:
            changes.append(DataChange(path, old[0] if old else None, new[0] if new else None))
    return tuple(changes)


def _content(source: tuple[str, Path] | None) -> bytes | None:
    return None if source is None else _summary_bytes(source[1])


def _summary_bytes(path: Path) -> bytes | None:
    """The file's bytes, or None when it is missing, too large for a summary or not a regular
    file (then only hashes are compared)."""
    try:
        return read_limited(path, SUMMARY_LIMIT_BYTES)
    except CmlBotError:
        return None


def _pinned(config: Config) -> dict[str, tuple[str, Path]]:
    cache = default_cache(config)
    return {f.path: (f.sha256, blob_path(cache, f.sha256)) for f in config.data.files}


def _config_at(config: Config, git: Git, sha: str) -> Config | None:
    raw = git.show(sha, CONFIG_FILE)
    if raw is None:
        return None
    try:
        return parse_config(yaml.safe_load(raw), config.root, f"{CONFIG_FILE} at {sha[:10]}")
    except (yaml.YAMLError, ConfigError):
        return None  # the base's config was broken: compare nothing rather than fail this run


def _workspace_reader(root: Path) -> Any:
    def read(path: str) -> bytes | None:
        return _summary_bytes(root / path)

    return read


def _dvc_tracked(root: Path, read: Any, files: list[str]) -> dict[str, tuple[str, Path]]:
    """Outputs named in ``*.dvc`` files and ``dvc.lock`` with their md5 and DVC cache path."""
    cache = root / ".dvc" / "cache" / "files" / "md5"
    found: dict[str, tuple[str, Path]] = {}
    documents = [(name, read(name)) for name in files if name.endswith(".dvc") or name == "dvc.lock"]
    for name, raw in documents:
        if raw is None:
            continue
        try:
            document = yaml.safe_load(raw)
        except yaml.YAMLError:
            continue
        folder = str(Path(name).parent)
        outs: list[Any] = []
        if isinstance(document, dict) and name.endswith(".dvc"):
            outs = document.get("outs") or []
        elif isinstance(document, dict):
            for stage in (document.get("stages") or {}).values():
                if isinstance(stage, dict):
                    outs.extend(stage.get("outs") or [])
        for out in outs:
            if not isinstance(out, dict) or not isinstance(out.get("path"), str) or not isinstance(out.get("md5"), str):
                continue
            md5 = out["md5"]
            if md5.endswith(".dir"):
                continue  # a tracked folder: its listing is not compared file by file here
            path = out["path"] if folder in ("", ".") else f"{folder}/{out['path']}"
            found[path] = (md5, cache / md5[:2] / md5[2:])
    return found
