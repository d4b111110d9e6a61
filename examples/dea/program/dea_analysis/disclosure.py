"""What may leave the enclave about sites that are not the recipient's own.

Two rules, applied to every pooled statistic:

- **k sites from others.** A histogram bin, quantile or mean is released only
  if, for every retailer, at least ``k`` (``min_group_size``) of the sites it
  was built from belong to *other* retailers. A retailer knows its own
  scores, so the plain "at least k sites" rule would let it subtract its own
  and look at fewer than k competitor sites.
- **No order statistic is one site's score.** A quantile is published as the
  mean of a window of sorted scores around its position, widened until the
  rule above holds.

Peers are named per recipient: a retailer's own sites by their id, other
retailers' sites by a label (``C01``, ``C02``…) whose order comes from a
keyed hash. The key is a digest of the whole pooled table, so labels are
stable for the same data but no single retailer can compute them, and the
same competitor site gets unrelated labels at different retailers.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dea_analysis.models import Array

# Histogram edges on the (0, 1] efficiency scale; efficient sites get a bin of their own.
EDGES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def enough(owners: Sequence[str], k: int) -> bool:
    """At least k sites remain for every retailer after it removes its own."""
    counts = Counter(owners)
    return len(owners) >= k and all(len(owners) - c >= k for c in counts.values())


@dataclass(frozen=True)
class Bin:
    lower: float
    upper: float
    closed: bool  # upper bound included (only the bin that reaches 1)
    sites: int

    @property
    def label(self) -> str:
        if self.lower == self.upper:
            return f"{self.upper:.1f}"
        return f"[{self.lower:.1f}, {self.upper:.1f}{']' if self.closed else ')'}"


def histogram(
    efficiency: Array, efficient: Sequence[bool], owners: Sequence[str], k: int
) -> tuple[list[Bin], int]:
    """Bins over (0, 1] that each pass :func:`enough`, and how many fixed bins were merged."""
    fixed: list[tuple[float, float, bool, list[str]]] = []
    for lo, hi in itertools.pairwise(EDGES):
        members = [
            o
            for e, eff, o in zip(efficiency, efficient, owners, strict=True)
            if not eff and lo <= e < hi
        ]
        fixed.append((lo, hi, False, members))
    fixed.append((1.0, 1.0, True, [o for eff, o in zip(efficient, owners, strict=True) if eff]))

    # Walk upwards merging small bins into the next; a small tail joins the
    # last bin released. Nothing is released if all sites together fail.
    released: list[tuple[float, float, bool, list[str]]] = []
    lower: float | None = None
    pending: list[str] = []
    for lo, hi, closed, members in fixed:
        lower = lo if lower is None else lower
        pending = pending + members
        if enough(pending, k):
            released.append((lower, hi, closed, pending))
            lower, pending = None, []
    if lower is not None:  # a tail of bins, empty or too small
        if not released:
            return [], len(fixed)
        lo, _, _, members = released.pop()
        released.append((lo, 1.0, True, members + pending))
    bins = [Bin(lo, hi, closed or lo == hi, len(m)) for lo, hi, closed, m in released]
    return bins, len(fixed) - len(bins)


def windowed_quantile(
    efficiency: Array, owners: Sequence[str], q: float, k: int
) -> tuple[float, int] | None:
    """(mean of the window of sorted scores around quantile q, window size), or None."""
    order = np.argsort(efficiency, kind="stable")
    values = efficiency[order]
    owner_sorted = [owners[i] for i in order]
    n = len(values)
    if n == 0:
        return None
    centre = q * (n - 1)
    lo = int(np.clip(round(centre) - k // 2, 0, max(0, n - k)))
    hi = min(n, lo + max(k, 1))
    while not enough(owner_sorted[lo:hi], k):
        if lo == 0 and hi == n:
            return None
        # Widen on the side whose next score is nearer the quantile position.
        if hi < n and (lo == 0 or (hi - centre) <= (centre - (lo - 1))):
            hi += 1
        else:
            lo -= 1
    return float(values[lo:hi].mean()), hi - lo


def peer_key(parts: Sequence[bytes]) -> bytes:
    digest = hashlib.sha256(b"nestor-dea-peer-labels-v1")
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


def competitor_labels(key: bytes, recipient: str, peers: Sequence[int]) -> dict[int, str]:
    """Labels for the other retailers' sites one recipient is shown as peers."""

    def rank(peer: int) -> bytes:
        return hmac.new(key, f"{recipient}\0{peer}".encode(), hashlib.sha256).digest()

    ordered = sorted(set(peers), key=rank)
    width = max(2, len(str(len(ordered))))
    return {peer: f"C{i + 1:0{width}d}" for i, peer in enumerate(ordered)}
