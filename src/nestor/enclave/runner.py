"""Runs a job's program in the sandbox (``nestor.enclave.sandbox``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nestor.enclave.sandbox import InputFile, Limits, ProgramSpec, run_program
from nestor.enclave.service import ProgramRunner, format_phases

log = logging.getLogger("nestor.enclave")


def make_runner(
    *, time_limit: int = 600, memory_limit_mb: int = 8192, huge_pages: bool = True
) -> ProgramRunner:
    limits = Limits(wall_time_s=float(time_limit), memory_mb=memory_limit_mb, huge_pages=huge_pages)

    def run(
        *,
        bundle: Path,
        entry_point: str,
        inputs: Mapping[str, tuple[Path, str]],
        parameters: Mapping[str, Any],
        context: Mapping[str, Any],
        out_dir: Path,
    ) -> dict[str, Path]:
        spec = ProgramSpec(
            program=bundle.name,
            bundle=bundle,
            entry_point=entry_point,
            # The enclave service delivers inputs while the program starts
            # (nestor.enclave.sandbox.InputFile.pending).
            inputs={ds: InputFile(path, fmt, pending=True) for ds, (path, fmt) in inputs.items()},
            output_dir=out_dir,
            parameters=dict(parameters),
            min_group_size=int(context.get("min_group_size", 1)),
            owners=dict(context.get("owners", {})),
            # The service made these files for this run: they go as soon as
            # the program has loaded them.
            release_inputs=True,
        )
        result = run_program(spec, limits=limits)
        LAST_TIMINGS.clear()
        LAST_TIMINGS.update(
            {
                "sandbox_start": result.timings.start_s,
                "read_inputs": result.timings.inputs_s,
                "program": result.timings.program_s,
                "write_outputs": result.timings.outputs_s,
            }
        )
        for phase, used in result.timings.usage.items():
            LAST_TIMINGS[f"{phase}_user"] = used.user_s
            LAST_TIMINGS[f"{phase}_sys"] = used.sys_s
            LAST_TIMINGS[f"{phase}_faults"] = float(used.minor_faults)
        log.info("program %s ran: %s", bundle.name, format_phases(LAST_TIMINGS))
        return result.paths

    return run


# Phases of the last sandboxed run, for benchmarks (seconds).
LAST_TIMINGS: dict[str, float] = {}
