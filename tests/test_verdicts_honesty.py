"""The evidence a run attaches must be about what it claims (statistics audit): flat histories,
McNemar's p-value underflowing to 0, and predictions paired by position that do not describe the
same examples."""

from __future__ import annotations

import random
import re
from pathlib import Path

from cml_bot.config import parse_config
from cml_bot.diff import Gate, Outcome
from cml_bot.model import Verdict
from cml_bot.results import RunResults
from cml_bot.verdicts import judge

GATED = {"metrics": ["metrics.json"], "thresholds": {"accuracy": {"max_drop": 0.01}}}


def _history(values: list[float]) -> list[RunResults]:
    return [RunResults(None, {"accuracy": v}) for v in values]


def test_a_drop_against_a_flat_history_regresses() -> None:
    config = parse_config(GATED, Path("."))
    for value in (0.9, 0.95, 0.9649):
        result = judge(
            config,
            RunResults("b" * 40, {"accuracy": value}),
            RunResults("h" * 40, {"accuracy": value - 0.05}),
            _history([value] * 8),
        )
        accuracy = result.diff.metrics[0]
        assert accuracy.gate is Gate.REGRESSED, (value, accuracy)
        assert result.diff.verdict is Verdict.REGRESSED
        assert accuracy.evidence is not None and not re.search(r"±0(?![.\d])", accuracy.evidence.rule)
        assert "flat" in accuracy.evidence.rule
        # Values written to a few decimals (0.85) could hide noise under half a step: then it is
        # measured against that, and says so; at full precision (0.9149000000000001) it is exact.
        rounded = "written to" in accuracy.evidence.rule
        assert rounded == (value == 0.9)
        assert (accuracy.detectable is None) == (not rounded)


def test_a_float_noise_difference_against_a_flat_history_is_no_detectable_change() -> None:
    config = parse_config(GATED, Path("."))
    result = judge(
        config,
        RunResults("b" * 40, {"accuracy": 0.9}),
        RunResults("h" * 40, {"accuracy": 0.89999999}),
        _history([0.9] * 8),
    )
    accuracy = result.diff.metrics[0]
    assert accuracy.outcome is Outcome.NO_CHANGE
    assert accuracy.gate is Gate.PASS


def test_one_step_of_a_rounded_flat_history_is_inconclusive_more_is_a_regression() -> None:
    # Accuracy written to 3 decimals at every commit: noise under 0.0005 would never show, so one
    # step of 0.001 tells nothing; two steps are beyond any such hidden noise.
    config = parse_config({"metrics": ["metrics.json"], "thresholds": {"accuracy": {"max_drop": 0}}}, Path("."))
    verdicts = {}
    for head in (0.911, 0.910):
        result = judge(
            config,
            RunResults("b" * 40, {"accuracy": 0.912}),
            RunResults("h" * 40, {"accuracy": head}),
            _history([0.912] * 8),
        )
        accuracy = result.diff.metrics[0]
        verdicts[head] = accuracy.gate
        assert accuracy.evidence is not None and "written to 0.001" in accuracy.evidence.rule
    assert verdicts == {0.911: Gate.INCONCLUSIVE, 0.910: Gate.REGRESSED}


def _predictions(rows: list[tuple[str, str, str]], ids: bool = True) -> bytes:
    header = "id,label,prediction\n" if ids else "label,prediction\n"
    body = "".join(f"{i},{y},{p}\n" if ids else f"{y},{p}\n" for i, y, p in rows)
    return (header + body).encode()


def _accuracy(rows: list[tuple[str, str, str]]) -> float:
    return round(sum(y == p for _, y, p in rows) / len(rows), 5)


def test_mcnemar_underflowing_to_zero_regresses() -> None:
    n = 5000
    labels = ["a" if i % 2 else "b" for i in range(n)]
    base = [(f"x{i}", y, y if i % 10 else ("b" if y == "a" else "a")) for i, y in enumerate(labels)]
    head, fixed, broken = [], 0, 0
    for i, y, p in base:
        if p != y and fixed < 50:
            p, fixed = y, fixed + 1
        elif p == y and broken < 1500:
            p, broken = ("b" if y == "a" else "a"), broken + 1
        head.append((i, y, p))
    config = parse_config({**GATED, "predictions": "predictions.csv"}, Path("."))
    result = judge(
        config,
        RunResults("b" * 40, {"accuracy": _accuracy(base)}, files={"predictions.csv": _predictions(base)}),
        RunResults("h" * 40, {"accuracy": _accuracy(head)}, files={"predictions.csv": _predictions(head)}),
    )
    accuracy = result.diff.metrics[0]
    assert accuracy.evidence is not None and accuracy.evidence.source == "examples"
    assert accuracy.evidence.p_down == 0.0  # the underflow this guards against
    assert accuracy.gate is Gate.REGRESSED
    assert result.diff.verdict is Verdict.REGRESSED


def _shuffled(drop: int) -> tuple[RunResults, RunResults]:
    """The audit's case: 200 rows without ids; head's evaluation writes them in another order."""
    rows = [("", str(i % 2), str(i % 2 if i % 10 else 1 - i % 2)) for i in range(200)]
    shuffled = list(rows)
    random.Random(1).shuffle(shuffled)
    broken = 0
    for k, (i, y, p) in enumerate(shuffled):
        if y == p and broken < drop:
            shuffled[k], broken = (i, y, str(1 - int(p))), broken + 1
    base = RunResults("b" * 40, {"accuracy": 0.9}, files={"predictions.csv": _predictions(rows, ids=False)})
    head_files = {"predictions.csv": _predictions(shuffled, ids=False)}
    head = RunResults("h" * 40, {"accuracy": _accuracy(shuffled)}, files=head_files)
    return base, head


def test_rows_in_another_order_without_ids_are_not_paired() -> None:
    config = parse_config({**GATED, "predictions": "predictions.csv"}, Path("."))
    result = judge(config, *_shuffled(drop=0))
    accuracy = result.diff.metrics[0]
    assert accuracy.evidence is None  # no claim of "better" from mismatched rows
    assert accuracy.gate is Gate.PASS
    assert result.predictions is None
    assert any("true label" in note and "row order" in note for note in result.notes), result.notes


def test_rows_in_another_order_with_a_real_drop_fall_back_to_the_gate() -> None:
    config = parse_config({**GATED, "predictions": "predictions.csv"}, Path("."))
    base, head = _shuffled(drop=10)
    assert head.metrics["accuracy"] == 0.85
    result = judge(config, base, head)
    accuracy = result.diff.metrics[0]
    assert accuracy.gate is Gate.REGRESSED
    assert result.diff.verdict is Verdict.REGRESSED


def test_base_predictions_that_do_not_give_the_base_s_metric_are_not_used() -> None:
    rows = [(f"x{i}", str(i % 2), str(i % 2 if i % 10 else 1 - i % 2)) for i in range(200)]
    config = parse_config({**GATED, "predictions": "predictions.csv"}, Path("."))
    files = {"predictions.csv": _predictions(rows)}
    # The base's metrics file says 0.95, its predictions give 0.90: one of them is not the base's.
    result = judge(
        config,
        RunResults("b" * 40, {"accuracy": 0.95}, files=files),
        RunResults("h" * 40, {"accuracy": 0.9}, files=files),
    )
    accuracy = result.diff.metrics[0]
    assert accuracy.evidence is None or accuracy.evidence.source != "examples"
    assert any("at the baseline" in note for note in result.notes), result.notes
