"""The p-median solver against the OR-Library instances pmed1–pmed5
(J.E. Beasley 1985), read from the shared reference data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mobility_ev.facility import p_median
from scipy.sparse import csgraph, csr_array

REFERENCE = Path(__file__).resolve().parents[3].parent / "shared" / "reference-data"
FACILITY = REFERENCE / "facility-location"
# The optima the reference README states; pmedopt.txt must agree with them.
PUBLISHED = {"pmed1": 5819, "pmed2": 4093, "pmed3": 4250, "pmed4": 3034, "pmed5": 1355}


def load_instance(name: str) -> tuple[np.ndarray, int]:
    """All-pairs shortest paths of an OR-Library graph and its p. An edge that
    appears twice takes its last cost (the reference README's convention)."""
    lines = (FACILITY / f"{name}.txt").read_text().split("\n")
    n, n_edges, p = (int(v) for v in lines[0].split())
    cost: dict[tuple[int, int], int] = {}
    for line in lines[1 : 1 + n_edges]:
        i, j, c = (int(v) for v in line.split())
        cost[(min(i, j) - 1, max(i, j) - 1)] = c
    assert len(lines[1 : 1 + n_edges]) == n_edges
    rows, cols = zip(*cost, strict=True)
    graph = csr_array((list(cost.values()), (rows, cols)), shape=(n, n))
    return csgraph.shortest_path(graph, directed=False), p


def optima_file() -> dict[str, int]:
    values: dict[str, int] = {}
    for line in (FACILITY / "pmedopt.txt").read_text().splitlines()[1:]:
        parts = line.split()
        if len(parts) == 2:
            values[parts[0]] = int(parts[1])
    return values


def test_optima_file_agrees_with_the_readme() -> None:
    table = optima_file()
    assert {name: table[name] for name in PUBLISHED} == PUBLISHED
    assert len(table) == 40


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_p_median_reaches_the_published_optimum(name: str) -> None:
    distance, p = load_instance(name)
    assert np.all(np.isfinite(distance))  # the graph is connected
    siting = p_median(distance, np.ones(len(distance)), p)
    assert len(siting.open) == p
    assert siting.objective == pytest.approx(optima_file()[name], abs=1e-6)
    # The reported value is the one the chosen sites really give.
    assert distance[:, siting.open].min(axis=1).sum() == pytest.approx(siting.objective)


def test_duplicate_edges_keep_their_last_cost() -> None:
    # pmed1 lists some edges twice; keeping the cheaper cost gives 5718, not 5819.
    lines = (FACILITY / "pmed1.txt").read_text().split("\n")
    n, n_edges, p = (int(v) for v in lines[0].split())
    seen: dict[tuple[int, int], int] = {}
    for line in lines[1 : 1 + n_edges]:
        i, j, c = (int(v) for v in line.split())
        key = (min(i, j) - 1, max(i, j) - 1)
        seen[key] = min(c, seen.get(key, c))
    rows, cols = zip(*seen, strict=True)
    cheapest = csgraph.shortest_path(
        csr_array((list(seen.values()), (rows, cols)), shape=(n, n)), directed=False
    )
    assert p_median(cheapest, np.ones(n), p).objective == pytest.approx(5718)
