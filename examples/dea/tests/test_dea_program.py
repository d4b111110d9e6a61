"""The program interface: input checks, what each retailer receives, disclosure rules."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from types import MappingProxyType, SimpleNamespace
from typing import Any

import dea_data
import numpy as np
import pandas as pd
import pytest
from dea_analysis import disclosure, main
from dea_analysis.validation import InvalidInput
from hypothesis import given, settings
from hypothesis import strategies as st

PARAMS = {"inputs": ",".join(dea_data.INPUTS), "outputs": ",".join(dea_data.OUTPUTS)}
OWNERS = {"sites-1": "party-aur", "sites-2": "party-bir", "sites-3": "party-cob"}


def _context(k: int = 5, owners: dict[str, str] | None = None) -> Any:
    return SimpleNamespace(min_group_size=k, owners=MappingProxyType(owners or OWNERS))


def _inputs(scale: float = 1.0, seed: int = 0) -> dict[str, pd.DataFrame]:
    tables = {}
    for i, retailer in enumerate(dea_data.RETAILERS):
        table, _ = dea_data.generate_sites(
            dea_data.site_count(retailer, scale),
            seed=seed + i,
            sigma=retailer.sigma,
            prefix=retailer.prefix,
        )
        tables[f"sites-{i + 1}"] = table
    return tables


# -- bad inputs --------------------------------------------------------------------------------


def _with(dataset: str, change: Any) -> dict[str, pd.DataFrame]:
    inputs = _inputs(0.5)
    inputs[dataset] = change(inputs[dataset].copy())
    return inputs


def _set(column: str, rows: slice, value: Any) -> Any:
    def change(table: pd.DataFrame) -> pd.DataFrame:
        if value is None or isinstance(value, str):
            table[column] = table[column].astype(object)
        table.loc[table.index[rows], column] = value
        return table

    return change


BAD_INPUTS = {
    "missing column": ("sites-2", lambda t: t.drop(columns=["opex"]), "opex", "no column"),
    "missing site column": ("sites-1", lambda t: t.drop(columns=["site"]), "site", "no column"),
    "non-numeric": (
        "sites-3",
        lambda t: t.assign(revenue=t["revenue"].map(lambda v: f"EUR {v}")),
        "revenue",
        "not numeric",
    ),
    "boolean": ("sites-1", lambda t: t.assign(opex=t["opex"] > 1e6), "opex", "not numeric"),
    "negative input": (
        "sites-2",
        _set("staff_hours", slice(0, 3), -5.0),
        "staff_hours",
        "3 negative",
    ),
    "negative output": (
        "sites-3",
        _set("transactions", slice(2, 3), -1),
        "transactions",
        "1 negative",
    ),
    "missing values": (
        "sites-1",
        _set("floor_area_m2", slice(0, 2), np.nan),
        "floor_area_m2",
        "2 missing",
    ),
    "infinite": ("sites-2", _set("revenue", slice(0, 1), np.inf), "revenue", "infinite"),
    "all-zero input column": (
        "sites-3",
        lambda t: t.assign(opex=0.0),
        "opex",
        "zero for every site",
    ),
    "all-zero output column": (
        "sites-2",
        lambda t: t.assign(transactions=0),
        "transactions",
        "zero for every site",
    ),
    "no sites": ("sites-2", lambda t: t.iloc[0:0], "sites-2", "no sites"),
    "no columns at all": ("sites-3", lambda t: pd.DataFrame(), "sites-3", "no sites"),
    "duplicate site ids": ("sites-1", _set("site", slice(1, 2), "AUR-0001"), "site", "1 duplicate"),
    "missing site id": ("sites-1", _set("site", slice(1, 2), None), "site", "missing site id"),
    "site with no positive input": (
        "sites-2",
        lambda t: t.assign(**{c: t[c].where(t.index != 4, 0.0) for c in dea_data.INPUTS}),
        "floor_area_m2",
        "1 site(s) with no positive input",
    ),
    "site with no positive output": (
        "sites-1",
        lambda t: t.assign(**{c: t[c].where(t.index != 0, 0) for c in dea_data.OUTPUTS}),
        "revenue",
        "no positive output",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_are_rejected_naming_dataset_and_column(case: str) -> None:
    dataset, change, column, rule = BAD_INPUTS[case]
    inputs = _with(dataset, change)
    with pytest.raises(InvalidInput) as raised:
        main.run(inputs, dict(PARAMS), _context())
    message = str(raised.value)
    assert f"'{dataset}'" in message
    assert column in message
    assert rule in message
    # Messages leave the enclave: no site ids or data values in them.
    assert not re.search(r"[A-Z]{3}-\d{4}", message)
    assert not re.search(r"\d+\.\d+", message)


@pytest.mark.parametrize(
    ("parameters", "named"),
    [
        ({"outputs": "revenue"}, "'inputs'"),
        ({**PARAMS, "inputs": "opex,,staff_hours"}, "'inputs'"),
        ({**PARAMS, "inputs": "opex,opex"}, "'inputs'"),
        ({**PARAMS, "outputs": "revenue,opex"}, "opex"),
        ({**PARAMS, "outputs": "site"}, "'outputs'"),
        ({**PARAMS, "returns": "drs"}, "'returns'"),
        ({**PARAMS, "orientation": "sideways"}, "'orientation'"),
        ({**PARAMS, "slacks": "yes"}, "'slacks'"),
        ({**PARAMS, "weights": "1,2"}, "weights"),
    ],
)
def test_bad_parameters_are_rejected(parameters: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(named)):
        main.run(_inputs(0.3), parameters, _context())


def test_a_dataset_without_an_owner_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="'sites-3' has no owner"):
        main.run(_inputs(0.3), dict(PARAMS), _context(owners={"sites-1": "a", "sites-2": "b"}))


# -- what each retailer receives ------------------------------------------------------------


def test_each_retailer_sees_its_own_scores_and_only_labels_of_other_sites() -> None:
    inputs = _inputs()
    out = main.run(inputs, {**PARAMS, "slacks": True}, _context())
    scores, peers = out["scores"], out["peers"]
    assert isinstance(scores, pd.DataFrame)
    assert isinstance(peers, pd.DataFrame)
    assert len(scores) == sum(len(t) for t in inputs.values())
    for dataset, owner in OWNERS.items():
        own_ids = set(inputs[dataset]["site"])
        mine = scores[scores["_owner"] == owner]
        assert set(mine["site"]) == own_ids
        assert set(mine["dataset"]) == {dataset}
        shown = peers[peers["_owner"] == owner]
        assert set(shown["site"]) <= own_ids
        # Every peer is an own site by id or a competitor by an opaque label.
        competitor = shown[~shown["peer_own"]]
        assert set(shown[shown["peer_own"]]["peer"]) <= own_ids
        assert all(re.fullmatch(r"C\d{2,}", p) for p in competitor["peer"])
        assert len(competitor) > 0
        # Rows follow what the recipient sees, never the pooled order (which
        # would group competitor peers by dataset).
        for _, group in shown.groupby(["site", "model"], sort=False):
            seen = list(zip(~group["peer_own"], group["peer"], strict=True))
            assert seen == sorted(seen)
        # Peers are listed for inefficient sites only.
        for model in ("crs", "vrs"):
            inefficient = set(mine[~mine[f"efficient_{model}"]]["site"])
            assert set(shown[shown["model"] == model]["site"]) == inefficient
    for column in ("theta_crs", "theta_vrs", "scale_efficiency"):
        assert scores[column].between(0, 1).all()
    assert (scores["theta_crs"] <= scores["theta_vrs"] + 1e-9).all()
    meta = out["meta"]
    assert isinstance(meta, dict)
    assert not any(isinstance(v, float) for v in meta.values())


def test_peer_weights_can_be_withheld_and_vrs_weights_sum_to_one() -> None:
    inputs = _inputs(0.5)
    with_weights = main.run(inputs, dict(PARAMS), _context())["peers"]
    without = main.run(inputs, {**PARAMS, "peer_weights": False}, _context())["peers"]
    assert isinstance(with_weights, pd.DataFrame)
    assert isinstance(without, pd.DataFrame)
    assert "weight" not in without.columns
    pd.testing.assert_frame_equal(with_weights.drop(columns=["weight"]), without)
    vrs = with_weights[with_weights["model"] == "vrs"].groupby("site")["weight"].sum()
    np.testing.assert_allclose(vrs, 1.0, atol=1e-6)


def test_output_orientation_reports_farrell_phi() -> None:
    inputs = _inputs(0.5)
    out_in = main.run(inputs, {**PARAMS, "returns": "crs"}, _context())["scores"]
    out_out = main.run(inputs, {**PARAMS, "returns": "crs", "orientation": "output"}, _context())[
        "scores"
    ]
    assert isinstance(out_in, pd.DataFrame)
    assert isinstance(out_out, pd.DataFrame)
    assert "phi_crs" in out_out.columns
    assert "theta_vrs" not in out_in.columns
    assert (out_out["phi_crs"] >= 1).all()
    np.testing.assert_allclose(out_out["phi_crs"], 1 / out_in["theta_crs"], rtol=1e-8)


def test_pooled_tables_respect_min_group_size_for_every_retailer() -> None:
    inputs = _inputs()
    k = 5
    out = main.run(inputs, dict(PARAMS), _context(k))
    scores, dist, summary = out["scores"], out["distribution"], out["summary"]
    assert isinstance(scores, pd.DataFrame)
    assert isinstance(dist, pd.DataFrame)
    assert isinstance(summary, pd.DataFrame)
    for model in ("crs", "vrs"):
        bins = dist[dist["model"] == model]
        assert bins["sites"].sum() == len(scores)
        eff = scores[f"theta_{model}"]
        for row in bins.itertuples():
            efficient = scores[f"efficient_{model}"]
            if row.lower == row.upper:
                inside = scores[efficient]
            elif row.includes_upper:
                inside = scores[eff >= row.lower]
            else:
                inside = scores[(eff >= row.lower) & (eff < row.upper) & ~efficient]
            assert len(inside) == row.sites
            counts = Counter(inside["_owner"])
            assert all(row.sites - counts[o] >= k for o in OWNERS.values())
        stats = summary[summary["model"] == model].set_index("statistic")
        assert stats.loc["mean", "efficiency"] == pytest.approx(eff.mean(), abs=1e-9)
        assert list(stats.index) == ["mean", "p10", "p25", "p50", "p75", "p90"]
        assert (stats["sites"] >= k).all()
        for q in (10, 50, 90):
            assert stats.loc[f"p{q}", "efficiency"] == pytest.approx(
                np.quantile(eff, q / 100), abs=0.05
            )


def test_one_retailer_alone_gets_no_pooled_statistics() -> None:
    inputs = {"sites-1": _inputs()["sites-1"]}
    out = main.run(inputs, dict(PARAMS), _context(owners={"sites-1": "only"}))
    dist, summary, meta = out["distribution"], out["summary"], out["meta"]
    assert isinstance(dist, pd.DataFrame)
    assert isinstance(summary, pd.DataFrame)
    assert isinstance(meta, dict)
    assert dist.empty
    assert summary.empty
    assert meta["summary_statistics_suppressed"] == 12


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.01, 1.0), st.sampled_from("abcd")), min_size=0, max_size=60),
    st.integers(1, 8),
)
def test_histogram_and_quantile_windows_never_rest_on_fewer_than_k_others(
    sites: list[tuple[float, str]], k: int
) -> None:
    eff = np.asarray([e for e, _ in sites])
    owners = [o for _, o in sites]
    efficient = [bool(e >= 1.0 - 1e-6) for e in eff]
    bins, _ = disclosure.histogram(eff, efficient, owners, k)
    if bins:
        assert sum(b.sites for b in bins) == len(sites)
        assert all(b.sites >= k for b in bins)
        assert bins[-1].upper == 1.0
        assert bins[-1].closed
        # Bins tile (0, 1] without gaps or overlaps.
        assert bins[0].lower == 0.0
        assert all(a.upper == b.lower for a, b in itertools.pairwise(bins))
    else:
        assert not disclosure.enough(owners, k)
    for q in disclosure.QUANTILES:
        window = disclosure.windowed_quantile(eff, owners, q, k)
        if window is not None:
            assert k <= window[1] <= len(sites)
            assert eff.min() - 1e-12 <= window[0] <= eff.max() + 1e-12


def test_competitor_labels_are_per_recipient_and_reveal_no_order() -> None:
    key = disclosure.peer_key([b"pooled data"])
    peers = list(range(40))
    a = disclosure.competitor_labels(key, "party-a", peers)
    b = disclosure.competitor_labels(key, "party-b", peers)
    assert sorted(a.values()) == sorted(b.values()) == [f"C{i:02d}" for i in range(1, 41)]
    assert a != b
    assert [a[p] for p in peers] != sorted(a.values())
    assert disclosure.competitor_labels(key, "party-a", peers) == a
    assert disclosure.competitor_labels(disclosure.peer_key([b"other"]), "party-a", peers) != a
