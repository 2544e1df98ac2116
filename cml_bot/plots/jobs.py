"""What to draw, without drawing: plot jobs, their file-safe names and distinct titles, and the check
of an image from an untrusted bundle. Imports no matplotlib or numpy, so a run can prepare its plots
while another process imports them (Pillow only when an image is checked)."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cml_bot.config import PlotSpec

X_DEFAULTS = ("step", "epoch", "iteration")  # column names used as x when the spec names none


@dataclass(frozen=True)
class PlotJob:
    spec: PlotSpec
    head: Mapping[str, bytes]  # the plot's files at head
    base: Mapping[str, bytes] | None  # ... and at the base (None: no baseline)
    name: str
    base_label: str = "main"

    @property
    def size(self) -> int:
        return sum(len(d) for d in self.head.values()) + sum(len(d) for d in (self.base or {}).values())


def safe_name(text: str) -> str:
    """A file-name-safe stem: lowercase ``[a-z0-9-]``, no leading/trailing/double ``-``, 1-60 chars."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    stem = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    stem = stem[:60].rstrip("-")
    return stem or "plot"


def plot_titles(specs: Sequence[PlotSpec]) -> list[str]:
    """A title per plot, each different: the definition's title (or its id), a normalised confusion
    matrix saying so, and plots that would still share a title told apart by their id."""
    titles = []
    for spec in specs:
        title = spec.title or spec.path
        if spec.template == "confusion_normalized" and "normali" not in title.lower():
            title = f"{title} (normalized)"
        titles.append(title)
    counts = Counter(titles)
    titles = [f"{t} ({s.path})" if counts[t] > 1 and s.path != t else t for t, s in zip(titles, specs, strict=True)]
    seen: Counter[str] = Counter()
    unique = []
    for title in titles:
        seen[title] += 1
        unique.append(title if seen[title] == 1 else f"{title} #{seen[title]}")
    return unique


# Images from an untrusted bundle (posted as they are, never drawn by cml-bot)

UNTRUSTED_IMAGE_BYTES = 5 * 1024 * 1024
UNTRUSTED_IMAGE_PIXELS = 40_000_000


def untrusted_image_problem(data: bytes) -> str | None:
    """Why image bytes from an untrusted bundle may not be posted, or None: only PNG, JPEG or GIF
    that really decode, within size limits. Never SVG (markup), never a page renamed ``.png``."""
    import io

    from PIL import Image as PillowImage

    if len(data) > UNTRUSTED_IMAGE_BYTES:
        return f"over {UNTRUSTED_IMAGE_BYTES // (1024 * 1024)} MB"
    try:
        with PillowImage.open(io.BytesIO(data)) as image:
            kind = image.format
            if kind not in ("PNG", "JPEG", "GIF"):
                return f"a {kind or 'unknown'} file, not PNG, JPEG or GIF"
            if image.width * image.height > UNTRUSTED_IMAGE_PIXELS:
                return f"{image.width}x{image.height} pixels, too large"
            image.verify()
        with PillowImage.open(io.BytesIO(data)) as image:
            image.load()  # verify() checks structure only; decoding proves the pixels are there
    except Exception as exc:  # Pillow raises many types for hostile input: all mean "not an image"
        return f"does not decode as an image ({type(exc).__name__})"
    return None
