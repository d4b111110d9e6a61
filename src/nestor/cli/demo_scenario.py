"""What `nestor demo --example NAME` needs to know about an example.

An example under ``examples/NAME/`` ships a module ``NAME_scenario.py``
(dashes become underscores) with a function

    def build(work_dir: Path, *, seed: int, scale: float) -> Scenario

that writes each party's synthetic plaintext under ``work_dir`` and describes
the collaboration: the parties, their datasets, the program bundle and its
output policy, and the job to run. The demo does everything else with the
same library calls as the ``nestor`` commands (identities, contract, host,
attestation, upload, job, results, receipts, audit log).

The scenario runs on the party side: nothing in it reaches the enclave except
through the signed contract and the program bundle's digest.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from nestor.client import contracts
from nestor.client.party import Party
from nestor.errors import ConfigurationError
from nestor.protocol.contract import Contract


@dataclass(frozen=True)
class ScenarioDataset:
    """One party's input: a plaintext file the generator wrote."""

    dataset_id: str
    owner: int  # index into Scenario.parties
    description: str
    fmt: str  # contract dataset format: csv, parquet, jsonl, arrow
    columns: tuple[tuple[str, str], ...]  # (name, contract column type)
    path: Path


@dataclass(frozen=True)
class Scenario:
    name: str  # as in `nestor demo --example NAME`
    title: str  # the contract's title
    collaboration_id: str
    parties: tuple[str, ...]
    datasets: tuple[ScenarioDataset, ...]
    program_id: str
    bundle: Path  # the program bundle directory (its digest goes in the contract)
    entry_point: str
    program_description: str
    parameters: Mapping[str, Mapping[str, Any]]  # contract parameter declarations
    job_parameters: Mapping[str, Any]
    recipients: tuple[tuple[int, str], ...]  # (party index, "full" | "own")
    min_group_size: int
    submitter: int = 0
    # Lines to narrate for one party's decrypted result files (name → path).
    describe_result: Callable[[str, Mapping[str, Path]], list[str]] = field(
        default=lambda party, files: []
    )


def scenario_module_path(examples: Path, name: str) -> Path:
    return examples / name / f"{name.replace('-', '_')}_scenario.py"


def available(examples: Path) -> list[str]:
    return sorted(
        p.name
        for p in examples.iterdir()
        if p.is_dir() and scenario_module_path(examples, p.name).is_file()
    )


def load_module(examples: Path, name: str) -> ModuleType:
    """Imports ``examples/NAME/NAME_scenario.py``."""
    path = scenario_module_path(examples, name)
    if not path.is_file():
        known = ", ".join(["pooled-stats", *available(examples)])
        raise ConfigurationError(
            f"there is no example named {name!r} (no {path})", hint=f"known examples: {known}"
        )
    module_name = f"nestor_example_{name.replace('-', '_')}_scenario"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"cannot load the example scenario {path}")
    module = importlib.util.module_from_spec(spec)
    # The example's own helpers (its data generator) sit beside the scenario.
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    sys.modules[module_name] = module
    return module


def load(examples: Path, name: str, work_dir: Path, *, seed: int, scale: float) -> Scenario:
    """The scenario of example NAME: its ``build`` run over ``work_dir``."""
    module = load_module(examples, name)
    build = getattr(module, "build", None)
    if not callable(build):
        raise ConfigurationError(
            f"{module.__file__} has no function build(work_dir, *, seed, scale)"
        )
    scenario = build(work_dir, seed=seed, scale=scale)
    if not isinstance(scenario, Scenario):
        got = type(scenario).__name__
        raise ConfigurationError(f"{module.__file__}: build() returned {got}, not a Scenario")
    return scenario


def draft_contract(
    scenario: Scenario,
    members: Sequence[Party],
    *,
    bundle: Path,
    measurement: str,
    not_before: datetime,
    not_after: datetime,
    max_runs: int | None = None,
    retention: dict[str, Any] | None = None,
) -> Contract:
    """The unsigned contract a scenario describes: its parties (``members``,
    in the scenario's order) with the roles their datasets, results and jobs
    need, its datasets, its program (``bundle``'s digest) and a policy that
    accepts the simulated TEE measuring ``measurement``."""
    draft = contracts.new_contract(
        scenario.title, scenario.collaboration_id, not_before=not_before, not_after=not_after
    )
    providers = {ds.owner for ds in scenario.datasets}
    recipients = {i for i, _ in scenario.recipients}
    for i, m in enumerate(members):
        roles = (
            (["data-provider"] if i in providers else [])
            + (["result-recipient"] if i in recipients else [])
            + (["job-submitter"] if i == scenario.submitter else [])
        )
        draft = contracts.add_party(draft, m.card, roles)
    for ds in scenario.datasets:
        draft = contracts.add_dataset(
            draft,
            dataset_id=ds.dataset_id,
            owner=members[ds.owner].card.party_id,
            description=ds.description,
            fmt=ds.fmt,
            columns=list(ds.columns),
        )
    draft = contracts.add_program(
        draft,
        program_id=scenario.program_id,
        bundle=bundle,
        entry_point=scenario.entry_point,
        description=scenario.program_description,
        inputs=[ds.dataset_id for ds in scenario.datasets],
        recipients=[(members[i].card.party_id, view) for i, view in scenario.recipients],
        min_group_size=scenario.min_group_size,
        parameters={k: dict(v) for k, v in scenario.parameters.items()},
    )
    return contracts.set_policy(
        draft,
        platforms=[{"platform": "simulated", "measurements": [measurement]}],
        submitters=[members[scenario.submitter].card.party_id],
        max_runs=max_runs,
        retention=retention,
    )
