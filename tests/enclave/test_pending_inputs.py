"""Inputs delivered while the program starts (``InputFile.pending``).

The enclave renames each whole, verified input into a directory the sandbox
already binds; the program host waits for it, or for its ``.failed``
marker. Real sandboxes (bubblewrap and Landlock), real threads delivering
late."""

from __future__ import annotations

import os
import textwrap
import threading
import time
from pathlib import Path

import pytest
from sandbox_probe import make_probe_spec

from nestor.enclave.sandbox import (
    FAILED_SUFFIX,
    InputFile,
    Limits,
    ProgramError,
    ProgramSpec,
    find_bwrap,
    run_program,
)
from nestor.protocol import canonical

LIMITS = Limits(wall_time_s=30, memory_mb=2048)
PROGRAM = """
def run(inputs, parameters, context):
    return {"meta": {name: int(len(t)) for name, t in sorted(inputs.items())}}
"""


def spec(tmp_path: Path, inputs: dict[str, InputFile]) -> ProgramSpec:
    return make_probe_spec(tmp_path, PROGRAM, inputs=inputs)


def deliver_later(staging: Path, target: Path, rows: int, delay: float) -> threading.Thread:
    def work() -> None:
        time.sleep(delay)
        part = staging / target.name
        part.write_text("a,b\n" + "".join(f"{i},{i * 2}\n" for i in range(rows)))
        part.rename(target)

    t = threading.Thread(target=work)
    t.start()
    return t


def test_inputs_renamed_in_after_the_start_are_read_whole(tmp_path: Path, backend: str) -> None:
    inputs_dir, staging = tmp_path / "inputs", tmp_path / "staging"
    inputs_dir.mkdir()
    staging.mkdir()
    first, second = inputs_dir / "a.csv", inputs_dir / "b.csv"
    threads = [
        deliver_later(staging, first, 1000, 0.5),
        deliver_later(staging, second, 2500, 1.0),
    ]
    try:
        result = run_program(
            spec(
                tmp_path,
                {"a": InputFile(first, "csv", True), "b": InputFile(second, "csv", True)},
            ),
            limits=LIMITS,
            backend=backend,
        )
    finally:
        for t in threads:
            t.join()
    assert canonical.decode(result.outputs["meta"].path.read_bytes()) == {"a": 1000, "b": 2500}


def test_a_failed_delivery_stops_the_program_before_it_runs(tmp_path: Path, backend: str) -> None:
    inputs_dir = tmp_path / "inputs"
    inputs_dir.mkdir()
    good, bad = inputs_dir / "a.csv", inputs_dir / "b.csv"
    good.write_text("a\n1\n")

    def refuse() -> None:
        time.sleep(0.3)
        (inputs_dir / ("b.csv" + FAILED_SUFFIX)).touch()

    t = threading.Thread(target=refuse)
    t.start()
    try:
        with pytest.raises(ProgramError) as info:
            run_program(
                spec(
                    tmp_path, {"a": InputFile(good, "csv", True), "b": InputFile(bad, "csv", True)}
                ),
                limits=LIMITS,
                backend=backend,
            )
    finally:
        t.join()
    err = info.value
    assert err.kind == "input-unavailable"
    assert "dataset 'b' could not be delivered" in err.message
    assert list((tmp_path / "out").iterdir()) == []


def test_a_pending_input_that_never_comes_ends_at_the_time_limit(
    tmp_path: Path, backend: str
) -> None:
    inputs_dir = tmp_path / "inputs"
    inputs_dir.mkdir()
    with pytest.raises(ProgramError) as info:
        run_program(
            spec(tmp_path, {"a": InputFile(inputs_dir / "a.csv", "csv", True)}),
            limits=Limits(wall_time_s=2, memory_mb=2048),
            backend=backend,
        )
    assert info.value.kind == "time-limit"


def test_the_program_sees_only_the_inputs_directory_not_the_staging_next_to_it(
    tmp_path: Path,
) -> None:
    # Only the directory of pending inputs is bound: a half-written file in
    # the staging directory beside it stays invisible to the program.
    inputs_dir, staging = tmp_path / "inputs", tmp_path / "staging"
    inputs_dir.mkdir()
    staging.mkdir()
    (staging / "a.csv").write_text("a\n1\n")
    (inputs_dir / "a.csv").write_text("a\n1\n2\n")
    probe = spec(tmp_path, {"a": InputFile(inputs_dir / "a.csv", "csv", True)})
    (probe.bundle / "probe" / "main.py").write_text(
        textwrap.dedent(
            f"""
            import os
            def run(inputs, parameters, context):
                return {{"meta": {{"staging": os.path.exists({str(staging / "a.csv")!r}),
                                   "rows": int(len(inputs["a"]))}}}}
            """
        )
    )
    backend = "bwrap" if find_bwrap() is not None else "landlock"
    result = run_program(probe, limits=LIMITS, backend=backend)
    assert canonical.decode(result.outputs["meta"].path.read_bytes()) == {
        "staging": False,
        "rows": 2,
    }
    assert os.path.exists(staging / "a.csv")
