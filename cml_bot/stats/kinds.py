"""The per-example metrics cml-bot can resample, by name (no numpy here: the config reads them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricKind:
    name: str
    needs: str  # "labels" | "scores" | "regression" | "loss"
    direction: str  # "higher" | "lower" is better
    proportion: bool  # a share in [0, 1]: changes are shown in percentage points


KINDS: dict[str, MetricKind] = {
    kind.name: kind
    for kind in (
        MetricKind("accuracy", "labels", "higher", True),
        MetricKind("error_rate", "labels", "lower", True),
        MetricKind("balanced_accuracy", "labels", "higher", True),
        *(
            MetricKind(f"{metric}_{average}", "labels", "higher", True)
            for metric in ("f1", "precision", "recall")
            for average in ("macro", "micro", "weighted", "binary")
        ),
        MetricKind("roc_auc", "scores", "higher", True),
        MetricKind("log_loss", "scores", "lower", False),
        MetricKind("mae", "regression", "lower", False),
        MetricKind("mse", "regression", "lower", False),
        MetricKind("rmse", "regression", "lower", False),
        MetricKind("r2", "regression", "higher", False),
        MetricKind("mean_loss", "loss", "lower", False),
    )
}
KIND_NAMES = tuple(KINDS)
