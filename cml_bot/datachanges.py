"""Which data files changed between the base and this change, for the report.

Pinned files are compared by the sha256 in ``cml-bot.yaml`` at both commits; DVC-tracked files by
the md5 in their ``.dvc`` files and ``dvc.lock``. Contents come from the caches (cml-bot's
content-addressed cache, DVC's ``.dvc/cache``) when present, so tabular files also get row counts,
column changes and label counts; otherwise only the hashes are compared. Nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from cml_bot.config import CONFIG_FILE, Config, parse_config
from cml_bot.data import DataChange, blob_path, data_changes, default_cache
from cml_bot.errors import ConfigError
from cml_bot.git import Git

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
    if source is None:
        return None
    path = source[1]
    try:
        if path.is_file() and path.stat().st_size <= SUMMARY_LIMIT_BYTES:
            return path.read_bytes()
    except OSError:
        return None
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
        target = root / path
        return target.read_bytes() if target.is_file() else None

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
