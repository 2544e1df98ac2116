"""Per-example results files: formats, guessed columns, bounds, one-line errors, and pairing by id."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cml_bot import predictions as P
from cml_bot.config import PredictionsConfig, parse_config
from cml_bot.errors import ConfigError, InputError
from cml_bot.predictions import pair, read_predictions

CSV = b"id,label,prediction,proba_cat,proba_dog\na,cat,cat,0.9,0.1\nb,dog,cat,0.6,0.4\nc,dog,dog,0.2,0.8\n"


def _spec(path: str = "predictions.csv", **options: object) -> PredictionsConfig:
    return PredictionsConfig(path=path, **options)  # type: ignore[arg-type]


def test_csv_with_guessed_columns() -> None:
    table = read_predictions(CSV, _spec())
    assert table.task == "classification" and table.id_column == "id" and table.count == 3
    assert list(table.labels) == ["cat", "dog", "dog"] and list(table.predicted) == ["cat", "cat", "dog"]
    assert table.score_classes == ("cat", "dog") and table.scores.shape == (3, 2)


def test_tsv_jsonl_and_dvclive_json() -> None:
    tsv = read_predictions(CSV.replace(b",", b"\t"), _spec("p.tsv"))
    assert list(tsv.ids) == ["a", "b", "c"]
    lines = b"\n".join(
        json.dumps({"id": i, "y_true": y, "y_pred": p, "probabilities": s}).encode()
        for i, y, p, s in [(1, 0, 0, [0.8, 0.2]), (2, 1, 0, [0.7, 0.3]), (3, 1, 1, [0.1, 0.9])]
    )
    jsonl = read_predictions(lines, _spec("p.jsonl"))
    assert list(jsonl.ids) == ["1", "2", "3"] and jsonl.scores.shape == (3, 2) and jsonl.score_classes == ("*",)
    # dvclive's log_sklearn_plot("confusion_matrix", ...) output: no ids, rows match by position
    dvclive = json.dumps({"confusion_matrix": [{"actual": "1", "predicted": "0"}, {"actual": "0", "predicted": "0"}]})
    table = read_predictions(dvclive.encode(), _spec("dvclive/plots/sklearn/confusion_matrix.json"))
    assert table.id_column is None and list(table.ids) == ["0", "1"] and list(table.labels) == ["1", "0"]


def test_listed_scores_keep_the_rows_that_are_kept() -> None:
    rows = [(1, 0, 0, [0.8, 0.2]), (2, None, 0, [0.7, 0.3]), (3, 1, 1, [0.1, 0.9])]  # row 2 has no label
    lines = b"\n".join(
        json.dumps({"id": i, "y_true": y, "y_pred": p, "probabilities": s}).encode() for i, y, p, s in rows
    )
    table = read_predictions(lines, _spec("p.jsonl"))
    assert table.dropped == 1 and list(table.ids) == ["1", "3"]
    assert table.scores is not None and table.scores.tolist() == [[0.8, 0.2], [0.1, 0.9]]


def test_parquet_when_pyarrow_is_there() -> None:
    pytest.importorskip("pyarrow")
    import io

    import pandas as pd

    buffer = io.BytesIO()
    pd.DataFrame({"id": [1, 2], "label": [0, 1], "prediction": [0, 0]}).to_parquet(buffer)
    assert read_predictions(buffer.getvalue(), _spec("p.parquet")).count == 2


def test_configured_columns_and_score_pattern() -> None:
    data = b"key,truth,guess,p0,p1\nx,1,0,0.7,0.3\ny,0,0,0.9,0.1\n"
    spec = _spec(id="key", label="truth", prediction="guess", scores=("p*",))
    table = read_predictions(data, spec)
    assert table.id_column == "key" and table.score_classes == ("0", "1")
    single = read_predictions(data, _spec(id="key", label="truth", prediction="guess", scores=("p1",)))
    assert single.scores.ndim == 1 and single.score_classes == ()


def test_regression_and_loss_files() -> None:
    regression = read_predictions(b"id,target,prediction\n1,0.5,0.7\n2,1.5,1.2\n", _spec())
    assert regression.task == "regression" and regression.value.tolist() == [0.7, 1.2]
    losses = read_predictions(b"id,loss\n1,0.3\n2,0.1\n", _spec())
    assert losses.task == "loss" and losses.loss.tolist() == [0.3, 0.1]


@pytest.mark.parametrize(
    ("data", "path", "options", "message"),
    [
        (CSV, "p.txt", {}, "p.txt: unsupported predictions format .txt"),
        (b"id,x\n1,2\n", "p.csv", {}, "p.csv: no label (or target) column and no per-example loss"),
        (CSV, "p.csv", {"label": "truth"}, "p.csv: no label column 'truth' (columns: id, label, prediction"),
        (b"id,label\n", "p.csv", {}, "p.csv: no rows"),
        (b"{not json", "p.json", {}, "p.json: cannot read predictions ("),
        (b'{"a": [], "b": []}', "p.json", {}, "p.json: cannot read predictions (expected a list of records"),
        (b"id,label,prediction,score\n1,0,0,nan\n", "p.csv", {}, "p.csv: scores must be finite numbers"),
        (CSV, "p.csv", {"scores": ("q*",)}, "p.csv: no column matches scores pattern 'q*'"),
    ],
)
def test_errors_are_one_line_and_name_the_file(
    data: bytes, path: str, options: dict[str, object], message: str
) -> None:
    with pytest.raises(InputError) as caught:
        read_predictions(data, _spec(path, **options))
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_size_and_row_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(P, "MAX_BYTES", 50)
    with pytest.raises(InputError, match="more than the 50 a predictions file may have"):
        read_predictions(CSV, _spec())
    monkeypatch.setattr(P, "MAX_BYTES", 10**9)
    monkeypatch.setattr(P, "MAX_ROWS", 2)
    with pytest.raises(InputError, match="3 rows, more than the 2"):
        read_predictions(CSV, _spec())


def test_rows_without_label_are_left_out_and_counted() -> None:
    table = read_predictions(b"id,label,prediction\n1,a,a\n2,,b\n3,b,b\n", _spec())
    assert table.count == 2 and table.dropped == 1


def test_pairing_by_id_states_the_evaluation_set_change() -> None:
    base = read_predictions(b"id,label,prediction\n1,a,a\n2,b,b\n3,a,b\n4,b,b\n", _spec())
    head = read_predictions(b"id,label,prediction\n5,a,a\n3,a,a\n2,b,a\n1,b,a\n", _spec())
    pairing = pair(base, head)
    assert not isinstance(pairing, str)
    assert list(pairing.ids) == ["3", "2", "1"]  # head's order
    assert (pairing.added, pairing.removed, pairing.added_ids, pairing.removed_ids) == (1, 1, ("5",), ("4",))
    assert pairing.relabelled == 1  # id 1: a at the base, b here
    data = pairing.examples
    assert data.classes == ("a", "b") and data.count == 3
    assert data.base_pred.tolist() == [1, 1, 0] and data.head_pred.tolist() == [0, 0, 0]
    assert data.labels.tolist() == [0, 1, 1]


def test_pairing_refuses_what_cannot_be_matched() -> None:
    with_ids = read_predictions(b"id,label,prediction\n1,a,a\n", _spec())
    without = read_predictions(b"label,prediction\na,a\n", _spec())
    longer = read_predictions(b"label,prediction\na,a\nb,b\n", _spec())
    assert "only one side has an id column" in str(pair(with_ids, without))
    assert "the evaluation set changed (1 -> 2 rows)" in str(pair(without, longer))
    duplicated = read_predictions(b"id,label,prediction\n1,a,a\n1,b,b\n", _spec())
    with pytest.raises(InputError, match="id '1' appears more than once in column 'id'"):
        pair(with_ids, duplicated)
    regression = read_predictions(b"id,target,prediction\n1,0.5,0.7\n", _spec())
    assert "not compared" in str(pair(with_ids, regression))


def test_scores_follow_the_class_order_and_numbers_sort_as_numbers() -> None:
    data = b"id,label,prediction,proba_10,proba_2,proba_9\n1,10,9,0.5,0.2,0.3\n2,2,2,0.1,0.8,0.1\n"
    table = read_predictions(data, _spec())
    pairing = pair(table, table)
    assert not isinstance(pairing, str)
    assert pairing.examples.classes == ("2", "9", "10")
    assert np.allclose(pairing.examples.base_scores[0], [0.2, 0.3, 0.5])


def test_config_entry() -> None:
    config = parse_config({"predictions": "eval/preds.csv"}, root=__import__("pathlib").Path("."))
    assert config.predictions == PredictionsConfig(path="eval/preds.csv")
    full = parse_config(
        {
            "predictions": {
                "path": "p.jsonl",
                "id": "key",
                "label": "y",
                "prediction": "yhat",
                "scores": "proba_*",
                "metrics": {"val_loss": "log_loss"},
            },
            "statistics": {"alpha": 0.01, "correction": "none", "resamples": 5000, "seed": 3},
            "thresholds": {"accuracy": {"max_drop": 0.01, "alpha": 0.1}},
        },
        root=__import__("pathlib").Path("."),
    )
    assert full.predictions is not None and full.predictions.scores == ("proba_*",)
    assert full.predictions.metrics == (("val_loss", "log_loss"),)
    assert (full.statistics.alpha, full.statistics.correction, full.statistics.resamples) == (0.01, "none", 5000)
    assert full.thresholds[0].alpha == 0.1


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"predictions": {"id": "x"}}, "at predictions.path: expected the per-example results file"),
        ({"predictions": {"path": "../p.csv"}}, "at predictions.path: expected a path inside the repo"),
        ({"predictions": {"path": "p.csv", "task": "ranking"}}, "at predictions.task: expected classification or"),
        ({"predictions": {"path": "p.csv", "metrics": {"acc": "top5"}}}, "at predictions.metrics.acc: expected one"),
        ({"predictions": {"path": "p.csv", "colour": 1}}, "at predictions.colour: unknown key"),
        ({"statistics": {"alpha": 0.7}}, "at statistics.alpha: expected a significance level between 0 and 0.5"),
        ({"statistics": {"correction": "holm"}}, "at statistics.correction: expected bh"),
        ({"statistics": {"resamples": 100}}, "at statistics.resamples: expected a whole number from 2000"),
        ({"thresholds": {"acc": {"alpha": 0}}}, "at thresholds.acc.alpha: expected a significance level"),
    ],
)
def test_config_errors(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        parse_config(raw, root=__import__("pathlib").Path("."))
