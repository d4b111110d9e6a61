"""Run an agreed program over decrypted inputs inside a bubblewrap sandbox.

The enclave holds every party's plaintext while a job runs; the program is
reviewed code, but it is still the one piece of the enclave that the parties
did not write together, so it runs in a child process that can read its
inputs and its bundle, write only its output directory, and reach nothing
else (docs/programs.md, "The sandbox").

:func:`run_program` starts ``program_host.py`` (the code that runs inside)
under ``bwrap`` with:

- every namespace unshared (``--unshare-all``); the network namespace has
  no interface at all when the enclave may create one itself (root or
  CAP_SYS_ADMIN: even loopback is absent, so every connection fails with
  "network is unreachable"), else bubblewrap's own one with only loopback;
- ``/`` read-only, a fresh ``/proc`` and ``/dev``, private size-limited
  tmpfs on ``/tmp`` and ``/dev/shm``, an empty ``/run`` (host daemons'
  sockets), empty tmpfs over the configuration directory and other
  ``hide_paths`` (party keys), the inputs, bundle and run specification
  bound read-only and only the output directory writable;
- no capabilities (``--cap-drop ALL``), a new session, killed with its
  parent, a cleared environment;
- a seccomp filter that refuses sockets other than IPv4/IPv6 (no Unix
  sockets to host daemons, no vsock to the hypervisor, no netlink),
  ``io_uring`` and the kernel keyring;
- resource limits set in the child before ``exec``: CPU seconds, address
  space, processes, file size, no core dumps; and a wall-clock limit after
  which the whole process group is killed. ``RLIMIT_NPROC`` does not bind
  uid 0, so as root the process limit is a pids cgroup when one can be made.

Afterwards the enclave, not the sandboxed code, decides what the outputs are:
it lists the output directory itself, refuses anything but regular
``NAME.csv`` / ``NAME.json`` files, checks their size and encoding and
rewrites JSON outputs canonically. Failures raise :class:`ProgramError`
(the program misbehaved or hit a limit) or :class:`SandboxError` (the
sandbox itself cannot run). If bubblewrap is missing the run is refused;
``insecure_no_sandbox=True`` runs the same host without bubblewrap, for
testing program logic only.

Where namespaces cannot be created (a hardened Kubernetes pod), bubblewrap
cannot start; the second backend, ``nestor.enclave.sandbox_landlock``,
confines the program with Landlock, seccomp and dropped capabilities
instead. ``run_program(backend=...)`` or ``$NESTOR_SANDBOX`` chooses:
``bwrap`` (the default), ``landlock``, or ``auto`` (bubblewrap if a probe
run works, else Landlock). Falling back is opt-in because the Landlock
backend is the weaker one (no private /tmp, /proc or pid namespace;
docs/programs.md, "The Landlock backend").
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import platform
import re
import resource
import secrets
import select
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from nestor.enclave import sandbox_landlock
from nestor.enclave.sandbox_landlock import Rule
from nestor.errors import CanonicalEncodingError, NestorError
from nestor.protocol import canonical
from nestor.simtee.vendor import config_dir

__all__ = [
    "LOADED_MESSAGE",
    "InputFile",
    "Limits",
    "OutputFile",
    "PhaseUsage",
    "ProgramError",
    "ProgramSpec",
    "SandboxError",
    "SandboxResult",
    "Timings",
    "bwrap_problem",
    "choose_backend",
    "default_hide_paths",
    "find_bwrap",
    "landlock_rules",
    "run_program",
    "sandbox_command",
    "seccomp_filter",
]

HOST_SCRIPT: Final = Path(__file__).resolve().with_name("program_host.py")
SPEC_TYPE: Final = "nestor/program-run"
REPORT_TYPE: Final = "nestor/program-report"
OUTPUT_FILE: Final = re.compile(r"([a-z0-9_-]{1,64})\.(csv|json)")
TAIL_CHARS: Final = 4000
SANDBOX_PATH: Final = "/usr/local/bin:/usr/bin:/bin"
INSTALL_HINT: Final = "apt-get install bubblewrap (scripts/bootstrap.sh does it)"
BACKEND_ENV: Final = "NESTOR_SANDBOX"
BACKENDS: Final = ("auto", "bwrap", "landlock")
DEFAULT_BACKEND: Final = "bwrap"
# What the Landlock backend lets every program read (and execute): the system's
# libraries and tools; the Python installation is added per run. /etc, /var,
# /home, /root, /run, /tmp, /proc and /sys stay out of reach.
LANDLOCK_SYSTEM: Final = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
LANDLOCK_SYSTEM_FILES: Final = ("/etc/ld.so.cache", "/etc/localtime")
LANDLOCK_DEVICES_RW: Final = ("/dev/null",)
LANDLOCK_DEVICES_RO: Final = ("/dev/zero", "/dev/urandom", "/dev/random")
# Directories the sandbox replaces with its own private, empty mounts.
PRIVATE_ROOTS: Final = ("/tmp", "/run", "/dev", "/proc")  # noqa: S108
# Credential stores under the home directory that a program has no business reading.
HOME_SECRETS: Final = (
    ".ssh",
    ".gnupg",
    ".aws",
    ".azure",
    ".kube",
    ".docker",
    ".config/gcloud",
    ".netrc",
    ".pgpass",
)


class SandboxError(NestorError):
    """The sandbox cannot run a program (bubblewrap missing, setup failed, bad spec).

    Nothing of the program ran, or what ran cannot be trusted; never a reason to
    run it unsandboxed."""


class ProgramError(NestorError):
    """The program ran in the sandbox and failed, hit a limit or returned bad outputs.

    ``kind`` is stable: ``program-error``, ``time-limit``, ``cpu-limit``,
    ``memory-limit``, ``file-size-limit``, ``bad-output``, ``bad-input``,
    ``bad-entry-point``, ``import-error``, ``crashed``, ``no-report``.
    ``where`` is a short traceback summary (``main.py:12 in run``); the
    stdout/stderr tails stay in the enclave's log, not in the message, because
    a program may print data."""

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        program: str,
        where: str | None = None,
        hint: str | None = None,
        exit_status: int | None = None,
        stdout_tail: str = "",
        stderr_tail: str = "",
    ) -> None:
        super().__init__(message, hint=hint)
        self.kind = kind
        self.program = program
        self.where = where
        self.exit_status = exit_status
        self.stdout_tail = stdout_tail
        self.stderr_tail = stderr_tail


# -- what to run -------------------------------------------------------------------------


@dataclass(frozen=True)
class InputFile:
    """One decrypted input dataset: a file and its contract format.

    A ``pending`` input is delivered while the program starts: the enclave
    renames the whole, verified file to ``path`` when it is ready, or
    creates ``path`` + ``.failed`` if it cannot deliver it. The program host
    waits for one or the other before reading it, so the program only ever
    opens complete inputs, each a regular memory-backed file its engine reads
    at full speed, while later inputs are still being decrypted."""

    path: Path
    format: str = "csv"
    pending: bool = False


FAILED_SUFFIX: Final = ".failed"


@dataclass(frozen=True)
class ProgramSpec:
    """One program run: the bundle, its entry point, inputs, parameters, context.

    ``output_dir`` must exist and be empty; it is the only place the program
    can write."""

    program: str
    bundle: Path
    entry_point: str
    inputs: Mapping[str, InputFile]
    output_dir: Path
    parameters: Mapping[str, Any] = field(default_factory=dict)
    min_group_size: int = 1
    owners: Mapping[str, str] = field(default_factory=dict)
    release_inputs: bool = False
    """Delete the input files as soon as the program host has loaded them
    (only for files the caller made for this run). Their plaintext then
    leaves memory before the program computes instead of after it ends; a
    pending input's pages are freed at once, a ready input bound on its own
    when the sandbox ends."""

    def to_json(self, loaded_fd: int | None = None) -> dict[str, Any]:
        return {
            "type": SPEC_TYPE,
            "version": 1,
            "loaded_fd": loaded_fd,
            "program": self.program,
            "bundle": str(self.bundle.resolve()),
            "entry_point": self.entry_point,
            "inputs": {
                ds: {"path": str(f.path.resolve()), "format": f.format, "pending": f.pending}
                for ds, f in self.inputs.items()
            },
            "parameters": dict(self.parameters),
            "context": {"min_group_size": self.min_group_size, "owners": dict(self.owners)},
            "output_dir": str(self.output_dir.resolve()),
        }


@dataclass(frozen=True)
class Limits:
    """Resource limits and hidden paths for one run.

    ``cpu_time_s`` defaults to the wall-clock limit times ``threads`` (plus
    one second). ``max_processes`` counts threads too, and bubblewrap's own
    two processes. ``threads`` sets OMP/OpenBLAS/Arrow thread counts (each
    thread reserves address space, which counts against ``memory_mb``).
    ``hide_paths`` are hidden *in addition to* :func:`default_hide_paths`.

    ``huge_pages=False`` turns transparent huge pages off for the program
    (4 KiB pages only); the default leaves the kernel's policy alone. On a
    virtual machine that hands freed memory back to its hypervisor, the
    choice changed a pandas program's time by 1.5-2x, in either direction
    depending on what else ran (docs/programs.md, "Memory pages")."""

    wall_time_s: float = 600.0
    cpu_time_s: int | None = None
    memory_mb: int = 8192
    max_processes: int = 256
    max_file_mb: int = 1024
    tmp_mb: int = 512
    max_output_mb: int = 1024
    threads: int = 1
    hide_paths: tuple[Path, ...] = ()
    huge_pages: bool = True

    def effective_cpu_time_s(self) -> int:
        if self.cpu_time_s is not None:
            return self.cpu_time_s
        return int(self.wall_time_s * max(1, self.threads)) + 1


@dataclass(frozen=True)
class OutputFile:
    name: str
    path: Path
    kind: str  # "table" (CSV) or "json" (canonical JSON)
    size: int


@dataclass(frozen=True)
class PhaseUsage:
    """What the program host's process spent in one phase (getrusage):
    CPU seconds in user and kernel mode, and minor page faults."""

    user_s: float
    sys_s: float
    minor_faults: int


@dataclass(frozen=True)
class Timings:
    """Seconds. ``start_s`` is from spawning the sandbox until the program
    host's first line ran (bubblewrap setup plus interpreter start).
    ``usage`` holds the program host's CPU time and page faults for the
    phases ``inputs`` and ``program`` when it reported them."""

    setup_s: float
    start_s: float
    inputs_s: float
    import_s: float
    program_s: float
    outputs_s: float
    teardown_s: float
    total_s: float
    cpu_s: float
    usage: Mapping[str, PhaseUsage] = field(default_factory=dict)


@dataclass(frozen=True)
class SandboxResult:
    exit_status: int
    outputs: dict[str, OutputFile]
    stdout_tail: str
    stderr_tail: str
    timings: Timings
    sandboxed: bool
    network: str  # "none" (no interface), "loopback only", "no sockets", "host (insecure)"
    process_limit: str  # which mechanism enforced max_processes
    command: tuple[str, ...]
    backend: str  # "bwrap", "landlock", or "none" (insecure_no_sandbox)

    @property
    def paths(self) -> dict[str, Path]:
        """Output file name (``summary.csv``) → path."""
        return {o.path.name: o.path for o in self.outputs.values()}


# -- discovery -------------------------------------------------------------------------------


def find_bwrap() -> str | None:
    """The bubblewrap executable, or None."""
    found = shutil.which("bwrap", path=os.environ.get("PATH", "") + os.pathsep + SANDBOX_PATH)
    return found


# bwrap executable → None if a probe run worked, else why it did not. Probed
# once per process: the answer changes only with the pod's security settings.
_BWRAP_PROBES: dict[str, str | None] = {}


def bwrap_problem(bwrap: str) -> str | None:
    """None if ``bwrap`` can build a sandbox here (namespaces included), else
    the reason it cannot, from a probe run that is made once per process."""
    if bwrap in _BWRAP_PROBES:
        return _BWRAP_PROBES[bwrap]
    command = [
        bwrap,
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--ro-bind",
        "/",
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--",
        # The interpreter, not /bin/true: a sandbox that cannot start Python is no use.
        sys.executable,
        "-I",
        "-S",
        "-c",
        "",
    ]
    problem: str | None
    try:
        probe = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env={"PATH": SANDBOX_PATH},
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        problem = f"{bwrap} cannot run: {exc}"
    else:
        lines = probe.stderr.decode("utf-8", "replace").strip().splitlines()
        problem = (
            None
            if probe.returncode == 0
            else (lines[-1] if lines else f"{bwrap} exited with status {probe.returncode}")
        )
    _BWRAP_PROBES[bwrap] = problem
    return problem


def choose_backend(program: str, backend: str | None = None) -> tuple[str, str | None]:
    """The sandbox backend for a run: ``("bwrap", path)`` or ``("landlock", None)``.

    ``backend`` (else ``$NESTOR_SANDBOX``, else ``bwrap``) is ``bwrap``,
    ``landlock`` or ``auto`` (bubblewrap when a probe run works, else Landlock).
    Raises :class:`SandboxError`, naming what is missing, when the chosen
    backend (for ``auto``: either) cannot run here."""
    chosen = backend if backend is not None else os.environ.get(BACKEND_ENV) or DEFAULT_BACKEND
    if chosen not in BACKENDS:
        raise SandboxError(
            f"cannot run program {program!r}: unknown sandbox backend {chosen!r}",
            hint=f"{BACKEND_ENV} must be one of {', '.join(BACKENDS)}",
        )
    if chosen == "bwrap":
        bwrap = find_bwrap()
        if bwrap is None:
            raise SandboxError(
                f"cannot run program {program!r}: bubblewrap is not installed "
                "(apt-get install bubblewrap)",
                hint=f"{INSTALL_HINT}, or set {BACKEND_ENV}=landlock (or auto) where "
                "namespaces are not allowed; programs never run without a sandbox",
            )
        return "bwrap", bwrap
    if chosen == "auto":
        bwrap = find_bwrap()
        problem = bwrap_problem(bwrap) if bwrap is not None else None
        if bwrap is not None and problem is None:
            return "bwrap", bwrap
        why_not_bwrap = (
            "bubblewrap is not installed (apt-get install bubblewrap)"
            if bwrap is None
            else f"bubblewrap cannot create its sandbox here ({problem})"
        )
        landlock_problem = sandbox_landlock.unavailable_reason()
        if landlock_problem is not None:
            raise SandboxError(
                f"cannot run program {program!r}: no sandbox is available: {why_not_bwrap}, "
                f"and the Landlock sandbox cannot run: {landlock_problem}",
                hint="install bubblewrap and allow user namespaces, or run the enclave on a "
                "kernel with Landlock enabled; programs never run without a sandbox",
            )
        return "landlock", None
    landlock_problem = sandbox_landlock.unavailable_reason()
    if landlock_problem is not None:
        raise SandboxError(
            f"cannot run program {program!r}: the Landlock sandbox cannot run: {landlock_problem}",
            hint=f"set {BACKEND_ENV}=bwrap where bubblewrap works; "
            "programs never run without a sandbox",
        )
    return "landlock", None


def default_hide_paths() -> tuple[Path, ...]:
    """Paths hidden from every program: Nestor's configuration directory (party
    keys, the simulated TEE's vendor key) and common credential stores in the
    home directory, as far as they exist."""
    paths = [config_dir()]
    home = Path.home()
    paths.extend(home / name for name in HOME_SECRETS)
    return tuple(p for p in paths if os.path.lexists(p))


def _cap_sys_admin() -> bool:
    """Whether this process may create a network namespace itself."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) & (1 << 21))
    except (OSError, ValueError):
        pass
    return False


# -- seccomp ------------------------------------------------------------------------------------

_BPF_LD_W_ABS: Final = 0x20
_BPF_JEQ: Final = 0x15
_BPF_JGE: Final = 0x35
_BPF_RET: Final = 0x06
_RET_ALLOW: Final = 0x7FFF0000
_RET_ERRNO: Final = 0x00050000
_EACCES: Final = 13
_ENOSYS: Final = 38
_AF_INET: Final = 2
_AF_INET6: Final = 10
# arch token, x32 bit (or 0), socket, io_uring_setup/enter/register, add_key/request_key/keyctl
_SYSCALLS: Final = {
    "x86_64": (0xC000003E, 0x40000000, 41, (425, 426, 427), (248, 249, 250)),
    "aarch64": (0xC00000B7, 0, 198, (425, 426, 427), (217, 218, 219)),
}


def seccomp_filter() -> bytes | None:
    """A classic-BPF seccomp program for ``bwrap --seccomp``, or None on an
    architecture this module does not know.

    Refuses (EACCES) ``socket()`` for every family but AF_INET/AF_INET6
    (socketpair stays allowed), ``io_uring`` (ENOSYS; it could create sockets
    without a ``socket`` call) and the kernel keyring (ENOSYS); any syscall of a
    foreign ABI (i386 ``socketcall``, x32) fails with ENOSYS."""
    spec = _SYSCALLS.get(platform.machine())
    if spec is None:
        return None
    arch, x32_bit, nr_socket, io_uring, keyring = spec
    deny_nosys = (*io_uring, *keyring)
    # Instructions as (code, jump-if-true label, jump-if-false label, k); labels
    # resolve to relative offsets below.
    prog: list[tuple[int, str | None, str | None, int]] = [
        (_BPF_LD_W_ABS, None, None, 4),  # seccomp_data.arch
        (_BPF_JEQ, "native", "nosys", arch),
    ]
    labels: dict[str, int] = {}
    labels["native"] = len(prog)
    prog.append((_BPF_LD_W_ABS, None, None, 0))  # seccomp_data.nr
    if x32_bit:
        prog.append((_BPF_JGE, "nosys", None, x32_bit))
    prog.append((_BPF_JEQ, "socket", None, nr_socket))
    prog.extend((_BPF_JEQ, "nosys", None, nr) for nr in deny_nosys)
    prog.append((_BPF_RET, None, None, _RET_ALLOW))
    labels["socket"] = len(prog)  # classic BPF jumps only forward: this comes after
    prog.append((_BPF_LD_W_ABS, None, None, 16))  # low 32 bits of args[0]: the family
    prog.append((_BPF_JEQ, "inet", None, _AF_INET))
    prog.append((_BPF_JEQ, "inet", None, _AF_INET6))
    prog.append((_BPF_RET, None, None, _RET_ERRNO | _EACCES))
    labels["inet"] = len(prog)
    prog.append((_BPF_RET, None, None, _RET_ALLOW))
    labels["nosys"] = len(prog)
    prog.append((_BPF_RET, None, None, _RET_ERRNO | _ENOSYS))
    out = bytearray()
    for i, (code, jt, jf, k) in enumerate(prog):
        t = labels[jt] - i - 1 if jt else 0
        f = labels[jf] - i - 1 if jf else 0
        if not (0 <= t < 256 and 0 <= f < 256):  # pragma: no cover - fixed program
            raise AssertionError("seccomp jump out of range")
        out += struct.pack("<HBBI", code, t, f, k)
    return bytes(out)


# -- the pids cgroup (max_processes for root) ------------------------------------------------


class _PidsCgroup:
    """A fresh pids cgroup (v1 ``pids`` hierarchy, or v2 when this process sits
    in the root cgroup with the pids controller enabled), or nothing."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, max_tasks: int) -> _PidsCgroup | None:
        base = cls._base()
        if base is None:
            return None
        path = base / f"nestor-sandbox-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            path.mkdir()
        except OSError:
            return None
        try:
            (path / "pids.max").write_text(str(max_tasks))
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
            return None
        return cls(path)

    @staticmethod
    def _base() -> Path | None:
        try:
            mounts = Path("/proc/self/mountinfo").read_text().splitlines()
            groups = Path("/proc/self/cgroup").read_text().splitlines()
        except OSError:
            return None
        v1_mount = v2_mount = None
        for line in mounts:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if len(fields) < 5 or len(rfields) < 3:
                continue
            if rfields[0] == "cgroup" and "pids" in rfields[2].split(","):
                v1_mount = Path(fields[4])
            elif rfields[0] == "cgroup2":
                v2_mount = Path(fields[4])
        for line in groups:
            hid, controllers, rel = line.split(":", 2)
            if v1_mount is not None and "pids" in controllers.split(","):
                base = v1_mount / rel.lstrip("/")
                return base if os.access(base, os.W_OK) else None
        if v2_mount is not None:
            for line in groups:
                hid, controllers, rel = line.split(":", 2)
                if hid == "0" and rel == "/":
                    try:
                        enabled = (v2_mount / "cgroup.subtree_control").read_text().split()
                    except OSError:
                        return None
                    if "pids" in enabled and os.access(v2_mount, os.W_OK):
                        return v2_mount
        return None

    def open_procs(self) -> int:
        return os.open(self.path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)

    def kill_all(self) -> None:
        with contextlib.suppress(OSError):
            for pid in (self.path / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    os.kill(int(pid), signal.SIGKILL)

    def remove(self) -> None:
        for _ in range(100):
            self.kill_all()
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.01)


# -- the command line -------------------------------------------------------------------------


def _under(path: Path, roots: Sequence[str]) -> bool:
    text = str(path)
    return any(text == r or text.startswith(r.rstrip("/") + "/") for r in roots)


def _mask_args(path: Path, empty_file: Path) -> list[str]:
    real = Path(os.path.realpath(path))
    if real.is_dir():
        return ["--tmpfs", str(real)]
    return ["--ro-bind", str(empty_file), str(real)]


def sandbox_command(
    bwrap: str,
    spec: ProgramSpec,
    spec_file: Path,
    limits: Limits,
    *,
    empty_file: Path,
    own_netns: bool,
    seccomp_fd: int | None,
    python: str = sys.executable,
) -> list[str]:
    """The full bubblewrap command line for one run (see the module docstring)."""
    tmp_bytes = str(limits.tmp_mb * 1024 * 1024)
    args = [bwrap, "--unshare-all"]
    if own_netns:
        args.append("--share-net")  # keep the interface-less namespace made before exec
    args += [
        "--die-with-parent",
        "--new-session",
        "--hostname",
        "nestor-sandbox",
        "--cap-drop",
        "ALL",
        "--ro-bind",
        "/",
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        tmp_bytes,
        "--tmpfs",
        "/dev/shm",  # noqa: S108
        "--size",
        tmp_bytes,
        "--tmpfs",
        "/tmp",  # noqa: S108
        "--tmpfs",
        "/run",
    ]
    if os.path.isdir("/var/run") and not os.path.islink("/var/run"):
        args += ["--tmpfs", "/var/run"]
    hidden: set[str] = set()
    for path in (*default_hide_paths(), *limits.hide_paths):
        real = os.path.realpath(path)
        if real in hidden or not os.path.lexists(real) or _under(Path(real), PRIVATE_ROOTS):
            continue
        hidden.add(real)
        args += _mask_args(Path(real), empty_file)
    # What the run needs, bound read-only at the same paths (after the masks,
    # so it shows even under /tmp): the interpreter, the host, the bundle, the
    # specification and the inputs. Then the one writable directory.
    needed: list[Path] = []
    for prefix in {sys.prefix, sys.base_prefix}:
        if _under(Path(prefix), PRIVATE_ROOTS):
            needed.append(Path(prefix))
    needed += [HOST_SCRIPT, spec.bundle.resolve(), spec_file]
    needed += _input_paths(spec)
    for path in needed:
        args += ["--ro-bind", str(path), str(path)]
    out_dir = spec.output_dir.resolve()
    args += ["--bind", str(out_dir), str(out_dir)]
    args += ["--chdir", str(out_dir), "--clearenv"]
    for key, value in _sandbox_env(limits).items():
        args += ["--setenv", key, value]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    args += ["--", python, "-I", "-B", str(HOST_SCRIPT), str(spec_file)]
    return args


def _input_paths(spec: ProgramSpec) -> list[Path]:
    """What the program may read of its inputs: each ready file, and the
    directory of pending ones (their files appear there after it starts)."""
    paths: list[Path] = []
    for f in spec.inputs.values():
        path = f.path.parent.resolve() if f.pending else f.path.resolve()
        if path not in paths:
            paths.append(path)
    return paths


def landlock_rules(spec: ProgramSpec, spec_file: Path, scratch: Path, limits: Limits) -> list[Rule]:
    """What a program may touch under the Landlock backend (an allowlist).

    Refuses (SandboxError) a hidden path that lies inside an allowed one:
    Landlock can only grant, so it could not hide it."""
    rules = [Rule(Path(p), sandbox_landlock.READ_EXEC, required=False) for p in LANDLOCK_SYSTEM]
    python = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    rules += [Rule(Path(p), sandbox_landlock.READ_EXEC) for p in sorted(python)]
    rules.append(Rule(Path(os.path.realpath(sys.executable)), sandbox_landlock.READ_EXEC))
    rules += [Rule(Path(p), sandbox_landlock.READ, required=False) for p in LANDLOCK_SYSTEM_FILES]
    rules += [
        Rule(Path(p), sandbox_landlock.DEVICE_RW, required=False) for p in LANDLOCK_DEVICES_RW
    ]
    rules += [Rule(Path(p), sandbox_landlock.READ, required=False) for p in LANDLOCK_DEVICES_RO]
    readable = [HOST_SCRIPT, spec.bundle.resolve(), spec_file]
    readable += _input_paths(spec)
    rules += [Rule(p, sandbox_landlock.READ) for p in readable]
    rules += [
        Rule(spec.output_dir.resolve(), sandbox_landlock.WRITE),
        Rule(scratch, sandbox_landlock.WRITE),
    ]
    allowed = [os.path.realpath(r.path) for r in rules if os.path.lexists(r.path)]
    for hidden in (*default_hide_paths(), *limits.hide_paths):
        real = os.path.realpath(hidden)
        inside = [a for a in allowed if _under(Path(real), [a])]
        if inside and os.path.lexists(real):
            raise SandboxError(
                f"program {spec.program!r}: the Landlock sandbox cannot hide {real}: it lies "
                f"inside {inside[0]}, which programs may read",
                hint="move the secret out of the Python installation, the bundle and the "
                "system directories, or use the bubblewrap backend",
            )
    return rules


def _sandbox_env(limits: Limits, tmp: str = "/tmp") -> dict[str, str]:  # noqa: S108
    """The program's whole environment; ``tmp`` is its scratch directory
    (bubblewrap's private tmpfs at /tmp, or the Landlock backend's directory)."""
    threads = str(max(1, limits.threads))
    return {
        "PATH": SANDBOX_PATH,
        "HOME": tmp,
        "TMPDIR": tmp,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "OMP_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "NUMEXPR_MAX_THREADS": threads,
        "MALLOC_ARENA_MAX": "2",
    }


# -- running ----------------------------------------------------------------------------------


_CLONE_NEWNET: Final = 0x40000000
_PR_SET_THP_DISABLE: Final = 41


@functools.cache
def _libc() -> ctypes.CDLL:
    # Loaded in the parent: a child between fork and exec should not dlopen.
    return ctypes.CDLL(None, use_errno=True)


def disable_huge_pages() -> None:
    """Turn transparent huge pages off for this process and every process it
    starts (the setting is inherited and survives execve): what the sandbox
    does for a program with ``Limits(huge_pages=False)``. Benchmarks give their
    plain baselines the same pages with it (as a ``preexec_fn``)."""
    if _libc().prctl(_PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_THP_DISABLE) failed")


def _preexec(
    limits: Limits,
    *,
    unshare_net: bool,
    cgroup_fd: int | None,
    confine: Callable[[], None] | None = None,
) -> Callable[[], None]:
    """Runs in the child between fork and exec: limits, cgroup, network
    namespace, then (Landlock backend) the confinement, which must come last:
    it takes away the rights the steps before it need."""
    libc = _libc()
    cpu = limits.effective_cpu_time_s()
    mem = limits.memory_mb * 1024 * 1024
    fsize = limits.max_file_mb * 1024 * 1024
    nproc = limits.max_processes

    def apply() -> None:
        if cgroup_fd is not None:
            os.write(cgroup_fd, b"0")
        if unshare_net and libc.unshare(_CLONE_NEWNET) != 0:
            # Fail closed: bwrap is told to keep this namespace (--share-net).
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed")
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no plaintext in core dumps
        if not limits.huge_pages:
            disable_huge_pages()
        if confine is not None:
            confine()

    return apply


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - TAIL_CHARS * 4))
            return f.read().decode("utf-8", "replace")[-TAIL_CHARS:]
    except OSError:
        return ""


def _read_report(path: Path) -> tuple[dict[str, Any] | None, str]:
    """The host's report (its last stdout line) and the rest of stdout."""
    text = _tail(path)
    lines = text.rstrip("\n").split("\n")
    for i in range(len(lines) - 1, -1, -1):
        line = lines[i].strip()
        if not line:
            continue
        try:
            report = json.loads(line)
        except ValueError:
            break
        if isinstance(report, dict) and report.get("type") == REPORT_TYPE:
            return report, "\n".join(lines[:i])
        break
    return None, text


def _signal_name(status: int, sandboxed: bool) -> str | None:
    """The signal that ended the program, from Popen's status or bwrap's 128+N."""
    number = -status if status < 0 else status - 128 if sandboxed and status > 128 else None
    if number is None:
        return None
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _fmt_s(seconds: float) -> str:
    return f"{seconds:g}"


def run_program(
    spec: ProgramSpec,
    *,
    limits: Limits,
    insecure_no_sandbox: bool = False,
    backend: str | None = None,
) -> SandboxResult:
    """Run ``spec`` in the sandbox under ``limits``; return its checked outputs.

    ``backend`` is ``bwrap``, ``landlock`` or ``auto`` (default: ``$NESTOR_SANDBOX``,
    else ``bwrap``; see :func:`choose_backend`). Raises :class:`ProgramError`
    when the program fails, exceeds a limit or returns bad outputs, and
    :class:`SandboxError` when the sandbox cannot run (bubblewrap missing
    included). ``insecure_no_sandbox`` runs the program host with the same
    limits but *without* a sandbox: for tests of program logic only, never for
    real data."""
    t0 = time.time()
    chosen, bwrap = ("none", None) if insecure_no_sandbox else choose_backend(spec.program, backend)
    _check_spec(spec)
    release = _InputRelease(spec) if spec.release_inputs else None
    try:
        with tempfile.TemporaryDirectory(prefix="nestor-run-") as tmp:
            run_dir = Path(tmp)
            spec_file = run_dir / "spec.json"
            loaded_fd = release.child_fd if release is not None else None
            spec_file.write_text(
                json.dumps(spec.to_json(loaded_fd), sort_keys=True), encoding="utf-8"
            )
            empty_file = run_dir / "empty"
            empty_file.write_bytes(b"")
            return _run(spec, limits, chosen, bwrap, run_dir, spec_file, empty_file, t0, release)
    finally:
        if release is not None:
            release.close()


LOADED_MESSAGE: Final = b"inputs-loaded\n"


class _InputRelease:
    """Deletes a run's input files when the program host says, on a pipe of
    its own, that it has loaded every input (``LOADED_MESSAGE``). The program
    gets tables, never paths, so the files are of no further use to it.

    Nothing here is trusted to the program host: a program that sends the
    message early only loses inputs it has not read yet, and one that never
    sends it leaves the files to the end of the run, as without a release."""

    def __init__(self, spec: ProgramSpec) -> None:
        self.paths = [f.path for f in spec.inputs.values()]
        self.read_fd, self.child_fd = os.pipe()

    def spawned(self) -> None:
        """After the sandbox started: only the child holds the write end now."""
        if self.child_fd >= 0:
            os.close(self.child_fd)
            self.child_fd = -1

    def on_readable(self) -> None:
        """Read the one message the program host may send (or the end of the
        pipe); the channel is done after it."""
        try:
            data = os.read(self.read_fd, len(LOADED_MESSAGE))
        except OSError:
            return
        if data == LOADED_MESSAGE:
            for path in self.paths:
                path.unlink(missing_ok=True)

    def close(self) -> None:
        for fd in (self.read_fd, self.child_fd):
            if fd >= 0:
                os.close(fd)
        self.read_fd = self.child_fd = -1


def _check_spec(spec: ProgramSpec) -> None:
    where = f"program {spec.program!r}"
    if not spec.bundle.is_dir():
        raise SandboxError(f"{where}: the bundle {spec.bundle} is not a directory")
    for dirpath, dirnames, filenames in os.walk(spec.bundle):
        for name in (*dirnames, *filenames):
            if name == "__pycache__" or name.endswith((".pyc", ".pyo")):
                raise SandboxError(
                    f"{where}: the bundle contains compiled bytecode: {Path(dirpath) / name}",
                    hint="bytecode is not reviewed source; remove it",
                )
    for ds, f in spec.inputs.items():
        if f.pending and not f.path.parent.is_dir():
            raise SandboxError(
                f"{where}: the directory of pending dataset {ds!r} ({f.path.parent}) is missing"
            )
        if not f.pending and not (f.path.is_file() or f.path.is_fifo()):
            raise SandboxError(f"{where}: the input file of dataset {ds!r} ({f.path}) is missing")
    out = spec.output_dir
    if not out.is_dir() or out.is_symlink():
        raise SandboxError(f"{where}: the output directory {out} is not a directory")
    if any(out.iterdir()):
        raise SandboxError(f"{where}: the output directory {out} is not empty")


def _run(
    spec: ProgramSpec,
    limits: Limits,
    backend: str,
    bwrap: str | None,
    run_dir: Path,
    spec_file: Path,
    empty_file: Path,
    t0: float,
    release: _InputRelease | None = None,
) -> SandboxResult:
    sandboxed = backend != "none"
    own_netns = bwrap is not None and _cap_sys_admin()
    cgroup = _PidsCgroup.create(limits.max_processes) if os.geteuid() == 0 else None
    if cgroup is not None:
        process_limit = f"pids cgroup ({limits.max_processes} tasks)"
    elif os.geteuid() == 0:
        process_limit = "none: RLIMIT_NPROC does not bind root and no pids cgroup was available"
    else:
        process_limit = f"RLIMIT_NPROC ({limits.max_processes}, per user)"
    stdout_path, stderr_path = run_dir / "stdout", run_dir / "stderr"
    confinement: sandbox_landlock.Confinement | None = None
    env = _sandbox_env(limits) if bwrap is None else {"PATH": SANDBOX_PATH}
    try:
        if backend == "landlock":
            # No private tmpfs without a mount namespace: the program's /tmp is
            # a directory of this run, removed with it.
            scratch = run_dir / "tmp"
            scratch.mkdir(mode=0o700)
            env = _sandbox_env(limits, str(scratch))
            rules = landlock_rules(spec, spec_file, scratch, limits)
            try:
                confinement = sandbox_landlock.Confinement.prepare(rules)
            except sandbox_landlock.LandlockError as exc:
                raise SandboxError(
                    f"the Landlock sandbox for program {spec.program!r} could not be "
                    f"prepared: {exc}"
                ) from None
        while True:
            seccomp = seccomp_filter() if bwrap is not None else None
            seccomp_r = _pipe_with(seccomp) if seccomp is not None else None
            if bwrap is not None:
                command = sandbox_command(
                    bwrap,
                    spec,
                    spec_file,
                    limits,
                    empty_file=empty_file,
                    own_netns=own_netns,
                    seccomp_fd=seccomp_r,
                )
            else:
                command = [sys.executable, "-I", "-B", str(HOST_SCRIPT), str(spec_file)]
            cgroup_fd = cgroup.open_procs() if cgroup is not None else None
            try:
                with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
                    t_spawn = time.time()
                    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    proc = subprocess.Popen(
                        command,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=err,
                        env=env,
                        cwd=str(spec.output_dir),
                        start_new_session=True,
                        close_fds=True,
                        pass_fds=tuple(
                            fd
                            for fd in (seccomp_r, release.child_fd if release else None)
                            if fd is not None
                        ),
                        preexec_fn=_preexec(
                            limits,
                            unshare_net=own_netns,
                            cgroup_fd=cgroup_fd,
                            confine=confinement.apply_in_child if confinement else None,
                        ),
                    )
            except subprocess.SubprocessError as exc:
                if own_netns:  # could not make our own namespace: let bwrap make one
                    own_netns = False
                    continue
                said = [
                    ln.removeprefix("nestor-sandbox: ")
                    for ln in _tail(stderr_path).splitlines()
                    if ln.startswith("nestor-sandbox: ")
                ]
                if confinement is not None and said:
                    raise SandboxError(
                        f"the Landlock sandbox for program {spec.program!r} could not start: "
                        f"{said[-1]}"
                    ) from None
                raise SandboxError(
                    f"cannot start the sandbox for program {spec.program!r}: setting its "
                    f"limits failed ({exc})"
                ) from exc
            except OSError as exc:
                raise SandboxError(
                    f"cannot start the sandbox for program {spec.program!r}: {exc}"
                ) from exc
            finally:
                for fd in (seccomp_r, cgroup_fd):
                    if fd is not None:
                        os.close(fd)
                if confinement is not None:
                    confinement.close()
            break
        if release is not None:
            release.spawned()
        with _killing(proc):
            waited = _wait(proc, limits.wall_time_s, release)
            timed_out = waited is None
            if waited is None:
                _kill_group(proc)
                waited = proc.wait()
            status = waited
        if cgroup is not None:
            cgroup.kill_all()
        if bwrap is None:
            # Stragglers the program may have left. Without a pid namespace this
            # is what ends them; the Landlock backend's seccomp filter refuses
            # setsid/setpgid, so none can leave the group.
            _kill_group(proc)
        t_end = time.time()
        usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        if cgroup is not None:
            cgroup.remove()
    report, stdout_rest = _read_report(stdout_path)
    # The program host measures its own CPU time: bubblewrap's reaper does not
    # pass its children's usage up to us.
    cpu_s = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    if report is not None and isinstance(report.get("cpu_s"), (int, float)):
        cpu_s = max(cpu_s, float(report["cpu_s"]))
    stderr_tail = _tail(stderr_path)
    stdout_tail = stdout_rest[-TAIL_CHARS:]
    if own_netns:
        network = "none"
    elif bwrap is not None:
        network = "loopback only"
    elif backend == "landlock":
        network = "no sockets"
    else:
        network = "host (insecure)"

    def fail(message: str, kind: str, **kw: Any) -> ProgramError:
        return ProgramError(
            message,
            kind=kind,
            program=spec.program,
            exit_status=status,
            stdout_tail=stdout_tail,
            stderr_tail=stderr_tail,
            **kw,
        )

    label = f"the program {spec.program!r}"
    if timed_out:
        raise fail(f"{label} exceeded its {_fmt_s(limits.wall_time_s)} s time limit", "time-limit")
    if report is None:
        signame = _signal_name(status, bwrap is not None)
        bwrap_lines = [ln for ln in stderr_tail.splitlines() if ln.startswith("bwrap:")]
        if bwrap is not None and status == 1 and bwrap_lines:
            raise SandboxError(
                f"the sandbox for program {spec.program!r} could not start: {bwrap_lines[-1]}",
                hint=f"bubblewrap needs user or mount namespaces; where they are not allowed, "
                f"set {BACKEND_ENV}=auto or landlock (docs/programs.md)",
            )
        if signame == "SIGXCPU" or (
            signame == "SIGKILL" and cpu_s >= limits.effective_cpu_time_s() - 0.5
        ):
            raise fail(
                f"{label} exceeded its {limits.effective_cpu_time_s()} s CPU time limit",
                "cpu-limit",
            )
        if signame == "SIGXFSZ":
            raise fail(
                f"{label} exceeded its file size limit ({limits.max_file_mb} MB per file)",
                "file-size-limit",
            )
        if signame is not None:
            raise fail(
                f"{label} crashed ({signame}); a crash inside a native library often means "
                f"it ran out of memory under its {limits.memory_mb} MB memory limit",
                "crashed",
            )
        raise fail(
            f"{label} ended with exit status {status} before reporting a result",
            "no-report",
            hint="a program must return its outputs, not exit the process",
        )
    raw_times = report.get("times")
    times: dict[str, Any] = raw_times if isinstance(raw_times, dict) else {}
    if not report.get("ok"):
        kind = str(report.get("kind") or "program-error")
        where = report.get("where") if isinstance(report.get("where"), str) else None
        hint = report.get("hint") if isinstance(report.get("hint"), str) else None
        message = str(report.get("message") or f"{label} failed")
        if kind == "memory-limit":
            message = f"{label} exceeded its {limits.memory_mb} MB memory limit"
        elif kind == "file-size-limit":
            message = f"{label} exceeded its file size limit ({limits.max_file_mb} MB per file)"
        if where:
            message = f"{message} (at {where})"
        raise fail(message, kind, where=where, hint=hint)
    outputs = _collect_outputs(spec, limits, report, fail)
    timings = _timings(times, t0, t_spawn, t_end, cpu_s, report.get("usage"))
    return SandboxResult(
        exit_status=status,
        outputs=outputs,
        stdout_tail=stdout_tail,
        stderr_tail=stderr_tail,
        timings=timings,
        sandboxed=sandboxed,
        network=network,
        process_limit=process_limit,
        command=tuple(command),
        backend=backend,
    )


def _wait(
    proc: subprocess.Popen[bytes], timeout: float, release: _InputRelease | None = None
) -> int | None:
    """The exit status, or None after ``timeout`` seconds. A pidfd wakes up the
    moment the child ends (Popen.wait(timeout) polls in steps of up to 50 ms);
    meanwhile ``release`` hears when the inputs are loaded."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
    deadline = time.monotonic() + timeout
    watching = [pidfd] + ([release.read_fd] if release is not None else [])
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select(watching, [], [], left)
            if pidfd in ready:
                return proc.wait()
            if release is not None and release.read_fd in ready:
                release.on_readable()
                watching.remove(release.read_fd)
    finally:
        os.close(pidfd)


def _pipe_with(data: bytes) -> int:
    r, w = os.pipe()
    try:
        os.write(w, data)  # a few hundred bytes: fits in the pipe buffer
    finally:
        os.close(w)
    return r


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def _killing(proc: subprocess.Popen[bytes]) -> Iterator[None]:
    """Kill the sandbox if the enclave is interrupted while waiting for it."""
    try:
        yield
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise


def _phase_usage(usage: object) -> dict[str, PhaseUsage]:
    """Per phase, the difference between the program host's resource usage
    at the marks around it (``[user_s, sys_s, minor_faults]`` each)."""
    if not isinstance(usage, dict):
        return {}

    def mark(name: str) -> tuple[float, float, int] | None:
        value = usage.get(name)
        if (
            isinstance(value, list)
            and len(value) == 3
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        ):
            return float(value[0]), float(value[1]), int(value[2])
        return None

    phases: dict[str, PhaseUsage] = {}
    for phase, start, end in (
        ("inputs", "started", "inputs_loaded"),
        ("program", "program_started", "program_finished"),
    ):
        a, b = mark(start), mark(end)
        if a is not None and b is not None:
            phases[phase] = PhaseUsage(b[0] - a[0], b[1] - a[1], b[2] - a[2])
    return phases


def _timings(
    times: Mapping[str, Any],
    t0: float,
    t_spawn: float,
    t_end: float,
    cpu_s: float,
    usage: object = None,
) -> Timings:

    def at(name: str, default: float) -> float:
        value = times.get(name)
        return float(value) if isinstance(value, (int, float)) else default

    started = at("started", t_spawn)
    loaded = at("inputs_loaded", started)
    program_started = at("program_started", loaded)
    program_finished = at("program_finished", program_started)
    written = at("outputs_written", program_finished)
    return Timings(
        usage=_phase_usage(usage),
        setup_s=t_spawn - t0,
        start_s=started - t_spawn,
        inputs_s=loaded - started,
        import_s=program_started - loaded,
        program_s=program_finished - program_started,
        outputs_s=written - program_finished,
        teardown_s=t_end - written,
        total_s=t_end - t0,
        cpu_s=cpu_s,
    )


def _collect_outputs(
    spec: ProgramSpec,
    limits: Limits,
    report: Mapping[str, Any],
    fail: Callable[..., ProgramError],
) -> dict[str, OutputFile]:
    """List and check the output directory; the sandboxed code is not trusted
    to have done it. JSON outputs are rewritten in canonical form."""
    label = f"the program {spec.program!r}"
    outputs: dict[str, OutputFile] = {}
    total = 0
    out_dir = spec.output_dir
    for entry in sorted(os.scandir(out_dir), key=lambda e: e.name):
        st = os.lstat(entry.path)
        if not stat.S_ISREG(st.st_mode):
            kind = "symbolic link" if stat.S_ISLNK(st.st_mode) else "non-regular file"
            raise fail(
                f"{label} left a {kind} {entry.name!r} in its output directory; outputs are "
                "regular NAME.csv and NAME.json files",
                "bad-output",
            )
        match = OUTPUT_FILE.fullmatch(entry.name)
        if match is None:
            raise fail(
                f"{label} left an unexpected file {entry.name[:80]!r} in its output directory; "
                "outputs are NAME.csv and NAME.json with NAME matching [a-z0-9_-]+",
                "bad-output",
            )
        name, ext = match.groups()
        if name in outputs:
            raise fail(f"{label} wrote output {name!r} twice (as CSV and JSON)", "bad-output")
        total += st.st_size
        if total > limits.max_output_mb * 1024 * 1024:
            raise fail(
                f"{label} wrote more than its {limits.max_output_mb} MB output limit",
                "bad-output",
            )
        path = out_dir / entry.name
        if ext == "json":
            data = _read_nofollow(path)
            try:
                value = canonical.decode(data)
                if not isinstance(value, dict):
                    raise CanonicalEncodingError("the top level is not an object")
                encoded = canonical.encode(value)
            except CanonicalEncodingError as exc:
                raise fail(
                    f"{label} returned output {name!r}, which is not canonical-JSON-able: "
                    f"{exc.message}",
                    "bad-output",
                ) from None
            path.unlink()
            path.write_bytes(encoded)
            outputs[name] = OutputFile(name, path, "json", len(encoded))
        else:
            _check_utf8(path, name, label, fail)
            outputs[name] = OutputFile(name, path, "table", st.st_size)
    reported = report.get("outputs")
    names = (
        {str(o.get("name")) for o in reported if isinstance(o, dict)}
        if isinstance(reported, list)
        else set()
    )
    if names != set(outputs):
        raise fail(
            f"{label}'s output directory ({', '.join(sorted(outputs)) or 'empty'}) does not "
            f"match the outputs it returned ({', '.join(sorted(names)) or 'none'})",
            "bad-output",
        )
    return outputs


def _read_nofollow(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _check_utf8(path: Path, name: str, label: str, fail: Callable[..., ProgramError]) -> None:
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        with os.fdopen(fd, "rb") as f:
            while block := f.read(1 << 20):
                decoder.decode(block)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise fail(
            f"{label} wrote output {name!r}, which is not UTF-8 text", "bad-output"
        ) from None
