"""The local destination: the report, its images and an HTML preview written to a folder.

Used by ``--dry-run`` and whenever cml-bot runs outside CI; nothing is posted anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from cml_bot.forges.base import CommentMode, Publication
from cml_bot.model import Image, Verdict
from cml_bot.report import render_html
from cml_bot.results import atomic_write

REPORT_FILE = "report.md"
PREVIEW_FILE = "index.html"
PREVIEW_LIMIT = 2_000_000  # characters of markdown rendered into the HTML preview


class LocalForge:
    """Writes ``report.md``, the images and ``index.html`` into ``folder``."""

    comment_limit = 10_000_000  # a file has no practical limit; keep the full report

    def __init__(self, folder: Path, title: str = "cml-bot report") -> None:
        self.folder = folder
        self.title = title
        self.status: tuple[Verdict, str] | None = None

    def upload_images(self, images: Sequence[Image]) -> Mapping[str, str]:
        for image in images:
            atomic_write(self.folder / image.name, image.data)
        return {image.name: image.name for image in images}

    def upsert_comment(self, body: str, marker: str, mode: CommentMode) -> Publication:
        report = self.folder / REPORT_FILE
        created = not report.exists()
        atomic_write(report, body.encode("utf-8"))
        if len(body) > PREVIEW_LIMIT:
            # Rendering megabytes of tables takes tens of seconds and no browser shows them well.
            body = (
                f"{marker}\n_The report is {len(body):,} characters, too large to preview here: "
                f"open {REPORT_FILE} instead._\n"
            )
        atomic_write(self.folder / PREVIEW_FILE, render_html(body, self.title).encode("utf-8"))
        return Publication(comment_url=str(report), created=created)

    def set_status(self, verdict: Verdict, description: str, target_url: str | None) -> None:
        self.status = (verdict, description)


def prepare_folder(folder: Path) -> None:
    """Create the output folder with a ``.gitignore`` so the report is never committed by accident,
    and remove images of an earlier run so the folder holds exactly one report."""
    folder.mkdir(parents=True, exist_ok=True)
    ignore = folder / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# written by cml-bot\n*\n", encoding="utf-8")
    for old in folder.iterdir():
        if old.is_file() and old.suffix.lower() in {".png", ".jpg", ".jpeg", ".gif", ".svg"}:
            old.unlink()
