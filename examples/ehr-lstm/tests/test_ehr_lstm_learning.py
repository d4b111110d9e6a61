"""What the LSTM learns from the synthetic hospitals: close to the known
ceiling, better pooled than alone, nothing from noise, the same bits for the
same seed, and released weights that rebuild the model exactly."""

from __future__ import annotations

import io
from types import MappingProxyType, SimpleNamespace
from typing import Any

import ehr_lstm_data
import numpy as np
import pandas as pd
import pytest
from ehr_lstm import main, pipeline
from ehr_lstm.auroc import auroc
from ehr_lstm.features import Standardiser, carried_forward, model_inputs
from ehr_lstm.inputs import Cohort, build_cohort
from ehr_lstm.model import load_weights, predict
from ehr_lstm.parameters import DEFAULT_VARIABLES, Settings
from ehr_lstm.split import stratified_split

OWNERS = MappingProxyType({f"ehr-{i}": f"sha256:{i}" for i in (1, 2, 3)})


def _cohort(sites: list[ehr_lstm_data.SiteData]) -> Cohort:
    return build_cohort({f"ehr-{i + 1}": s.table for i, s in enumerate(sites)}, DEFAULT_VARIABLES)


def _true_risk(sites: list[ehr_lstm_data.SiteData], cohort: Cohort, idx: np.ndarray) -> np.ndarray:
    truth = ehr_lstm_data.truth_table(sites).set_index(["dataset", "patient"])["risk"]
    keys = [(cohort.datasets[cohort.site[i]], cohort.patients[i]) for i in idx]
    risk: np.ndarray = truth.loc[keys].to_numpy()
    return risk


def _run(inputs: dict[str, pd.DataFrame], parameters: dict[str, Any], k: int) -> dict[str, Any]:
    return main.run(inputs, parameters, SimpleNamespace(min_group_size=k, owners=OWNERS))


def test_lstm_comes_within_005_of_the_oracle_auroc() -> None:
    sites = ehr_lstm_data.generate(seed=0, scale=4.0)  # 5,600 patients
    cohort = _cohort(sites)
    fitted = pipeline.fit(cohort, Settings(seed=0))
    test = fitted.split.test
    labels = cohort.target[test]
    oracle = auroc(_true_risk(sites, cohort, test), labels)
    lstm = auroc(fitted.test_scores, labels)
    assert len(test) >= 1500
    assert oracle - 0.05 < lstm <= oracle + 0.01
    assert lstm > 0.8


def _pooled_minus_lakeside_alone(seed: int) -> float:
    """Held-out AUROC of the pooled model minus that of a model trained on
    Lakeside's training patients only, on the same held-out patients of all
    three hospitals."""
    cohort = _cohort(ehr_lstm_data.generate(seed=seed, scale=2.0))  # 2,800 patients
    settings = Settings(seed=seed)
    pooled = pipeline.fit(cohort, settings)
    split, lakeside = pooled.split, cohort.datasets.index("ehr-3")
    alone = pipeline.train_on(
        cohort,
        split.train[cohort.site[split.train] == lakeside],  # 224 patients
        split.validation[cohort.site[split.validation] == lakeside],
        settings,
    )
    labels = cohort.target[split.test]
    return auroc(pooled.test_scores, labels) - auroc(
        pipeline.score(cohort, split.test, *alone), labels
    )


def test_pooled_training_beats_the_smallest_hospital_alone() -> None:
    # Over seeds 0..7 the margin was 0.041, 0.026, 0.039, 0.025, 0.036, 0.028,
    # 0.007, 0.025: one seed can be close, so three seeds are checked.
    margins = [_pooled_minus_lakeside_alone(seed) for seed in (0, 1, 2)]
    assert min(margins) > 0
    assert float(np.mean(margins)) > 0.02


def test_no_signal_gives_auroc_near_one_half() -> None:
    sites = ehr_lstm_data.generate(seed=0, scale=3.0, signal=False)
    cohort = _cohort(sites)
    fitted = pipeline.fit(cohort, Settings(test_fraction=0.5, seed=0))
    test = fitted.split.test
    # 2,100 held-out patients: the standard error of an AUROC of 0.5 is about 0.014.
    assert len(test) >= 2000
    assert abs(auroc(fitted.test_scores, cohort.target[test]) - 0.5) < 0.05


@pytest.fixture(scope="module")
def small_inputs() -> dict[str, pd.DataFrame]:
    sites = ehr_lstm_data.generate(seed=5, scale=0.5)
    return {f"ehr-{i + 1}": s.table for i, s in enumerate(sites)}


SMALL = {"max_epochs": 4, "hidden_size": 16, "seed": 7}


@pytest.fixture(scope="module")
def small_run(small_inputs: dict[str, pd.DataFrame]) -> dict[str, Any]:
    return _run(small_inputs, SMALL, k=10)


def test_same_seed_gives_bitwise_identical_weights_and_auroc(
    small_inputs: dict[str, pd.DataFrame], small_run: dict[str, Any]
) -> None:
    again = _run(small_inputs, SMALL, k=10)
    for name in ("weights", "standardisation", "training", "performance", "site_performance"):
        pd.testing.assert_frame_equal(small_run[name], again[name], check_exact=True)
    assert small_run["model"] == again["model"]
    other = _run(small_inputs, {**SMALL, "seed": 8}, k=10)
    assert not np.array_equal(other["weights"]["value"], small_run["weights"]["value"])


def test_released_weights_rebuild_the_model_bit_for_bit(
    small_inputs: dict[str, pd.DataFrame], small_run: dict[str, Any]
) -> None:
    def through_csv(table: pd.DataFrame) -> pd.DataFrame:
        return pd.read_csv(io.StringIO(table.to_csv(index=False)))

    weights, scaling = through_csv(small_run["weights"]), through_csv(small_run["standardisation"])
    card = small_run["model"]
    model = load_weights(weights, 2 * len(card["variables"]), card["hidden_size"])
    standardiser = Standardiser(scaling["mean"].to_numpy(), scaling["std"].to_numpy())

    settings = Settings(hidden_size=16, max_epochs=4, seed=7)
    cohort = build_cohort(small_inputs, tuple(card["variables"]))
    fitted = pipeline.fit(cohort, settings)
    test = fitted.split.test
    scores = predict(model, model_inputs(cohort.values[test], standardiser))
    np.testing.assert_array_equal(scores, fitted.test_scores)
    published = small_run["performance"]["auroc"].iloc[0]
    assert auroc(scores, cohort.target[test]) == published


def test_small_sites_auroc_is_suppressed_exactly_below_k(
    small_inputs: dict[str, pd.DataFrame], small_run: dict[str, Any]
) -> None:
    k = 10
    cohort = build_cohort(small_inputs, DEFAULT_VARIABLES)
    split = pipeline.split_cohort(cohort, Settings(seed=7))
    rows = small_run["site_performance"].set_index("dataset")
    suppressed = []
    for i, dataset in enumerate(cohort.datasets):
        labels = cohort.target[split.test][cohort.site[split.test] == i]
        row = rows.loc[dataset]
        assert row["held_out"] == len(labels)
        assert row["_owner"] == OWNERS[dataset]
        if min(labels.sum(), len(labels) - labels.sum()) < k:
            suppressed.append(dataset)
            assert row["auroc_suppressed"]
            assert pd.isna(row["auroc"])
            assert pd.isna(row["held_out_positive"])
            assert pd.isna(row["held_out_negative"])
        else:
            assert not row["auroc_suppressed"]
            assert 0.0 <= row["auroc"] <= 1.0
            assert row["held_out_positive"] == labels.sum()
    assert suppressed == ["ehr-3"]  # 100 Lakeside patients, 30 held out


def test_split_is_patient_level_stratified_and_seeded() -> None:
    rng = np.random.default_rng(0)
    site = rng.integers(0, 3, 2000)
    target = (rng.random(2000) < 0.2).astype(np.int64)
    split = stratified_split(site, target, test_fraction=0.3, validation_fraction=0.2, seed=4)
    parts = np.concatenate([split.train, split.validation, split.test])
    assert sorted(parts.tolist()) == list(range(2000))  # disjoint and complete
    for s in range(3):
        for y in (0, 1):
            stratum = (site == s) & (target == y)
            n_test = int(stratum[split.test].sum())
            assert n_test == round(stratum.sum() * 0.3)
    again = stratified_split(site, target, test_fraction=0.3, validation_fraction=0.2, seed=4)
    np.testing.assert_array_equal(split.test, again.test)
    other = stratified_split(site, target, test_fraction=0.3, validation_fraction=0.2, seed=5)
    assert not np.array_equal(split.test, other.test)


def test_inputs_carry_the_last_value_forward_with_measured_flags() -> None:
    nan = np.nan
    values = np.array([[[nan, 1.0], [2.0, nan], [nan, nan], [4.0, 3.0]]])  # 1 patient, 4 hours
    filled, observed = carried_forward(values)
    np.testing.assert_array_equal(filled[0, :, 0], [nan, 2.0, 2.0, 4.0])
    np.testing.assert_array_equal(filled[0, :, 1], [1.0, 1.0, 1.0, 3.0])
    np.testing.assert_array_equal(observed[0, :, 0], [False, True, False, True])
    standardiser = Standardiser.fit(values)
    assert standardiser.mean.tolist() == [3.0, 2.0]
    x = model_inputs(values, standardiser)
    assert x.dtype == np.float32
    assert x.shape == (1, 4, 4)
    assert x[0, 0, 0] == 0.0  # before the first measurement: the mean
    np.testing.assert_allclose(x[0, 3, :2], [1 / np.sqrt(2), 1 / np.sqrt(2)], rtol=1e-6)
    np.testing.assert_array_equal(x[0, :, 3], [1, 0, 0, 1])
