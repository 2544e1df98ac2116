"""The mlflow: and tensorboard: sections of cml-bot.yaml: every mistake is one line naming the file
and the key path, before anything is read or fetched."""

from __future__ import annotations

import io

import pytest
from conftest import GitRepo

from cml_bot.cli import Console, main
from cml_bot.config import MLFLOW_ARTIFACT_PREFIX, MlflowSource, TensorBoardSource, parse_config


def cli(args: list[str], repo: GitRepo) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*args, "-C", str(repo.root)], env={"PATH": "/usr/bin:/bin"}, console=Console(out, err))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("tensorboard: {logdir: runs, reduce: {loss: mean}}", "at tensorboard.reduce.loss: expected one of last, min"),
        ("tensorboard: {logdir: ../runs}", "at tensorboard.logdir: expected a path inside the repo"),
        ("tensorboard: {reduce: {}}", "at tensorboard.logdir: expected the folder of the event files"),
        ("tensorboard: {logdir: runs, history: 1}", "at tensorboard.history: expected true, false or a list"),
        ("mlflow: {tracking_uri: 'file:///etc'}", "at mlflow.experiment"),
        ("mlflow: {experiment: e, tracking_uri: 'file:///etc'}", "at mlflow.tracking_uri: expected an http(s)"),
        ("mlflow: {experiment: e, runs: all}", "at mlflow.runs: expected one of samples, shards"),
        ("mlflow: {experiment: e, colour: red}", "at mlflow.colour: unknown key"),
        ("mlflow: {experiment: e, run_url: 'javascript:x'}", "at mlflow.run_url: expected an http(s)"),
        ("mlflow: {experiment: e, artifacts: [{path: ../x.png}]}", "at mlflow.artifacts[0].path"),
        ("mlflow: {experiment: e, history: 3}", "at mlflow.history: expected true, false or a list"),
        ("mlflow: {experiment: e, metrics: [1]}", "at mlflow.metrics[0]: expected a non-empty string"),
    ],
)
def test_config_errors_name_the_key_and_the_file(repo: GitRepo, config: str, message: str) -> None:
    repo.write("cml-bot.yaml", config + "\n")
    repo.commit("main")

    code, _, err = cli(["report", "--dry-run"], repo)

    assert code == 2
    assert err.startswith("cml-bot: error: cml-bot.yaml ") and message in err, err
    assert err.count("\n") == 1


def test_sections_parse_into_typed_sources(tmp_path: object) -> None:
    raw = {
        "mlflow": {
            "experiment": "digits",
            "run_name": "train",
            "filter": "params.model = 'cnn'",
            "runs": "shards",
            "metrics": "acc*",
            "history": ["*loss"],
            "artifacts": ["confusion.png", {"path": "eval/pr.csv", "x": "recall", "y": "precision"}],
        },
        "tensorboard": "runs",
    }
    from pathlib import Path

    config = parse_config(raw, Path("/repo"))

    assert config.mlflow == MlflowSource(
        experiment="digits",
        run_name="train",
        filter="params.model = 'cnn'",
        runs="shards",
        metrics=("acc*",),
        history=("*loss",),
        artifacts=config.mlflow.artifacts if config.mlflow else (),
    )
    assert config.mlflow is not None
    image, table = config.mlflow.artifacts
    assert (image.path, image.template) == (MLFLOW_ARTIFACT_PREFIX + "confusion.png", "image")
    assert (table.path, table.x, table.y) == (MLFLOW_ARTIFACT_PREFIX + "eval/pr.csv", "recall", ("precision",))
    assert config.plots == config.mlflow.artifacts  # drawn like any plot, from the fetched bytes
    assert config.tensorboard == TensorBoardSource(logdir="runs")
