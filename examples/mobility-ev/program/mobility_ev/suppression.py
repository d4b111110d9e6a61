"""Small-cell suppression that totals cannot undo.

A table is published with its margins, so a suppressed cell must not be
recoverable from the published cells and totals, by an outsider or by a
party that subtracts its own contribution (every agency knows its own
trips). The rules, applied from every *perspective* ``q`` (the outsider, whose
own contribution is zero, and each party):

1. **Primary suppression.** A cell (interior or margin) is withheld when its
   count is below ``k``, or when some party's residual ``count − own_q`` lies
   in ``1 … k−1`` (that party could read the others' small count off it).
2. **Complementary suppression.** Put the table with its margins in the
   usual augmented form: an (R+1) × (C+1) grid whose last row and column
   hold the totals. Every line equation "cells = total" is then a vertex of a
   bipartite graph (one vertex per grid row and per grid column) and every
   withheld cell an edge. For perspective ``q`` take the withheld cells whose
   residual is positive. If such a cell lies on a cycle of such cells, moving
   ``+t, −t, +t, …`` around the cycle keeps every line sum and keeps every
   value non-negative for small ``t``: the published figures cannot pin it,
   even knowing that counts are ≥ 0. A cell on no cycle (a *bridge*) is
   determined by the line sums. So we withhold more cells until no
   perspective's graph has a bridge: for each bridge, the cheapest path (cost
   = the count of each further cell withheld) between its two ends that
   avoids it.

Withheld cells whose residual is zero are zeros a reader may be able to
infer (a route nobody else travelled); a zero describes no one, so it is not
protected. Coalitions of parties pooling their own data are not considered.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def augment(counts: IntArray) -> IntArray:
    """The table with its row totals as a last column, column totals as a last
    row, and the grand total in the corner."""
    rows, cols = counts.shape
    out = np.zeros((rows + 1, cols + 1), dtype=np.int64)
    out[:rows, :cols] = counts
    out[:rows, cols] = counts.sum(axis=1)
    out[rows, :cols] = counts.sum(axis=0)
    out[rows, cols] = counts.sum()
    return out


def primary(total: IntArray, own: Sequence[IntArray], k: int) -> BoolArray:
    """Cells built from fewer than ``k`` records, by anyone's reckoning."""
    withheld = total < k
    for part in own:
        residual = total - part
        withheld |= (residual > 0) & (residual < k)
    return np.asarray(withheld, dtype=np.bool_)


def bridges(edges: BoolArray) -> list[tuple[int, int]]:
    """The cells of ``edges`` (a bipartite graph: grid row ``i`` — grid column
    ``j``) that lie on no cycle, in row-major order (Tarjan's bridge algorithm,
    iterative)."""
    n_rows, n_cols = edges.shape
    n = n_rows + n_cols
    adjacency: list[list[int]] = [[] for _ in range(n)]
    for i, j in zip(*np.nonzero(edges), strict=True):
        adjacency[int(i)].append(n_rows + int(j))
        adjacency[n_rows + int(j)].append(int(i))
    order = [-1] * n
    low = [0] * n
    found: list[tuple[int, int]] = []
    counter = 0
    for root in range(n):
        if order[root] >= 0 or not adjacency[root]:
            continue
        order[root] = low[root] = counter
        counter += 1
        # (vertex, parent, next neighbour index); the graph is simple, so
        # skipping the parent vertex skips exactly the tree edge.
        stack: list[tuple[int, int, int]] = [(root, -1, 0)]
        while stack:
            v, parent, index = stack[-1]
            if index < len(adjacency[v]):
                stack[-1] = (v, parent, index + 1)
                w = adjacency[v][index]
                if w == parent:
                    continue
                if order[w] < 0:
                    order[w] = low[w] = counter
                    counter += 1
                    stack.append((w, v, 0))
                else:
                    low[v] = min(low[v], order[w])
                continue
            stack.pop()
            if parent >= 0:
                low[parent] = min(low[parent], low[v])
                if low[v] > order[parent]:
                    a, b = (parent, v) if parent < n_rows else (v, parent)
                    found.append((a, b - n_rows))
    return sorted(found)


def _cheapest_path(weight: npt.NDArray[np.float64], start: int, end: int) -> list[tuple[int, int]]:
    """Cells on a cheapest path from grid row ``start`` to grid column ``end``
    in the complete bipartite graph with cell costs ``weight`` (inf: no edge);
    Dijkstra on the dense grid."""
    n_rows, n_cols = weight.shape
    dist_r = np.full(n_rows, np.inf)
    dist_c = np.full(n_cols, np.inf)
    prev_r = np.full(n_rows, -1, dtype=np.int64)  # column reached from
    prev_c = np.full(n_cols, -1, dtype=np.int64)  # row reached from
    done_r = np.zeros(n_rows, dtype=np.bool_)
    done_c = np.zeros(n_cols, dtype=np.bool_)
    dist_r[start] = 0.0
    while True:
        open_r = np.where(done_r, np.inf, dist_r)
        open_c = np.where(done_c, np.inf, dist_c)
        i, j = int(np.argmin(open_r)), int(np.argmin(open_c))
        if min(open_r[i], open_c[j]) == np.inf:
            raise ValueError("no path closes the cycle")  # cannot happen for positive cells
        if open_c[j] < open_r[i]:
            if j == end:
                break
            done_c[j] = True
            via = dist_c[j] + weight[:, j]
            better = via < dist_r
            dist_r[better] = via[better]
            prev_r[better] = j
        else:
            done_r[i] = True
            via = dist_r[i] + weight[i, :]
            better = via < dist_c
            dist_c[better] = via[better]
            prev_c[better] = i
    path: list[tuple[int, int]] = []
    col = end
    while True:
        row = int(prev_c[col])
        path.append((row, col))
        if row == start:
            return path
        col = int(prev_r[row])
        path.append((row, col))


def protect(total: IntArray, own: Sequence[IntArray], withheld: BoolArray) -> BoolArray:
    """``withheld`` grown by complementary suppression until, from every
    perspective, each withheld cell of positive residual lies on a cycle of
    such cells. ``total`` and ``own`` are augmented grids."""
    withheld = withheld.copy()
    residuals = [total, *(total - part for part in own)]
    while True:
        changed = False
        for residual in residuals:
            positive = residual > 0
            for row, col in bridges(withheld & positive):
                # Cost of closing a cycle: nothing through cells already withheld,
                # the count of each published cell it would withhold.
                weight = np.where(positive, total, np.inf).astype(np.float64)
                weight[withheld & positive] = 0.0
                weight[row, col] = np.inf
                for cell in _cheapest_path(weight, row, col):
                    if not withheld[cell]:
                        withheld[cell] = True
                        changed = True
        if not changed:
            return withheld


def protect_line(
    values: IntArray, own: Sequence[IntArray], withheld: BoolArray, total_withheld: bool
) -> tuple[BoolArray, bool]:
    """The same rule for one line of cells and its published total: from every
    perspective, no single withheld cell of positive residual (the total minus
    the visible cells would give it); withhold the smallest further cell, or
    the total itself."""
    withheld = withheld.copy()
    residuals = [values, *(values - part for part in own)]
    while not total_withheld:
        changed = False
        for residual in residuals:
            positive = residual > 0
            if int((withheld & positive).sum()) != 1:
                continue
            candidates = np.flatnonzero(positive & ~withheld)
            if candidates.size:
                withheld[candidates[np.argmin(values[candidates])]] = True
            else:
                total_withheld = True
            changed = True
        if not changed:
            break
    return withheld, total_withheld
