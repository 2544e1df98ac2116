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
        (0.96296, 0.96111, ("0.9630", "0.9611")),  # the same decimals, not 0.963 and 0.9611
        (0.9, 0.85, ("0.90", "0.85")),
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


def test_the_change_is_the_difference_of_what_is_shown() -> None:
    base, head, places = pair(0.96296, 0.96111)
    assert places is not None
    assert difference(base, head, places) == "-0.0019"  # 0.9611 - 0.9630, not -0.00185
    assert difference("0.3412", "0.3412", 4) == "0"
    assert difference("10", "12", 0) == "+2"


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
    assert difference(shown_base, shown_head, places) == _expected_difference(shown_base, shown_head, places)


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
