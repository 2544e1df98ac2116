"""The screenshot check: a report as GitHub shows it, in its light and its dark theme.

Renders a report folder's report.md (markdown-it with GFM tables, as cml-bot's own preview does)
into one page per theme and, when a Chromium is installed, screenshots each page at a comment's
width, so the report can be looked at as a reader would see it: plots readable on both
backgrounds, numbers aligned, marks distinct. Not a test: a person (or a reviewing session) looks
at the PNGs. See docs/report.md, "Checking the report's look".

The pages use GitHub's colours as cml-bot's preview writes them (cml_bot.report.render_html), or,
with --github-css, GitHub's own stylesheet from the npm package github-markdown-css:

    (cd /tmp && npm pack github-markdown-css@5.9.0 && tar xzf github-markdown-css-5.9.0.tgz)
    cml-bot demo --out /tmp/demo
    python bench/screenshots.py /tmp/demo --out /tmp/shots --github-css /tmp/package

Writes <out>/report-light.html, <out>/report-dark.html and, with Chromium (Debian: apt-get install
chromium fonts-noto-color-emoji), <out>/report-light.png and <out>/report-dark.png.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from cml_bot.report import render_html  # noqa: E402

THEMES = ("light", "dark")
WIDTH = 1000  # the window: a comment about 880 px wide, with the page's margins
BACKGROUNDS = {"light": "#ffffff", "dark": "#0d1117"}  # GitHub's page behind the comment
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def page(markdown_text: str, theme: str, folder: Path, github_css: Path | None) -> str:
    """One theme's page; images resolve against the report folder (a <base> element)."""
    base = f'<base href="{folder.resolve().as_uri()}/">'
    if github_css is None:
        return render_html(markdown_text, "cml-bot report", theme=theme).replace("<head>", f"<head>{base}", 1)
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough").render(markdown_text)
    css = (github_css / f"github-markdown-{theme}.css").read_text(encoding="utf-8")
    return (
        f'<!doctype html><html><head><meta charset="utf-8">{base}<style>{css}</style>'
        f"<style>body {{ background: {BACKGROUNDS[theme]}; margin: 16px; }}"
        ".markdown-body { box-sizing: border-box; max-width: 880px; margin: 0 auto; padding: 16px;"
        " border: 1px solid #8c959f55; border-radius: 6px; }</style></head>"
        f'<body><article class="markdown-body">{body}</article></body></html>'
    )


def screenshot(browser: str, html: Path, png: Path, height: int) -> None:
    """Chromium headless, one device pixel per CSS pixel; the page's empty bottom cut off."""
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--allow-file-access-from-files",
                f"--user-data-dir={profile}",
                "--force-device-scale-factor=1",
                f"--window-size={WIDTH},{height}",
                f"--screenshot={png}",
                html.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    _crop_bottom(png)


def _crop_bottom(png: Path) -> None:
    from PIL import Image

    with Image.open(png) as image:
        rgb = image.convert("RGB")
    corner = rgb.getpixel((rgb.width - 1, rgb.height - 1))
    bottom = rgb.height
    while bottom > 1 and all(rgb.getpixel((x, bottom - 1)) == corner for x in range(0, rgb.width, 4)):
        bottom -= 1
    rgb.crop((0, 0, rgb.width, min(rgb.height, bottom + 16))).save(png)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a report folder: report.md and its images")
    parser.add_argument("--out", type=Path, default=Path("screenshots"), help="where the pages and PNGs go")
    parser.add_argument("--github-css", type=Path, help="the folder of the npm package github-markdown-css")
    parser.add_argument("--height", type=int, default=8000, help="the window's height before cropping")
    args = parser.parse_args()
    markdown_text = (args.folder / "report.md").read_text(encoding="utf-8")
    args.out.mkdir(parents=True, exist_ok=True)
    browser = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    for theme in THEMES:
        html = args.out / f"report-{theme}.html"
        html.write_text(page(markdown_text, theme, args.folder, args.github_css), encoding="utf-8")
        if browser is None:
            print(f"{html}: no Chromium found, open it in a browser to look")
            continue
        png = args.out / f"report-{theme}.png"
        screenshot(browser, html, png, args.height)
        print(png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
