"""The program's memory pages (``Limits.huge_pages``): the program gets the
kernel's transparent huge page policy unless the enclave's operator turns
huge pages off. Real sandboxes; the kernel's own account of the process is
the evidence."""

from __future__ import annotations

import ctypes
import json
from pathlib import Path

from sandbox_probe import make_probe_spec

from nestor.enclave.sandbox import Limits, run_program

PR_GET_THP_DISABLE = 42
# Asks the kernel about its own process (prctl; /proc is not in every sandbox).
PROGRAM = f"""
import ctypes

def run(inputs, parameters, context):
    disabled = ctypes.CDLL(None).prctl({PR_GET_THP_DISABLE}, 0, 0, 0, 0)
    return {{"pages": {{"thp_enabled": 1 - disabled}}}}
"""


def thp_enabled(tmp_path: Path, limits: Limits, **run: object) -> int:
    spec = make_probe_spec(tmp_path, PROGRAM)
    run_program(spec, limits=limits, **run)  # type: ignore[arg-type]
    value = json.loads((spec.output_dir / "pages.json").read_text())["thp_enabled"]
    assert isinstance(value, int)
    return value


def own_thp_enabled() -> int:
    disabled = ctypes.CDLL(None).prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0)
    assert disabled in (0, 1)
    return int(1 - disabled)


def test_the_program_gets_the_kernels_policy_by_default(tmp_path: Path, backend: str) -> None:
    assert own_thp_enabled() == 1
    assert thp_enabled(tmp_path, Limits(wall_time_s=60), backend=backend) == 1


def test_the_operator_can_turn_huge_pages_off(tmp_path: Path, backend: str) -> None:
    assert own_thp_enabled() == 1  # the enclave's own process keeps them
    limits = Limits(wall_time_s=60, huge_pages=False)
    assert thp_enabled(tmp_path, limits, backend=backend) == 0


def test_the_unsandboxed_test_mode_gets_the_same_pages(tmp_path: Path) -> None:
    limits = Limits(wall_time_s=60, huge_pages=False)
    assert thp_enabled(tmp_path, limits, insecure_no_sandbox=True) == 0
