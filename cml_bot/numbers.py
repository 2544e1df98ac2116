"""Numbers as a report shows them (pure): a shown change is always visible, and no scientific
notation in ordinary ranges.

- A pair (base, this change) is written with the same number of decimals: enough to show each
  value as its file writes it when that takes at most seven significant digits (``0.9123449``,
  ``120.50`` beside ``99.25``), a computed value (``0.8533333333333334``) to four; more when
  the values differ only beyond that (a change that exists is visible), and more (up to seven
  digits) until the shown values differ by the true difference rounded.
- The change is the true difference of the two values as their files write them, rounded to the
  pair's decimals: ``+0.0000002`` for 0.9123449 -> 0.9123451, never a difference of rounded values
  that overstates it; by the rule above it is also what a reader gets subtracting the shown values.
- Plain notation from 0.0001 up to 10^15; beyond, ``1.234e-07`` or ``1.234e+16``.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal

SIGNIFICANT = 4  # digits a single value is shown with
PAIR_SIGNIFICANT = 7  # digits a value of a pair is shown with at most (fewer when its file has fewer)
MOST_SIGNIFICANT = 15  # a double has about 15-17: more would show noise
PLAIN_LOW, PLAIN_HIGH = 1e-4, 1e15  # magnitudes written without an exponent


def is_plain(x: float) -> bool:
    """Whether ``x`` is written without an exponent (zero is)."""
    return x == 0 or PLAIN_LOW <= abs(x) < PLAIN_HIGH


def decimals(x: float, significant: int = SIGNIFICANT) -> int:
    """Decimals that show ``x`` (non-zero, finite) to ``significant`` digits."""
    return max(0, significant - 1 - math.floor(math.log10(abs(x))))


def fixed(x: float, places: int) -> str:
    """``x`` with ``places`` decimals; never ``-0``."""
    text = f"{x:.{places}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text


def number(x: float, significant: int = SIGNIFICANT) -> str:
    """One number to ``significant`` digits, trailing zeros dropped: ``0.0001``, ``0.9123``,
    ``1235``, ``1.234e-07``; ``NaN``, ``Infinity``."""
    if not math.isfinite(x):
        return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")
    if x == 0:
        return "0"
    if not is_plain(x):
        mantissa, exponent = f"{x:.{significant - 1}e}".split("e")
        return f"{_strip(mantissa)}e{exponent}"
    return _strip(fixed(x, decimals(x, significant)))


def exact(x: float) -> str:
    """The shortest text that reads back as ``x`` (Python's ``repr``): a configured value as it was
    written (``0.99999``, not ``1``); ``123456789``, not ``123456789.0``."""
    if not math.isfinite(x):
        return number(x)
    text = repr(x)
    return text[:-2] if text.endswith(".0") else text


def signed(x: float, significant: int = SIGNIFICANT) -> str:
    """:func:`number` with its sign, ``+`` included (zero unsigned)."""
    text = number(x, significant)
    return "+" + text if x > 0 and not text.startswith("+") else text


def pair(base: float, head: float) -> tuple[str, str, int | None]:
    """Both numbers with shared decimals (see the module's doc), and those decimals; None when
    either is not plain (then each is shown on its own with :func:`number`)."""
    if not (math.isfinite(base) and math.isfinite(head)) or not (is_plain(base) and is_plain(head)):
        return number(base), number(head), None
    largest = max(abs(base), abs(head))
    if largest == 0:
        return "0", "0", 0
    most = decimals(largest, MOST_SIGNIFICANT)
    places = min(max(_own_decimals(base), _own_decimals(head)), most)
    true = written(head) - written(base)
    consistent_up_to = max(places, decimals(largest, PAIR_SIGNIFICANT))
    while places < most and (
        (base != head and fixed(base, places) == fixed(head, places))  # equal as shown: more digits
        or (places < consistent_up_to and not _subtracts_to(base, head, places, true))
    ):
        places += 1
    shown = [fixed(base, places), fixed(head, places)]
    while places > 0 and all(text.endswith("0") for text in shown):  # drop zeros both have
        places -= 1
        shown = [text[:-1].rstrip(".") if places == 0 else text[:-1] for text in shown]
    return shown[0], shown[1], places


def _own_decimals(x: float) -> int:
    """The decimals ``x`` is shown with: as its file writes it (the shortest text that reads back
    as ``x``) when that has at most :data:`PAIR_SIGNIFICANT` significant digits (0.85 -> 2,
    120.5 -> 1), else :data:`SIGNIFICANT` digits' worth (a computed 0.8533333333333334 -> 4)."""
    if x == 0:
        return 0
    short = _strip(fixed(x, decimals(x, PAIR_SIGNIFICANT)))
    if Decimal(short) == written(x):
        return len(short.partition(".")[2])
    return decimals(x, SIGNIFICANT)


def written(x: float) -> Decimal:
    """``x`` as a file writes it: the shortest decimal that reads back as ``x``."""
    return Decimal(repr(x))


def _subtracts_to(base: float, head: float, places: int, true: Decimal) -> bool:
    """Whether the two values shown with ``places`` decimals differ by the true difference rounded
    to those decimals (rounded values can differ by more: 0.8533 and 0.8567 for a true 0.00333)."""
    shown = Decimal(fixed(head, places)) - Decimal(fixed(base, places))
    return shown == true.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)


def difference(base: float, head: float, places: int) -> str:
    """The signed change from ``base`` to ``head``, which :func:`pair` showed with ``places``
    decimals: the true difference of the values as their files write them, rounded to ``places``,
    with more decimals when it would round to zero (a change that exists is visible; never the
    difference of rounded values, which can exceed it; ``+0`` never: no change is ``0``)."""
    delta = written(head) - written(base)
    if delta == 0:
        return "0"
    rounded = delta.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    if rounded == 0:  # smaller than the shown decimals: its first digit, not "0"
        places = -delta.adjusted()
        rounded = delta.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    text = f"{rounded:.{places}f}"
    return "+" + text if delta > 0 else text


def percent(relative: float) -> str:
    """A relative change as a signed percentage: two decimals, or two significant digits when
    smaller (``+0.0012%``, never ``+0.00%`` for a change)."""
    value = relative * 100
    if not math.isfinite(value):
        return number(value)
    if value == 0:
        return "0.00%"
    return _hundredths(value) + "%"


def change(value: float, percent_points: bool, with_sign: bool = True) -> str:
    """A change as the report writes it: a fraction in percentage points with two decimals (more
    for a change smaller than 0.005 pp, never "+0.00 pp"; an exact zero is "+0.00 pp"), or four
    significant digits."""
    if percent_points:
        return _hundredths(value * 100, with_sign) + " pp"
    return signed(value) if with_sign else number(value)


def interval(low: float, high: float, percent_points: bool) -> str:
    """A confidence interval of a change: ``[-1.30, +0.50] pp`` or ``[-0.0123, +0.004]``."""
    if percent_points:
        return f"[{low * 100:+.2f}, {high * 100:+.2f}] pp"
    return f"[{signed(low)}, {signed(high)}]"


def p_value(p: float) -> str:
    """``p = 0.034``, or ``p < 0.001`` below that."""
    return f"p = {p:.2g}" if p >= 0.001 else "p < 0.001"


def _hundredths(value: float, with_sign: bool = True) -> str:
    """Two decimals, or two significant digits for a non-zero value smaller than 0.005."""
    if value != 0 and abs(value) < 0.005:
        return signed(value, 2) if with_sign else number(abs(value), 2)
    return f"{value:+.2f}" if with_sign else f"{value:.2f}"


def _strip(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text else text
