"""Model inputs: standardised values carried forward, plus missingness flags.

For each variable and hour the network sees two numbers: the latest value
measured so far, standardised with the training patients' mean and standard
deviation (0, the mean, before the first measurement), and 1 if the variable
was measured in that hour. Carrying values forward keeps what a clinician
would see at the bedside; the flag keeps *when* things were measured, which
is informative (sicker patients are measured more often).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Standardiser:
    mean: np.ndarray  # (variables,)
    std: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray) -> Standardiser:
        """From the measured values of ``values`` (patients, hours, variables)."""
        flat = values.reshape(-1, values.shape[-1])
        observed = ~np.isnan(flat)
        count = observed.sum(axis=0)
        total = np.where(observed, flat, 0.0).sum(axis=0)
        mean = np.divide(total, count, out=np.zeros(flat.shape[1]), where=count > 0)
        sq = np.where(observed, (flat - mean) ** 2, 0.0).sum(axis=0)
        var = np.divide(sq, count - 1, out=np.zeros(flat.shape[1]), where=count > 1)
        std = np.sqrt(var)
        # A variable without spread (or without training measurements)
        # carries no information in its value; scale 1 keeps it finite.
        return cls(mean=mean, std=np.where(std > 0, std, 1.0))


def carried_forward(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(last value measured at or before each hour, or NaN; measured flags)."""
    observed = ~np.isnan(values)
    hours = np.arange(values.shape[1])[None, :, None]
    last = np.maximum.accumulate(np.where(observed, hours, -1), axis=1)
    filled = np.take_along_axis(values, np.maximum(last, 0), axis=1)
    return np.where(last >= 0, filled, np.nan), observed


def model_inputs(values: np.ndarray, standardiser: Standardiser) -> np.ndarray:
    """float32 array (patients, hours, 2 * variables): values, then flags."""
    filled, observed = carried_forward(values)
    z = (filled - standardiser.mean) / standardiser.std
    z = np.nan_to_num(z, nan=0.0)
    return np.concatenate([z, observed.astype(np.float64)], axis=2).astype(np.float32)
