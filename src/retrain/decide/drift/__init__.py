"""Data drift: per-column two-sample tests, PSI and a dataset verdict (DESIGN.md §4, §11).

The reference is the production model's training data, the current sample the newest data.
Each column gets

- **numeric**: the exact two-sample Kolmogorov-Smirnov statistic and p-value (the numbers
  ``scipy.stats.ks_2samp(a, b, method="auto")`` gives), the PSI over quantile bins of the
  reference, the Wasserstein-1 distance, and a chi-squared test of the missing-value rate;
- **categorical**: Pearson's chi-squared test of homogeneity over the union of levels (missing
  values are a level of their own), the PSI over levels, and the levels the reference never
  saw, by name.

A column is drifted when its test is significant after a multiple-testing correction across
columns *and* the shift is large enough to matter (effect size or PSI above a floor), or when
its missing-value rate moved significantly and by a non-trivial amount.  The dataset is
drifted when the share of drifted columns exceeds ``DriftConfig.max_share``.  The reasoning
behind these rules is in ``docs/drift.md``.

Speed and memory: each numeric column is sorted once per side; the KS statistic, the PSI bin
counts and the Wasserstein distance all come from one merge of the two sorted arrays.  Columns
run on a thread pool (numpy's sort and merge release the GIL).  Parquet files are read one
column at a time, so a wide file never has to fit in memory all at once.

The subpackage by job: ``sources`` reads the columns (a DataFrame, a CSV file, or a Parquet
file one column at a time), ``stats`` computes each column's statistics, ``verdict`` corrects
the p-values across columns and decides, ``report`` holds the result and prints its table.
"""

from __future__ import annotations

from retrain.core.config import DriftConfig
from retrain.decide.drift.report import DriftReport, format_table
from retrain.decide.drift.stats import MISSING_LEVEL, Kind, prediction_psi
from retrain.decide.drift.verdict import drift_report

__all__ = [
    "MISSING_LEVEL",
    "DriftConfig",
    "DriftReport",
    "Kind",
    "drift_report",
    "format_table",
    "prediction_psi",
]
