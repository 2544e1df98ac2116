"""Startup: `cml-bot --help` must stay under 0.25 s (heavy imports only when needed); `dvc --version`
is measured in the same run for comparison.

    python bench/startup.py
"""

from __future__ import annotations

import subprocess
import sys

from _common import command_seconds, row, tool

TARGET = 0.25


def main() -> int:
    cml_bot = tool("cml-bot")
    if cml_bot is None:
        print("cml-bot is not installed: pip install -e .", file=sys.stderr)
        return 1
    ours = command_seconds([cml_bot, "--help"], repeat=11)
    imports = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import cml_bot.cli"], capture_output=True, text=True, check=True
    ).stderr
    heavy = [name for name in ("matplotlib", "pandas", "github", "gitlab", "numpy") if f" {name}\n" in imports]
    dvc = tool("dvc")
    peer = command_seconds([dvc, "--version"], repeat=5) if dvc else None
    print(row("cml-bot --help (median of 11)", ours, f"target < {TARGET} s: {'met' if ours < TARGET else 'MISSED'}"))
    print(row("dvc --version (median of 5)", peer, "" if peer else "dvc not installed"))
    if peer:
        print(f"ratio cml-bot/dvc: {ours / peer:.2f}")
    print(f"heavy modules imported by the CLI: {', '.join(heavy) or 'none'}")
    return 0 if ours < TARGET and not heavy else 1


if __name__ == "__main__":
    sys.exit(main())
