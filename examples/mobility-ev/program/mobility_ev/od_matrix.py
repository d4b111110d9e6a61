"""The pooled origin–destination matrix, its totals and each agency's own
trip counts, with small cells withheld (rules in :mod:`mobility_ev.suppression`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mobility_ev import suppression
from mobility_ev.inputs import IntArray, Trips, Zones

OWNER = "_owner"


@dataclass(frozen=True)
class OdRelease:
    matrix: pd.DataFrame  # origin_zone, destination_zone, trips: published cells only
    totals: pd.DataFrame  # zone, trips_from, trips_to (blank when withheld)
    grand_total: int | None  # None when withheld
    primary_cells: int  # withheld cells (interior and totals) with a positive count
    complementary_cells: int


def counts(origin: IntArray, destination: IntArray, n_zones: int) -> IntArray:
    flat = np.bincount(origin * n_zones + destination, minlength=n_zones * n_zones)
    return flat.reshape(n_zones, n_zones).astype(np.int64)


def release(trips: Trips, zones: Zones, k: int) -> OdRelease:
    n = len(zones.ids)
    total = suppression.augment(counts(trips.origin, trips.destination, n))
    own = [
        suppression.augment(counts(trips.origin[mine], trips.destination[mine], n))
        for _party, mine in trips.parties()
    ]
    first = suppression.primary(total, own, k)
    withheld = suppression.protect(total, own, first)
    published = ~withheld
    origin, destination = np.nonzero(published[:n, :n])
    matrix = pd.DataFrame(
        {
            "origin_zone": zones.ids[origin],
            "destination_zone": zones.ids[destination],
            "trips": total[origin, destination],
        }
    )
    totals = pd.DataFrame(
        {
            "zone": zones.ids,
            "trips_from": pd.array(np.where(published[:n, n], total[:n, n], 0), dtype="Int64"),
            "trips_to": pd.array(np.where(published[n, :n], total[n, :n], 0), dtype="Int64"),
        }
    )
    totals.loc[withheld[:n, n], "trips_from"] = pd.NA
    totals.loc[withheld[n, :n], "trips_to"] = pd.NA
    positive = total > 0
    return OdRelease(
        matrix=matrix,
        totals=totals,
        grand_total=None if withheld[n, n] else int(total[n, n]),
        primary_cells=int((first & positive).sum()),
        complementary_cells=int((withheld & ~first).sum()),
    )


def own_counts(trips: Trips, zones: Zones, k: int, totals: pd.DataFrame) -> pd.DataFrame:
    """Each party's own trips from and to each zone, for ``view: own``; zones
    with nothing to show are left out.

    A recipient with the full view sees every party's rows, knows its own and
    sees the pooled totals, so per zone the parties' counts form a line whose
    total may be published: counts below ``k`` are blank, and where that
    leaves a single positive count hidden from some party's view, the next
    smallest goes too (:func:`suppression.protect_line`)."""
    n = len(zones.ids)
    parties = trips.parties()
    table = {
        column: np.stack([np.bincount(ends[mine], minlength=n) for _p, mine in parties]).astype(
            np.int64
        )
        for column, ends in (("trips_from", trips.origin), ("trips_to", trips.destination))
    }  # party × zone
    eye = np.eye(len(parties), dtype=np.int64)
    frames = {column: pd.DataFrame(counts, dtype="Int64") for column, counts in table.items()}
    for column, values in table.items():
        total_withheld = totals[column].isna().to_numpy()
        for z in range(n):
            line = values[:, z]
            withheld, _ = suppression.protect_line(
                line, [eye[q] * line for q in range(len(parties))], line < k, total_withheld[z]
            )
            frames[column].loc[withheld, z] = pd.NA
    rows = []
    for q, (owner, _mine) in enumerate(parties):
        frame = pd.DataFrame(
            {
                OWNER: owner,
                "zone": zones.ids,
                "trips_from": frames["trips_from"].iloc[q].to_numpy(),
                "trips_to": frames["trips_to"].iloc[q].to_numpy(),
            }
        ).astype({"trips_from": "Int64", "trips_to": "Int64"})
        rows.append(frame[frame["trips_from"].notna() | frame["trips_to"].notna()])
    return pd.concat(rows, ignore_index=True)
