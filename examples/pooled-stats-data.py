"""Synthetic inputs for the pooled-stats example bundle (kept outside the bundle,
whose every file counts towards its digest).

    python examples/pooled-stats-data.py OUT_DIR [--rows 5000] [--parties 3]

writes OUT_DIR/visits-1.csv ... with the columns patient, age, ward,
length_of_stay_days, readmitted. Each file gets a few rows of a rare ward
("icu") so that small-group suppression has something to suppress.
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

WARDS = ("cardiology", "oncology", "surgery", "geriatrics")
COLUMNS = ("patient", "age", "ward", "length_of_stay_days", "readmitted")


def write_visits(path: Path, rows: int, seed: int, rare: int = 3) -> None:
    rng = random.Random(seed)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for i in range(rows + rare):
            ward = rng.choice(WARDS) if i < rows else "icu"
            w.writerow(
                [
                    f"P{seed:02d}{i:06d}",
                    rng.randint(18, 95),
                    ward,
                    round(rng.expovariate(1 / 4.5), 1),
                    int(rng.random() < 0.12),
                ]
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--parties", type=int, default=3)
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for n in range(1, args.parties + 1):
        write_visits(args.out_dir / f"visits-{n}.csv", args.rows, seed=n)


if __name__ == "__main__":
    main()
