"""End to end: `cml-bot demo` trains a real model on main and on a branch, offline, and writes the report."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from PIL import Image as PILImage

from cml_bot.cli import Console, main

pytest.importorskip("sklearn")


def test_demo_runs_whole_loop_offline(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    env = {"PATH": "/usr/bin:/bin", "GITHUB_ACTIONS": "true", "GITHUB_TOKEN": "ghp_shouldneverbeused"}
    code = main(
        ["demo", "--workdir", str(tmp_path / "work"), "--out", str(tmp_path / "report")],
        env=env,
        console=Console(out, err),
    )
    assert code == 0, err.getvalue()
    folder = tmp_path / "report"
    report = (folder / "report.md").read_text()
    # A real comparison against main's recorded results, with both plots drawn.
    assert report.startswith("<!-- cml-bot report (id: default) -->")
    assert "| train.learning_rate | 0.01 | 0.1" in report.replace("\\_", "_")
    assert "recorded results of the merge-base with main" in report.replace("\\-", "-")
    for name in ("plot-01-loss-per-epoch.png", "plot-02-confusion-matrix-normalized.png"):
        data = (folder / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert len(data) < 100_000
        assert f"]({name})" in report
    assert "accuracy" in report and "f1_macro" in report.replace("\\_", "_")
    assert '<img src="plot-01-loss-per-epoch.png"' in (folder / "index.html").read_text()
    # Per-example predictions of both revisions: intervals, the rule, flips, classes, confusion delta.
    plain = report.replace("\\", "").replace("\u00a0", " ")  # no-break spaces keep an interval on one line
    assert "| 95% CI " in plain and "] pp |" in plain
    assert "accuracy: paired on 540 examples matched by the id column 'id': mid-p McNemar test (" in plain
    flips = re.search(r"\*\*Predictions: (\d+) examples fixed, (\d+) broken\*\*", plain)
    assert flips is not None, plain
    listed = (folder / "prediction-flips.csv").read_text().splitlines()
    assert listed[0] == "id,label,base,head,change"
    changes = [line.rsplit(",", 1)[1] for line in listed[1:]]
    assert (changes.count("fixed"), changes.count("broken")) == (int(flips.group(1)), int(flips.group(2)))
    assert "F1 per class" in plain and "First " in plain and " broken example" in plain
    assert (folder / "confusion-delta.png").read_bytes().startswith(b"\x89PNG")
    # main's recorded history (six seeds and the baseline): the trend and the noise band.
    assert "the last 7 recorded commits of main" in plain and "usual variation of one run" in plain
    assert (folder / "trend.png").read_bytes().startswith(b"\x89PNG")
    # A -0.2 pp change on 540 examples is noise: no better/worse claim, no failed gate.
    assert "≈ no detectable change" in plain and "↘ worse" not in plain and "❌ regressed" not in plain
    # Read at a glance: a pass shows each gate's margin; numbers right-aligned; plots opaque.
    assert "✅ **Gates passed**" in plain and "- accuracy: " in plain and "(max_drop 0.01)" in plain
    assert "|---|---:|---:|---:|---:|---:|---|" in plain
    for name in ("plot-01-loss-per-epoch.png", "confusion-delta.png", "trend.png"):
        with PILImage.open(folder / name) as image:
            assert image.convert("RGBA").getextrema()[3] == (255, 255)  # never transparent
    # The demo is local even inside CI: nothing posted, no token used or shown.
    assert "ghp_shouldneverbeused" not in out.getvalue() + err.getvalue() + report
    assert str(folder / "report.md") in out.getvalue()
