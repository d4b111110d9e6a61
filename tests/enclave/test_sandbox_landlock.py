"""The Landlock backend of the program sandbox, with real processes.

Each attack that the bubblewrap tests (test_sandbox.py) make is made here
against the Landlock backend and, where the outcome can be compared, against
bubblewrap too: both must fail the job (or return nothing secret), each with
its own clear reason. Landlock tests are skipped, with the reason, only on a
kernel without Landlock.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import random
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox_probe import LANDLOCK_PROBLEM, make_probe_spec, working_bwrap

from nestor.enclave import sandbox, sandbox_landlock
from nestor.enclave.sandbox import (
    InputFile,
    Limits,
    ProgramError,
    ProgramSpec,
    SandboxError,
    SandboxResult,
    bwrap_problem,
    choose_backend,
    find_bwrap,
    run_program,
)
from nestor.protocol import canonical

needs_landlock = pytest.mark.skipif(
    LANDLOCK_PROBLEM is not None, reason=f"Landlock backend unavailable: {LANDLOCK_PROBLEM}"
)
REPO = Path(__file__).resolve().parents[2]
POOLED_STATS = REPO / "examples" / "pooled-stats"
FAST = Limits(wall_time_s=20, memory_mb=1024)


# The `backend` fixture (each backend in turn) is in conftest.py.


def run_probe(
    tmp_path: Path, source: str, backend: str = "landlock", limits: Limits = FAST
) -> SandboxResult:
    return run_program(make_probe_spec(tmp_path, source), limits=limits, backend=backend)


def failure(
    tmp_path: Path, source: str, backend: str = "landlock", limits: Limits = FAST
) -> ProgramError:
    with pytest.raises(ProgramError) as info:
        run_probe(tmp_path, source, backend, limits)
    return info.value


def meta(result: SandboxResult) -> dict[str, canonical.JsonValue]:
    value = canonical.decode(result.outputs["meta"].path.read_bytes())
    assert isinstance(value, dict)
    return value


@pytest.fixture
def visible_dir() -> Iterator[Path]:
    """A directory outside /tmp, /run and /dev, which bubblewrap replaces with
    private mounts, so that only the sandbox's rules can hide it."""
    base = Path("/var/tmp")
    d = Path(tempfile.mkdtemp(prefix="nestor-test-", dir=base if base.is_dir() else None))
    try:
        yield d
    finally:
        for p in sorted(d.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() and not p.is_symlink() else p.unlink()
        d.rmdir()


# -- a well-behaved program -----------------------------------------------------------------


@needs_landlock
def test_a_table_program_runs_under_landlock(tmp_path: Path) -> None:
    data = tmp_path / "visits.csv"
    data.write_text("ward,days\na,1\nb,2\na,5\n")
    spec = make_probe_spec(
        tmp_path,
        """
        import os, tempfile, threading

        import pandas as pd

        def run(inputs, parameters, context):
            worker = threading.Thread(target=lambda: None)  # clone3 refused, clone works
            worker.start()
            worker.join()
            scratch = os.path.join(tempfile.gettempdir(), "scratch.txt")
            with open(scratch, "w") as f:
                f.write("x")
            df = inputs["visits"]
            table = df.groupby("ward")["days"].sum().to_frame()
            return {"by-ward": table, "meta": {"rows": len(df), "k": context.min_group_size,
                    "scratch": os.path.getsize(scratch)}}
        """,
        inputs={"visits": InputFile(data, "csv")},
    )
    result = run_program(spec, limits=FAST, backend="landlock")
    assert result.sandboxed
    assert result.backend == "landlock"
    assert result.network == "no sockets"
    assert result.outputs["by-ward"].path.read_text() == "ward,days\na,6\nb,2\n"
    assert meta(result) == {"rows": 3, "k": 1, "scratch": 1}
    assert "bwrap" not in result.command[0]
    assert result.command[1:3] == ("-I", "-B")


@needs_landlock
def test_a_fifo_input_is_streamed_under_landlock(tmp_path: Path) -> None:
    """The enclave streams decrypted CSV through a FIFO; a Landlock rule on the
    FIFO lets the program read it and nothing next to it."""
    fifo = tmp_path / "visits.fifo"
    os.mkfifo(fifo, 0o600)
    (tmp_path / "neighbour.csv").write_text("secret\n")

    def feed() -> None:
        with fifo.open("w") as f:
            f.write("ward,days\n")
            for i in range(5000):
                f.write(f"w{i % 7},{i}\n")

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    spec = make_probe_spec(
        tmp_path,
        f"""
        def run(inputs, parameters, context):
            try:
                open({str(tmp_path / "neighbour.csv")!r}).read()
                neighbour = "read"
            except PermissionError:
                neighbour = "refused"
            return {{"meta": {{"rows": len(inputs["visits"]), "neighbour": neighbour,
                    "total": int(inputs["visits"]["days"].sum())}}}}
        """,
        inputs={"visits": InputFile(fifo, "csv")},
    )
    result = run_program(spec, limits=FAST, backend="landlock")
    writer.join(timeout=10)
    assert meta(result) == {"rows": 5000, "neighbour": "refused", "total": sum(range(5000))}


def _visits(path: Path, seed: int, rows: int) -> Path:
    rng = random.Random(seed)
    lines = ["patient,age,ward,length_of_stay_days,readmitted"]
    for i in range(rows):
        ward = rng.choice(["cardiology", "oncology", "surgery", "geriatrics"])
        lines.append(f"P{seed}{i:05d},{rng.randint(18, 95)},{ward},{rng.randint(1, 30)},0")
    path.write_text("\n".join(lines) + "\n")
    return path


@needs_landlock
def test_the_pooled_stats_example_gives_the_same_outputs_under_landlock(tmp_path: Path) -> None:
    files = {
        f"visits-{n}": InputFile(_visits(tmp_path / f"visits-{n}.csv", seed, rows), "csv")
        for n, seed, rows in (("north", 1, 300), ("river", 2, 200), ("lake", 3, 60))
    }
    owners = {ds: "sha256:" + f"{i + 1}" * 64 for i, ds in enumerate(files)}
    modes = ["landlock", "bwrap", "none"] if working_bwrap() else ["landlock", "none"]
    results: dict[str, SandboxResult] = {}
    for mode in modes:
        out = tmp_path / f"out-{mode}"
        out.mkdir()
        spec = ProgramSpec(
            program="pooled-stats",
            bundle=POOLED_STATS,
            entry_point="pooled_stats.main:run",
            inputs=files,
            output_dir=out,
            min_group_size=10,
            owners=owners,
        )
        limits = Limits(wall_time_s=60, memory_mb=2048)
        results[mode] = run_program(
            spec,
            limits=limits,
            insecure_no_sandbox=mode == "none",
            backend=None if mode == "none" else mode,
        )
    assert results["landlock"].backend == "landlock"
    assert set(results["landlock"].outputs) == {"summary", "per_owner", "meta"}
    for mode in modes[1:]:
        assert set(results[mode].outputs) == set(results["landlock"].outputs)
        for name, output in results["landlock"].outputs.items():
            assert output.path.read_bytes() == results[mode].outputs[name].path.read_bytes()


# -- no network, no host daemons ---------------------------------------------------------------


@pytest.mark.parametrize("address", ["127.0.0.1", "1.1.1.1"], ids=["loopback", "internet"])
def test_a_program_cannot_open_a_network_connection(
    tmp_path: Path, backend: str, address: str
) -> None:
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
            backend,
        )
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing ever reached the host's loopback
    finally:
        listener.close()
    assert err.kind == "program-error"
    assert err.message.startswith("the program 'probe' failed: ")
    assert "probe/main.py:5 in run" in str(err.where)
    if backend == "landlock":
        # seccomp refuses socket() itself: no socket ever exists.
        assert "PermissionError: [Errno 13] Permission denied" in err.message
        assert "forbids" in str(err.hint)
    else:
        assert "Network is unreachable" in err.message or "Connection refused" in err.message


@needs_landlock
@pytest.mark.parametrize(
    "family",
    ["AF_INET, socket.SOCK_DGRAM", "AF_INET6, socket.SOCK_STREAM", "AF_UNIX, socket.SOCK_STREAM",
     "AF_NETLINK, socket.SOCK_RAW", "AF_PACKET, socket.SOCK_RAW", "AF_VSOCK, socket.SOCK_STREAM"],
    ids=["udp", "tcp6", "unix", "netlink", "packet", "vsock"],
)  # fmt: skip
def test_no_socket_family_is_allowed_under_landlock(tmp_path: Path, family: str) -> None:
    err = failure(
        tmp_path,
        f"""
        import socket

        def run(inputs, parameters, context):
            socket.socket(socket.{family})
            return {{}}
        """,
    )
    assert "PermissionError: [Errno 13] Permission denied" in err.message


def test_a_program_cannot_reach_a_host_daemon_through_a_unix_socket(
    tmp_path: Path, backend: str, visible_dir: Path
) -> None:
    path = visible_dir / "daemon.sock"
    daemon = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    daemon.bind(str(path))
    daemon.listen(1)
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind(f"\0nestor-test-{os.getpid()}")
    abstract.listen(1)
    try:
        result = run_probe(
            tmp_path,
            f"""
            import socket

            def run(inputs, parameters, context):
                seen = {{}}
                for name, address in (("path", {str(path)!r}),
                                      ("abstract", "\\0nestor-test-{os.getpid()}")):
                    try:
                        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                        s.connect(address)
                        seen[name] = "connected"
                    except OSError as exc:
                        seen[name] = type(exc).__name__
                return {{"meta": seen}}
            """,
            backend,
        )
    finally:
        daemon.close()
        abstract.close()
    assert meta(result) == {"path": "PermissionError", "abstract": "PermissionError"}


# -- no writes outside the output directory ---------------------------------------------------


@pytest.mark.parametrize(
    "where",
    ["var-tmp", "etc", "home", "enclave-tmp", "other-job"],
)
def test_a_program_cannot_write_outside_its_output_directory(
    tmp_path: Path, backend: str, where: str
) -> None:
    target = {
        "var-tmp": Path("/var/tmp/nestor-escape-probe"),
        "etc": Path("/etc/nestor-escape-probe"),
        "home": Path.home() / "nestor-escape-probe",
        # The enclave's own temporary directory and another job's output
        # directory: only bubblewrap's private /tmp hides them, Landlock refuses.
        "enclave-tmp": tmp_path / "escape-probe",
        "other-job": tmp_path / "other-job" / "out" / "summary.csv",
    }[where]
    target.parent.mkdir(parents=True, exist_ok=True)
    source = f"""
        def run(inputs, parameters, context):
            with open({str(target)!r}, "w") as f:
                f.write("escaped")
            return {{}}
        """
    if backend == "bwrap" and where in ("enclave-tmp", "other-job"):
        # Lands in the private tmpfs, or finds no such directory there.
        with contextlib.suppress(ProgramError):
            run_probe(tmp_path, source, backend)
        assert not target.exists()
        return
    try:
        err = failure(tmp_path, source, backend)
    finally:
        escaped = target.exists()
        target.unlink(missing_ok=True)  # a failed run must not spoil the next ones
    assert not escaped
    assert err.kind == "program-error"
    if backend == "landlock":
        assert "PermissionError: [Errno 13] Permission denied" in err.message
    else:
        assert "Read-only file system" in err.message


@needs_landlock
def test_a_program_cannot_plant_links_in_its_output_directory(tmp_path: Path) -> None:
    """No symbolic links at all, and no hard link to a file elsewhere (Landlock
    REFER): the enclave's after-run check never even sees one."""
    result = run_probe(
        tmp_path,
        """
        import os, tempfile

        def run(inputs, parameters, context):
            seen = {}
            for name, make in (
                ("symlink", lambda: os.symlink("/etc/passwd", "stolen.csv")),
                ("hardlink", lambda: os.link("/etc/passwd", "stolen2.csv")),
                ("fifo", lambda: os.mkfifo("pipe.csv")),
                ("socket-file", lambda: os.mknod("node.csv", 0o600 | 0o140000)),
            ):
                try:
                    make()
                    seen[name] = "made"
                except OSError as exc:
                    seen[name] = type(exc).__name__
            return {"meta": seen}
        """,
    )
    seen = meta(result)
    assert seen["symlink"] == "PermissionError"
    assert seen["hardlink"] in ("PermissionError", "OSError")  # EACCES or EXDEV
    assert seen["fifo"] == "PermissionError"
    assert seen["socket-file"] == "PermissionError"
    assert set(result.outputs) == {"meta"}


# -- no keys ------------------------------------------------------------------------------------

READ_KEY = """
def run(inputs, parameters, context):
    try:
        with open({path!r}) as f:
            return {{"meta": {{"read": f.read()}}}}
    except OSError as exc:
        return {{"meta": {{"error": type(exc).__name__}}}}
"""


def test_a_program_cannot_read_another_partys_key_or_the_config_dir(
    tmp_path: Path, backend: str, visible_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = visible_dir / "nestor-config"
    config.mkdir()
    key = config / "party.key"
    key.write_text("PRIVATE KEY MATERIAL")
    monkeypatch.setenv("NESTOR_CONFIG_DIR", str(config))
    expected = "PermissionError" if backend == "landlock" else "FileNotFoundError"
    by_default = run_probe(tmp_path / "key", READ_KEY.format(path=str(key)), backend)
    assert meta(by_default) == {"error": expected}
    listing = run_probe(
        tmp_path / "listing",
        f"""
        import os

        def run(inputs, parameters, context):
            try:
                return {{"meta": {{"names": sorted(os.listdir({str(config)!r}))}}}}
            except OSError as exc:
                return {{"meta": {{"error": type(exc).__name__}}}}
        """,
        backend,
    )
    assert meta(listing) in ({"error": "PermissionError"}, {"names": []})


@needs_landlock
def test_landlock_hides_everything_not_allowed_even_without_hide_paths(
    tmp_path: Path, visible_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bubblewrap shows all of / except what it hides; Landlock shows only what
    it allows, so a key file nobody listed is out of reach as well."""
    monkeypatch.setenv("NESTOR_CONFIG_DIR", str(tmp_path / "elsewhere"))
    key = visible_dir / "forgotten.key"
    key.write_text("PRIVATE KEY MATERIAL")
    source = READ_KEY.format(path=str(key))
    assert meta(run_probe(tmp_path / "ll", source)) == {"error": "PermissionError"}
    ssh = Path.home() / ".ssh" / "id_ed25519"
    assert meta(run_probe(tmp_path / "ssh", READ_KEY.format(path=str(ssh)))) in (
        {"error": "PermissionError"},
        {"error": "FileNotFoundError"},  # only if there is no ~/.ssh at all
    )


@needs_landlock
def test_a_hidden_path_inside_an_allowed_one_is_refused(tmp_path: Path) -> None:
    spec = make_probe_spec(tmp_path, "def run(inputs, parameters, context):\n    return {}\n")
    secret = spec.bundle / "secret.key"
    secret.write_text("x")
    with pytest.raises(SandboxError) as info:
        run_program(spec, limits=Limits(hide_paths=(secret,)), backend="landlock")
    assert f"cannot hide {secret}: it lies inside {spec.bundle}" in info.value.message
    assert not any(spec.output_dir.iterdir())


ENCLAVE_MEMORY = """
import ctypes, os, signal

libc = ctypes.CDLL(None, use_errno=True)


class IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def attempt(action):
    try:
        value = action()
        return "worked" if value is None or value >= 0 else os.strerror(ctypes.get_errno())
    except OSError as exc:
        return type(exc).__name__


def read_vm():
    buf = ctypes.create_string_buffer(64)
    local = IoVec(ctypes.addressof(buf), 64)
    remote = IoVec({address}, 64)
    return libc.process_vm_readv({pid}, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)


def run(inputs, parameters, context):
    seen = {{
        "mem": attempt(lambda: open("/proc/{pid}/mem", "rb").read(1) and None),
        "environ": attempt(lambda: open("/proc/{pid}/environ", "rb").read() and None),
        "maps": attempt(lambda: open("/proc/{pid}/maps", "rb").read() and None),
        "process_vm_readv": attempt(read_vm),
        # PTRACE_SEIZE, not ATTACH: were it allowed, it must not stop the test runner.
        "ptrace": attempt(lambda: libc.ptrace(0x4206, {pid}, None, None)),
        "signal": attempt(lambda: os.kill({pid}, 0)),
        "pidfd": attempt(lambda: os.close(os.pidfd_open({pid}))),
    }}
    return {{"meta": seen}}
"""


def test_a_program_cannot_read_the_enclaves_memory_or_signal_it(
    tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The enclave's keys live in its memory; the program runs as the same uid."""
    secret = ctypes.create_string_buffer(b"ENCLAVE SIGNING KEY" * 3)
    monkeypatch.setenv("NESTOR_SECRET_PROBE", "ENCLAVE SIGNING KEY")
    source = ENCLAVE_MEMORY.format(pid=os.getpid(), address=ctypes.addressof(secret))
    result = run_probe(tmp_path, source, backend)
    seen = meta(result)
    assert "ENCLAVE SIGNING KEY" not in json.dumps(seen)
    if backend == "landlock":
        assert seen == {
            "mem": "PermissionError",  # Landlock: /proc is not allowed
            "environ": "PermissionError",
            "maps": "PermissionError",
            "process_vm_readv": "Operation not permitted",  # seccomp (and Landlock's ptrace rule)
            "ptrace": "Operation not permitted",
            "signal": "PermissionError",  # Landlock signal scoping (ABI 6)
            "pidfd": "worked",  # a pidfd is only a handle: pidfd_getfd is refused
        }
    else:
        # Another pid namespace: the enclave's pid names nothing (or another process).
        assert seen["mem"] in ("FileNotFoundError", "PermissionError")
        assert seen["process_vm_readv"] != "worked"


# -- no privileges, no escape from the process group --------------------------------------------

PRIVILEGES = """
import ctypes, os

libc = ctypes.CDLL(None, use_errno=True)


class Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def attempt(action):
    try:
        result = action()
        if isinstance(result, int) and result < 0:
            return os.strerror(ctypes.get_errno())
        return "worked"
    except (OSError, ValueError) as exc:
        return type(exc).__name__


def clone_newuser():
    # fork-like clone (no new stack) into a new user namespace; SIGCHLD = 17
    nr = 56 if os.uname().machine == "x86_64" else 220
    pid = libc.syscall(nr, 0x10000000 | 17, 0, 0, 0, 0)
    if pid == 0:
        os._exit(0)
    if pid > 0:
        os.waitpid(pid, 0)
    return pid


def run(inputs, parameters, context):
    data = (Data * 2)()
    libc.capget(ctypes.byref(Header(0x20080522, 0)), data)
    caps = [d.effective | d.permitted | d.inheritable for d in data]
    seen = {
        "caps": caps,
        "no_new_privs": libc.prctl(39, 0, 0, 0, 0),
        "seccomp_mode": libc.prctl(21, 0, 0, 0, 0),
        "unshare_user": attempt(lambda: libc.unshare(0x10000000)),  # CLONE_NEWUSER
        "unshare_net": attempt(lambda: libc.unshare(0x40000000)),  # CLONE_NEWNET
        "clone_newuser": attempt(clone_newuser),
        "setsid": attempt(os.setsid),
        "setpgid": attempt(lambda: os.setpgid(0, 0)),
        "mount": attempt(lambda: libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)),
        "keyctl": attempt(lambda: libc.syscall(250 if os.uname().machine == "x86_64" else 219,
                                               0, 0, 0, 0, 0)),
        "raise_rlimit": attempt(lambda: __import__("resource").setrlimit(
            __import__("resource").RLIMIT_AS, (-1, -1))),
        "env": sorted(os.environ),
    }
    return {"meta": seen}
"""


@needs_landlock
def test_the_landlock_sandbox_has_no_privileges_and_a_clean_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NESTOR_SECRET_PROBE", "do-not-leak")
    seen = meta(run_probe(tmp_path, PRIVILEGES))
    assert seen["caps"] == [0, 0]  # even when the enclave runs as root
    assert seen["no_new_privs"] == 1
    assert seen["seccomp_mode"] == 2
    for name in ("setsid", "setpgid"):
        assert seen[name] == "PermissionError", name
    for name in ("unshare_user", "unshare_net", "clone_newuser", "mount"):
        assert seen[name] == "Operation not permitted", name
    assert seen["keyctl"] == "Function not implemented"
    assert seen["raise_rlimit"] == "ValueError"  # "not allowed to raise maximum limit"
    env = seen["env"]
    assert isinstance(env, list)
    assert "NESTOR_SECRET_PROBE" not in env
    assert set(env) <= {*sandbox._sandbox_env(FAST), "LC_CTYPE"}


@needs_landlock
def test_no_process_outlives_a_landlock_run(tmp_path: Path) -> None:
    result = run_probe(
        tmp_path,
        """
        import os, subprocess

        def run(inputs, parameters, context):
            child = subprocess.Popen(["sleep", "60"], start_new_session=False)
            return {"meta": {"pid": child.pid}}
        """,
    )
    pid = meta(result)["pid"]
    assert isinstance(pid, int)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{pid}/stat") as f:  # reaped by init soon; a zombie is dead
            if f.read().split(") ", 1)[1].startswith("Z"):
                break
        time.sleep(0.05)
    else:
        pytest.fail(f"the program's child {pid} survived the run")


# -- limits still hold -----------------------------------------------------------------------------


@needs_landlock
def test_limits_hold_under_landlock(tmp_path: Path) -> None:
    busy = "def run(inputs, parameters, context):\n    while True:\n        pass\n"
    err = failure(tmp_path / "wall", busy, limits=Limits(wall_time_s=2))
    assert err.message == "the program 'probe' exceeded its 2 s time limit"
    err = failure(tmp_path / "cpu", busy, limits=Limits(wall_time_s=20, cpu_time_s=1))
    assert err.kind == "cpu-limit"
    err = failure(
        tmp_path / "mem",
        "def run(inputs, parameters, context):\n    b = bytearray(2 * 1024**3)\n    return {}\n",
        limits=Limits(wall_time_s=20, memory_mb=256),
    )
    assert err.kind == "memory-limit"
    err = failure(
        tmp_path / "fsize",
        """
        import tempfile

        def run(inputs, parameters, context):
            with tempfile.TemporaryFile() as f:
                f.write(b"x" * (3 * 1024 * 1024))
            return {}
        """,
        limits=Limits(wall_time_s=20, max_file_mb=1),
    )
    assert err.kind == "file-size-limit"


# -- choosing the backend ------------------------------------------------------------------------


def _fake_bwrap(tmp_path: Path) -> str:
    """A bwrap that fails the way it does in a pod where namespaces are refused."""
    fake = tmp_path / "bin" / "bwrap"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to create a new namespace, likely because "
        "the kernel does not allow non-privileged user namespaces.' >&2\nexit 1\n"
    )
    fake.chmod(stat.S_IRWXU)
    return str(fake)


def test_auto_picks_bubblewrap_when_it_works(tmp_path: Path) -> None:
    if working_bwrap() is None:
        pytest.skip("bubblewrap is missing or cannot create namespaces here")
    assert choose_backend("probe", "auto") == ("bwrap", find_bwrap())
    result = run_probe(
        tmp_path, "def run(inputs, parameters, context):\n    return {}\n", backend="auto"
    )
    assert result.backend == "bwrap"
    assert result.command[0] == find_bwrap()


@needs_landlock
def test_the_environment_variable_selects_the_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NESTOR_SANDBOX", "landlock")
    assert choose_backend("probe") == ("landlock", None)
    spec = make_probe_spec(tmp_path, "def run(inputs, parameters, context):\n    return {}\n")
    assert run_program(spec, limits=FAST).backend == "landlock"
    monkeypatch.setenv("NESTOR_SANDBOX", "firejail")
    with pytest.raises(SandboxError, match="unknown sandbox backend 'firejail'"):
        choose_backend("probe")


@needs_landlock
def test_auto_falls_back_to_landlock_without_bubblewrap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # find_bwrap also searches /usr/bin, so PATH alone cannot hide it.
    monkeypatch.setattr(sandbox, "find_bwrap", lambda: None)
    result = run_probe(
        tmp_path, "def run(inputs, parameters, context):\n    return {}\n", backend="auto"
    )
    assert result.backend == "landlock"
    # The default stays bubblewrap: falling back to the weaker sandbox is opt-in.
    with pytest.raises(SandboxError) as info:
        choose_backend("probe")
    assert "bubblewrap is not installed (apt-get install bubblewrap)" in info.value.message
    assert "NESTOR_SANDBOX=landlock" in str(info.value.hint)


@needs_landlock
def test_auto_falls_back_to_landlock_when_bubblewrap_cannot_make_namespaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _fake_bwrap(tmp_path)
    monkeypatch.setattr(sandbox, "find_bwrap", lambda: fake)
    monkeypatch.setattr(sandbox, "_BWRAP_PROBES", {})
    assert bwrap_problem(fake) is not None
    assert "No permissions to create a new namespace" in str(bwrap_problem(fake))
    result = run_probe(
        tmp_path / "auto", "def run(inputs, parameters, context):\n    return {}\n", "auto"
    )
    assert result.backend == "landlock"
    with pytest.raises(SandboxError) as info:
        run_probe(tmp_path / "forced", "def run(inputs, parameters, context):\n    pass\n", "bwrap")
    assert info.value.message.startswith(
        "the sandbox for program 'probe' could not start: bwrap: No permissions"
    )
    assert "NESTOR_SANDBOX=auto or landlock" in str(info.value.hint)


def test_with_neither_sandbox_the_run_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox, "find_bwrap", lambda: None)
    monkeypatch.setattr(
        sandbox_landlock, "unavailable_reason", lambda: "the kernel has no Landlock (test)"
    )
    spec = make_probe_spec(tmp_path, "def run(inputs, parameters, context):\n    return {}\n")
    with pytest.raises(SandboxError) as info:
        run_program(spec, limits=FAST, backend="auto")
    assert info.value.message == (
        "cannot run program 'probe': no sandbox is available: bubblewrap is not installed "
        "(apt-get install bubblewrap), and the Landlock sandbox cannot run: the kernel has no "
        "Landlock (test)"
    )
    with pytest.raises(SandboxError) as info:
        run_program(spec, limits=FAST, backend="landlock")
    assert info.value.message == (
        "cannot run program 'probe': the Landlock sandbox cannot run: the kernel has no "
        "Landlock (test)"
    )
    fake = _fake_bwrap(tmp_path)
    monkeypatch.setattr(sandbox, "find_bwrap", lambda: fake)
    monkeypatch.setattr(sandbox, "_BWRAP_PROBES", {})
    with pytest.raises(SandboxError) as info:
        run_program(spec, limits=FAST, backend="auto")
    assert "bubblewrap cannot create its sandbox here (bwrap: No permissions" in (
        info.value.message
    )
    assert not any(spec.output_dir.iterdir())


@needs_landlock
def test_a_confinement_step_that_fails_in_the_child_stops_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the child cannot confine itself it must not exec the program, and
    the enclave says which step failed."""

    def refuse(self: sandbox_landlock.Confinement) -> None:
        sandbox_landlock.Confinement._check(-1, "landlock_restrict_self")

    monkeypatch.setattr(sandbox_landlock.Confinement, "apply_in_child", refuse)
    marker = tmp_path / "ran"
    spec = make_probe_spec(
        tmp_path,
        f"def run(inputs, parameters, context):\n    open({str(marker)!r}, 'w')\n    return {{}}\n",
    )
    with pytest.raises(SandboxError) as info:
        run_program(spec, limits=FAST, backend="landlock")
    assert info.value.message.startswith(
        "the Landlock sandbox for program 'probe' could not start: landlock_restrict_self failed"
    )
    assert not marker.exists()


# -- the pieces -----------------------------------------------------------------------------------


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_the_landlock_seccomp_filter_is_well_formed(machine: str) -> None:
    prog = sandbox_landlock.seccomp_filter(machine)
    assert prog is not None
    assert len(prog) % 8 == 0
    assert 8 < len(prog) <= 8 * 4096
    assert sandbox_landlock.seccomp_filter("riscv64") is None


def test_the_landlock_abi_is_reported() -> None:
    abi = sandbox_landlock.landlock_abi()
    if LANDLOCK_PROBLEM is None:
        assert abi >= 1
    else:
        assert abi < 0 or "seccomp filter" in LANDLOCK_PROBLEM


@needs_landlock
@pytest.mark.parametrize("abi", [1, 2, 3, 4, 5, 6])
def test_older_landlock_abis_build_a_working_sandbox(
    tmp_path: Path, abi: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An older kernel handles fewer rights: the ruleset must still be valid
    and still keep the program in (this kernel enforces the subset asked for)."""
    if sandbox_landlock.landlock_abi() < abi:
        pytest.skip(f"this kernel has Landlock ABI {sandbox_landlock.landlock_abi()}")
    monkeypatch.setattr(sandbox_landlock, "landlock_abi", lambda: abi)
    result = run_probe(tmp_path, READ_KEY.format(path=__file__))
    assert meta(result) == {"error": "PermissionError"}
