"""The rank-based AUROC against a published value, an independent
implementation (scipy's Mann-Whitney U) and brute force over all pairs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from ehr_lstm.auroc import auroc, midranks
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

# /work/shared/reference-data has no EHR or ROC data set: this is the
# classic published example. Hanley & McNeil (1982), "The meaning and use of
# the area under a receiver operating characteristic (ROC) curve",
# Radiology 143:29-36, Table 1: 109 CT images rated 1 (definitely normal) to
# 5 (definitely abnormal); area 0.893, standard error 0.032.
HANLEY_MCNEIL_NORMAL = (33, 6, 6, 11, 2)  # images of each rating, truly normal
HANLEY_MCNEIL_ABNORMAL = (3, 2, 2, 11, 33)
HANLEY_MCNEIL_AREA = 0.893
HANLEY_MCNEIL_SE = 0.032


def _ratings(counts: tuple[int, ...]) -> np.ndarray:
    return np.repeat(np.arange(1, len(counts) + 1), counts).astype(np.float64)


def _brute_force(scores: list[float], labels: list[int]) -> float:
    pos = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    neg = [s for s, y in zip(scores, labels, strict=True) if y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_hanley_mcneil_published_area_and_standard_error() -> None:
    normal = _ratings(HANLEY_MCNEIL_NORMAL)
    abnormal = _ratings(HANLEY_MCNEIL_ABNORMAL)
    scores = np.concatenate([normal, abnormal])
    labels = np.concatenate([np.zeros(len(normal)), np.ones(len(abnormal))])
    area = auroc(scores, labels)
    assert round(area, 3) == HANLEY_MCNEIL_AREA
    # Their standard error (eq. 1) from our area: Q1 = A/(2-A), Q2 = 2A^2/(1+A).
    n_a, n_n = len(abnormal), len(normal)
    q1, q2 = area / (2 - area), 2 * area**2 / (1 + area)
    se = np.sqrt(
        (area * (1 - area) + (n_a - 1) * (q1 - area**2) + (n_n - 1) * (q2 - area**2)) / (n_a * n_n)
    )
    assert round(float(se), 3) == HANLEY_MCNEIL_SE


def test_matches_scipy_mann_whitney_u_with_ties() -> None:
    rng = np.random.default_rng(3)
    scores = np.round(rng.normal(size=3000), 1)  # many ties
    labels = (rng.random(3000) < 0.3 + 0.1 * (scores > 0)).astype(int)
    u = stats.mannwhitneyu(scores[labels == 1], scores[labels == 0]).statistic
    expected = u / ((labels == 1).sum() * (labels == 0).sum())
    assert auroc(scores, labels) == pytest.approx(expected, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-5, 5).map(lambda v: v / 2), st.integers(0, 1)),
        min_size=2,
        max_size=40,
    ).filter(lambda rows: 0 < sum(y for _, y in rows) < len(rows))
)
def test_equals_brute_force_over_all_pairs(rows: list[tuple[float, int]]) -> None:
    scores = [s for s, _ in rows]
    labels = [y for _, y in rows]
    assert auroc(np.array(scores), np.array(labels)) == pytest.approx(
        _brute_force(scores, labels), abs=1e-12
    )


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-3, 3), min_size=1, max_size=30))
def test_midranks_agree_with_scipy(values: list[int]) -> None:
    array = np.array(values, dtype=np.float64)
    np.testing.assert_allclose(midranks(array), stats.rankdata(array), atol=1e-12)


def test_invariant_to_monotone_transforms_and_reversed_by_negation() -> None:
    rng = np.random.default_rng(5)
    scores = rng.normal(size=500)
    labels = (rng.random(500) < 1 / (1 + np.exp(-scores))).astype(int)
    area = auroc(scores, labels)
    assert auroc(np.exp(scores), labels) == pytest.approx(area, abs=1e-12)
    assert auroc(-scores, labels) == pytest.approx(1 - area, abs=1e-12)


@pytest.mark.parametrize(
    ("scores", "labels"),
    [
        ([0.1, 0.2], [1, 1]),
        ([0.1, 0.2], [0, 0]),
        ([0.1, float("nan")], [0, 1]),
        ([0.1, 0.2, 0.3], [0, 1]),
    ],
)
def test_refuses_undefined_cases(scores: list[float], labels: list[int]) -> None:
    with pytest.raises(ValueError, match=r"AUROC|finite|length"):
        auroc(np.array(scores), np.array(labels))
