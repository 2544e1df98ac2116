"""Data changes in the report: pinned files compared by hash, tabular summaries from the cache."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from conftest import GitRepo

from cml_bot.cli import Console, main


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _config(url: str, sha: str) -> str:
    return f"""\
metrics: [metrics.json]
data:
  cache: {{cache}}
  label_column: label
  files:
    - path: data/train.csv
      url: {url}
      sha256: {sha}
"""


def test_changed_csv_shows_rows_columns_and_labels(repo: GitRepo, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    old = b"x,label\n1,cat\n2,dog\n3,cat\n"
    new = b"x,y,label\n1,0,cat\n2,0,dog\n3,0,dog\n4,0,dog\n"
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "v1.csv").write_bytes(old)
    (sources / "v2.csv").write_bytes(new)
    env = {"PATH": "/usr/bin:/bin"}

    repo.write("cml-bot.yaml", _config((sources / "v1.csv").as_uri(), _sha(old)).replace("{cache}", str(cache)))
    repo.write("metrics.json", {"accuracy": 0.5})
    repo.write(".gitignore", "data/\n")
    repo.commit("data v1")
    assert main(["pull", "-C", str(repo.root)], env=env, console=Console(io.StringIO(), io.StringIO())) == 0
    repo.git("checkout", "--quiet", "-b", "more-data")
    repo.write("cml-bot.yaml", _config((sources / "v2.csv").as_uri(), _sha(new)).replace("{cache}", str(cache)))
    repo.commit("data v2")
    out, err = io.StringIO(), io.StringIO()
    assert main(["run", "--dry-run", "-C", str(repo.root)], env=env, console=Console(out, err)) == 0, err.getvalue()

    report = (repo.root / "cml-bot-report" / "report.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| data/train.csv"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1] == "changed"
    assert cells[2] == f"`{_sha(new)[:12]}`"
    assert cells[3] == "3 → 4"
    assert cells[4] == "+y"
    assert cells[5] == "cat: 2 → 1, dog: 1 → 3"
    assert "Data: 1 of 1 files changed" in report


def test_unknown_base_content_compares_hashes_only(repo: GitRepo, tmp_path: Path) -> None:
    repo.write("cml-bot.yaml", _config("https://example.invalid/a.csv", "a" * 64).replace("{cache}", str(tmp_path)))
    repo.write("metrics.json", {"accuracy": 0.5})
    repo.commit()
    repo.git("checkout", "--quiet", "-b", "b")
    repo.write("cml-bot.yaml", _config("https://example.invalid/b.csv", "b" * 64).replace("{cache}", str(tmp_path)))
    repo.commit()
    out, err = io.StringIO(), io.StringIO()
    assert (
        main(["report", "--dry-run", "-C", str(repo.root)], env={"PATH": "/usr/bin:/bin"}, console=Console(out, err))
        == 0
    ), err.getvalue()
    report = (repo.root / "cml-bot-report" / "report.md").read_text()
    assert "| data/train.csv | changed | `bbbbbbbbbbbb` | —" in report.replace("  ", " ").replace("  ", " ")
