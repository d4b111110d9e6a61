"""Patient-level split into training, validation and held-out test patients.

Stratified by dataset and outcome, so every hospital and both outcomes are
represented in each part in proportion; seeded, so a job is repeatable. A
stratum of one patient stays in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # patient indices, sorted
    validation: np.ndarray
    test: np.ndarray


def _take(
    rng: np.random.Generator, pool: np.ndarray, strata: np.ndarray, fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Draws ``fraction`` of each stratum of ``pool``: (drawn, rest)."""
    drawn: list[np.ndarray] = []
    for stratum in np.unique(strata[pool]):
        members = pool[strata[pool] == stratum]
        k = round(len(members) * fraction) if len(members) > 1 else 0
        drawn.append(rng.permutation(members)[:k])
    taken = np.sort(np.concatenate(drawn)) if drawn else np.empty(0, dtype=np.int64)
    return taken, np.setdiff1d(pool, taken)


def stratified_split(
    site: np.ndarray,
    target: np.ndarray,
    *,
    test_fraction: float,
    validation_fraction: float,
    seed: int,
) -> Split:
    rng = np.random.default_rng(seed)
    strata = site.astype(np.int64) * 2 + target.astype(np.int64)
    everyone = np.arange(len(site), dtype=np.int64)
    test, rest = _take(rng, everyone, strata, test_fraction)
    validation, train = _take(rng, rest, strata, validation_fraction)
    return Split(train=train, validation=validation, test=test)
