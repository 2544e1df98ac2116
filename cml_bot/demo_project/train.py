"""cml-bot demo: train a linear classifier on scikit-learn's bundled handwritten digits.

Real data (1,797 8x8 images shipped inside scikit-learn), a real model (SGD logistic regression,
trained epoch by epoch), real metrics. Reads params.yaml; writes metrics.json, train_log.csv,
confusion.csv and predictions.csv (one row per test image: its index in the data set as the id,
the true digit, the predicted digit and the ten class probabilities).

``python train.py --seeds 1,2,3 --out DIR`` trains once per seed (everything else from params.yaml)
and writes each run's metrics.json and predictions.csv under DIR/<seed>/: the demo uses it to give
main a recorded history (one earlier commit per seed) without starting Python once per commit.
"""

import argparse
import csv
import json
import os
from typing import Any

import numpy as np
import yaml
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_score, recall_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler


def train(
    params: dict[str, Any], verbose: bool = True
) -> tuple[dict[str, float], list[dict[str, float]], list[list[Any]], Any, Any]:
    digits = load_digits()
    ids = np.arange(len(digits.target))
    x_train, x_test, y_train, y_test, _, id_test = train_test_split(
        digits.data, digits.target, ids, test_size=0.3, random_state=params["seed"], stratify=digits.target
    )
    scaler = StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    model = SGDClassifier(
        loss="log_loss",
        alpha=params["alpha"],
        learning_rate="constant",
        eta0=params["learning_rate"],
        random_state=params["seed"],
    )
    classes = np.unique(digits.target)
    rows = []
    for epoch in range(1, params["epochs"] + 1):
        model.partial_fit(x_train, y_train, classes=classes)
        rows.append(
            {
                "epoch": epoch,
                "train_loss": round(log_loss(y_train, model.predict_proba(x_train), labels=classes), 5),
                "val_loss": round(log_loss(y_test, model.predict_proba(x_test), labels=classes), 5),
            }
        )
        if verbose:
            print(f"epoch {epoch:2d}  train_loss {rows[-1]['train_loss']:.4f}  val_loss {rows[-1]['val_loss']:.4f}")
    predicted = model.predict(x_test)
    metrics = {
        "accuracy": round(accuracy_score(y_test, predicted), 5),
        "f1_macro": round(f1_score(y_test, predicted, average="macro"), 5),
        "precision_macro": round(precision_score(y_test, predicted, average="macro"), 5),
        "recall_macro": round(recall_score(y_test, predicted, average="macro"), 5),
        "loss": rows[-1]["val_loss"],
    }
    probabilities = model.predict_proba(x_test)
    predictions = [
        [int(i), int(y), int(p), *(f"{v:.6f}" for v in row)]
        for i, y, p, row in zip(id_test, y_test, predicted, probabilities, strict=True)
    ]
    return metrics, rows, predictions, y_test, predicted


def write_predictions(path: str, predictions: list[list[Any]]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "label", "prediction", *(f"proba_{c}" for c in range(10))])
        writer.writerows(sorted(predictions))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", help="train once per seed (comma-separated) instead of once")
    parser.add_argument("--out", default="history", help="with --seeds: where each seed's outputs go")
    args = parser.parse_args()
    with open("params.yaml") as handle:
        params = yaml.safe_load(handle)["train"]
    if args.seeds:
        for seed in (int(s) for s in args.seeds.split(",")):
            metrics, _, predictions, _, _ = train({**params, "seed": seed}, verbose=False)
            folder = os.path.join(args.out, str(seed))
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, "metrics.json"), "w") as handle:
                json.dump(metrics, handle, indent=2)
            write_predictions(os.path.join(folder, "predictions.csv"), predictions)
            print(f"seed {seed}: {json.dumps(metrics)}")
        return
    metrics, rows, predictions, y_test, predicted = train(params)
    with open("metrics.json", "w") as handle:
        json.dump(metrics, handle, indent=2)
    with open("train_log.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["epoch", "train_loss", "val_loss"])
        writer.writeheader()
        writer.writerows(rows)
    with open("confusion.csv", "w", newline="") as handle:
        pairs = csv.writer(handle)
        pairs.writerow(["actual", "predicted"])
        pairs.writerows(zip(y_test.tolist(), predicted.tolist(), strict=True))
    write_predictions("predictions.csv", predictions)
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
