"""The example program bundle examples/pooled-stats, run as the enclave runs it.

Its statistics are checked against an independent computation (plain Python
``statistics`` over the generated rows), its suppression against the
counts, its input validation against the messages a data provider would see.
Most runs use ``insecure_no_sandbox`` (the same program host, no
bubblewrap) for speed; one runs through the real sandbox and must give
byte-identical outputs.
"""

from __future__ import annotations

import csv
import io
import math
import random
import statistics
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest

from nestor.enclave.sandbox import (
    InputFile,
    Limits,
    ProgramError,
    ProgramSpec,
    SandboxResult,
    find_bwrap,
    run_program,
)
from nestor.programs.bundle import bundle_digest
from nestor.protocol import canonical

BUNDLE = Path(__file__).resolve().parents[2] / "examples" / "pooled-stats"
ENTRY_POINT = "pooled_stats.main:run"
LIMITS = Limits(wall_time_s=60, memory_mb=2048)
K = 10
OWNERS = {
    "visits-north": "sha256:" + "11" * 32,
    "visits-river": "sha256:" + "22" * 32,
    "visits-lake": "sha256:" + "33" * 32,
}
# (ward, weight): "icu" is rare enough to fall below K in the pool, "burns"
# appears at one hospital only, a few times.
WARDS = [("cardiology", 5), ("oncology", 4), ("surgery", 4), ("geriatrics", 2), ("icu", 0)]

Row = dict[str, object]


def make_visits(seed: int, rows: int, *, rare: dict[str, int] | None = None) -> list[Row]:
    """Synthetic hospital visits: patient, age, ward, length_of_stay_days, readmitted.

    ``rare`` adds that many rows of each named ward (to exercise suppression).
    Some lengths of stay are missing."""
    rng = random.Random(seed)
    names = [w for w, weight in WARDS if weight]
    weights = [weight for _, weight in WARDS if weight]
    wards = rng.choices(names, weights, k=rows)
    for ward, n in (rare or {}).items():
        wards += [ward] * n
    out: list[Row] = []
    for i, ward in enumerate(wards):
        stay: object = round(rng.expovariate(1 / 4.5), 1)
        if rng.random() < 0.03:
            stay = ""  # missing
        out.append(
            {
                "patient": f"P{seed:02d}{i:06d}",
                "age": rng.randint(18, 95),
                "ward": ward,
                "length_of_stay_days": stay,
                "readmitted": int(rng.random() < 0.12),
            }
        )
    return out


def write_csv(path: Path, rows: list[Row], columns: list[str] | None = None) -> Path:
    columns = columns or ["patient", "age", "ward", "length_of_stay_days", "readmitted"]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def dataset_rows() -> dict[str, list[Row]]:
    return {
        "visits-north": make_visits(1, 400, rare={"icu": 3, "burns": 4}),
        "visits-river": make_visits(2, 300, rare={"icu": 4}),
        "visits-lake": make_visits(3, 120, rare={"icu": 2}),
    }


def run(
    tmp_path: Path,
    datasets: dict[str, list[Row]] | None = None,
    *,
    parameters: dict[str, object] | None = None,
    files: dict[str, InputFile] | None = None,
    sandboxed: bool = False,
    k: int = K,
) -> SandboxResult:
    tmp_path.mkdir(parents=True, exist_ok=True)
    if files is None:
        files = {}
        for ds, rows in (datasets or dataset_rows()).items():
            files[ds] = InputFile(write_csv(tmp_path / f"{ds}.csv", rows), "csv")
    out = tmp_path / "out"
    out.mkdir()
    spec = ProgramSpec(
        program="pooled-stats",
        bundle=BUNDLE,
        entry_point=ENTRY_POINT,
        inputs=files,
        output_dir=out,
        parameters=parameters or {},
        min_group_size=k,
        owners={ds: OWNERS[ds] for ds in files},
    )
    return run_program(spec, limits=LIMITS, insecure_no_sandbox=not sandboxed)


def read_table(result: SandboxResult, name: str) -> list[dict[str, str]]:
    text = result.outputs[name].path.read_text()
    return list(csv.DictReader(io.StringIO(text)))


def read_meta(result: SandboxResult) -> dict[str, canonical.JsonValue]:
    value = canonical.decode(result.outputs["meta"].path.read_bytes())
    assert isinstance(value, dict)
    return value


def expected_summary(datasets: dict[str, list[Row]], k: int) -> dict[str, dict[str, float]]:
    """The statistics, computed without pandas."""
    stays: dict[str, list[float]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    readmitted: dict[str, list[int]] = defaultdict(list)
    for rows in datasets.values():
        for r in rows:
            ward = str(r["ward"])
            counts[ward] += 1
            readmitted[ward].append(int(str(r["readmitted"])))
            if r["length_of_stay_days"] != "":
                stays[ward].append(float(str(r["length_of_stay_days"])))
    return {
        ward: {
            "count": n,
            "mean": statistics.fmean(stays[ward]),
            "std": statistics.stdev(stays[ward]),
            "min": min(stays[ward]),
            "max": max(stays[ward]),
            "rate": statistics.fmean(readmitted[ward]),
        }
        for ward, n in counts.items()
        if n >= k
    }


def test_the_bundle_has_no_bytecode_and_a_stable_digest() -> None:
    first = bundle_digest(BUNDLE)  # raises if a run had left __pycache__ behind
    assert first.startswith("sha256:")


def test_pooled_statistics_match_an_independent_computation(tmp_path: Path) -> None:
    datasets = dataset_rows()
    result = run(tmp_path, datasets)
    summary = read_table(result, "summary")
    expected = expected_summary(datasets, K)
    assert [r["ward"] for r in summary] == sorted(expected)
    assert list(summary[0]) == [
        "ward",
        "count",
        "length_of_stay_days_mean",
        "length_of_stay_days_std",
        "length_of_stay_days_min",
        "length_of_stay_days_max",
        "readmitted_mean",
    ]
    for row in summary:
        want = expected[row["ward"]]
        assert int(row["count"]) == want["count"]
        for column, key in [
            ("length_of_stay_days_mean", "mean"),
            ("length_of_stay_days_std", "std"),
            ("length_of_stay_days_min", "min"),
            ("length_of_stay_days_max", "max"),
            ("readmitted_mean", "rate"),
        ]:
            assert math.isclose(float(row[column]), want[key], rel_tol=1e-12), (row, column)
    # One table per group-by column and per value column, not a cross product.
    assert result.outputs["summary"].kind == "table"


def test_small_groups_are_suppressed_and_counted(tmp_path: Path) -> None:
    datasets = dataset_rows()
    result = run(tmp_path, datasets)
    wards = {r["ward"] for r in read_table(result, "summary")}
    assert "icu" not in wards  # 3 + 4 + 2 = 9 records < 10
    assert "burns" not in wards  # 4 records at one hospital
    meta = read_meta(result)
    assert meta == {
        "group_by": "ward",
        "value_column": "length_of_stay_days",
        "min_group_size": K,
        "rows": {ds: len(rows) for ds, rows in datasets.items()},
        "rows_without_group": 0,
        "groups": 4,
        "suppressed_groups": 2,
        "suppressed_owner_cells": meta["suppressed_owner_cells"],
    }
    # With k = 1 nothing is suppressed.
    everything = run(tmp_path / "k1", datasets, k=1)
    assert {r["ward"] for r in read_table(everything, "summary")} == wards | {"icu", "burns"}
    assert read_meta(everything)["suppressed_groups"] == 0


def test_per_owner_counts_are_suppressed_per_cell_and_carry_the_owner(tmp_path: Path) -> None:
    datasets = dataset_rows()
    result = run(tmp_path, datasets)
    table = read_table(result, "per_owner")
    assert list(table[0]) == ["_owner", "ward", "count"]
    cells: dict[tuple[str, str], int] = defaultdict(int)
    for ds, rows in datasets.items():
        for r in rows:
            cells[(OWNERS[ds], str(r["ward"]))] += 1
    kept = {key: n for key, n in cells.items() if n >= K}
    assert {(r["_owner"], r["ward"]): int(r["count"]) for r in table} == kept
    assert read_meta(result)["suppressed_owner_cells"] == len(cells) - len(kept)
    # The enclave's view: own keeps the rows whose _owner is the recipient.
    lake = [r for r in table if r["_owner"] == OWNERS["visits-lake"]]
    assert lake
    assert all(int(r["count"]) >= K for r in lake)


def test_parameters_choose_the_columns(tmp_path: Path) -> None:
    datasets = dataset_rows()
    result = run(tmp_path, datasets, parameters={"group_by": "readmitted", "value_column": "age"})
    summary = read_table(result, "summary")
    assert [r["readmitted"] for r in summary] == ["0", "1"]
    ages = [int(str(r["age"])) for rows in datasets.values() for r in rows if r["readmitted"] == 1]
    row = summary[1]
    assert int(row["count"]) == len(ages)
    assert math.isclose(float(row["age_mean"]), statistics.fmean(ages), rel_tol=1e-12)
    assert int(float(row["age_min"])) == min(ages)


def test_parquet_and_csv_inputs_pool_together(tmp_path: Path) -> None:
    datasets = dataset_rows()
    files = {
        ds: InputFile(write_csv(tmp_path / f"{ds}.csv", rows), "csv")
        for ds, rows in datasets.items()
    }
    parquet = tmp_path / "river.parquet"
    frame = pd.read_csv(files["visits-river"].path)
    frame.to_parquet(parquet)
    files["visits-river"] = InputFile(parquet, "parquet")
    mixed = run(tmp_path / "mixed", files=files)
    plain = run(tmp_path / "plain", datasets)
    assert mixed.outputs["summary"].path.read_bytes() == plain.outputs["summary"].path.read_bytes()


@pytest.mark.parametrize(
    ("change", "parameters", "expected"),
    [
        ("drop-ward", {}, "dataset 'visits-river' has no column 'ward'"),
        (
            "drop-stay",
            {},
            "dataset 'visits-river' has no column 'length_of_stay_days'",
        ),
        ("text-stay", {}, "column 'length_of_stay_days' of dataset 'visits-river' is not numeric"),
        ("empty", {}, "dataset 'visits-river' is empty"),
        ("none", {"group_by": "postcode"}, "dataset 'visits-lake' has no column 'postcode'"),
        ("none", {"colour": "red"}, "unknown parameter(s) colour (known: group_by, value_column)"),
        ("none", {"value_column": 3}, "parameter 'value_column' must be a non-empty column name"),
        ("drop-rate", {}, "column 'readmitted' is in dataset(s) visits-lake, visits-north but "
         "not in visits-river"),
    ],
)  # fmt: skip
def test_input_validation_names_the_dataset_and_the_column(
    tmp_path: Path, change: str, parameters: dict[str, object], expected: str
) -> None:
    datasets = dataset_rows()
    columns = ["patient", "age", "ward", "length_of_stay_days", "readmitted"]
    river = datasets["visits-river"]
    files = {
        ds: InputFile(write_csv(tmp_path / f"{ds}.csv", rows), "csv")
        for ds, rows in datasets.items()
    }
    path = tmp_path / "river-changed.csv"
    if change.startswith("drop-"):
        gone = {"drop-ward": "ward", "drop-stay": "length_of_stay_days", "drop-rate": "readmitted"}
        write_csv(path, river, [c for c in columns if c != gone[change]])
    elif change == "text-stay":
        write_csv(
            path, [{**r, "length_of_stay_days": f"{r['length_of_stay_days']}d"} for r in river]
        )
    elif change == "empty":
        write_csv(path, [])
    else:
        write_csv(path, river)
    files["visits-river"] = InputFile(path, "csv")
    with pytest.raises(ProgramError) as info:
        run(tmp_path / "run", files=files, parameters=parameters)
    err = info.value
    assert err.kind == "input-rejected"
    assert err.message.startswith("the program 'pooled-stats' rejected its inputs: ")
    assert expected in err.message
    assert err.where is None  # the program's verdict, not a crash: no code location
    # Messages name datasets and columns, never values.
    assert "P02" not in err.message


@pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap (bwrap) is not installed")
def test_the_sandboxed_run_gives_the_same_outputs(tmp_path: Path) -> None:
    datasets = dataset_rows()
    direct = run(tmp_path / "direct", datasets)
    boxed = run(tmp_path / "boxed", datasets, sandboxed=True)
    assert boxed.sandboxed
    assert not direct.sandboxed
    assert set(boxed.outputs) == {"summary", "per_owner", "meta"}
    for name in boxed.outputs:
        assert boxed.outputs[name].path.read_bytes() == direct.outputs[name].path.read_bytes()
    assert bundle_digest(BUNDLE).startswith("sha256:")  # still no bytecode in the bundle
