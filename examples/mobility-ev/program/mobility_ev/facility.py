"""Choosing p facility sites: the p-median and the maximal-covering model.

Both models are mixed-integer programs solved with HiGHS through
``scipy.optimize.milp``. They take a distance matrix (demand points × candidate
sites) and demand weights, so the same functions serve the program (zone
centroids) and the reference checks (OR-Library graphs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import optimize, sparse

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# The models are solved to proven optimality: the reference optima are integers,
# and HiGHS's default relative gap (1e-4) could stop one unit short of them.
_OPTIONS = {"mip_rel_gap": 0.0, "presolve": True}


class SolverFailure(RuntimeError):
    """HiGHS ended without an optimal solution (a time limit or a bug, never the data)."""


@dataclass(frozen=True)
class Siting:
    """An optimal choice of sites.

    ``open`` holds the chosen candidate indices (sorted); ``assigned`` maps each
    demand point to the candidate index serving it (its nearest open site, or
    -1 for demand a covering model leaves uncovered)."""

    open: IntArray
    assigned: IntArray
    objective: float


def _check(distance: FloatArray, weight: FloatArray, p: int) -> None:
    if distance.ndim != 2 or weight.shape != (distance.shape[0],):
        raise ValueError("distance must be demand × candidates and weight one value per demand")
    if not 1 <= p <= distance.shape[1]:
        raise ValueError("p must lie between 1 and the number of candidates")
    if not np.all(np.isfinite(distance)) or np.any(distance < 0):
        raise ValueError("distances must be finite and non-negative")
    if not np.all(np.isfinite(weight)) or np.any(weight < 0):
        raise ValueError("weights must be finite and non-negative")


def _solve(
    cost: FloatArray,
    integrality: npt.NDArray[np.int8],
    constraints: list[optimize.LinearConstraint],
    upper: FloatArray,
) -> FloatArray:
    result = optimize.milp(
        cost,
        integrality=integrality,
        bounds=optimize.Bounds(np.zeros_like(upper), upper),
        constraints=constraints,
        options=_OPTIONS,
    )
    if result.status != 0 or result.x is None:
        raise SolverFailure(f"HiGHS did not find an optimal solution: {result.message}")
    return np.asarray(result.x, dtype=np.float64)


def _nearest_open(distance: FloatArray, chosen: IntArray) -> IntArray:
    # Ties go to the lowest candidate index, so the assignment is deterministic.
    return np.asarray(chosen[np.argmin(distance[:, chosen], axis=1)], dtype=np.int64)


def p_median(distance: FloatArray, weight: FloatArray, p: int) -> Siting:
    """Exactly ``p`` sites minimising the weighted distance of each demand point
    to its nearest open site.

    Assignment formulation: ``y_j`` (binary) opens candidate ``j``, ``x_ij``
    (continuous in [0, 1]) assigns demand ``i`` to it, ``Σ_j x_ij = 1``,
    ``x_ij ≤ y_j``, ``Σ_j y_j = p``. With the ``y`` integral an optimal ``x``
    is integral too (each point goes whole to a nearest open site), so only the
    ``y`` need branching. Demand points of weight zero do not change the optimum
    and are left out of the program."""
    distance = np.asarray(distance, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    _check(distance, weight, p)
    n_points, n_sites = distance.shape
    active = np.flatnonzero(weight > 0)
    if active.size == 0 or p == n_sites:
        chosen = np.arange(n_sites, dtype=np.int64)[:p]
        assigned = _nearest_open(distance, chosen)
        value = float(weight @ distance[np.arange(n_points), assigned])
        return Siting(chosen, assigned, value)
    m = active.size
    n_x = m * n_sites
    cost = np.concatenate([(weight[active, None] * distance[active]).ravel(), np.zeros(n_sites)])
    rows = np.arange(m).repeat(n_sites)
    x_cols = np.arange(n_x)
    assign = sparse.csr_array(
        (np.ones(n_x), (rows, x_cols)), shape=(m, n_x + n_sites)
    )  # Σ_j x_ij = 1
    y_cols = n_x + np.tile(np.arange(n_sites), m)
    link = sparse.csr_array(
        (
            np.concatenate([np.ones(n_x), -np.ones(n_x)]),
            (np.concatenate([x_cols, x_cols]), np.concatenate([x_cols, y_cols])),
        ),
        shape=(n_x, n_x + n_sites),
    )  # x_ij − y_j ≤ 0
    count = sparse.csr_array(
        (np.ones(n_sites), (np.zeros(n_sites, dtype=np.int64), n_x + np.arange(n_sites))),
        shape=(1, n_x + n_sites),
    )  # Σ_j y_j = p
    integrality = np.concatenate([np.zeros(n_x, dtype=np.int8), np.ones(n_sites, dtype=np.int8)])
    x = _solve(
        cost,
        integrality,
        [
            optimize.LinearConstraint(assign, 1.0, 1.0),
            optimize.LinearConstraint(link, -np.inf, 0.0),
            optimize.LinearConstraint(count, p, p),
        ],
        np.ones(n_x + n_sites),
    )
    chosen = np.flatnonzero(x[n_x:] > 0.5).astype(np.int64)
    if chosen.size != p:
        raise SolverFailure(f"HiGHS opened {chosen.size} sites instead of {p}")
    assigned = _nearest_open(distance, chosen)
    value = float(weight @ distance[np.arange(n_points), assigned])
    return Siting(chosen, assigned, value)


def max_cover(distance: FloatArray, weight: FloatArray, p: int, radius: float) -> Siting:
    """Exactly ``p`` sites maximising the demand within ``radius`` of an open site.

    ``y_j`` (binary) opens candidate ``j``; ``z_i`` (continuous in [0, 1]) is
    the covered share of demand ``i``, ``z_i ≤ Σ_{j: d_ij ≤ radius} y_j``,
    ``Σ_j y_j = p``; maximise ``Σ_i w_i z_i``. Covered demand is assigned to its
    nearest open site; the objective is the covered weight."""
    distance = np.asarray(distance, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    _check(distance, weight, p)
    if not np.isfinite(radius) or radius < 0:
        raise ValueError("the covering radius must be finite and non-negative")
    n_points, n_sites = distance.shape
    covers = distance <= radius
    # A point no candidate can reach, or of zero weight, is irrelevant to the choice.
    active = np.flatnonzero((weight > 0) & covers.any(axis=1))
    m = active.size
    cost = np.concatenate([np.zeros(n_sites), -weight[active]])
    block = sparse.csr_array(covers[active].astype(np.float64))
    cover_rows = sparse.hstack(
        [-block, sparse.identity(m, format="csr")], format="csr"
    )  # z_i − Σ y_j ≤ 0
    count = sparse.csr_array(
        np.concatenate([np.ones(n_sites), np.zeros(m)])[None, :]
    )  # Σ_j y_j = p
    constraints = [optimize.LinearConstraint(count, p, p)]
    if m:
        constraints.append(optimize.LinearConstraint(cover_rows, -np.inf, 0.0))
    integrality = np.concatenate([np.ones(n_sites, dtype=np.int8), np.zeros(m, dtype=np.int8)])
    x = _solve(cost, integrality, constraints, np.ones(n_sites + m))
    chosen = np.flatnonzero(x[:n_sites] > 0.5).astype(np.int64)
    if chosen.size != p:
        raise SolverFailure(f"HiGHS opened {chosen.size} sites instead of {p}")
    nearest = _nearest_open(distance, chosen)
    reached = distance[np.arange(n_points), nearest] <= radius
    assigned = np.where(reached, nearest, -1).astype(np.int64)
    value = float(weight[reached].sum())
    return Siting(chosen, assigned, value)
