"""The bundle run as the enclave runs it: in the bubblewrap sandbox, over
real files, with the outputs checked afterwards by the enclave's code."""

from __future__ import annotations

import types
from pathlib import Path

import mobility_ev_data
import mobility_ev_scenario
import pandas as pd
import pytest
from mobility_ev.main import run

from nestor.enclave.sandbox import InputFile, Limits, ProgramError, ProgramSpec, run_program
from nestor.programs.bundle import bundle_digest, copy_bundle

BUNDLE = Path(__file__).resolve().parents[1] / "program"
LIMITS = Limits(wall_time_s=120, memory_mb=2048)
OWNERS = {
    "zones": "sha256:" + "11" * 32,
    "trips-1": "sha256:" + "11" * 32,
    "trips-2": "sha256:" + "22" * 32,
    "trips-3": "sha256:" + "33" * 32,
}


def spec_for(tmp_path: Path, paths: dict[str, Path], parameters: dict[str, object]) -> ProgramSpec:
    out = tmp_path / "out"
    out.mkdir()
    return ProgramSpec(
        program="mobility-ev",
        bundle=copy_bundle(BUNDLE, tmp_path / "bundle"),
        entry_point="mobility_ev.main:run",
        inputs={name: InputFile(path, "csv") for name, path in paths.items()},
        output_dir=out,
        parameters=parameters,
        min_group_size=mobility_ev_scenario.MIN_GROUP_SIZE,
        owners=OWNERS,
    )


def test_sandboxed_run_matches_the_plain_program(tmp_path: Path) -> None:
    paths = mobility_ev_data.write_region(tmp_path / "data", seed=5, scale=0.5)
    zone_ids = pd.read_csv(paths["zones"])["zone_id"].tolist()
    parameters = mobility_ev_scenario.job_parameters(zone_ids)
    spec = spec_for(tmp_path, paths, parameters)
    assert bundle_digest(spec.bundle).startswith("sha256:")

    result = run_program(spec, limits=LIMITS)

    assert result.sandboxed
    assert set(result.outputs) == {
        "od_matrix", "od_totals", "sites", "objectives", "own_zone_trips", "meta",
    }  # fmt: skip
    context = types.SimpleNamespace(
        min_group_size=mobility_ev_scenario.MIN_GROUP_SIZE, owners=OWNERS
    )
    expected = run({k: pd.read_csv(v) for k, v in paths.items()}, dict(parameters), context)
    for name in ("od_matrix", "od_totals", "sites", "objectives", "own_zone_trips"):
        frame = expected[name]
        assert isinstance(frame, pd.DataFrame)
        text = frame.to_csv(index=False, lineterminator="\n")
        assert result.outputs[name].path.read_text() == text, name
    od = pd.read_csv(result.outputs["od_matrix"].path)
    assert len(od) > 0
    assert (od["trips"] >= mobility_ev_scenario.MIN_GROUP_SIZE).all()


def test_sandbox_reports_a_rejected_input_by_dataset_and_column(tmp_path: Path) -> None:
    paths = mobility_ev_data.write_region(tmp_path / "data", seed=6, scale=0.1)
    trips = pd.read_csv(paths["trips-2"])
    trips.loc[trips.index[:4], "distance_km"] = -2.5
    trips.to_csv(paths["trips-2"], index=False)

    with pytest.raises(ProgramError) as caught:
        run_program(spec_for(tmp_path, paths, {"p": 2}), limits=LIMITS)

    message = str(caught.value)
    assert "rejected its inputs" in message
    assert "'trips-2'" in message
    assert "'distance_km'" in message
    assert "-2.5" not in message
