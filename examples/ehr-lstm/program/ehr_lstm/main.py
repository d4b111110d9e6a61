"""Entry point ``ehr_lstm.main:run``: an LSTM trained on the pooled hospitals.

Each input is one hospital's hourly records (see ``inputs``). The program
checks them all, splits the patients of every hospital into training,
validation and held-out test patients (stratified by hospital and outcome,
seeded), standardises the variables with the training patients' statistics,
trains the LSTM (``model``) and scores the held-out patients. Outputs:

- ``weights`` (table): every parameter of the trained network
  (``tensor``, ``index``, ``value``); with ``standardisation`` and ``model``
  a recipient can rebuild it exactly (``model.load_weights``);
- ``standardisation`` (table): ``variable``, ``mean``, ``std`` used to scale
  the inputs;
- ``model`` (dict): architecture, input layout, tensor shapes, settings,
  patients per part of the split, epochs (numbers that are not integers are
  given as strings: canonical JSON has no floats);
- ``training`` (table): the training and validation loss of every epoch run;
- ``performance`` (table): the pooled held-out AUROC;
- ``site_performance`` (table, ``_owner``): each hospital's patients,
  held-out patients and held-out AUROC, only to that hospital under view
  ``own``.

Held-out AUROCs from fewer than ``min_group_size`` positives or negatives
are blanked (``disclosure``); a model is only trained on at least
``min_group_size`` patients of each outcome.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from ehr_lstm import disclosure
from ehr_lstm.errors import InvalidInput
from ehr_lstm.inputs import HOURS, Cohort, build_cohort
from ehr_lstm.model import shapes, weights_table
from ehr_lstm.parameters import Settings, parse
from ehr_lstm.pipeline import Fitted, fit, split_cohort

FORMAT = "nestor-example/ehr-lstm/v1"


def _check_trainable(cohort: Cohort, settings: Settings, k: int) -> None:
    """Refuses to train (and release weights) on too few patients."""
    split = split_cohort(cohort, settings)
    need = max(k, 2)
    train_y = cohort.target[split.train]
    names = ", ".join(repr(d) for d in cohort.datasets)
    for label, name in ((1, "positive"), (0, "negative")):
        if int((train_y == label).sum()) < need:
            raise InvalidInput(
                f"datasets {names} column 'target': fewer than {need} {name} patients for "
                "training after the held-out split; the model needs more of both outcomes"
            )
    measured = ~np.isnan(cohort.values[split.train]).all(axis=1)  # (patients, variables)
    for j, variable in enumerate(cohort.variables):
        if int(measured[:, j].sum()) < need:
            raise InvalidInput(
                f"datasets {names} column {variable!r}: measured in fewer than {need} training "
                "patients; drop it from parameter 'variables'"
            )


def _model_card(cohort: Cohort, settings: Settings, fitted: Fitted, k: int) -> dict[str, Any]:
    model = fitted.trained.model
    return {
        "format": FORMAT,
        "architecture": "LSTM (1 layer, batch_first) -> last hidden state -> Linear -> logit",
        "hidden_size": settings.hidden_size,
        "hours": HOURS,
        "variables": list(cohort.variables),
        "inputs": [f"{v}:value" for v in cohort.variables]
        + [f"{v}:measured" for v in cohort.variables],
        "input_rule": (
            "value: last measurement at or before the hour, (x - mean) / std from "
            "'standardisation', 0 before the first; measured: 1 if measured that hour"
        ),
        "output": "logit of P(target = 1)",
        "tensors": shapes(model),
        "weights": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__,
        "settings": {
            "hidden_size": settings.hidden_size,
            "max_epochs": settings.max_epochs,
            "patience": settings.patience,
            "batch_size": settings.batch_size,
            "learning_rate": repr(settings.learning_rate),
            "test_fraction": repr(settings.test_fraction),
            "validation_fraction": repr(settings.validation_fraction),
            "seed": settings.seed,
        },
        "epochs_run": len(fitted.trained.train_loss),
        "best_epoch": fitted.trained.best_epoch,
        "patients": {
            "train": len(fitted.split.train),
            "validation": len(fitted.split.validation),
            "held_out": len(fitted.split.test),
        },
        "min_group_size": k,
    }


def _training_table(fitted: Fitted) -> pd.DataFrame:
    trained = fitted.trained
    epochs = np.arange(1, len(trained.train_loss) + 1)
    return pd.DataFrame(
        {
            "epoch": epochs,
            "train_loss": trained.train_loss,
            "validation_loss": trained.validation_loss,
            "best": epochs == trained.best_epoch,
        }
    )


def run(
    inputs: dict[str, pd.DataFrame], parameters: dict[str, Any], context: Any
) -> dict[str, pd.DataFrame | dict[str, Any]]:
    settings = parse(parameters)
    k = int(context.min_group_size)
    cohort = build_cohort(inputs, settings.variables)
    _check_trainable(cohort, settings, k)
    fitted = fit(cohort, settings)
    test, scores = fitted.split.test, fitted.test_scores
    return {
        "weights": weights_table(fitted.trained.model),
        "standardisation": pd.DataFrame(
            {
                "variable": list(cohort.variables),
                "mean": fitted.standardiser.mean,
                "std": fitted.standardiser.std,
            }
        ),
        "model": _model_card(cohort, settings, fitted, k),
        "training": _training_table(fitted),
        "performance": disclosure.pooled_performance(cohort, test, scores, k),
        "site_performance": disclosure.site_performance(
            cohort, test, scores, k, dict(context.owners)
        ),
    }
