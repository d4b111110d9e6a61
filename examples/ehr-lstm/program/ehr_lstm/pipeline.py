"""From a checked cohort to a trained model and held-out scores."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ehr_lstm.features import Standardiser, model_inputs
from ehr_lstm.inputs import Cohort
from ehr_lstm.model import Trained, TrainingConfig, predict, train
from ehr_lstm.parameters import Settings
from ehr_lstm.split import Split, stratified_split


@dataclass(frozen=True)
class Fitted:
    split: Split
    standardiser: Standardiser
    trained: Trained
    test_scores: np.ndarray  # logits of split.test, in that order


def training_config(settings: Settings) -> TrainingConfig:
    return TrainingConfig(
        hidden_size=settings.hidden_size,
        max_epochs=settings.max_epochs,
        patience=settings.patience,
        batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        seed=settings.seed,
    )


def split_cohort(cohort: Cohort, settings: Settings) -> Split:
    return stratified_split(
        cohort.site,
        cohort.target,
        test_fraction=settings.test_fraction,
        validation_fraction=settings.validation_fraction,
        seed=settings.seed,
    )


def train_on(
    cohort: Cohort, train_idx: np.ndarray, validation_idx: np.ndarray, settings: Settings
) -> tuple[Standardiser, Trained]:
    """Standardises with the training patients only (no held-out patient
    leaks into the inputs' scaling) and trains."""
    standardiser = Standardiser.fit(cohort.values[train_idx])
    x = model_inputs(cohort.values, standardiser)
    trained = train(
        x[train_idx],
        cohort.target[train_idx],
        x[validation_idx],
        cohort.target[validation_idx],
        training_config(settings),
    )
    return standardiser, trained


def score(
    cohort: Cohort, idx: np.ndarray, standardiser: Standardiser, trained: Trained
) -> np.ndarray:
    return predict(trained.model, model_inputs(cohort.values[idx], standardiser))


def fit(cohort: Cohort, settings: Settings) -> Fitted:
    split = split_cohort(cohort, settings)
    standardiser, trained = train_on(cohort, split.train, split.validation, settings)
    return Fitted(split, standardiser, trained, score(cohort, split.test, standardiser, trained))
