"""Metrics and params diff: directions, thresholds, noise, verdicts."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cml_bot.config import Threshold
from cml_bot.diff import (
    Gate,
    MetricChange,
    Outcome,
    ParamChange,
    Status,
    compare_metric,
    diff,
    diff_params,
    guess_direction,
    numeric,
    rule_for,
)
from cml_bot.metrics import Samples, Value
from cml_bot.model import Verdict

NAN = math.nan
INF = math.inf


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("loss", "lower"),
        ("val_loss", "lower"),
        ("train/loss", "lower"),
        ("rmse", "lower"),
        ("eval.RMSE", "lower"),
        ("error_rate", "lower"),
        ("epoch_time", "lower"),
        ("accuracy", "higher"),
        ("f1_macro", "higher"),
        ("val.top1_acc", "higher"),
        ("auc", "higher"),
        ("roc_auc", "higher"),
        ("test:precision", "higher"),
        ("mAP", "higher"),
        ("roc_auc.test", "higher"),  # every name part counts, the last first
        ("test/roc_auc", "higher"),
        ("eval/a.json:acc", "higher"),
        ("r_squared", "higher"),
        ("rmsle", "lower"),
        ("avg_prec", "higher"),
        ("map50", "higher"),
        ("ndcg@10", "higher"),
        ("loss.val.rec", "higher"),
        ("rec_loss", "lower"),  # the last word first
        ("train.loss.smoothed", "lower"),
        ("learning_rate", None),
        ("epoch", None),
        ("n_samples", None),
        ("", None),
    ],
)
def test_guess_direction(name: str, expected: str | None) -> None:
    assert guess_direction(name) == expected


def test_rule_direction_overrides_guess() -> None:
    change = compare_metric("accuracy", 0.9, 0.8, True, Threshold("accuracy", direction="lower"))
    assert change.direction == "lower"
    runs = compare_metric("accuracy", Samples((0.9, 0.91, 0.92)), Samples((0.8, 0.81, 0.82)), True, change_rule())
    assert runs.improved is True and runs.outcome is Outcome.BETTER


def change_rule() -> Threshold:
    return Threshold("accuracy", direction="lower")


def test_rule_for_prefers_exact_match_over_earlier_glob() -> None:
    glob = Threshold("val.*", max_drop=0.1)
    exact = Threshold("val.acc", max_drop=0.01)
    star = Threshold("*", direction="higher")
    rules = [star, glob, exact]
    assert rule_for("val.acc", rules) is exact
    assert rule_for("val.f1", rules) is star  # first glob wins among globs
    assert rule_for("val.f1", [glob, star]) is glob
    assert rule_for("train.acc", [glob]) is None
    assert rule_for("VAL.acc", [glob]) is None  # case-sensitive


def test_numeric() -> None:
    assert numeric(3) == 3.0 and numeric(0.5) == 0.5
    assert numeric(Samples((1.0, 2.0, 3.0))) == 2.0
    assert numeric(True) is None and numeric("x") is None and numeric(None) is None
    assert numeric(10**400) is None  # beyond a double's range: not a number to compare


def test_an_int_beyond_a_doubles_range_is_compared_as_a_value_not_a_number() -> None:
    huge = 10**400
    result = diff(
        {"n": 1, "m": huge},
        {"n": huge, "m": huge},
        [Threshold("n", min=0.0), Threshold("m", max_drop=1, direction="higher")],
    )
    n, m = result.metrics
    assert n.status is Status.CHANGED and n.delta is None and n.failures == ("is not a number (bounds min 0)",)
    assert m.status is Status.UNCHANGED and m.delta is None and not m.failures


# --- max_drop ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "base", "head", "rule", "failures"),
    [
        # higher is better, absolute
        ("accuracy", 0.90, 0.89, Threshold("accuracy", max_drop=0.01), ()),  # exactly the allowance
        ("accuracy", 0.90, 0.88, Threshold("accuracy", max_drop=0.01), ("dropped by 0.02 (allowed 0.01)",)),
        ("accuracy", 0.90, 0.99, Threshold("accuracy", max_drop=0.0), ()),
        ("accuracy", 0.90, 0.90, Threshold("accuracy", max_drop=0.0), ()),
        ("accuracy", 0.90, 0.8999, Threshold("accuracy", max_drop=0.0), ("dropped by 0.0001 (allowed 0)",)),
        # lower is better, absolute
        ("val_loss", 0.30, 0.35, Threshold("val_loss", max_drop=0.05), ()),
        ("val_loss", 0.30, 0.40, Threshold("val_loss", max_drop=0.05), ("rose by 0.1 (allowed 0.05)",)),
        ("val_loss", 0.30, 0.10, Threshold("val_loss", max_drop=0.0), ()),
        # percent of the base value
        ("f1", 0.50, 0.49, Threshold("f1", max_drop_pct=2.0), ()),  # exactly 2%
        ("f1", 0.50, 0.48, Threshold("f1", max_drop_pct=2.0), ("dropped by 4.00% (allowed 2%)",)),
        ("rmse", 2.0, 2.1, Threshold("rmse", max_drop_pct=5.0), ()),
        ("rmse", 2.0, 2.2, Threshold("rmse", max_drop_pct=5.0), ("rose by 10.00% (allowed 5%)",)),
        ("rmse", -2.0, -1.0, Threshold("rmse", max_drop_pct=5.0), ("rose by 50.00% (allowed 5%)",)),  # |base|
        ("rmse", 0.0, 1.0, Threshold("rmse", max_drop_pct=5.0), ()),  # no percentage of zero
        # both at once: each reported
        (
            "accuracy",
            0.80,
            0.60,
            Threshold("accuracy", max_drop=0.1, max_drop_pct=10.0),
            ("dropped by 0.2 (allowed 0.1)", "dropped by 25.00% (allowed 10%)"),
        ),
        # no direction (unknown name, no rule direction): max_drop cannot apply
        (
            "widgets",
            10.0,
            1.0,
            Threshold("widgets", max_drop=1.0),
            ("has max_drop but no direction: set direction: higher or lower",),
        ),
        ("group.widgets", 10.0, 1.0, Threshold("*.widgets", max_drop=1.0), ()),  # a glob: no direction, no gate
        ("widgets", 10.0, 1.0, Threshold("widgets", direction="higher", max_drop=1.0), ("dropped by 9 (allowed 1)",)),
    ],
)
def test_max_drop(name: str, base: float, head: float, rule: Threshold, failures: tuple[str, ...]) -> None:
    change = compare_metric(name, base, head, True, rule)
    assert change.failures == failures
    assert change.gated


@given(
    base=st.integers(min_value=-(10**6), max_value=10**6),
    allowed=st.integers(min_value=0, max_value=10**4),
    scale=st.sampled_from([1, 10, 100, 1000, 10**4]),
)
def test_a_drop_of_exactly_max_drop_passes_and_one_unit_more_fails(base: int, allowed: int, scale: int) -> None:
    """Decimal values as a user writes them (0.90 -> 0.89 with max_drop 0.01) despite float rounding."""
    rule = Threshold("accuracy", max_drop=allowed / scale)
    exact = compare_metric("accuracy", base / scale, (base - allowed) / scale, True, rule)
    assert exact.failures == ()
    worse = compare_metric("accuracy", base / scale, (base - allowed - 1) / scale, True, rule)
    assert len(worse.failures) == 1 and worse.failures[0].startswith("dropped by ")


# --- min / max ---------------------------------------------------------------------------------


@pytest.mark.parametrize("has_baseline", [True, False])
@pytest.mark.parametrize(
    ("head", "failures"),
    [
        (0.5, ()),
        (0.9, ()),
        (0.4, ("0.4 is below the minimum 0.5",)),
        (0.95, ("0.95 is above the maximum 0.9",)),
        (NAN, ("is NaN (bounds min 0.5, max 0.9)",)),
        (INF, ("Infinity is above the maximum 0.9",)),
        (-INF, ("-Infinity is below the minimum 0.5",)),
        ("n/a", ("is not a number (bounds min 0.5, max 0.9)",)),
    ],
)
def test_min_max_bounds(head: float | str, failures: tuple[str, ...], has_baseline: bool) -> None:
    rule = Threshold("score", min=0.5, max=0.9)
    base = 0.7 if has_baseline else None
    change = compare_metric("score", base, head, has_baseline, rule)
    assert change.failures == failures


def test_bounds_apply_without_baseline_and_decide_the_verdict() -> None:
    result = diff(None, {"loss": 1.5, "accuracy": 0.2}, [Threshold("loss", max=1.0)])
    assert result.verdict is Verdict.REGRESSED
    assert [m.name for m in result.regressions] == ["loss"]
    assert result.regressions[0].failures == ("1.5 is above the maximum 1",)
    assert all(m.status is Status.UNCHANGED for m in result.metrics)  # nothing to compare with


# --- NaN and Infinity --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "base", "head", "failures"),
    [
        ("accuracy", 0.9, NAN, ("became NaN",)),
        ("loss", 0.3, NAN, ("became NaN",)),
        ("loss", 0.3, INF, ("became Infinity",)),
        ("accuracy", 0.9, -INF, ("became -Infinity",)),
        ("loss", 0.3, -INF, ()),  # an "improvement" to -Infinity is not a drop
        ("accuracy", 0.9, INF, ()),
        ("accuracy", NAN, NAN, ("is NaN, as at the base: its drop gate cannot be checked",)),
        ("accuracy", NAN, 0.9, ()),  # unchecked: inconclusive (tests/test_diff_honesty.py)
        ("loss", INF, INF, ("is Infinity, as at the base",)),
        ("loss", INF, 0.3, ()),
    ],
)
def test_nan_and_infinity_heads(name: str, base: float, head: float, failures: tuple[str, ...]) -> None:
    change = compare_metric(name, base, head, True, Threshold(name, max_drop=0.01))
    assert change.failures == failures
    assert change.improved is None or math.isfinite(head)


def test_nan_unchanged_is_unchanged_and_relative_needs_a_finite_base() -> None:
    assert compare_metric("loss", NAN, NAN, True, None).status is Status.UNCHANGED
    assert compare_metric("loss", INF, INF, True, None).status is Status.UNCHANGED
    assert compare_metric("loss", INF, 1.0, True, None).relative is None
    assert compare_metric("loss", 1.0, INF, True, None).relative is None  # not "+inf%"
    assert compare_metric("loss", 1.0, NAN, True, None).relative is None  # not "nan%"
    assert compare_metric("loss", 0.0, 1.0, True, None).relative is None
    change = compare_metric("loss", 2.0, 1.0, True, None)
    # A single run with no other evidence: the change is shown, no claim is made.
    assert (change.delta, change.relative, change.improved, change.status) == (-1.0, -0.5, None, Status.CHANGED)
    assert change.outcome is None and change.evidence is None


def test_improvement_and_worsening_without_gates() -> None:
    better = compare_metric("accuracy", Samples((0.8, 0.81, 0.79)), Samples((0.9, 0.91, 0.89)), True, None)
    worse = compare_metric("accuracy", Samples((0.9, 0.91, 0.89)), Samples((0.8, 0.81, 0.79)), True, None)
    flat = compare_metric("accuracy", 0.9, 0.9, True, None)
    unknown = compare_metric("epoch", Samples((3, 3.1, 2.9)), Samples((5, 5.1, 4.9)), True, None)
    assert (better.improved, worse.improved, flat.improved, unknown.improved) == (True, False, None, None)
    assert (better.outcome, worse.outcome, flat.outcome, unknown.outcome) == (
        Outcome.BETTER,
        Outcome.WORSE,
        None,
        Outcome.CHANGED,
    )
    single = compare_metric("accuracy", 0.8, 0.9, True, None)
    assert single.improved is None and single.outcome is None  # no evidence: no claim
    assert not any(c.failures or c.gated for c in (better, worse, flat, unknown))
    assert unknown.delta == pytest.approx(2.0) and unknown.direction is None


# --- new, removed, text ------------------------------------------------------------------------


def test_new_removed_and_text_metrics() -> None:
    base: dict[str, Value] = {"accuracy": 0.9, "old": 1.0, "model": "resnet18", "flag": True}
    head: dict[str, Value] = {"accuracy": 0.91, "model": "resnet50", "flag": True, "fresh": 0.5}
    result = diff(base, head)
    by_name = {m.name: m for m in result.metrics}
    assert [m.name for m in result.metrics] == ["accuracy", "model", "flag", "fresh", "old"]
    assert by_name["fresh"] == MetricChange("fresh", None, 0.5, Status.NEW, None)
    assert by_name["old"] == MetricChange("old", 1.0, None, Status.REMOVED, None)
    model = by_name["model"]
    assert model.status is Status.CHANGED and model.delta is None and model.improved is None
    assert by_name["flag"].status is Status.UNCHANGED and by_name["flag"].delta is None
    assert result.verdict is Verdict.PASS and result.has_baseline


def test_new_metric_is_still_checked_against_bounds() -> None:
    change = compare_metric("accuracy", None, 0.1, True, Threshold("accuracy", min=0.5, max_drop=0.01))
    assert change.status is Status.NEW and change.failures == ("0.1 is below the minimum 0.5",)


def test_removed_gated_metric_fails() -> None:
    change = compare_metric("accuracy", 0.9, None, True, Threshold("accuracy", min=0.5))
    assert change.status is Status.REMOVED and change.failures == ("is missing in this change",) and change.gated
    ungated = compare_metric("accuracy", 0.9, None, True, None)
    assert ungated.status is Status.REMOVED and ungated.failures == ()


def test_number_turning_into_text_under_max_drop_fails() -> None:
    change = compare_metric("accuracy", 0.9, "n/a", True, Threshold("accuracy", max_drop=0.01))
    assert change.failures == ("is not a number any more",)


def test_text_metric_under_max_drop_does_not_fail() -> None:
    change = compare_metric("accuracy", "high", "low", True, Threshold("accuracy", max_drop=0.0))
    assert change.failures == () and change.status is Status.CHANGED


# --- repeated values ---------------------------------------------------------------------------


def test_samples_within_noise_do_not_regress() -> None:
    base = Samples((0.90, 0.91, 0.92))
    head = Samples((0.89, 0.90, 0.91))  # mean 0.01 lower; noise 2*sqrt(2*0.01^2/3) ~ 0.0163
    change = compare_metric("accuracy", base, head, True, Threshold("accuracy", max_drop=0.001))
    assert change.within_noise and change.improved is None and change.failures == ()
    assert change.delta == pytest.approx(-0.01)


def test_samples_outside_noise_regress() -> None:
    base = Samples((0.90, 0.91, 0.92))
    head = Samples((0.80, 0.81, 0.82))
    change = compare_metric("accuracy", base, head, True, Threshold("accuracy", max_drop=0.05))
    assert not change.within_noise and change.improved is False
    assert change.failures == (
        "dropped by 0.1 (allowed 0.05); significant "
        "(one-sided p < 0.001, α = 0.05; at 95% one-sided confidence it dropped by at least 0.08259)",
    )


def test_samples_improvement_outside_noise_is_better() -> None:
    change = compare_metric("loss", Samples((0.5, 0.52, 0.54)), Samples((0.2, 0.21, 0.22)), True, None)
    assert change.improved is True and not change.within_noise


def test_samples_against_a_single_number() -> None:
    # The single base run is taken as noisy as the head's runs (Student's pooled test, df 3):
    # 0.95 vs mean 0.8 (sd 0.082) is t = -1.64, one-sided p = 0.099: it may be noise.
    head = Samples((0.7, 0.8, 0.9, 0.8))
    within = compare_metric("accuracy", 0.85, head, True, Threshold("accuracy", max_drop=0.1))
    unsure = compare_metric("accuracy", 0.95, head, True, Threshold("accuracy", max_drop=0.0))
    outside = compare_metric("accuracy", 1.2, head, True, Threshold("accuracy", max_drop=0.0))
    assert within.within_noise and within.failures == () and within.inconclusive == ()
    assert unsure.failures == () and unsure.p_adjusted == pytest.approx(0.0994, abs=1e-3)
    assert unsure.inconclusive[0].startswith("may have dropped: -0.15, 95% CI [")
    assert unsure.inconclusive[0].endswith("these 5 runs can detect >= 0.227; add seeds")
    assert outside.gate is Gate.REGRESSED and len(outside.failures) == 1


def test_uses_noise_rule() -> None:
    assert diff({"a": 1.0}, {"a": Samples((1.0, 2.0))}).uses_noise_rule
    assert not diff({"a": 1.0}, {"a": 2.0}).uses_noise_rule


# --- verdicts and params -----------------------------------------------------------------------


def test_verdicts() -> None:
    rules = [Threshold("accuracy", max_drop=0.01)]
    assert diff({"accuracy": 0.9}, {"accuracy": 0.9}, rules).verdict is Verdict.PASS
    assert diff({"accuracy": 0.9}, {"accuracy": 0.5}, rules).verdict is Verdict.REGRESSED
    no_base = diff(None, {"accuracy": 0.5}, rules)
    assert no_base.verdict is Verdict.NO_BASELINE and not no_base.has_baseline
    assert no_base.metrics[0].status is Status.UNCHANGED and no_base.metrics[0].failures == ()
    assert diff({}, {"accuracy": 0.5}, rules).verdict is Verdict.PASS  # a baseline with no metrics
    assert diff({}, {"accuracy": 0.5}, rules).metrics[0].status is Status.NEW


def test_regressions_lists_every_failed_metric_in_order() -> None:
    rules = [Threshold("*", max_drop=0.0)]
    result = diff({"a_acc": 0.9, "b_loss": 0.1, "c_f1": 0.5}, {"a_acc": 0.8, "b_loss": 0.2, "c_f1": 0.6}, rules)
    assert [m.name for m in result.regressions] == ["a_acc", "b_loss"]
    assert result.verdict is Verdict.REGRESSED


def test_gated_only_with_a_gate() -> None:
    assert not compare_metric("accuracy", 0.9, 0.8, True, Threshold("accuracy", direction="higher")).gated
    assert not compare_metric("accuracy", 0.9, 0.8, True, None).gated
    assert compare_metric("accuracy", 0.9, 0.8, True, Threshold("accuracy", max=1.0)).gated


def test_params_diff() -> None:
    base: dict[str, Value] = {"lr": 0.1, "depth": 3, "opt": "adam", "dropped": True, "nan": NAN}
    head: dict[str, Value] = {"lr": 0.01, "depth": 3, "opt": "sgd", "added": "x", "nan": NAN}
    assert diff_params(base, head, True) == (
        ParamChange("lr", 0.1, 0.01, Status.CHANGED),
        ParamChange("depth", 3, 3, Status.UNCHANGED),
        ParamChange("opt", "adam", "sgd", Status.CHANGED),
        ParamChange("added", None, "x", Status.NEW),
        ParamChange("nan", NAN, NAN, Status.UNCHANGED),
        ParamChange("dropped", True, None, Status.REMOVED),
    )
    assert [p.status for p in diff_params({}, {"lr": 0.1}, False)] == [Status.UNCHANGED]
    result = diff({"a": 1.0}, {"a": 1.0}, base_params=base, head_params=head)
    assert len(result.params) == 6
    assert diff(None, {"a": 1.0}, head_params={"lr": 1}).params == (ParamChange("lr", None, 1, Status.UNCHANGED),)


def test_leaving_infinity_is_better_and_reaching_it_is_worse() -> None:
    recovered = compare_metric("loss", math.inf, 0.3, True, None)
    assert recovered.improved is True and recovered.failures == ()
    # Leaving Infinity is judged without a test, in the metric's direction.
    assert compare_metric("accuracy", INF, 0.9, True, None).improved is False
    assert compare_metric("accuracy", -INF, 0.9, True, None).improved is True
    blew_up = compare_metric("loss", 0.3, math.inf, True, Threshold("loss", max_drop=0.1))
    assert blew_up.improved is None and blew_up.failures == ("became Infinity",)


def test_a_metric_whose_file_is_missing_is_missing_and_a_gate_on_it_fails_with_the_reason() -> None:
    from cml_bot.diff import missing_metrics

    base = {"acc": 0.9, "f1": 0.8, "other": 1.0}
    origins = {"acc": "m.json", "f1": "m.json", "other": "o.json"}
    head = {"other": 1.0}
    problems = {"m.json": "m.json: invalid JSON at line 1, column 2: Expecting value"}
    missing = missing_metrics(base, origins, head, problems)
    assert missing == {"acc": problems["m.json"], "f1": problems["m.json"]}
    result = diff(base, head, [Threshold("acc", max_drop=0.01)], missing=missing)
    changes = {m.name: m for m in result.metrics}
    assert changes["acc"].status is Status.MISSING
    assert changes["acc"].failures == (f"is missing in this change ({problems['m.json']})",)
    assert changes["f1"].status is Status.MISSING and changes["f1"].failures == ()
    assert result.verdict is Verdict.REGRESSED
    # a record from an older cml-bot has no origins: every absent metric is blamed on the problems
    assert missing_metrics(base, {}, head, problems) == {"acc": problems["m.json"], "f1": problems["m.json"]}
    assert missing_metrics(base, origins, head, {}) == {}


def test_each_gate_that_passes_says_how_far_it_was_from_failing() -> None:
    from cml_bot.diff import Margin

    rules = [
        Threshold("accuracy", max_drop=0.01, min=0.8),
        Threshold("f1", max_drop_pct=2.0),
        Threshold("loss", max=0.5),
    ]
    result = diff({"accuracy": 0.90, "f1": 0.80, "loss": 0.3}, {"accuracy": 0.895, "f1": 0.81, "loss": 0.2}, rules)
    by_name = {m.name: m for m in result.metrics}
    accuracy = by_name["accuracy"].margins
    assert [(m.rule, round(m.room, 9), m.percent) for m in accuracy] == [
        ("min 0.8", 0.095, False),
        ("max_drop 0.01", 0.005, False),
    ]
    assert round(accuracy[1].share_left, 9) == 0.5  # half of the allowed drop is left
    assert [(m.rule, round(m.room, 9), m.percent) for m in by_name["f1"].margins] == [("max_drop 2%", 3.25, True)]
    assert by_name["loss"].margins == (Margin("max 0.5", 0.3, allowed=0.5),)
    # a gate exceeded has no margin; without a baseline a drop gate is not checked
    failed = diff({"accuracy": 0.9}, {"accuracy": 0.85}, rules).metrics[0]
    assert failed.failures and [m.rule for m in failed.margins] == ["min 0.8"]
    (alone,) = diff(None, {"accuracy": 0.85}, rules).metrics[0].margins
    assert (alone.rule, round(alone.room, 9)) == ("min 0.8", 0.05)
