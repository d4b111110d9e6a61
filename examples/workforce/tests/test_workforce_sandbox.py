"""The bundle run the way the enclave runs it: in the bubblewrap sandbox,
from a copy without bytecode, over real CSV files."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import workforce_data as wd
from workforce_model.main import run

from nestor.enclave.sandbox import InputFile, Limits, ProgramError, ProgramSpec, run_program
from nestor.programs.bundle import copy_bundle

BUNDLE = Path(__file__).resolve().parents[1] / "program"
LIMITS = Limits(wall_time_s=120, memory_mb=4096)
PARAMETERS = {"covariates": "tenure_years,remote_share", "reference_structure": "flat"}


def spec_for(tmp_path: Path, paths: list[Path]) -> ProgramSpec:
    bundle = tmp_path / "bundle" / "workforce"
    copy_bundle(BUNDLE, bundle)
    out = tmp_path / "out"
    out.mkdir()
    inputs = {p.stem: InputFile(p, "csv") for p in paths}
    return ProgramSpec(
        program="workforce",
        bundle=bundle,
        entry_point="workforce_model.main:run",
        inputs=inputs,
        output_dir=out,
        parameters=PARAMETERS,
        min_group_size=10,
        owners={ds: f"sha256:{ds}" for ds in inputs},
    )


def test_sandboxed_run_matches_the_program(tmp_path: Path) -> None:
    paths = wd.write_organisations(tmp_path / "data", 3, 20, seed=4, rare_teams=2)
    spec = spec_for(tmp_path, paths)
    result = run_program(spec, limits=LIMITS)
    assert result.sandboxed
    assert set(result.outputs) == {
        "fixed_effects",
        "variance_components",
        "structure_levels",
        "model_fit",
        "by_organisation",
        "meta",
    }
    sandboxed = pd.read_csv(result.outputs["fixed_effects"].path)
    meta = json.loads(result.outputs["meta"].path.read_text())
    assert meta["structure_levels"] == ["flat", "hierarchical", "matrix"]
    assert meta["suppressed_structure_levels"] == 1
    # The same program in this process over the same files gives the same fit,
    # up to the optimizer's tolerance (BLAS thread counts change summation order).
    context = SimpleNamespace(min_group_size=10, owners=dict(spec.owners))
    inputs = {p.stem: pd.read_csv(p) for p in paths}
    direct = run(inputs, dict(PARAMETERS), context)["fixed_effects"]
    assert list(sandboxed["term"]) == list(direct["term"])
    difference = (sandboxed["estimate"] - direct["estimate"]).abs()
    assert (difference <= 1e-3 * direct["std_error"]).all()
    with result.outputs["by_organisation"].path.open() as f:
        rows = list(csv.DictReader(f))
    assert {r["_owner"] for r in rows} == {f"sha256:org-{i}" for i in (1, 2, 3)}
    assert all(int(r["employees"]) >= 10 for r in rows)


def test_sandboxed_run_rejects_a_missing_column(tmp_path: Path) -> None:
    paths = wd.write_organisations(tmp_path / "data", 3, 8, seed=4)
    table = pd.read_csv(paths[1]).drop(columns=["tenure_years"])
    table.to_csv(paths[1], index=False)
    with pytest.raises(ProgramError) as info:
        run_program(spec_for(tmp_path, paths), limits=LIMITS)
    message = str(info.value)
    assert "rejected its inputs" in message
    assert "'org-2'" in message
    assert "'tenure_years'" in message
    assert not list((tmp_path / "out").iterdir())
