"""The published OD matrix: no small cell, true counts, and totals that cannot
be differenced back to a withheld cell, by an outsider or by an agency that
subtracts its own trips."""

from __future__ import annotations

import types
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mobility_ev import suppression
from mobility_ev.main import run
from scipy.optimize import linprog
from scipy.sparse import csgraph, csr_array

OWNERS = ("party-a", "party-b", "party-c")


def trips_from_counts(counts: np.ndarray, zone_ids: list[int]) -> pd.DataFrame:
    """One row per trip for an origin × destination count table."""
    origin, destination = np.nonzero(counts)
    repeat = counts[origin, destination]
    n = int(repeat.sum())
    return pd.DataFrame(
        {
            "trip_id": [f"t{i}" for i in range(n)],
            "origin_zone": np.repeat(np.asarray(zone_ids)[origin], repeat),
            "destination_zone": np.repeat(np.asarray(zone_ids)[destination], repeat),
            "departure_hour": np.full(n, 8),
            "mode": ["car"] * n,
            "distance_km": np.full(n, 4.5),
            "vehicle": ["ev"] * n,
        }
    )


def run_tables(per_owner: list[np.ndarray], k: int) -> tuple[dict[str, Any], list[int]]:
    n = per_owner[0].shape[0]
    zone_ids = [10 + 7 * i for i in range(n)]
    inputs = {
        "zones": pd.DataFrame(
            {"zone_id": zone_ids, "x_km": np.arange(n, dtype=float), "y_km": np.zeros(n)}
        )
    }
    owners = {"zones": OWNERS[0]}
    for a, counts in enumerate(per_owner):
        inputs[f"trips-{a + 1}"] = trips_from_counts(counts, zone_ids)
        owners[f"trips-{a + 1}"] = OWNERS[a]
    context = types.SimpleNamespace(min_group_size=k, owners=owners)
    return run(inputs, {"p": 1}, context), zone_ids


def released_grid(out: dict[str, Any], zone_ids: list[int]) -> np.ndarray:
    """The augmented grid as a reader sees it: counts, NaN where withheld."""
    n = len(zone_ids)
    index = {z: i for i, z in enumerate(zone_ids)}
    grid = np.full((n + 1, n + 1), np.nan)
    for row in out["od_matrix"].itertuples():
        grid[index[row.origin_zone], index[row.destination_zone]] = row.trips
    totals = out["od_totals"].set_index("zone").loc[zone_ids]
    grid[:n, n] = totals["trips_from"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    grid[n, :n] = totals["trips_to"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    total = out["meta"]["od_total_trips"]
    grid[n, n] = np.nan if total is None else total
    return grid


def feasible_range(known: np.ndarray, cell: tuple[int, int]) -> tuple[float, float]:
    """Smallest and largest value of ``cell`` over all non-negative tables that
    agree with the known cells (NaN: unknown) and every line sum."""
    size_r, size_c = known.shape
    unknown = list(zip(*np.nonzero(np.isnan(known)), strict=True))
    column = {c: i for i, c in enumerate(unknown)}
    equations: list[np.ndarray] = []
    rhs: list[float] = []
    lines = [[(i, j) for j in range(size_c - 1)] + [(i, size_c - 1)] for i in range(size_r)]
    lines += [[(i, j) for i in range(size_r - 1)] + [(size_r - 1, j)] for j in range(size_c)]
    for line in lines:  # the parts minus the total are zero
        row = np.zeros(len(unknown))
        constant = 0.0
        for position, c in enumerate(line):
            sign = -1.0 if position == len(line) - 1 else 1.0
            if c in column:
                row[column[c]] += sign
            else:
                constant += sign * known[c]
        equations.append(row)
        rhs.append(-constant)
    objective = np.zeros(len(unknown))
    objective[column[cell]] = 1.0
    bounds = (0, None)
    a, b = np.array(equations), np.array(rhs)
    low = linprog(objective, A_eq=a, b_eq=b, bounds=bounds, method="highs")
    high = linprog(-objective, A_eq=a, b_eq=b, bounds=bounds, method="highs")
    assert low.status == 0
    assert high.status in (0, 3)
    return float(low.fun), (float(-high.fun) if high.status == 0 else np.inf)


@st.composite
def owner_tables(draw: st.DrawFn) -> tuple[list[np.ndarray], int]:
    n = draw(st.integers(2, 4))
    n_owners = draw(st.integers(1, 3))
    k = draw(st.integers(2, 6))
    cells = st.one_of(st.integers(0, 3), st.integers(0, 14))
    tables = [
        np.array(draw(st.lists(cells, min_size=n * n, max_size=n * n)), dtype=np.int64).reshape(
            n, n
        )
        for _ in range(n_owners)
    ]
    return tables, k


@settings(max_examples=40, deadline=None)
@given(owner_tables())
def test_released_od_matrix_protects_every_small_cell(case: tuple[list[np.ndarray], int]) -> None:
    per_owner, k = case
    for table in per_owner:
        if table.sum() == 0:
            table[0, 0] = 1  # an agency with no trips is refused
    out, zone_ids = run_tables(per_owner, k)
    n = len(zone_ids)
    truth = suppression.augment(sum(per_owner, np.zeros_like(per_owner[0])))
    own = [suppression.augment(t) for t in per_owner]
    shown = released_grid(out, zone_ids)
    published = ~np.isnan(shown)

    # Released figures are the true ones and none is small, from anyone's view.
    assert np.array_equal(shown[published], truth[published])
    assert np.all(truth[published] >= k)
    for part in own:
        residual = (truth - part)[published]
        assert not np.any((residual > 0) & (residual < k))
    assert len(out["od_matrix"]) == int(published[:n, :n].sum())

    # No withheld cell with trips of others in it can be pinned by the totals:
    # its feasible range (counts ≥ 0) is at least ±1 wide, for every perspective.
    for part in [np.zeros_like(truth), *own]:
        residual = truth - part
        known = np.where(published, residual, np.nan)
        for cell in zip(*np.nonzero(~published & (residual > 0)), strict=True):
            low, high = feasible_range(known, cell)
            assert low <= residual[cell] <= high
            assert high - low >= 2 - 1e-6, (cell, low, high)


def test_a_lone_small_cell_gets_a_complementary_partner() -> None:
    counts = np.array([[40, 30, 3], [25, 50, 60], [35, 45, 55]])
    out, zone_ids = run_tables([counts], k=10)
    shown = released_grid(out, zone_ids)
    assert np.isnan(shown[0, 2])
    # Row 0's total is published, so another cell of that row must go too, and
    # a second row must lose a cell in column 2 to protect the column total.
    assert np.isnan(shown[0, :2]).sum() >= 1
    assert np.isnan(shown[1:3, 2]).sum() >= 1
    assert out["meta"]["od_cells_withheld_complementary"] >= 3
    assert out["meta"]["od_cells_withheld_primary"] == 1


def test_a_cell_another_agency_could_difference_is_withheld() -> None:
    big = np.full((2, 2), 50)
    small = np.zeros((2, 2), dtype=np.int64)
    small[0, 1] = 3  # 53 in all is above k, but agency A knows its own 50
    out, zone_ids = run_tables([big, small], k=10)
    assert np.isnan(released_grid(out, zone_ids)[0, 1])


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 5), st.integers(2, 5), st.data())
def test_bridges_are_the_edges_whose_removal_disconnects(
    rows: int, cols: int, data: st.DataObject
) -> None:
    edges = np.array(
        data.draw(st.lists(st.booleans(), min_size=rows * cols, max_size=rows * cols))
    ).reshape(rows, cols)

    def components(mask: np.ndarray) -> np.ndarray:
        i, j = np.nonzero(mask)
        graph = csr_array((np.ones(len(i)), (i, rows + j)), shape=(rows + cols, rows + cols))
        labels: np.ndarray = csgraph.connected_components(graph, directed=False)[1]
        return labels

    expected = []
    for i, j in zip(*np.nonzero(edges), strict=True):
        without = edges.copy()
        without[i, j] = False
        label = components(without)
        if label[i] != label[rows + j]:
            expected.append((int(i), int(j)))
    assert suppression.bridges(edges) == sorted(expected)


def test_protect_line_needs_two_withheld_cells_per_view() -> None:
    values = np.array([30, 4, 25, 40])
    withheld, total = suppression.protect_line(
        values, [np.zeros(4, dtype=np.int64)], values < 10, False
    )
    assert withheld.tolist() == [False, True, True, False]
    assert not total
    alone = np.array([4])
    withheld, total = suppression.protect_line(alone, [], alone < 10, False)
    assert total  # one cell and its total: the total goes


@pytest.mark.parametrize("k", [1, 5])
def test_own_table_blanks_small_counts(k: int) -> None:
    counts = np.array([[12, 2], [0, 7]])
    out, _zone_ids = run_tables([counts], k=k)
    own = out["own_zone_trips"]
    assert set(own["_owner"]) == {OWNERS[0]}
    values = pd.concat([own["trips_from"], own["trips_to"]]).dropna()
    assert (values >= k).all()


def test_full_view_cannot_difference_an_agency_out_of_a_zone_total() -> None:
    # Zone 0's trips_from: A 30, B 25, C 5. A (full view) knows its 30 and sees
    # the pooled 60: with B's 25 shown, C's 5 would follow; B's count must go.
    a = np.array([[20, 10], [20, 20]])
    b = np.array([[15, 10], [20, 20]])
    c = np.array([[5, 0], [20, 20]])
    out, zone_ids = run_tables([a, b, c], k=10)
    own = out["own_zone_trips"].set_index(["_owner", "zone"])
    assert out["od_totals"].set_index("zone").loc[zone_ids[0], "trips_from"] == 60
    assert pd.isna(own.loc[(OWNERS[2], zone_ids[0]), "trips_from"])
    assert pd.isna(own.loc[(OWNERS[1], zone_ids[0]), "trips_from"])
    # Then C, knowing its 5, would get B's 25 from A's 30: A's count goes too.
    assert pd.isna(own.loc[(OWNERS[0], zone_ids[0]), "trips_from"])
    assert own.loc[(OWNERS[0], zone_ids[1]), "trips_from"] == 40


@settings(max_examples=40, deadline=None)
@given(owner_tables())
def test_own_tables_leave_no_single_hidden_count_under_a_published_total(
    case: tuple[list[np.ndarray], int],
) -> None:
    per_owner, k = case
    for table in per_owner:
        if table.sum() == 0:
            table[0, 0] = 1
    out, zone_ids = run_tables(per_owner, k)
    own = out["own_zone_trips"]
    totals = out["od_totals"].set_index("zone")
    for axis, column in ((1, "trips_from"), (0, "trips_to")):
        truth = np.stack([t.sum(axis=axis) for t in per_owner])  # party × zone
        for z, zone in enumerate(zone_ids):
            if pd.isna(totals.loc[zone, column]):
                continue
            here = own[(own["zone"] == zone) & own[column].notna()]
            shown = dict(zip(here["_owner"], here[column], strict=True))
            for q in range(len(per_owner)):  # a full-view recipient knowing its own
                hidden = [
                    a
                    for a in range(len(per_owner))
                    if a != q and truth[a, z] > 0 and OWNERS[a] not in shown
                ]
                assert len(hidden) != 1, (column, zone, q)
            for owner, value in shown.items():
                assert value == truth[OWNERS.index(owner), z]
                assert value >= k
