"""Statistics for honest verdicts (pure: numbers in, numbers out; no I/O).

scipy does the distributions and tests, numpy the resampling, ruptures the change points:

- :mod:`~cml_bot.stats.evidence`: what a comparison knows about a change (:class:`Evidence`), the
  smallest effect it can detect, and the false-discovery correction across gates;
- :mod:`~cml_bot.stats.paired`: exact / mid-p McNemar for paired accuracy and the seeded,
  vectorised paired bootstrap;
- :mod:`~cml_bot.stats.example_metrics`: metrics computed from per-example results (accuracy,
  F1, precision, recall, ROC AUC, log loss, MAE, RMSE, ...) in a form the bootstrap can resample;
- :mod:`~cml_bot.stats.runs`: repeated runs (seeds, folds) compared with Welch's test;
- :mod:`~cml_bot.stats.history`: a metric's usual variation on the base branch, robust to
  outliers, after the last change point found by ruptures.

The method, each rule and the references are in docs/statistics.md. scipy and ruptures load slowly:
modules import them inside functions, so ``cml-bot --help`` never pays for them.
"""

from cml_bot.stats.evidence import (
    DEFAULT_ALPHA,
    POWER,
    Evidence,
    adjust_p_values,
    detectable_effect,
)

__all__ = ["DEFAULT_ALPHA", "POWER", "Evidence", "adjust_p_values", "detectable_effect"]
