"""What cml-bot says is true and grammatical: singular counts, a local report's last line, a
malformed data URL refused when it is pinned, not later."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from conftest import GitRepo

from cml_bot.cli import Console, main
from cml_bot.data.cache import PulledFile, PullResult
from cml_bot.diff import diff
from cml_bot.pipeline import PipelineResult, StepResult
from cml_bot.report import Report, render_markdown


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), env={"PATH": "/usr/bin:/bin"}, console=Console(out, err))
    return code, out.getvalue(), err.getvalue()


def test_one_of_a_kind_is_singular() -> None:
    params = diff({"a": 1}, {"a": 1}, base_params={"lr": 0.1, "seed": 1}, head_params={"lr": 0.2, "seed": 1})
    text = render_markdown(Report("T", "default", params))
    assert "<summary>1 unchanged param</summary>" in text and "unchanged params<" not in text

    failed = PipelineResult((StepResult("train", "python train.py", 1, 1.0, ("Traceback: boom",)),))
    text = render_markdown(Report("T", "default", diff(None, {}), pipeline=failed))
    assert "Last line of the log" in text and "Last 1 lines" not in text

    one = PullResult((PulledFile("data/train.csv", "0" * 64, 4, "verified"),), Path("cache"), 0.0)
    assert one.summary.startswith("1 data file (1 verified)")
    two = PullResult((*one.files, PulledFile("data/test.csv", "1" * 64, 4, "cached")), Path("cache"), 0.0)
    assert two.summary.startswith("2 data files (1 cached, 1 verified)")


def test_a_local_report_does_not_claim_to_be_a_comment(repo: GitRepo) -> None:
    repo.write("cml-bot.yaml", "title: Local\nmetrics: [metrics.json]\n")
    repo.write("metrics.json", {"accuracy": 0.9})
    repo.commit()
    code, _, err = _cli("report", "--dry-run", "-C", str(repo.root))
    assert code == 0, err
    folder = repo.root / "cml-bot-report"
    text = (folder / "report.md").read_text(encoding="utf-8")
    assert "comment" not in text.splitlines()[-1] and "every push" not in text
    assert text.endswith("Written by cml-bot. The next run into this folder replaces this report.</sub>\n")
    assert "every push" not in (folder / "index.html").read_text(encoding="utf-8")
    # A posted comment keeps saying what is true of it.
    assert render_markdown(Report("T", "default", diff(None, {}))).endswith("updated on every push.</sub>\n")


@pytest.mark.parametrize("url", ["https://...", "https://a..b/train.csv", "http://-host-/x"])
def test_data_add_refuses_a_malformed_url(repo: GitRepo, url: str) -> None:
    config = "title: Data\nmetrics: [metrics.json]\n"
    repo.write("cml-bot.yaml", config)
    repo.write("data/train.csv", "x,y\n1,2\n")
    code, _, err = _cli("data", "add", "data/train.csv", "--url", url, "-C", str(repo.root))
    assert code == 2
    [line] = err.splitlines()
    assert line.startswith("cml-bot: error: --url") and "malformed host" in line
    assert (repo.root / "cml-bot.yaml").read_text() == config  # nothing pinned


def test_pull_refuses_a_malformed_url_already_in_the_config(repo: GitRepo) -> None:
    repo.write(
        "cml-bot.yaml",
        "title: Data\ndata:\n  files:\n    - {path: data/train.csv, url: 'https://...', sha256: " + "0" * 64 + "}\n",
    )
    code, _, err = _cli("pull", "-C", str(repo.root))
    assert code == 2
    assert "malformed host '...'" in err and len(err.splitlines()) == 1
