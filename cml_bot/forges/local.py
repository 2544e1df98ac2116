"""The report folder: ``report.md``, its images and an HTML preview, written on every run.

It is what ``--dry-run`` and local runs produce, the job artifact in CI, and the full (untrimmed)
report a trimmed comment points at.

The folder may be one the user named (``--out``), so cml-bot removes only what it wrote there
itself, listed in a manifest, and writes into a folder of someone else's files not at all: ``--out
docs`` or ``--out .`` is refused before anything is touched, never cleaned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from cml_bot.config import IMAGE_SUFFIXES
from cml_bot.errors import CmlBotError, InputError
from cml_bot.files import file_in_the_way, read_limited
from cml_bot.model import Artifact, Image
from cml_bot.report import render_html
from cml_bot.results import IGNORE_ALL, IGNORE_MARK, atomic_write, make_own_folder
from cml_bot.runtime import DEFAULT_REPORT_DIR
from cml_bot.verdicts import FLIPS_FILE

REPORT_FILE = "report.md"
PREVIEW_FILE = "index.html"
PREVIEW_LIMIT = 2_000_000  # characters of markdown rendered into the HTML preview
ARTIFACT_FILES = frozenset([FLIPS_FILE])  # files a run may leave beside the report
# The names of the files cml-bot wrote into the folder, one a line: the only files it ever removes.
MANIFEST_FILE = ".cml-bot-files"
IGNORE_FILE = ".gitignore"
_SMALL_FILE = 1_000_000  # bytes: the manifest and .gitignore are read bounded (a checkout may hold anything)
_SHOWN = 3  # foreign files named when a folder is refused


class ReportFolder:
    """Writes ``report.md``, the images and ``index.html`` into ``folder``."""

    def __init__(self, folder: Path, title: str = "cml-bot report") -> None:
        self.folder = folder
        self.title = title
        self._written: list[str] = []  # names written by this run, kept in the manifest

    @property
    def report(self) -> Path:
        return self.folder / REPORT_FILE

    @property
    def preview(self) -> Path:
        return self.folder / PREVIEW_FILE

    @staticmethod
    def check(folder: Path) -> None:
        """Raise :class:`InputError` unless cml-bot may write its report into ``folder``: a new
        folder (no file in the way), an empty one, or a report folder cml-bot wrote before. The CLI
        calls it before a run starts, so a wrong ``--out`` costs no training."""
        blocking = file_in_the_way(folder)
        if blocking is not None:
            where = f"{folder} is a file" if blocking == folder else f"{folder}: {blocking} is a file, not a folder"
            raise InputError(f"report folder {where} (choose another --out)")
        if not folder.is_dir() or _is_report_folder(folder):
            return
        foreign = sorted(entry.name for entry in folder.iterdir() if entry.name != ".gitkeep")
        if foreign:
            shown = ", ".join(foreign[:_SHOWN]) + (
                f" and {len(foreign) - _SHOWN} more" if len(foreign) > _SHOWN else ""
            )
            raise InputError(
                f"report folder {folder} holds files cml-bot did not write ({shown}); cml-bot replaces what "
                "it writes there on every run, so choose a new or empty folder for --out"
            )

    def prepare(self) -> None:
        """Create the folder (ignored by git when cml-bot creates it, so the report is never committed
        by accident) and remove what an earlier run wrote there, so it holds exactly one report."""
        self.check(self.folder)
        created = not self.folder.exists()
        try:
            make_own_folder(self.folder)
        except (FileExistsError, NotADirectoryError) as exc:  # made a file between check and now
            raise InputError(f"report folder {self.folder}: {exc.strerror or exc}") from None
        ignore = self.folder / IGNORE_FILE
        if not created and self.folder.name == DEFAULT_REPORT_DIR and not ignore.exists():
            # The default folder is cml-bot's by its name, even when someone made it empty for us.
            atomic_write(ignore, IGNORE_ALL.encode("utf-8"))
        for name in _earlier_files(self.folder):
            # An earlier run's images or flips list must not look current.
            old = self.folder / name
            if old.is_file() or old.is_symlink():
                old.unlink()
        self._written = []
        self._remember([])

    def _remember(self, names: Iterable[str]) -> None:
        """Add ``names`` to the manifest before they are written: a run killed half-way still
        leaves them listed for the next run to remove. A file of that name that cml-bot did not
        write (a user's, added to the folder since) is refused, never replaced."""
        new = [name for name in dict.fromkeys(names) if name not in self._written]
        for name in new:
            if (self.folder / name).exists():
                raise InputError(
                    f"report folder {self.folder}: {name} is not cml-bot's; move it, or choose another --out"
                )
        self._written += new
        lines = ["# files cml-bot wrote here; the next run removes them (and nothing else)", *self._written]
        atomic_write(self.folder / MANIFEST_FILE, ("\n".join(lines) + "\n").encode("utf-8"))

    def write_images(self, images: Sequence[Image]) -> Mapping[str, str]:
        """Write the images beside the report; name -> the relative link the markdown uses."""
        self._remember(image.name for image in images)
        for image in images:
            atomic_write(self.folder / image.name, image.data)
        return {image.name: image.name for image in images}

    def write_artifacts(self, artifacts: Sequence[Artifact]) -> None:
        """Files beside the report for the reader of the folder (e.g. every prediction flip); they
        are never uploaded or posted."""
        self._remember(artifact.name for artifact in artifacts)
        for artifact in artifacts:
            atomic_write(self.folder / artifact.name, artifact.data)

    def write_report(self, body: str) -> None:
        """Write ``report.md`` and its preview (rendered with :data:`cml_bot.report.FOLDER_FOOTER`)."""
        self._remember([REPORT_FILE, PREVIEW_FILE])
        atomic_write(self.report, body.encode("utf-8"))
        if len(body) > PREVIEW_LIMIT:
            # Rendering megabytes of tables takes tens of seconds and no browser shows them well.
            first = body.split("\n", 1)[0]
            body = (
                f"{first}\n_The report is {len(body):,} characters, too large to preview here: "
                f"open {REPORT_FILE} instead._\n"
            )
        atomic_write(self.preview, render_html(body, self.title).encode("utf-8"))


def _is_report_folder(folder: Path) -> bool:
    """Whether cml-bot wrote a report into ``folder`` before: it has cml-bot's manifest, or (from a
    version before the manifest) it is cml-bot's and holds nothing a report does not hold."""
    if (folder / MANIFEST_FILE).is_file():
        return True
    return _marked_as_own(folder) and all(_report_shaped(entry) for entry in folder.iterdir())


def _marked_as_own(folder: Path) -> bool:
    """cml-bot's ``.gitignore`` is in it, or it has the default report folder's name."""
    if folder.name == DEFAULT_REPORT_DIR:
        return True
    try:
        text = read_limited(folder / IGNORE_FILE, _SMALL_FILE).decode("utf-8", errors="replace")
    except CmlBotError:  # missing, not a regular file (a link to /dev/zero), or too large: not ours
        return False
    return text.startswith(IGNORE_MARK)


def _report_shaped(entry: Path) -> bool:
    name = entry.name
    if name in (IGNORE_FILE, REPORT_FILE, PREVIEW_FILE, ".gitkeep") or name in ARTIFACT_FILES:
        return True
    if name.startswith(".") and name.endswith(".tmp"):  # atomic_write's, from a killed run
        return True
    return entry.is_file() and name.lower().endswith(IMAGE_SUFFIXES)


def _earlier_files(folder: Path) -> list[str]:
    """What an earlier run wrote into ``folder``: the manifest's names (only plain names of this
    folder: the manifest may come from a hostile checkout), or, in a report folder from before the
    manifest, its images and artifacts."""
    manifest = folder / MANIFEST_FILE
    if not manifest.is_file():
        if not _is_report_folder(folder):
            return []
        return [e.name for e in folder.iterdir() if _report_shaped(e) and e.name not in (IGNORE_FILE, ".gitkeep")]
    names = []
    text = read_limited(manifest, _SMALL_FILE, error=InputError).decode("utf-8", errors="replace")
    for line in text.splitlines():
        name = line.strip()
        if not name or name.startswith("#") or name in (".", "..", MANIFEST_FILE, IGNORE_FILE):
            continue
        if "/" in name or "\\" in name or "\0" in name:
            continue
        names.append(name)
    return names
