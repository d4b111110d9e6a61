"""The synthetic hospitals: format, site differences, informative missingness,
and a ground-truth risk whose AUROC ceiling is what the formula says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import ehr_lstm_data
import numpy as np
import pandas as pd
import pytest
from ehr_lstm.auroc import auroc

DATA_SCRIPT = Path(ehr_lstm_data.__file__)


@pytest.fixture(scope="module")
def sites() -> list[ehr_lstm_data.SiteData]:
    return ehr_lstm_data.generate(seed=11, scale=3.0)


def test_long_format_one_row_per_patient_hour(sites: list[ehr_lstm_data.SiteData]) -> None:
    for site in sites:
        table = site.table
        assert tuple(table.columns) == ehr_lstm_data.COLUMNS
        assert len(table) == len(site.patients) * ehr_lstm_data.HOURS
        assert table.groupby("patient")["hour"].apply(sorted).map(tuple).nunique() == 1
        assert table.groupby("patient")["target"].nunique().max() == 1
        assert set(table["target"].unique()) <= {0, 1}
        assert not table.duplicated(["patient", "hour"]).any()


def test_sites_differ_in_size_case_mix_and_measurement(
    sites: list[ehr_lstm_data.SiteData],
) -> None:
    north, river, lake = sites
    assert len(north.patients) > len(river.patients) > len(lake.patients)
    prevalence = [s.table.groupby("patient")["target"].first().mean() for s in sites]
    assert prevalence[0] > prevalence[2] + 0.03  # Northside's sicker case mix
    # Northside's tympanic thermometers read 0.3 °C high, beyond the case-mix effect.
    assert north.table["temperature"].mean() > river.table["temperature"].mean() + 0.25
    assert lake.table["lactate"].isna().all()
    # Lakeside charts vitals far less often.
    assert lake.table["heart_rate"].isna().mean() > 2 * north.table["heart_rate"].isna().mean()


def test_labs_are_measured_more_often_in_sicker_patients(
    sites: list[ehr_lstm_data.SiteData],
) -> None:
    table = sites[0].table
    per_patient = table.groupby("patient").agg(
        labs=("creatinine", lambda c: int(c.notna().sum())), target=("target", "first")
    )
    risk = pd.Series(sites[0].risk, index=list(sites[0].patients))
    assert np.corrcoef(per_patient["labs"], risk.loc[per_patient.index])[0, 1] > 0.3
    by_outcome = per_patient.groupby("target")["labs"].mean()
    assert by_outcome[1] > 1.5 * by_outcome[0]


def test_expected_auroc_is_the_mean_over_outcomes_drawn_from_the_risk(
    sites: list[ehr_lstm_data.SiteData],
) -> None:
    risk = np.concatenate([s.risk for s in sites])
    rng = np.random.default_rng(0)
    draws = [auroc(risk, (rng.random(len(risk)) < risk).astype(int)) for _ in range(200)]
    expected = ehr_lstm_data.expected_auroc(risk)
    assert 0.85 < expected < 0.92  # the documented ceiling
    # The mean of 200 draws has a standard error of about 0.0004.
    assert float(np.mean(draws)) == pytest.approx(expected, abs=0.002)


def test_generated_outcomes_follow_the_true_risk(sites: list[ehr_lstm_data.SiteData]) -> None:
    truth = ehr_lstm_data.truth_table(sites)
    risk, target = truth["risk"].to_numpy(), truth["target"].to_numpy()
    expected = ehr_lstm_data.expected_auroc(risk)
    # Hanley & McNeil's standard error of an AUROC.
    n1, n0 = int(target.sum()), int((1 - target).sum())
    q1, q2 = expected / (2 - expected), 2 * expected**2 / (1 + expected)
    se = np.sqrt(
        (expected * (1 - expected) + (n1 - 1) * (q1 - expected**2) + (n0 - 1) * (q2 - expected**2))
        / (n1 * n0)
    )
    assert abs(auroc(risk, target) - expected) < 3 * se
    # Calibration: the mean risk matches the observed prevalence.
    assert target.mean() == pytest.approx(risk.mean(), abs=3 * np.sqrt(risk.mean() / len(risk)))


def test_no_signal_outcomes_ignore_the_risk() -> None:
    sites = ehr_lstm_data.generate(seed=12, scale=3.0, signal=False)
    truth = ehr_lstm_data.truth_table(sites)
    assert abs(auroc(truth["risk"].to_numpy(), truth["target"].to_numpy()) - 0.5) < 0.05
    for _, group in truth.groupby("dataset"):
        assert group["target"].mean() == pytest.approx(ehr_lstm_data.NULL_PREVALENCE, abs=0.05)


def test_same_seed_same_files_and_cli(tmp_path: Path) -> None:
    first = ehr_lstm_data.write_sites(tmp_path / "a", seed=3, scale=0.2)
    done = subprocess.run(
        [sys.executable, str(DATA_SCRIPT), str(tmp_path / "b"), "--seed", "3", "--scale", "0.2",
         "--truth"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    second = [Path(line) for line in done.stdout.split()]
    assert [p.name for p in second] == ["ehr-1.csv", "ehr-2.csv", "ehr-3.csv"]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes()
    assert (tmp_path / "b" / "truth.csv").is_file()
    # Missing measurements are empty CSV cells.
    assert ",," in first[0].read_text()
