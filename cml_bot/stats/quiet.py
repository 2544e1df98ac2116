"""numpy's and scipy's warnings about floating point, silenced where the statistics expect them.

Metric values at the edge of float range (``1e308``: sums and squares overflow to inf) or nearly
identical samples (scipy: "Precision loss occurred in moment calculation") make numpy and scipy
warn on stderr, past cml-bot's console. The callers check their results instead: a result that is
not finite makes no claim.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def expected_float_warnings() -> Iterator[None]:
    """Inside: numpy's floating-point errors ignored (overflow, invalid, divide, underflow) and the
    ``RuntimeWarning`` scipy raises for them; results are unchanged."""
    import numpy as np  # here: the modules using this import numpy late too (cml-bot --help stays fast)

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
