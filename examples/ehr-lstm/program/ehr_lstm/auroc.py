"""Area under the ROC curve, rank-based (the Mann-Whitney U statistic).

AUROC = P(score of a positive > score of a negative) + 1/2 P(tie): the
positives' rank sum, with tied scores given their mid-rank, minus its
minimum, over the number of positive-negative pairs. O(n log n).
"""

from __future__ import annotations

import numpy as np


def midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of the ranks they span."""
    n = len(values)
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    first = np.ones(n, dtype=bool)
    first[1:] = ordered[1:] != ordered[:-1]
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], n)
    group = np.cumsum(first) - 1
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = ((starts + ends - 1) / 2.0 + 1.0)[group]
    return ranks


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """AUROC of ``scores`` for binary ``labels`` (1 = positive). Raises
    ValueError when a class is absent or a score is not finite."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if len(s) != len(y):
        raise ValueError("scores and labels differ in length")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    positive = y == 1
    n_pos = int(positive.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs at least one positive and one negative")
    rank_sum = float(midranks(s)[positive].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
