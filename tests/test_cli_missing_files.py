"""A declared file missing from the revision read: the hint says why (it is in the working folder,
never committed), not "closest: <the very same name>"."""

from __future__ import annotations

import io

from conftest import GitRepo

from cml_bot.cli import Console, main

CONFIG = """\
title: Missing
metrics: [metrics.json]
plots:
  - {path: train_log.csv, x: epoch, y: loss}
"""


def _diff(repo: GitRepo) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["diff", "main", "HEAD", "-C", str(repo.root)], env={"PATH": "/usr/bin:/bin"}, console=Console(out, err)
    )
    return code, err.getvalue()


def _outputs(repo: GitRepo) -> None:
    repo.write("metrics.json", {"accuracy": 0.9})
    repo.write("train_log.csv", "epoch,loss\n1,0.5\n")


def test_a_gitignored_output_is_named_as_such_not_as_its_own_closest_match(repo: GitRepo) -> None:
    repo.write("cml-bot.yaml", CONFIG)
    repo.write(".gitignore", "metrics.json\ntrain_log.csv\n")
    repo.commit()
    _outputs(repo)  # trained here, never committed
    code, err = _diff(repo)
    assert code == 0, err
    assert "closest: metrics.json" not in err and "closest: train_log.csv" not in err, err
    assert "metrics.json: not found in" in err
    assert "the working folder has metrics.json, but .gitignore keeps it out of commits" in err
    assert "the working folder has train_log.csv, but .gitignore keeps it out of commits" in err


def test_an_uncommitted_output_is_named_as_such(repo: GitRepo) -> None:
    repo.write("cml-bot.yaml", CONFIG)
    repo.commit()
    _outputs(repo)
    code, err = _diff(repo)
    assert code == 0, err
    assert "the working folder has metrics.json, but it is not committed" in err
    assert "closest: metrics.json" not in err


def test_a_misspelt_file_still_gets_the_closest_names(repo: GitRepo) -> None:
    repo.write("cml-bot.yaml", CONFIG.replace("[metrics.json]", "[metric.json]"))
    _outputs(repo)
    repo.commit()
    code, err = _diff(repo)
    assert code == 0, err
    assert "metric.json: not found in" in err and "closest: metrics.json" in err
    assert "the working folder has" not in err
