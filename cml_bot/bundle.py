"""A report saved for posting later: the fork-PR and CI_JOB_TOKEN path.

When the token cannot write (a pull request from a fork gets a read-only token), the run saves the
rendered report and its images to a folder; a trusted workflow (``workflow_run`` on GitHub) uploads
that folder's artifact and runs ``cml-bot publish --bundle DIR`` with a write token.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from cml_bot.errors import InputError
from cml_bot.forges.base import CommentMode, Image, Verdict
from cml_bot.results import atomic_write

BUNDLE_VERSION = 1
_IMAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")


@dataclass(frozen=True)
class BundleMeta:
    platform: str
    repo: str | None
    change_number: int | None
    head_sha: str | None
    marker: str
    mode: str
    verdict: str
    description: str
    target_url: str | None
    version: int = BUNDLE_VERSION


@dataclass(frozen=True)
class Bundle:
    meta: BundleMeta
    report: str  # markdown with images referenced by bare file name
    images: tuple[Image, ...]

    def body_with(self, urls: Mapping[str, str]) -> str:
        """The report with each ``](name)`` image link replaced by its uploaded URL."""
        body = self.report
        for name, url in urls.items():
            body = body.replace(f"]({name})", f"]({url})")
        return body


def write_bundle(folder: Path, bundle: Bundle) -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for image in bundle.images:
        atomic_write(folder / "images" / image.name, image.data)
    atomic_write(folder / "report.md", bundle.report.encode("utf-8"))
    # meta.json last: its presence marks a complete bundle.
    atomic_write(folder / "meta.json", json.dumps(asdict(bundle.meta), indent=1).encode("utf-8"))


def read_bundle(folder: Path) -> Bundle:
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise InputError(f"{folder}: not a cml-bot bundle (no meta.json)")
    try:
        raw = json.loads(meta_path.read_text(encoding="utf-8"))
        if raw.get("version") != BUNDLE_VERSION:
            raise ValueError(f"unsupported bundle version {raw.get('version')!r}")
        meta = BundleMeta(**raw)
        CommentMode(meta.mode)
        Verdict(meta.verdict)
        if not isinstance(meta.marker, str) or not meta.marker.startswith("<!-- cml-bot report"):
            raise ValueError("bad marker")
        if meta.change_number is not None and not isinstance(meta.change_number, int):
            raise ValueError("bad change_number")
        report = (folder / "report.md").read_text(encoding="utf-8")
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise InputError(f"{meta_path}: unreadable bundle ({exc})") from None
    images = []
    image_dir = folder / "images"
    if image_dir.is_dir():
        for path in sorted(image_dir.iterdir()):
            if not _IMAGE_NAME.match(path.name) or not path.is_file() or path.is_symlink():
                raise InputError(f"{path}: unexpected file in bundle")
            images.append(Image(path.name, path.read_bytes()))
    return Bundle(meta=meta, report=report, images=tuple(images))
