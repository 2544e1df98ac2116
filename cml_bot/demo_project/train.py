"""cml-bot demo: train a linear classifier on scikit-learn's bundled handwritten digits.

Real data (1,797 8x8 images shipped inside scikit-learn), a real model (SGD logistic regression,
trained epoch by epoch), real metrics. Reads params.yaml; writes metrics.json, train_log.csv and
confusion.csv.
"""

import csv
import json

import numpy as np
import yaml
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_score, recall_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

with open("params.yaml") as handle:
    params = yaml.safe_load(handle)["train"]

digits = load_digits()
x_train, x_test, y_train, y_test = train_test_split(
    digits.data, digits.target, test_size=0.3, random_state=params["seed"], stratify=digits.target
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
    print(f"epoch {epoch:2d}  train_loss {rows[-1]['train_loss']:.4f}  val_loss {rows[-1]['val_loss']:.4f}")

predicted = model.predict(x_test)
metrics = {
    "accuracy": round(accuracy_score(y_test, predicted), 5),
    "f1_macro": round(f1_score(y_test, predicted, average="macro"), 5),
    "precision_macro": round(precision_score(y_test, predicted, average="macro"), 5),
    "recall_macro": round(recall_score(y_test, predicted, average="macro"), 5),
    "loss": rows[-1]["val_loss"],
}
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
print(json.dumps(metrics))
