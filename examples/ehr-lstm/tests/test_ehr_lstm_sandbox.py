"""The bundle run as the enclave runs it: bubblewrap, one thread, CSV files,
checked outputs; torch must import and train inside."""

from __future__ import annotations

import json
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any

import ehr_lstm_data
import ehr_lstm_scenario
import pandas as pd
import pytest
from ehr_lstm import main

from nestor.enclave.sandbox import InputFile, Limits, ProgramError, ProgramSpec, run_program
from nestor.programs.bundle import bundle_digest, copy_bundle

BUNDLE = Path(__file__).resolve().parents[1] / "program"
LIMITS = Limits(wall_time_s=120, memory_mb=4096)
OWNERS = {f"ehr-{i}": "sha256:" + f"{i}{i}" * 32 for i in (1, 2, 3)}
PARAMETERS = {"hidden_size": 16, "max_epochs": 5, "seed": 3}


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
        program="ehr-lstm",
        bundle=_bundle(tmp_path),
        entry_point="ehr_lstm.main:run",
        inputs={ds: InputFile(path, "csv") for ds, path in files.items()},
        output_dir=out,
        parameters=parameters,
        min_group_size=ehr_lstm_scenario.MIN_GROUP_SIZE,
        owners={ds: OWNERS[ds] for ds in files},
    )
    return run_program(spec, limits=LIMITS)


def test_bundle_digest_covers_only_reviewed_source(tmp_path: Path) -> None:
    copy = _bundle(tmp_path)
    files = sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file())
    assert files == [
        "README.md",
        "ehr_lstm/__init__.py",
        "ehr_lstm/auroc.py",
        "ehr_lstm/disclosure.py",
        "ehr_lstm/errors.py",
        "ehr_lstm/features.py",
        "ehr_lstm/inputs.py",
        "ehr_lstm/main.py",
        "ehr_lstm/model.py",
        "ehr_lstm/parameters.py",
        "ehr_lstm/pipeline.py",
        "ehr_lstm/split.py",
    ]
    assert bundle_digest(copy).startswith("sha256:")


def test_sandboxed_training_matches_the_in_process_run_bit_for_bit(tmp_path: Path) -> None:
    paths = ehr_lstm_data.write_sites(tmp_path / "data", seed=2, scale=0.5)
    files = {f"ehr-{i + 1}": p for i, p in enumerate(paths)}
    result = _run(tmp_path, files, PARAMETERS)
    assert result.sandboxed
    assert set(result.outputs) == {
        "weights",
        "standardisation",
        "model",
        "training",
        "performance",
        "site_performance",
    }
    inputs = {ds: pd.read_csv(p) for ds, p in files.items()}
    context = SimpleNamespace(
        min_group_size=ehr_lstm_scenario.MIN_GROUP_SIZE, owners=MappingProxyType(OWNERS)
    )
    direct = main.run(inputs, dict(PARAMETERS), context)
    for name in ("weights", "performance", "site_performance"):
        sandboxed = pd.read_csv(result.outputs[name].path)
        expected = direct[name]
        assert isinstance(expected, pd.DataFrame)
        # One thread and deterministic kernels in both: the same bits.
        pd.testing.assert_frame_equal(sandboxed, expected, check_dtype=False, check_exact=True)
    card = json.loads(result.outputs["model"].path.read_text())
    assert card["settings"]["seed"] == 3
    assert card["weights"] == len(direct["weights"])


def test_sandboxed_run_rejects_conflicting_labels_naming_dataset_and_column(
    tmp_path: Path,
) -> None:
    paths = ehr_lstm_data.write_sites(tmp_path / "data", seed=4, scale=0.2)
    table = pd.read_csv(paths[2])
    first = table["patient"].iloc[0]
    table.loc[(table["patient"] == first) & (table["hour"] == 7), "target"] = (
        1 - table.loc[0, "target"]
    )
    table.to_csv(paths[2], index=False)
    files = {f"ehr-{i + 1}": p for i, p in enumerate(paths)}
    with pytest.raises(ProgramError) as raised:
        _run(tmp_path, files, PARAMETERS)
    message = str(raised.value)
    assert "rejected its inputs" in message
    assert "'ehr-3'" in message
    assert "'target'" in message
    assert "conflicting labels" in message
    assert str(first) not in message  # the patient stays in the enclave
    assert raised.value.where is None  # a rejection carries no code location
