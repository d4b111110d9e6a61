"""What the enclave tests share (importable by name: pyproject's pytest
``pythonpath`` and mypy's ``mypy_path`` list this directory): which sandbox
backends can run here, and a one-module probe program to run in them."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from nestor.enclave import sandbox_landlock
from nestor.enclave.sandbox import InputFile, ProgramSpec, bwrap_problem, find_bwrap

LANDLOCK_PROBLEM = sandbox_landlock.unavailable_reason()


def working_bwrap() -> str | None:
    bwrap = find_bwrap()
    return bwrap if bwrap is not None and bwrap_problem(bwrap) is None else None


def make_probe_spec(
    directory: Path,
    source: str,
    *,
    inputs: dict[str, InputFile] | None = None,
    **fields: Any,
) -> ProgramSpec:
    """A bundle ``probe`` whose ``main.py`` is ``source`` (entry point
    ``probe.main:run``) and an empty output directory, both in ``directory``;
    ``fields`` are further ``ProgramSpec`` fields."""
    package = directory / "bundle" / "probe"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "main.py").write_text(textwrap.dedent(source))
    out = directory / "out"
    out.mkdir()
    return ProgramSpec(
        program="probe",
        bundle=directory / "bundle",
        entry_point="probe.main:run",
        inputs=inputs or {},
        output_dir=out,
        **fields,
    )
