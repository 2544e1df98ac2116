"""The report folder: ``report.md``, its images and an HTML preview, written on every run.

It is what ``--dry-run`` and local runs produce, the job artifact in CI, and the full (untrimmed)
report a trimmed comment points at.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from cml_bot.config import IMAGE_SUFFIXES
from cml_bot.model import Artifact, Image
from cml_bot.report import render_html
from cml_bot.results import atomic_write
from cml_bot.verdicts import FLIPS_FILE

REPORT_FILE = "report.md"
PREVIEW_FILE = "index.html"
PREVIEW_LIMIT = 2_000_000  # characters of markdown rendered into the HTML preview
ARTIFACT_FILES = frozenset([FLIPS_FILE])  # files a run may leave beside the report


class ReportFolder:
    """Writes ``report.md``, the images and ``index.html`` into ``folder``."""

    def __init__(self, folder: Path, title: str = "cml-bot report") -> None:
        self.folder = folder
        self.title = title

    @property
    def report(self) -> Path:
        return self.folder / REPORT_FILE

    @property
    def preview(self) -> Path:
        return self.folder / PREVIEW_FILE

    def prepare(self) -> None:
        """Create the folder with a ``.gitignore`` so the report is never committed by accident,
        and remove images of an earlier run so the folder holds exactly one report."""
        self.folder.mkdir(parents=True, exist_ok=True)
        ignore = self.folder / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# written by cml-bot\n*\n", encoding="utf-8")
        for old in self.folder.iterdir():
            # An earlier run's images or flips list must not look current.
            if old.is_file() and (old.suffix.lower() in IMAGE_SUFFIXES or old.name in ARTIFACT_FILES):
                old.unlink()

    def write_images(self, images: Sequence[Image]) -> Mapping[str, str]:
        """Write the images beside the report; name -> the relative link the markdown uses."""
        for image in images:
            atomic_write(self.folder / image.name, image.data)
        return {image.name: image.name for image in images}

    def write_artifacts(self, artifacts: Sequence[Artifact]) -> None:
        """Files beside the report for the reader of the folder (e.g. every prediction flip); they
        are never uploaded or posted."""
        for artifact in artifacts:
            atomic_write(self.folder / artifact.name, artifact.data)

    def write_report(self, body: str) -> None:
        atomic_write(self.report, body.encode("utf-8"))
        if len(body) > PREVIEW_LIMIT:
            # Rendering megabytes of tables takes tens of seconds and no browser shows them well.
            first = body.split("\n", 1)[0]
            body = (
                f"{first}\n_The report is {len(body):,} characters, too large to preview here: "
                f"open {REPORT_FILE} instead._\n"
            )
        atomic_write(self.preview, render_html(body, self.title).encode("utf-8"))
