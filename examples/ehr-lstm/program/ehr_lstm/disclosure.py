"""What leaves the enclave about performance, with small cells suppressed.

An AUROC is a statistic of pairs of a positive and a negative patient: one
built from fewer than ``min_group_size`` held-out positives (or negatives)
says too much about those few patients, so it is blanked, and the two class
counts with it (either one and the held-out total would give the other).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ehr_lstm.auroc import auroc
from ehr_lstm.inputs import Cohort

PERFORMANCE_COLUMNS = (
    "held_out",
    "held_out_positive",
    "held_out_negative",
    "auroc",
    "auroc_suppressed",
)


def _cell(scores: np.ndarray, labels: np.ndarray, k: int) -> dict[str, object]:
    positive = int((labels == 1).sum())
    negative = len(labels) - positive
    if min(positive, negative) < max(k, 1):
        return {
            "held_out": len(labels),
            "held_out_positive": None,
            "held_out_negative": None,
            "auroc": None,
            "auroc_suppressed": True,
        }
    return {
        "held_out": len(labels),
        "held_out_positive": positive,
        "held_out_negative": negative,
        "auroc": auroc(scores, labels),
        "auroc_suppressed": False,
    }


def site_performance(
    cohort: Cohort,
    test: np.ndarray,
    scores: np.ndarray,
    k: int,
    owners: Mapping[str, str],
) -> pd.DataFrame:
    """One row per dataset, with ``_owner`` so each hospital with view ``own``
    sees only its own row."""
    rows = []
    for i, dataset in enumerate(cohort.datasets):
        mine = cohort.site[test] == i
        rows.append(
            {
                "_owner": owners.get(dataset, ""),
                "dataset": dataset,
                "patients": int((cohort.site == i).sum()),
                **_cell(scores[mine], cohort.target[test][mine], k),
            }
        )
    return _typed(pd.DataFrame(rows))


def pooled_performance(
    cohort: Cohort, test: np.ndarray, scores: np.ndarray, k: int
) -> pd.DataFrame:
    row = {
        "scope": "pooled",
        "datasets": len(cohort.datasets),
        "patients": len(cohort),
        **_cell(scores, cohort.target[test], k),
    }
    return _typed(pd.DataFrame([row]))


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    # Nullable integers print as 12 (not 12.0) and a blank for suppressed cells.
    for column in ("held_out_positive", "held_out_negative"):
        table[column] = table[column].astype("Int64")
    table["auroc"] = table["auroc"].astype("float64")
    return table
