"""The bundle run as the enclave runs it: bubblewrap sandbox, CSV files, checked outputs."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any

import dea_data
import dea_scenario
import pandas as pd
import pytest
from dea_analysis import main

from nestor.enclave.sandbox import InputFile, Limits, ProgramError, ProgramSpec, run_program
from nestor.programs.bundle import bundle_digest, copy_bundle

BUNDLE = Path(__file__).resolve().parents[1] / "program"
LIMITS = Limits(wall_time_s=120, memory_mb=2048)
OWNERS = {f"sites-{i}": "sha256:" + f"{i}{i}" * 32 for i in (1, 2, 3)}


def _bundle(tmp_path: Path) -> Path:
    # Importing the package from the tests leaves __pycache__ in the source
    # tree; the sandbox (like the enclave) refuses bundles with bytecode.
    copy = tmp_path / "bundle"
    copy_bundle(BUNDLE, copy)
    return copy


def _run(tmp_path: Path, files: dict[str, Path], parameters: dict[str, Any]) -> Any:
    out = tmp_path / "out"
    out.mkdir()
    spec = ProgramSpec(
        program="dea",
        bundle=_bundle(tmp_path),
        entry_point="dea_analysis.main:run",
        inputs={ds: InputFile(path, "csv") for ds, path in files.items()},
        output_dir=out,
        parameters=parameters,
        min_group_size=dea_scenario.MIN_GROUP_SIZE,
        owners={ds: OWNERS[ds] for ds in files},
    )
    return run_program(spec, limits=LIMITS)


def test_bundle_digest_covers_only_reviewed_source(tmp_path: Path) -> None:
    copy = _bundle(tmp_path)
    files = sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file())
    assert files == [
        "README.md",
        "dea_analysis/__init__.py",
        "dea_analysis/disclosure.py",
        "dea_analysis/main.py",
        "dea_analysis/models.py",
        "dea_analysis/validation.py",
    ]
    assert bundle_digest(copy).startswith("sha256:")


def test_sandboxed_run_matches_the_in_process_run(tmp_path: Path) -> None:
    paths = dea_data.write_retailers(tmp_path / "data", seed=4, scale=0.5)
    files = {f"sites-{i + 1}": p for i, p in enumerate(paths)}
    parameters = dict(dea_scenario.JOB_PARAMETERS)
    result = _run(tmp_path, files, parameters)
    assert result.sandboxed
    assert set(result.outputs) == {"scores", "peers", "distribution", "summary", "meta"}
    sandboxed = pd.read_csv(result.outputs["scores"].path)

    inputs = {ds: pd.read_csv(p) for ds, p in files.items()}
    context = SimpleNamespace(
        min_group_size=dea_scenario.MIN_GROUP_SIZE, owners=MappingProxyType(OWNERS)
    )
    direct = main.run(inputs, parameters, context)["scores"]
    assert isinstance(direct, pd.DataFrame)
    pd.testing.assert_frame_equal(sandboxed, direct, check_dtype=False, atol=1e-9)
    assert set(sandboxed["_owner"]) == set(OWNERS.values())


def test_sandboxed_run_rejects_a_negative_input_naming_dataset_and_column(
    tmp_path: Path,
) -> None:
    paths = dea_data.write_retailers(tmp_path / "data", seed=5, scale=0.3)
    table = pd.read_csv(paths[1])
    table.loc[2, "floor_area_m2"] = -120.0
    table.to_csv(paths[1], index=False)
    files = {f"sites-{i + 1}": p for i, p in enumerate(paths)}
    with pytest.raises(ProgramError) as raised:
        _run(tmp_path, files, dict(dea_scenario.JOB_PARAMETERS))
    message = str(raised.value)
    assert "rejected its inputs" in message
    assert "'sites-2'" in message
    assert "'floor_area_m2'" in message
    assert "negative" in message
    assert "120" not in message  # the value itself stays in the enclave
    assert raised.value.where is None  # a rejection carries no code location
