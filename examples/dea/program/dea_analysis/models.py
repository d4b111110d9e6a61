"""Radial DEA models in envelopment form, one HiGHS linear programme per unit.

Conventions (the ones R Benchmarking and DataEnvelopmentAnalysis.jl use):

- input orientation: ``theta = min { t : sum_j l_j x_j <= t x_o, sum_j l_j y_j >= y_o }``,
  so ``0 < theta <= 1`` and 1 means no proportional input saving is possible;
- output orientation: the Farrell ``phi = max { f : sum_j l_j x_j <= x_o,
  sum_j l_j y_j >= f y_o }``, so ``phi >= 1``; the efficiency in ``(0, 1]``
  is ``1 / phi``;
- ``crs`` (CCR) leaves ``l >= 0`` free; ``vrs`` (BCC) adds ``sum_j l_j = 1``.

The score is the radial one. An optional second stage fixes it and maximises
the sum of the input excesses and output shortfalls (each column measured
in units of its mean, so the sum does not depend on the columns' units);
those slacks and the stage-two weights are what a unit would still have to
change after the radial contraction or expansion.

Every unit needs at least one positive input and one positive output (the
caller checks): with no positive input a unit would be a free lunch and
every CRS output score unbounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.optimize import linprog

Returns = Literal["crs", "vrs"]
Orientation = Literal["input", "output"]
Array = npt.NDArray[np.float64]
Index = npt.NDArray[np.intp]

# Scores this close to 1 count as efficient: HiGHS solves the (column-scaled)
# programmes to about 1e-9, and published scores carry 6-10 digits.
EFFICIENT_TOL = 1e-6
# Reference weights below this are solver noise, not peers.
WEIGHT_TOL = 1e-9
# Above this many units the frontier candidates are found block by block first.
BLOCK_SIZE = 300


class SolverFailure(RuntimeError):
    """HiGHS did not return an optimal solution for a unit."""


@dataclass(frozen=True)
class Solution:
    """One model's result for every unit (rows in the order given)."""

    returns: Returns
    orientation: Orientation
    score: Array  # theta (input) or phi (output)
    peers: list[tuple[Index, Array]]  # per unit: reference unit indices and weights
    input_slack: Array | None  # (n, m) in the inputs' own units; None without stage two
    output_slack: Array | None  # (n, s)
    reference_size: int  # frontier candidates the programmes were solved over
    programmes: int  # linear programmes solved

    @property
    def efficiency(self) -> Array:
        """The score on (0, 1]: theta, or 1 / phi."""
        return self.score if self.orientation == "input" else 1.0 / self.score

    def efficient(self) -> npt.NDArray[np.bool_]:
        return np.asarray(np.abs(self.score - 1.0) <= EFFICIENT_TOL)


def _column_scale(values: Array) -> Array:
    # Radial scores do not depend on the units of a column; dividing each by
    # its mean keeps the programme's coefficients near 1 (revenue in euros
    # beside floor area in square metres would otherwise span 5 orders).
    means = values.mean(axis=0)
    return np.where(means > 0, means, 1.0)


def _solve(
    c: Array,
    a_ub: Array | None,
    b_ub: Array | None,
    a_eq: Array | None,
    b_eq: Array | None,
    unit: int,
    what: str,
) -> Array:
    result = linprog(
        c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs"
    )
    if result.status != 0 or result.x is None:
        raise SolverFailure(f"{what}: HiGHS status {result.status} for unit #{unit}")
    return np.asarray(result.x, dtype=np.float64)


def _radial(
    x: Array, y: Array, o: int, ref: Index, returns: Returns, orientation: Orientation
) -> tuple[float, Array]:
    """Stage one for unit ``o`` over reference units ``ref``: (score, weights on ref)."""
    m, s, r = x.shape[1], y.shape[1], len(ref)
    xr, yr = x[ref].T, y[ref].T
    a = np.zeros((m + s, r + 1))
    b = np.zeros(m + s)
    c = np.zeros(r + 1)
    if orientation == "input":
        # min t: X l - t x_o <= 0, -Y l <= -y_o
        a[:m, 0], a[:m, 1:] = -x[o], xr
        a[m:, 1:], b[m:] = -yr, -y[o]
        c[0] = 1.0
    else:
        # max f: X l <= x_o, f y_o - Y l <= 0
        a[:m, 1:], b[:m] = xr, x[o]
        a[m:, 0], a[m:, 1:] = y[o], -yr
        c[0] = -1.0
    a_eq = b_eq = None
    if returns == "vrs":
        a_eq = np.zeros((1, r + 1))
        a_eq[0, 1:] = 1.0
        b_eq = np.ones(1)
    sol = _solve(c, a, b, a_eq, b_eq, o, f"{returns} {orientation} stage one")
    score = float(sol[0])
    # The unit itself is always feasible (l = e_o, score 1): anything past 1
    # is solver tolerance.
    score = min(score, 1.0) if orientation == "input" else max(score, 1.0)
    return score, sol[1:]


def _max_slacks(
    x: Array,
    y: Array,
    o: int,
    ref: Index,
    score: float,
    returns: Returns,
    orientation: Orientation,
) -> tuple[Array, Array, Array] | None:
    """Stage two: (weights on ref, input slacks, output slacks), or None if infeasible."""
    m, s, r = x.shape[1], y.shape[1], len(ref)
    # Variables: l (r), input excess (m), output shortfall (s).
    a = np.zeros((m + s + (returns == "vrs"), r + m + s))
    a[:m, :r], a[:m, r : r + m] = x[ref].T, np.eye(m)
    a[m : m + s, :r], a[m : m + s, r + m :] = y[ref].T, -np.eye(s)
    if returns == "vrs":
        a[m + s, :r] = 1.0
    c = np.concatenate([np.zeros(r), -np.ones(m + s)])
    # The radial score comes from stage one to within HiGHS' tolerance; a
    # hair of slack in its favour keeps stage two feasible.
    for relax in (0.0, 1e-9, 1e-7):
        if orientation == "input":
            target_x, target_y = score * (1.0 + relax) * x[o], y[o]
        else:
            target_x, target_y = x[o], score * (1.0 - relax) * y[o]
        b = np.concatenate([target_x, target_y, np.ones(1) if returns == "vrs" else []])
        result = linprog(c, A_eq=a, b_eq=b, bounds=(0, None), method="highs")
        if result.status == 0 and result.x is not None:
            sol = np.asarray(result.x, dtype=np.float64)
            return sol[:r], sol[r : r + m], sol[r + m :]
    return None


def _frontier_candidates(
    x: Array, y: Array, returns: Returns, orientation: Orientation
) -> tuple[Index, int]:
    """Units that may be efficient, and the programmes solved to find them.

    A unit that is inefficient against a block of units is inefficient
    against all of them, and dropping every such unit leaves the technology
    (the free-disposal hull the units span) unchanged, so every score,
    slack and optimal weight vector can be computed over the survivors
    (Barr & Durchholz 1997, hierarchical decomposition)."""
    n = len(x)
    if n <= 2 * BLOCK_SIZE:
        return np.arange(n, dtype=np.intp), 0
    keep: list[int] = []
    programmes = 0
    for start in range(0, n, BLOCK_SIZE):
        block = np.arange(start, min(start + BLOCK_SIZE, n), dtype=np.intp)
        for o in block:
            score, _ = _radial(x, y, int(o), block, returns, orientation)
            programmes += 1
            if abs(score - 1.0) <= EFFICIENT_TOL:
                keep.append(int(o))
    return np.asarray(keep, dtype=np.intp), programmes


def solve(
    inputs: Array,
    outputs: Array,
    *,
    returns: Returns,
    orientation: Orientation,
    slacks: bool = False,
    prefilter: bool = True,
) -> Solution:
    """Scores (and optionally slacks) of every unit against all units.

    ``inputs`` is (n, m), ``outputs`` (n, s), both finite and non-negative,
    each row with a positive input and a positive output."""
    x_scale, y_scale = _column_scale(inputs), _column_scale(outputs)
    x, y = inputs / x_scale, outputs / y_scale
    n = len(x)
    if prefilter:
        candidates, programmes = _frontier_candidates(x, y, returns, orientation)
    else:
        candidates, programmes = np.arange(n, dtype=np.intp), 0
    in_candidates = np.zeros(n, dtype=bool)
    in_candidates[candidates] = True

    score = np.empty(n)
    peers: list[tuple[Index, Array]] = []
    in_slack = np.zeros_like(x) if slacks else None
    out_slack = np.zeros_like(y) if slacks else None
    for o in range(n):
        # The unit itself keeps its programme feasible whatever was dropped.
        ref = candidates if in_candidates[o] else np.append(candidates, o).astype(np.intp)
        score[o], weights = _radial(x, y, o, ref, returns, orientation)
        programmes += 1
        if slacks:
            stage_two = _max_slacks(x, y, o, ref, float(score[o]), returns, orientation)
            programmes += 1
            if stage_two is not None:
                weights, s_minus, s_plus = stage_two
                assert in_slack is not None
                assert out_slack is not None
                in_slack[o] = np.maximum(s_minus, 0.0) * x_scale
                out_slack[o] = np.maximum(s_plus, 0.0) * y_scale
        used = weights > WEIGHT_TOL
        peers.append((ref[used], weights[used]))
    return Solution(
        returns=returns,
        orientation=orientation,
        score=score,
        peers=peers,
        input_slack=in_slack,
        output_slack=out_slack,
        reference_size=len(candidates),
        programmes=programmes,
    )
