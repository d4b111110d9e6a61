"""The program sandbox, with real bubblewrap and real processes.

Each probe program is a tiny bundle written into ``tmp_path``; most import
no pandas, so a run costs tens of milliseconds. Tests that need bubblewrap
are skipped, with the reason, only where it is not installed.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nestor.enclave import sandbox
from nestor.enclave.sandbox import (
    InputFile,
    Limits,
    ProgramError,
    ProgramSpec,
    SandboxError,
    SandboxResult,
    find_bwrap,
    run_program,
    seccomp_filter,
)
from nestor.protocol import canonical

needs_bwrap = pytest.mark.skipif(
    find_bwrap() is None,
    reason="bubblewrap (bwrap) is not installed: apt-get install bubblewrap",
)
REPO = Path(__file__).resolve().parents[2]
FAST = Limits(wall_time_s=20, memory_mb=1024)


def make_bundle(root: Path, source: str, *, package: str = "probe") -> Path:
    pkg = root / "bundle" / package
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "main.py").write_text(textwrap.dedent(source))
    return root / "bundle"


def make_spec(
    tmp_path: Path,
    source: str,
    *,
    inputs: dict[str, InputFile] | None = None,
    owners: dict[str, str] | None = None,
) -> ProgramSpec:
    out = tmp_path / "out"
    out.mkdir(parents=True)
    return ProgramSpec(
        program="probe",
        bundle=make_bundle(tmp_path, source),
        entry_point="probe.main:run",
        inputs=inputs or {},
        output_dir=out,
        owners=owners or {},
    )


def run_probe(tmp_path: Path, source: str, limits: Limits = FAST) -> SandboxResult:
    return run_program(make_spec(tmp_path, source), limits=limits)


def failure(tmp_path: Path, source: str, limits: Limits = FAST) -> ProgramError:
    with pytest.raises(ProgramError) as info:
        run_probe(tmp_path, source, limits)
    return info.value


def meta(result: SandboxResult) -> dict[str, canonical.JsonValue]:
    value = canonical.decode(result.outputs["meta"].path.read_bytes())
    assert isinstance(value, dict)
    return value


@pytest.fixture
def visible_dir() -> Iterator[Path]:
    """A directory outside /tmp, /run and /dev (which the sandbox replaces with
    empty private mounts), so that only hide_paths can hide it."""
    base = Path("/var/tmp")
    d = Path(tempfile.mkdtemp(prefix="nestor-test-", dir=base if base.is_dir() else None))
    try:
        yield d
    finally:
        for p in sorted(d.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() and not p.is_symlink() else p.unlink()
        d.rmdir()


# -- a well-behaved program --------------------------------------------------------------


@needs_bwrap
def test_a_well_behaved_program_produces_checked_outputs(tmp_path: Path) -> None:
    data = tmp_path / "visits.csv"
    data.write_text("ward,days\na,1\nb,2\na,5\n")
    spec = make_spec(
        tmp_path,
        """
        import pandas as pd

        def run(inputs, parameters, context):
            # Printing (even something shaped like a report) cannot forge the report.
            print('{"type": "nestor/program-report", "ok": true, "outputs": []}')
            df = inputs["visits"]
            table = df.groupby("ward")["days"].sum().to_frame()  # index becomes a column
            return {"by-ward": table, "meta": {"rows": len(df), "owners": dict(context.owners),
                    "k": context.min_group_size, "b": True, "z": None, "a": [1, 2]}}
        """,
        inputs={"visits": InputFile(data, "csv")},
        owners={"visits": "sha256:" + "ab" * 32},
    )
    result = run_program(spec, limits=FAST)
    assert result.sandboxed
    assert result.exit_status == 0
    assert set(result.outputs) == {"by-ward", "meta"}
    assert result.outputs["by-ward"].path.read_text() == "ward,days\na,6\nb,2\n"
    assert result.outputs["by-ward"].kind == "table"
    raw = result.outputs["meta"].path.read_bytes()
    assert raw == canonical.encode(
        {"a": [1, 2], "b": True, "k": 1, "owners": {"visits": "sha256:" + "ab" * 32}, "rows": 3,
         "z": None}
    )  # fmt: skip
    assert result.paths == {
        "by-ward.csv": spec.output_dir / "by-ward.csv",
        "meta.json": spec.output_dir / "meta.json",
    }
    assert "nestor/program-report" in result.stderr_tail  # the print went to stderr
    assert result.timings.total_s > 0
    assert result.timings.start_s < result.timings.total_s
    cmd = result.command
    for flag in ("--unshare-all", "--die-with-parent", "--new-session", "--clearenv"):
        assert flag in cmd
    assert cmd[cmd.index("--cap-drop") + 1] == "ALL"
    assert cmd[cmd.index("--ro-bind") : cmd.index("--ro-bind") + 3] == ("--ro-bind", "/", "/")
    writable = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--bind"]
    assert writable == [str(spec.output_dir.resolve())]


@needs_bwrap
def test_the_sandbox_has_no_capabilities_no_host_environment_and_private_dirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NESTOR_SECRET_PROBE", "do-not-leak")
    marker = Path(tempfile.gettempdir()) / f"nestor-probe-{os.getpid()}"
    result = run_probe(
        tmp_path,
        f"""
        import os

        def run(inputs, parameters, context):
            status = open("/proc/self/status").read().split("\\n")
            cap = [line.split()[1] for line in status if line.startswith("CapEff")][0]
            open({str(marker)!r}, "w").write("x")  # /tmp is private: the host never sees it
            return {{"meta": {{"cap": cap, "env": sorted(os.environ), "pid": os.getpid(),
                     "run": sorted(os.listdir("/run")), "tmp": sorted(os.listdir("/tmp"))}}}}
        """,
    )
    seen = meta(result)
    assert seen["cap"] == "0000000000000000"
    env = seen["env"]
    assert isinstance(env, list)
    assert "NESTOR_SECRET_PROBE" not in env
    assert set(env) <= {
        *sandbox._sandbox_env(FAST),
        "LC_CTYPE",  # Python's C-locale coercion may add it
        "PWD",  # bubblewrap sets it with --chdir
    }
    assert seen["run"] == []
    pid = seen["pid"]
    assert isinstance(pid, int)
    assert pid < 10  # a fresh pid namespace
    assert not marker.exists()


# -- no network ------------------------------------------------------------------------------


@needs_bwrap
@pytest.mark.parametrize("address", ["127.0.0.1", "1.1.1.1"], ids=["loopback", "internet"])
def test_a_program_cannot_open_a_network_connection(tmp_path: Path, address: str) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    port = listener.getsockname()[1] if address == "127.0.0.1" else 53
    try:
        err = failure(
            tmp_path,
            f"""
            import socket

            def run(inputs, parameters, context):
                socket.create_connection(({address!r}, {port}), timeout=5).sendall(b"data")
                return {{}}
            """,
        )
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing ever reached the host's loopback
    finally:
        listener.close()
    assert err.kind == "program-error"
    assert err.message.startswith("the program 'probe' failed: ")
    assert "Network is unreachable" in err.message or "Connection refused" in err.message
    assert "no network" in str(err.hint)
    assert "probe/main.py:5 in run" in str(err.where)


@needs_bwrap
def test_a_program_cannot_reach_host_daemons_through_unix_sockets(
    tmp_path: Path, visible_dir: Path
) -> None:
    path = visible_dir / "daemon.sock"
    daemon = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    daemon.bind(str(path))
    daemon.listen(1)
    try:
        err = failure(
            tmp_path,
            f"""
            import socket

            def run(inputs, parameters, context):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect({str(path)!r})
                return {{}}
            """,
        )
    finally:
        daemon.close()
    assert "PermissionError" in err.message
    assert "probe/main.py:5 in run" in (err.where or "")


def test_the_seccomp_filter_is_well_formed() -> None:
    prog = seccomp_filter()
    if prog is None:
        pytest.skip("no seccomp filter for this architecture")
    assert len(prog) % 8 == 0
    assert 8 < len(prog) <= 8 * 64


# -- no writes outside the output directory ------------------------------------------------


@needs_bwrap
@pytest.mark.parametrize(
    "target",
    [
        Path("/var/tmp/nestor-escape-probe"),
        Path("/etc/nestor-escape-probe"),
        Path.home() / "escape",
    ],
    ids=["var-tmp", "etc", "home"],
)
def test_a_program_cannot_write_outside_its_output_directory(tmp_path: Path, target: Path) -> None:
    err = failure(
        tmp_path,
        f"""
        def run(inputs, parameters, context):
            with open({str(target)!r}, "w") as f:
                f.write("escaped")
            return {{}}
        """,
    )
    assert not target.exists()
    assert err.kind == "program-error"
    assert "Read-only file system" in err.message
    assert "output directory" in str(err.hint)


@needs_bwrap
def test_writes_to_tmp_stay_in_the_sandbox(tmp_path: Path) -> None:
    """/tmp inside the sandbox is a private tmpfs: a write there 'succeeds'
    but never reaches the host (the repository may live under /tmp in CI)."""
    target = tmp_path / "escape-probe"
    run_probe(
        tmp_path,
        f"""
        def run(inputs, parameters, context):
            with open({str(target)!r}, "w") as f:
                f.write("escaped")
            return {{}}
        """,
    )
    assert not target.exists()


@needs_bwrap
def test_outputs_are_checked_by_the_enclave_not_by_the_sandboxed_code(tmp_path: Path) -> None:
    err = failure(
        tmp_path,
        """
        import os

        def run(inputs, parameters, context):
            os.symlink("/etc/passwd", "stolen.csv")  # the working directory is the output dir
            return {}
        """,
    )
    assert err.kind == "bad-output"
    assert "symbolic link 'stolen.csv'" in err.message


# -- hidden paths -----------------------------------------------------------------------------

READ_KEY = """
def run(inputs, parameters, context):
    try:
        with open({path!r}) as f:
            return {{"meta": {{"read": f.read()}}}}
    except OSError as exc:
        return {{"meta": {{"error": type(exc).__name__}}}}
"""


@needs_bwrap
def test_a_program_cannot_read_a_hidden_key_file(
    tmp_path: Path, visible_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NESTOR_CONFIG_DIR", str(tmp_path / "elsewhere"))
    config = visible_dir / "nestor-config"
    config.mkdir()
    key = config / "party.key"
    key.write_text("PRIVATE KEY MATERIAL")
    source = READ_KEY.format(path=str(key))

    # Control: without hiding, the (read-only) root filesystem shows the file.
    control = run_probe(tmp_path / "control", source)
    assert meta(control) == {"read": "PRIVATE KEY MATERIAL"}

    hidden = run_probe(tmp_path / "hidden", source, Limits(wall_time_s=20, hide_paths=(config,)))
    assert meta(hidden) == {"error": "FileNotFoundError"}

    # The configuration directory (NESTOR_CONFIG_DIR) is hidden by default.
    monkeypatch.setenv("NESTOR_CONFIG_DIR", str(config))
    by_default = run_probe(tmp_path / "default", source)
    assert meta(by_default) == {"error": "FileNotFoundError"}

    # A single file can be hidden too.
    one_file = run_probe(tmp_path / "file", source, Limits(wall_time_s=20, hide_paths=(key,)))
    assert meta(one_file) == {"read": ""}  # an empty file is bound over it


# -- limits ------------------------------------------------------------------------------------


@needs_bwrap
def test_the_wall_clock_limit_kills_a_busy_program(tmp_path: Path) -> None:
    started = time.monotonic()
    err = failure(
        tmp_path,
        """
        def run(inputs, parameters, context):
            while True:
                pass
        """,
        Limits(wall_time_s=2),
    )
    assert err.kind == "time-limit"
    assert err.message == "the program 'probe' exceeded its 2 s time limit"
    assert time.monotonic() - started < 6


@needs_bwrap
def test_the_cpu_limit_stops_a_busy_program(tmp_path: Path) -> None:
    err = failure(
        tmp_path,
        """
        def run(inputs, parameters, context):
            while True:
                pass
        """,
        Limits(wall_time_s=20, cpu_time_s=1),
    )
    assert err.kind == "cpu-limit"
    assert err.message == "the program 'probe' exceeded its 1 s CPU time limit"


@needs_bwrap
def test_the_memory_limit_stops_a_2_gb_allocation(tmp_path: Path) -> None:
    # No inputs, so pandas is not loaded: pandas and Arrow alone reserve about
    # 250-450 MB of address space, which would make a 256 MB limit flaky.
    err = failure(
        tmp_path,
        """
        def run(inputs, parameters, context):
            block = bytearray(2 * 1024**3)
            return {"meta": {"n": len(block)}}
        """,
        Limits(wall_time_s=20, memory_mb=256),
    )
    assert err.kind == "memory-limit"
    assert err.message == (
        "the program 'probe' exceeded its 256 MB memory limit (at probe/main.py:3 in run)"
    )


@needs_bwrap
def test_a_native_library_out_of_address_space_is_the_memory_limit(tmp_path: Path) -> None:
    memory_mb = 256
    # torch with little address space: at 256 MB the dynamic loader cannot
    # map libtorch (an ImportError), which must read as the memory limit, not
    # as a broken program. (At 512 MB torch fails at varying points, with
    # messages no classifier can rely on, so that size is not asserted.)
    err = failure(
        tmp_path,
        """
        def run(inputs, parameters, context):
            import torch
            return {"t": {"n": int(torch.zeros(4096, 4096).numel())}}
        """,
        Limits(wall_time_s=60, memory_mb=memory_mb),
    )
    assert err.kind == "memory-limit", err.message
    assert f"{memory_mb} MB memory limit" in err.message


@needs_bwrap
def test_the_file_size_limit_stops_a_large_write(tmp_path: Path) -> None:
    err = failure(
        tmp_path,
        """
        def run(inputs, parameters, context):
            with open("/tmp/big", "wb") as f:
                f.write(b"x" * (3 * 1024 * 1024))
            return {}
        """,
        Limits(wall_time_s=20, max_file_mb=1),
    )
    assert err.kind == "file-size-limit"
    assert "exceeded its file size limit (1 MB per file)" in err.message


@needs_bwrap
def test_the_process_limit_stops_a_fork_bomb(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("as a user, RLIMIT_NPROC counts all of the user's processes: no fixed bound")
    result_or_error: SandboxResult | ProgramError
    try:
        result_or_error = run_probe(
            tmp_path,
            """
            import os, time

            def run(inputs, parameters, context):
                children = []
                try:
                    for _ in range(200):
                        pid = os.fork()
                        if pid == 0:
                            time.sleep(30)
                            os._exit(0)
                        children.append(pid)
                except OSError as exc:
                    return {"meta": {"forked": len(children), "error": type(exc).__name__}}
                return {"meta": {"forked": len(children)}}
            """,
            Limits(wall_time_s=20, max_processes=16),
        )
    except ProgramError as exc:  # pragma: no cover - diagnostic
        result_or_error = exc
    assert isinstance(result_or_error, SandboxResult), result_or_error
    if result_or_error.process_limit.startswith("none"):
        pytest.skip(result_or_error.process_limit)
    seen = meta(result_or_error)
    assert seen["error"] == "BlockingIOError"
    forked = seen["forked"]
    assert isinstance(forked, int)
    assert forked < 16


# -- failures of the program itself ---------------------------------------------------------------


@needs_bwrap
def test_an_exception_in_the_program_is_reported_with_its_message(tmp_path: Path) -> None:
    err = failure(
        tmp_path,
        """
        def helper():
            raise ValueError("column 'ward' is missing in dataset 'visits-2'")

        def run(inputs, parameters, context):
            helper()
        """,
    )
    assert err.kind == "program-error"
    assert err.message == (
        "the program 'probe' failed: ValueError: column 'ward' is missing in dataset "
        "'visits-2' (at probe/main.py:3 in helper <- probe/main.py:6 in run)"
    )
    assert err.where == "probe/main.py:3 in helper <- probe/main.py:6 in run"
    assert "Traceback" not in err.message


@needs_bwrap
@pytest.mark.parametrize(
    ("returns", "expected"),
    [
        ("[1, 2]", "returned a list, not a dict of name → DataFrame or dict"),
        ('{"Bad Name": {}}', "output names must match [a-z0-9_-]+"),
        ('{"x": "text"}', "bad output 'x': it is a str; outputs must be DataFrames or dicts"),
        ('{"x": {"mean": 1.5}}', "bad output 'x': it holds a float at $.mean; canonical JSON has"),
        ('{"x": {"a": {1: 2}}}', "bad output 'x': it has a non-string key at $.a"),
        ("{'x': __import__('pandas').Series([1])}", "bad output 'x': it is a Series"),
        (
            "{'x': __import__('pandas').DataFrame([[1, 2]], columns=['a', 'a'])}",
            "bad output 'x': it has two columns with the same name",
        ),
        ("None", "the program 'probe' returned a NoneType"),
    ],
    ids=["list", "bad-name", "string", "float", "int-key", "series", "dup-columns", "none"],
)
def test_bad_outputs_are_refused_with_a_clear_message(
    tmp_path: Path, returns: str, expected: str
) -> None:
    err = failure(tmp_path, f"def run(inputs, parameters, context):\n    return {returns}\n")
    assert err.kind == "bad-output"
    assert expected in err.message


@needs_bwrap
@pytest.mark.parametrize(
    ("entry_point", "expected", "kind"),
    [
        ("probe.nothere:run", "module 'probe.nothere' of its entry point is not in the bundle",
         "bad-entry-point"),
        ("probe.main:absent", "module 'probe.main' has no function 'absent'", "bad-entry-point"),
        ("json:loads", "module 'json' was found outside the bundle", "bad-entry-point"),
    ],
)  # fmt: skip
def test_a_bad_entry_point_is_named(
    tmp_path: Path, entry_point: str, expected: str, kind: str
) -> None:
    spec = make_spec(tmp_path, "def run(inputs, parameters, context):\n    return {}\n")
    spec = ProgramSpec(
        program=spec.program,
        bundle=spec.bundle,
        entry_point=entry_point,
        inputs={},
        output_dir=spec.output_dir,
    )
    with pytest.raises(ProgramError) as info:
        run_program(spec, limits=FAST)
    assert info.value.kind == kind
    assert expected in info.value.message


@needs_bwrap
def test_a_program_that_exits_the_process_is_reported(tmp_path: Path) -> None:
    err = failure(
        tmp_path,
        """
        import os

        def run(inputs, parameters, context):
            os._exit(7)
        """,
    )
    assert err.kind == "no-report"
    assert err.message == "the program 'probe' ended with exit status 7 before reporting a result"


# -- refusals before anything runs -----------------------------------------------------------------


def test_without_bubblewrap_the_run_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox, "find_bwrap", lambda: None)
    spec = make_spec(tmp_path, "def run(inputs, parameters, context):\n    return {}\n")
    with pytest.raises(SandboxError) as info:
        run_program(spec, limits=FAST)
    assert "bubblewrap is not installed (apt-get install bubblewrap)" in info.value.message
    assert not any(spec.output_dir.iterdir())


def test_a_bundle_with_bytecode_is_refused(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "def run(inputs, parameters, context):\n    return {}\n")
    cache = spec.bundle / "probe" / "__pycache__"
    cache.mkdir()
    (cache / "main.cpython-311.pyc").write_bytes(b"\0")
    with pytest.raises(SandboxError, match="compiled bytecode"):
        run_program(spec, limits=FAST, insecure_no_sandbox=True)


def test_the_output_directory_must_be_empty(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "def run(inputs, parameters, context):\n    return {}\n")
    (spec.output_dir / "old.csv").write_text("x\n")
    with pytest.raises(SandboxError, match="is not empty"):
        run_program(spec, limits=FAST, insecure_no_sandbox=True)


def test_insecure_mode_runs_the_same_host_without_the_sandbox(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "def run(inputs, parameters, context):\n    return {'meta': {}}\n")
    insecure = run_program(spec, limits=FAST, insecure_no_sandbox=True)
    assert not insecure.sandboxed
    assert insecure.network == "host (insecure)"
    assert json.loads(insecure.outputs["meta"].path.read_text()) == {}
