"""``cml-bot data add``: hash a file and pin it (path, URL, sha256) in cml-bot.yaml, keeping the
file's comments and layout."""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import yaml

from cml_bot.config import (
    CONFIG_MAX_BYTES,
    DataFile,
    credentials_problem,
    load_config_text,
    parse_config,
    url_problem,
    yaml_error,
)
from cml_bot.data.cache import hash_file, target_path
from cml_bot.errors import ConfigError, DataError
from cml_bot.files import read_limited
from cml_bot.results import atomic_write
from cml_bot.secrets import redact_url

if TYPE_CHECKING:
    pass


# ------------------------------------------------------------------------------------------- data add


def add_file(config_root: Path, path: str, url: str, config_file: Path) -> DataFile:
    """Hash ``path`` (relative to ``config_root``, or absolute inside it) and pin it in ``config_file``.

    The entry under ``data.files`` with the same path is replaced, otherwise one is appended. The
    file is edited as text at the place the YAML parser reports, so comments and layout elsewhere
    stay as they were; where ``data`` is written in flow style (``[...]``/``{...}``) only that section
    is re-emitted. The result is validated with the config parser before it is written atomically.
    """
    root = config_root.resolve()
    given = Path(path).expanduser()
    absolute = given if given.is_absolute() else root / given
    try:
        relative = absolute.resolve().relative_to(root).as_posix()
    except ValueError:
        raise DataError(f"{path}: not inside the repo {root}") from None
    target_path(root, relative)
    source = root / relative
    if not source.is_file():
        raise DataError(f"{path}: not a file")
    if not url.strip():
        raise DataError(f"{path}: a source URL is required")
    problem = url_problem(url.strip()) or credentials_problem(url.strip())
    if problem is not None:
        raise DataError(f"--url {redact_url(url.strip())[:300]!r} {problem}")
    sha, size = hash_file(source)
    entry = DataFile(path=relative, url=url.strip(), sha256=sha, size=size)
    try:
        exists = config_file.exists() or config_file.is_symlink()
        text = read_limited(config_file, CONFIG_MAX_BYTES, error=DataError).decode("utf-8") if exists else ""
    except UnicodeDecodeError:
        raise DataError(f"{config_file}: not UTF-8 text") from None
    new_text = set_data_entry(text, entry, str(config_file.name))
    parsed = parse_config(load_config_text(new_text, config_file.name), root, config_file.name)
    if entry not in parsed.data.files:  # pragma: no cover - a bug in set_data_entry
        raise DataError(f"{config_file}: could not add the entry for {relative}")
    atomic_write(config_file, new_text.encode("utf-8"))
    return entry


def set_data_entry(text: str, entry: DataFile, shown: str = "cml-bot.yaml") -> str:
    """``text`` (a cml-bot.yaml) with ``entry`` added to or replaced in ``data.files``. Pure."""
    try:
        root_node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{shown}:{yaml_error(exc)} (cannot add a data entry)") from None
    if root_node is None:
        return _append_block(text, entry)
    if not isinstance(root_node, yaml.MappingNode) or root_node.flow_style:
        raise ConfigError(f"{shown}: expected a mapping at the top level")
    data_pair = next(((k, v) for k, v in root_node.value if k.value == "data"), None)
    if data_pair is None:
        return _append_block(text, entry)
    data_key, data_node = data_pair
    files_node = data_node
    if isinstance(data_node, yaml.MappingNode):
        pair = next(((k, v) for k, v in data_node.value if k.value == "files"), None)
        files_node = pair[1] if pair is not None else None
    edited = _edit_block_sequence(text, files_node, entry) if files_node is not None else None
    if edited is not None:
        return edited
    # Anything else (flow style, empty list, null, no files key): re-emit the data section alone.
    loaded = yaml.safe_load(text) or {}
    data = loaded.get("data")
    if isinstance(data, list) or data is None:
        data = {"files": data or []}
    if not isinstance(data, dict):
        raise ConfigError(f"{shown} at data: expected a mapping")
    files = [f for f in (data.get("files") or []) if not (isinstance(f, dict) and f.get("path") == entry.path)]
    files.append(_entry_mapping(entry))
    data["files"] = files
    section = yaml.safe_dump({"data": data}, sort_keys=False, default_flow_style=False, width=1 << 20)
    start = text.rfind("\n", 0, data_key.start_mark.index) + 1
    end = _content_end(data_node)
    rest = text[end:]
    comment = re.match(r"[ \t]*(#[^\n]*)", rest)  # a comment after the section's last value stays
    if comment:
        section += comment.group(1) + "\n"
        rest = rest[comment.end() :]
    if rest.startswith("\n"):
        rest = rest[1:]
    return text[:start] + section + rest


def _edit_block_sequence(text: str, node: yaml.Node, entry: DataFile) -> str | None:
    """Replace or append ``entry`` in a block sequence of block mappings; None for other shapes."""
    if not isinstance(node, yaml.SequenceNode) or node.flow_style or not node.value:
        return None
    items = node.value
    if any(not isinstance(i, yaml.MappingNode) or i.flow_style for i in items):
        return None
    dash_col = node.start_mark.column
    for item in items:  # each item must start on its dash's line: "- path: ..."
        dash = item.start_mark.index - (item.start_mark.column - dash_col)
        if item.start_mark.column <= dash_col or text[dash] != "-":
            return None
    key_col = items[0].start_mark.column
    block = _entry_block(entry, dash_col, key_col - dash_col)
    for item in items:
        path = next((v for k, v in item.value if k.value == "path"), None)
        if isinstance(path, yaml.ScalarNode) and _same_path(path.value, entry.path):
            start = item.start_mark.index - (item.start_mark.column - dash_col)
            return text[:start] + block.lstrip(" ") + text[_content_end(item) :]
    end = _content_end(items[-1])
    newline = text.find("\n", end)  # after a trailing comment on the last item's line
    if newline < 0:
        return text + "\n" + block + "\n"
    return text[: newline + 1] + block + "\n" + text[newline + 1 :]


def _same_path(a: str, b: str) -> bool:
    return PurePosixPath(a.replace("\\", "/")) == PurePosixPath(b)


def _content_end(node: yaml.Node) -> int:
    """Index just after the last character of ``node``'s own content (not trailing comments)."""
    if isinstance(node, yaml.ScalarNode) or getattr(node, "flow_style", False):
        return int(node.end_mark.index)
    if isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    else:  # pragma: no cover
        children = []
    return max((_content_end(c) for c in children), default=int(node.end_mark.index))


def _entry_mapping(entry: DataFile) -> dict[str, object]:
    fields: dict[str, object] = {"path": entry.path, "url": entry.url, "sha256": entry.sha256}
    if entry.size is not None:
        fields["size"] = entry.size
    return fields


def _entry_block(entry: DataFile, indent: int, gap: int) -> str:
    pad = " " * indent
    inner = " " * (indent + gap)
    size = f"\n{inner}size: {entry.size}" if entry.size is not None else ""
    return (
        f"{pad}-{' ' * (gap - 1)}path: {_scalar(entry.path)}\n"
        f"{inner}url: {_scalar(entry.url)}\n"
        f"{inner}sha256: {_scalar(entry.sha256)}{size}"
    )


def _append_block(text: str, entry: DataFile) -> str:
    if text and not text.endswith("\n"):
        text += "\n"
    return text + "data:\n  files:\n" + _entry_block(entry, 2, 2) + "\n"


def _scalar(value: str) -> str:
    """``value`` as a YAML scalar: plain when it reads back unchanged, else double-quoted."""
    try:
        if yaml.safe_load(f"k: {value}") == {"k": value} and "#" not in value:
            return value
    except yaml.YAMLError:
        pass
    return json.dumps(value)
