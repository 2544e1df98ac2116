"""Numbers as the report writes them: a shown change is always visible, no scientific notation in
ordinary ranges, and the change shown is the difference of the values shown."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cml_bot.numbers import change, difference, exact, interval, number, p_value, pair, percent, signed


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0001, "0.0001"),  # ordinary: plain
        (0.00012345, "0.0001234"),
        (0.9123, "0.9123"),
        (0.91, "0.91"),
        (1234.5678, "1235"),
        (123456789.0, "123456789"),
        (1e-7, "1e-07"),  # tiny: scientific
        (1.5e-5, "1.5e-05"),
        (2e16, "2e+16"),
        (0.0, "0"),
        (-0.5, "-0.5"),
        (math.nan, "NaN"),
        (math.inf, "Infinity"),
        (-math.inf, "-Infinity"),
    ],
)
def test_number(value: float, text: str) -> None:
    assert number(value) == text


def test_signed_numbers_carry_their_sign() -> None:
    assert (signed(0.0122), signed(-0.0109), signed(0.0)) == ("+0.0122", "-0.0109", "0")


@pytest.mark.parametrize(
    ("base", "head", "shown"),
    [
        (0.96296, 0.96111, ("0.96296", "0.96111")),  # as the file says, not 0.9630 and 0.9611
        (0.9, 0.85, ("0.90", "0.85")),  # the same decimals
        (0.87645, 0.87655, ("0.87645", "0.87655")),  # not 0.8764 and 0.8766
        (120.5, 99.25, ("120.50", "99.25")),  # not 99.2
        (0.9123449, 0.9123451, ("0.9123449", "0.9123451")),
        (0.8533333333333334, 0.8566666666666667, ("0.8533333", "0.8566667")),  # computed: seven digits
        (0.123456749, 0.123456751, ("0.1234567", "0.1234568")),  # differ at the seventh digit
        (10.0, 12.0, ("10", "12")),
        (1.23456, 1.23457, ("1.23456", "1.23457")),  # four digits would show 1.235 twice
        (0.3412, 0.3412, ("0.3412", "0.3412")),
        (0.0001, 0.0001, ("0.0001", "0.0001")),
        (0.3, 1000.0, ("0.3", "1000.0")),  # the small one is not "0"
        (1e-9, 0.5, ("1e-09", "0.5")),  # not plain: each on its own
    ],
)
def test_pairs_share_decimals_and_differ_when_the_values_do(base: float, head: float, shown: tuple[str, str]) -> None:
    assert pair(base, head)[:2] == shown


def test_the_change_is_the_difference_of_what_is_shown_when_they_are_shown_whole() -> None:
    _, _, places = pair(0.96296, 0.96111)
    assert places is not None
    assert difference(0.96296, 0.96111, places) == "-0.00185"
    assert difference(0.3412, 0.3412, 4) == "0"
    assert difference(10.0, 12.0, 0) == "+2"


@pytest.mark.parametrize(
    ("base", "head", "shown"),
    [
        (0.9123449, 0.9123451, "+0.0000002"),  # not +0.00001
        (0.87645, 0.87655, "+0.00010"),  # not +0.0002
        (120.5, 99.25, "-21.25"),  # not -21.3
        (0.9, 0.85, "-0.05"),
        (0.8533333333333334, 0.8566666666666667, "+0.0033333"),  # not 0.8566667 - 0.8533333
        (0.123456749, 0.123456751, "+0.000000002"),  # shown 0.1234567 -> 0.1234568: still the true one
        (0.3412, 0.3412, "0"),
    ],
)
def test_the_change_is_the_true_difference_rounded(base: float, head: float, shown: str) -> None:
    base_text, head_text, places = pair(base, head)
    assert places is not None
    assert difference(base, head, places) == shown
    if Decimal(base_text) == Decimal(repr(base)) and Decimal(head_text) == Decimal(repr(head)):  # shown whole
        assert shown == _expected_difference(base_text, head_text, places) or shown == "0"


@settings(max_examples=300)
@given(
    st.floats(min_value=-1e9, max_value=1e9, allow_nan=False),
    st.floats(min_value=-1e9, max_value=1e9, allow_nan=False),
)
def test_the_shown_change_never_overstates_the_true_one(base: float, head: float) -> None:
    *_, places = pair(base, head)
    if places is None:
        return
    shown = difference(base, head, places)
    true = Decimal(repr(head)) - Decimal(repr(base))
    if true == 0:
        assert shown == "0"
        return
    assert Decimal(shown) != 0 and (Decimal(shown) > 0) == (true > 0)  # a change that exists is visible
    shown_places = len(shown.partition(".")[2])
    assert abs(Decimal(shown) - true) <= Decimal(10) ** -shown_places / 2  # the true one, rounded


@settings(max_examples=300)
@given(
    st.floats(min_value=-1e12, max_value=1e12, allow_nan=False),
    st.floats(min_value=-1e12, max_value=1e12, allow_nan=False),
)
def test_any_two_different_plain_numbers_are_shown_differently(base: float, head: float) -> None:
    shown_base, shown_head, places = pair(base, head)
    if places is None:  # a value below 0.0001: written on its own, scientific
        return
    assert "e" not in shown_base + shown_head
    if base != head and abs(base - head) > max(abs(base), abs(head)) * 1e-14:
        assert shown_base != shown_head
    # each shown value is its value, rounded to the shown decimals
    assert abs(Decimal(shown_base) - Decimal(base)) <= Decimal(10) ** -places
    if Decimal(shown_base) == Decimal(repr(base)) and Decimal(shown_head) == Decimal(repr(head)):  # shown whole
        assert difference(base, head, places) == _expected_difference(shown_base, shown_head, places)


def _expected_difference(base: str, head: str, places: int) -> str:
    delta = Decimal(head) - Decimal(base)
    return "0" if delta == 0 else f"{delta:+.{places}f}"


@pytest.mark.parametrize(
    ("relative", "text"),
    [(0.0, "0.00%"), (0.0135, "+1.35%"), (-0.5, "-50.00%"), (1.23e-5, "+0.0012%"), (-4e-7, "-4e-05%")],
)
def test_percent_never_hides_a_change(relative: float, text: str) -> None:
    assert percent(relative) == text


def test_changes_intervals_and_p_values_as_the_report_writes_them() -> None:
    assert change(-0.004, True) == "-0.40 pp" and change(0.00001, True) == "+0.001 pp"  # never +0.00 pp
    assert change(0.0, True) == "+0.00 pp" and change(0.011, True, with_sign=False) == "1.10 pp"
    assert change(0.00001, True, with_sign=False) == "0.001 pp"
    assert change(-0.01234, False) == "-0.01234" and change(0.5, False, with_sign=False) == "0.5"
    assert interval(-0.0672, -0.0351, True) == "[-6.72, -3.51] pp"
    assert interval(-0.0123, 0.004, False) == "[-0.0123, +0.004]"
    assert p_value(0.0341) == "p = 0.034" and p_value(0.0009) == "p < 0.001"


def test_exact_shows_a_configured_value_as_written() -> None:
    assert (exact(0.99999), exact(0.0001), exact(1e-5), exact(3.0), exact(math.nan)) == (
        "0.99999",
        "0.0001",
        "1e-05",
        "3",
        "NaN",
    )
