"""Synthetic multi-centre ICU records with a known risk model, for the ehr-lstm example.

    python examples/ehr-lstm/ehr_lstm_data.py OUT_DIR [--scale 1.0] [--seed 0]
                                                      [--no-signal] [--truth]

writes OUT_DIR/ehr-1.csv … (one per hospital) in long format: one row per
patient and hour, columns ``patient``, ``hour`` (0..23), the eight variables
of VARIABLES (an empty cell when nothing was measured that hour) and
``target`` (the patient's 0/1 outcome, repeated on each of its rows).
``--truth`` also writes truth.csv with every patient's true risk (never part
of a party's upload).

The generating model, per patient:

- a latent severity ``s(t) = b + g * t / 23 + e(t)`` with baseline
  ``b ~ N(case_mix, 1)`` (the hospital's case mix shifts it), a drift over
  the day ``g ~ N(0, 1)`` and AR(1) noise ``e`` (phi 0.7, sd 0.3);
- the outcome ``target ~ Bernoulli(p)`` with
  ``logit p = INTERCEPT + LEVEL * mean(s[18:24]) + TREND * (mean(s[18:24]) - mean(s[0:6]))``:
  ``p`` is the true risk, so the best achievable AUROC is known
  (``expected_auroc(risk)``); with ``signal=False`` the outcome is drawn
  with prevalence NULL_PREVALENCE at every hospital, independently of
  everything else;
- each variable is ``mean + sd * (loading * s(t) + patient offset + noise)``
  in physiological units, then passed through the hospital's measurement
  (an offset and a scale: another thermometer, another lactate analyser)
  and rounded as charted;
- missingness is informative: vitals are charted with a hospital-specific
  probability per hour, labs with probability ``sigmoid(-2.2 + 1.1 s(t))``
  (sicker patients get more blood drawn), and at admission more often;
  Lakeside Clinic has no blood-gas analyser, so no lactate at all.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

HOURS = 24
VITALS = ("heart_rate", "sbp", "resp_rate", "temperature", "spo2")
LABS = ("lactate", "creatinine", "wbc")
VARIABLES = (*VITALS, *LABS)
COLUMNS = ("patient", "hour", *VARIABLES, "target")

# Physiological mean, spread and the variable's loading on severity.
MEAN = {
    "heart_rate": 88.0,
    "sbp": 122.0,
    "resp_rate": 18.0,
    "temperature": 37.1,
    "spo2": 96.0,
    "lactate": 1.6,
    "creatinine": 1.1,
    "wbc": 9.5,
}
SD = {
    "heart_rate": 14.0,
    "sbp": 17.0,
    "resp_rate": 4.0,
    "temperature": 0.6,
    "spo2": 2.2,
    "lactate": 0.8,
    "creatinine": 0.4,
    "wbc": 3.0,
}
LOADING = {
    "heart_rate": 0.75,
    "sbp": -0.65,
    "resp_rate": 0.75,
    "temperature": 0.45,
    "spo2": -0.65,
    "lactate": 0.85,
    "creatinine": 0.6,
    "wbc": 0.55,
}
PATIENT_OFFSET_SD = 0.25  # a patient's own normal (in units of SD)
NOISE_SD = 0.35  # hour-to-hour measurement and physiological noise
DECIMALS = {
    "heart_rate": 0,
    "sbp": 0,
    "resp_rate": 0,
    "temperature": 1,
    "spo2": 0,
    "lactate": 1,
    "creatinine": 2,
    "wbc": 1,
}
LOWER = {
    "heart_rate": 25.0,
    "sbp": 50.0,
    "resp_rate": 5.0,
    "temperature": 33.0,
    "spo2": 60.0,
    "lactate": 0.2,
    "creatinine": 0.2,
    "wbc": 0.5,
}
UPPER = {"spo2": 100.0}

# The true risk model (see the module docstring).
INTERCEPT = -2.0
LEVEL = 0.8
TREND = 1.5
DRIFT_SD = 1.0
AR_PHI = 0.7
AR_SD = 0.3
LAB_BASE, LAB_SEVERITY, LAB_ADMISSION = -2.2, 1.1, 1.5
NULL_PREVALENCE = 0.2  # of the outcome when signal=False


@dataclass(frozen=True)
class Hospital:
    name: str
    prefix: str  # patient ids look like NS-000001
    patients: int  # at scale 1
    case_mix: float  # mean baseline severity
    vital_charting: float  # probability that a vital sign is charted in a given hour
    # Measurement differences: observed = offset + scale * true value.
    offset: dict[str, float] = field(default_factory=dict)
    scale: dict[str, float] = field(default_factory=dict)
    unmeasured: tuple[str, ...] = ()


HOSPITALS = (
    Hospital(
        "Northside Hospital",
        "NS",
        700,
        case_mix=0.3,
        vital_charting=0.92,
        offset={"temperature": 0.3},  # tympanic rather than core
    ),
    Hospital(
        "Riverside Hospital",
        "RS",
        500,
        case_mix=0.0,
        vital_charting=0.85,
        scale={"lactate": 1.2, "creatinine": 0.9},  # other analysers
    ),
    Hospital(
        "Lakeside Clinic",
        "LC",
        200,
        case_mix=-0.4,
        vital_charting=0.6,
        offset={"spo2": -1.0, "sbp": 5.0},
        unmeasured=("lactate",),  # no blood-gas analyser
    ),
)


@dataclass(frozen=True)
class SiteData:
    hospital: Hospital
    table: pd.DataFrame  # COLUMNS, one row per patient and hour
    risk: np.ndarray  # true risk per patient, in the order of the patient ids
    patients: tuple[str, ...]


def patient_count(hospital: Hospital, scale: float) -> int:
    return max(1, round(hospital.patients * scale))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return out


def severity(rng: np.random.Generator, n: int, case_mix: float) -> np.ndarray:
    """Latent severity trajectories, shape (n, HOURS)."""
    base = rng.normal(case_mix, 1.0, n)
    drift = rng.normal(0.0, DRIFT_SD, n)
    e = np.empty((n, HOURS))
    e[:, 0] = rng.normal(0.0, AR_SD / np.sqrt(1 - AR_PHI**2), n)
    for t in range(1, HOURS):
        e[:, t] = AR_PHI * e[:, t - 1] + rng.normal(0.0, AR_SD, n)
    hours = np.arange(HOURS) / (HOURS - 1)
    out: np.ndarray = base[:, None] + drift[:, None] * hours[None, :] + e
    return out


def true_risk(s: np.ndarray) -> np.ndarray:
    late = s[:, HOURS - 6 :].mean(axis=1)
    early = s[:, :6].mean(axis=1)
    return _sigmoid(INTERCEPT + LEVEL * late + TREND * (late - early))


def generate_site(hospital: Hospital, n: int, *, seed: int, signal: bool = True) -> SiteData:
    rng = np.random.default_rng(seed)
    s = severity(rng, n, hospital.case_mix)
    risk = true_risk(s)
    if signal:
        target = (rng.random(n) < risk).astype(np.int64)
    else:
        # One prevalence for every hospital: otherwise the hospital (visible in
        # its measurement habits) would predict the outcome.
        target = (rng.random(n) < NULL_PREVALENCE).astype(np.int64)
    patients = tuple(f"{hospital.prefix}-{i + 1:06d}" for i in range(n))
    columns: dict[str, np.ndarray] = {
        "patient": np.repeat(np.asarray(patients, dtype=object), HOURS),
        "hour": np.tile(np.arange(HOURS, dtype=np.int64), n),
    }
    for var in VARIABLES:
        z = (
            LOADING[var] * s
            + rng.normal(0.0, PATIENT_OFFSET_SD, (n, 1))
            + rng.normal(0.0, NOISE_SD, (n, HOURS))
        )
        value = MEAN[var] + SD[var] * z
        value = hospital.offset.get(var, 0.0) + hospital.scale.get(var, 1.0) * value
        value = np.clip(value, LOWER[var], UPPER.get(var, np.inf))
        value = np.round(value, DECIMALS[var])
        if var in VITALS:
            charted = rng.random((n, HOURS)) < hospital.vital_charting
        else:
            logit = LAB_BASE + LAB_SEVERITY * s
            logit[:, 0] += LAB_ADMISSION
            charted = rng.random((n, HOURS)) < _sigmoid(logit)
        charted &= var not in hospital.unmeasured
        columns[var] = np.where(charted, value, np.nan).reshape(-1)
    columns["target"] = np.repeat(target, HOURS)
    return SiteData(hospital, pd.DataFrame(columns), risk, patients)


def generate(
    *,
    seed: int = 0,
    scale: float = 1.0,
    signal: bool = True,
    hospitals: tuple[Hospital, ...] = HOSPITALS,
) -> list[SiteData]:
    return [
        generate_site(h, patient_count(h, scale), seed=seed * 1000 + i + 1, signal=signal)
        for i, h in enumerate(hospitals)
    ]


def truth_table(sites: list[SiteData]) -> pd.DataFrame:
    """Each patient's dataset id, id, true risk and outcome (for tests, never uploaded)."""
    frames = []
    for i, site in enumerate(sites):
        per_patient = site.table.groupby("patient", sort=False)["target"].first()
        frames.append(
            pd.DataFrame(
                {
                    "dataset": f"ehr-{i + 1}",
                    "patient": list(site.patients),
                    "risk": site.risk,
                    "target": per_patient.loc[list(site.patients)].to_numpy(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def expected_auroc(risk: np.ndarray) -> float:
    """The AUROC that ranking by the true risk reaches on average over outcomes
    drawn from that risk: the ceiling for any model of the same patients.

    Ratio of expectations over pairs i != j: sum p_i (1 - p_j) [p_i > p_j]
    (ties count half) over sum p_i (1 - p_j)."""
    p = np.sort(np.asarray(risk, dtype=np.float64))
    q = 1.0 - p
    # Pairs with p_j < p_i: cumulative sums over the sorted risks (ties are
    # measure-zero for continuous risks).
    below = np.concatenate([[0.0], np.cumsum(q)[:-1]])
    concordant = float(np.sum(p * below))
    total = float(p.sum() * q.sum() - np.sum(p * q))
    return concordant / total


def write_sites(
    out_dir: Path,
    *,
    seed: int = 0,
    scale: float = 1.0,
    signal: bool = True,
    truth: bool = False,
) -> list[Path]:
    """One CSV per hospital (ehr-1.csv …); returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sites = generate(seed=seed, scale=scale, signal=signal)
    paths = []
    for i, site in enumerate(sites):
        path = out_dir / f"ehr-{i + 1}.csv"
        site.table.to_csv(path, index=False)
        paths.append(path)
    if truth:
        truth_table(sites).to_csv(out_dir / "truth.csv", index=False)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-signal", action="store_true", help="outcomes independent of data")
    parser.add_argument("--truth", action="store_true", help="also write the true risks")
    args = parser.parse_args()
    paths = write_sites(
        args.out_dir, seed=args.seed, scale=args.scale, signal=not args.no_signal, truth=args.truth
    )
    for path in paths:
        print(path)


if __name__ == "__main__":
    main()
