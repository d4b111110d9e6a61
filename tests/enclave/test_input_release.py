"""Inputs deleted once the program host has loaded them
(``ProgramSpec.release_inputs``), and the program host's CPU time and page
faults per phase (``Timings.usage``). Real sandboxes, real files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sandbox_probe import make_probe_spec

from nestor.enclave import program_host
from nestor.enclave.sandbox import (
    LOADED_MESSAGE,
    InputFile,
    Limits,
    ProgramError,
    ProgramSpec,
    run_program,
)

LIMITS = Limits(wall_time_s=60, memory_mb=2048)
# Waits up to `wait_s` for its own input file to disappear, then burns
# `spin_s` of CPU: what it saw is its output.
PROGRAM = """
import os, time

def run(inputs, parameters, context):
    path = parameters["path"]
    deadline = time.monotonic() + parameters["wait_s"]
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    gone = not os.path.exists(path)
    start = time.process_time()
    while time.process_time() - start < parameters["spin_s"]:
        pass
    return {"seen": {"gone": gone, "rows": int(len(inputs["d"]))}}
"""


def make_spec(
    tmp_path: Path, *, release: bool, wait_s: float, spin_s: float = 0.0, text: str | None = None
) -> tuple[ProgramSpec, Path]:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    data = inputs / "d.csv"
    data.write_text(text if text is not None else "a,b\n1,2\n3,4\n5,6\n")
    spec = make_probe_spec(
        tmp_path,
        PROGRAM,
        inputs={"d": InputFile(data, "csv", pending=True)},
        parameters={"path": str(data), "wait_s": wait_s, "spin_s": spin_s},
        release_inputs=release,
    )
    return spec, data


def seen(tmp_path: Path) -> dict[str, object]:
    value = json.loads((tmp_path / "out" / "seen.json").read_text())
    assert isinstance(value, dict)
    return value


def test_inputs_are_gone_while_the_program_runs(tmp_path: Path, backend: str) -> None:
    spec, data = make_spec(tmp_path, release=True, wait_s=20)
    run_program(spec, limits=LIMITS, backend=backend)
    assert seen(tmp_path) == {"gone": True, "rows": 3}
    assert not data.exists()


def test_without_release_the_inputs_stay(tmp_path: Path, backend: str) -> None:
    spec, data = make_spec(tmp_path, release=False, wait_s=0.5)
    run_program(spec, limits=LIMITS, backend=backend)
    assert seen(tmp_path) == {"gone": False, "rows": 3}
    assert data.exists()


def test_an_input_that_fails_to_load_is_not_released(tmp_path: Path) -> None:
    # The program host never says "loaded": the caller still holds the file
    # (and deletes it itself, as it does after every run).
    spec, data = make_spec(tmp_path, release=True, wait_s=0, text='a,b\n"unclosed\n')
    with pytest.raises(ProgramError) as caught:
        run_program(spec, limits=LIMITS, backend="landlock")
    assert caught.value.kind == "bad-input"
    assert "dataset 'd' cannot be read as csv" in caught.value.message
    assert data.exists()


def test_phase_usage_separates_loading_from_the_program(tmp_path: Path) -> None:
    spec, _ = make_spec(tmp_path, release=False, wait_s=0, spin_s=0.6)
    result = run_program(spec, limits=LIMITS, backend="landlock")
    usage = result.timings.usage
    assert set(usage) == {"inputs", "program"}
    program = usage["program"]
    assert program.user_s + program.sys_s >= 0.5
    assert program.user_s + program.sys_s <= result.timings.cpu_s
    assert usage["inputs"].minor_faults > 0  # importing pandas touches memory
    assert program.minor_faults >= 0


def test_the_loaded_message_is_what_the_program_host_sends(tmp_path: Path) -> None:
    r, w = os.pipe()
    try:
        program_host.say_loaded(w)
        assert os.read(r, 64) == LOADED_MESSAGE
        with pytest.raises(OSError, match="Bad file descriptor"):
            os.fstat(w)  # closed: nothing the program starts can inherit it
    finally:
        os.close(r)


@pytest.mark.parametrize("value", [0, 2, -1, "5", True, 3.0])
def test_a_bad_loaded_fd_is_a_malformed_spec(tmp_path: Path, value: object) -> None:
    spec, _ = make_spec(tmp_path, release=False, wait_s=0)
    document = spec.to_json()
    document["loaded_fd"] = value
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(document))
    with pytest.raises(program_host.RunError) as caught:
        program_host.read_spec(path)
    assert caught.value.kind == "bad-spec"
    assert "loaded_fd" in caught.value.message
