"""A program sandbox that needs no namespaces: Landlock, seccomp, no capabilities.

Bubblewrap needs to create namespaces. In a hardened Kubernetes pod (all
capabilities dropped, ``allowPrivilegeEscalation: false``, the runtime's
default seccomp profile) creating a user namespace is usually refused, so
bubblewrap cannot start. This backend confines the program with mechanisms
an unprivileged process may apply *to itself* (docs/programs.md, "The
Landlock backend"):

- **Landlock** (Linux >= 5.13, unprivileged): an allowlist of the files the
  program may read, execute or write. Everything not listed is refused with
  ``EACCES``, whatever the file mode or the uid: the Python installation,
  ``/usr`` and ``/lib*`` (read, execute), a few device and ``/etc`` files,
  the program host, the bundle, the run specification and the inputs (read),
  the output directory and a private scratch directory (read, write). From
  ABI 4 TCP ``bind``/``connect`` are refused on every port; from ABI 6 the
  program can signal no process and reach no abstract Unix socket outside
  its own domain. Landlock also forbids ``ptrace`` of processes outside the
  domain (so the enclave's memory stays out of reach) and mount changes.
- **seccomp** (classic BPF): ``socket()`` fails with ``EACCES`` for every
  family (Landlock covers only TCP; UDP, raw, netlink, vsock and Unix
  sockets are refused here), and ``ptrace``, ``process_vm_readv/writev``,
  the kernel keyring, ``bpf``, ``perf_event_open``, mounting, namespaces
  (``unshare``, ``setns``, namespace flags of ``clone``; ``clone3``, whose
  flags a classic filter cannot read, says ``ENOSYS`` and glibc falls back
  to ``clone``), ``io_uring``, modules, ``kexec``, ``open_by_handle_at``,
  clock and host name changes, and ``setsid``/``setpgid`` (so every
  descendant stays in the process group that the enclave kills) fail. Any
  syscall of a foreign ABI (i386, x32) fails with ``ENOSYS``.
- **no capabilities and no new privileges**: the ambient and bounding sets
  are emptied (as far as this process may), the permitted set is cleared and
  ``PR_SET_NO_NEW_PRIVS`` is set, so even uid 0 gains nothing at ``execve``;
  ``PR_SET_PDEATHSIG`` kills the program if the enclave thread that started
  it dies.

Where it is applied: :class:`Confinement` builds the Landlock ruleset in
the enclave process (opening each allowed path there, so a failure is an
ordinary exception with a clear message) and assembles the seccomp program;
:meth:`Confinement.apply_in_child` then runs in the forked child between
``fork`` and ``execve`` (``subprocess``'s ``preexec_fn``, after the resource
limits) and only makes syscalls on what was prepared. So nothing of the
program's interpreter runs unconfined, no launcher process is needed, and
the program host needs no change. The ruleset descriptor is close-on-exec.

This module imports nothing from the rest of Nestor, so that
``nestor.enclave.sandbox`` can import it without a cycle.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import platform
import stat
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "Confinement",
    "LandlockError",
    "Rule",
    "landlock_abi",
    "seccomp_filter",
    "unavailable_reason",
]

# -- Landlock ------------------------------------------------------------------------------

# The same numbers on x86_64 and aarch64 (new syscalls share one table).
_SYS_CREATE_RULESET: Final = 444
_SYS_ADD_RULE: Final = 445
_SYS_RESTRICT_SELF: Final = 446
_CREATE_RULESET_VERSION: Final = 1
_RULE_PATH_BENEATH: Final = 1

FS_EXECUTE: Final = 1 << 0
FS_WRITE_FILE: Final = 1 << 1
FS_READ_FILE: Final = 1 << 2
FS_READ_DIR: Final = 1 << 3
FS_REMOVE_DIR: Final = 1 << 4
FS_REMOVE_FILE: Final = 1 << 5
FS_MAKE_CHAR: Final = 1 << 6
FS_MAKE_DIR: Final = 1 << 7
FS_MAKE_REG: Final = 1 << 8
FS_MAKE_SOCK: Final = 1 << 9
FS_MAKE_FIFO: Final = 1 << 10
FS_MAKE_BLOCK: Final = 1 << 11
FS_MAKE_SYM: Final = 1 << 12
FS_REFER: Final = 1 << 13  # ABI 2
FS_TRUNCATE: Final = 1 << 14  # ABI 3
FS_IOCTL_DEV: Final = 1 << 15  # ABI 5
NET_BIND_TCP: Final = 1 << 0  # ABI 4
NET_CONNECT_TCP: Final = 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET: Final = 1 << 0  # ABI 6
SCOPE_SIGNAL: Final = 1 << 1  # ABI 6

# Rights that make sense on a file (not a directory); a rule on a file with any
# other right is refused by the kernel.
_FILE_RIGHTS: Final = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV

READ: Final = FS_READ_FILE | FS_READ_DIR
READ_EXEC: Final = READ | FS_EXECUTE
# No symbolic links, FIFOs, sockets or device nodes even where the program may
# write: the enclave would refuse them as outputs anyway, and a socket file or
# FIFO is a channel to whoever else can see the directory.
WRITE: Final = (
    READ
    | FS_WRITE_FILE
    | FS_TRUNCATE
    | FS_MAKE_REG
    | FS_MAKE_DIR
    | FS_REMOVE_FILE
    | FS_REMOVE_DIR
    | FS_REFER
)
DEVICE_RW: Final = FS_READ_FILE | FS_WRITE_FILE | FS_TRUNCATE


def _fs_rights(abi: int) -> int:
    rights = (1 << 13) - 1
    if abi >= 2:
        rights |= FS_REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    if abi >= 5:
        rights |= FS_IOCTL_DEV
    return rights


class LandlockError(Exception):
    """The Landlock sandbox cannot be prepared; the message says why."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # the kernel's struct is __attribute__((packed)): 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    libc.prctl.restype = ctypes.c_int
    # Five arguments always: several options require the unused ones to be zero.
    libc.prctl.argtypes = [ctypes.c_int, *[ctypes.c_ulong] * 4]
    return libc


def _syscall(*args: int | ctypes.c_void_p | None) -> int:
    return int(_libc().syscall(*args))


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, or a negative errno: ``-ENOSYS``
    (no Landlock in this kernel, or a seccomp profile refuses the syscall) or
    ``-EOPNOTSUPP`` (built in but not enabled at boot)."""
    if platform.system() != "Linux":
        return -errno.ENOSYS
    result = _syscall(_SYS_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION)
    return result if result >= 0 else -ctypes.get_errno()


def unavailable_reason() -> str | None:
    """Why the Landlock backend cannot run on this machine, or None if it can."""
    machine = platform.machine()
    if _SECCOMP_ARCH.get(machine) is None:
        return (
            f"there is no seccomp filter for architecture {machine!r} "
            "(only x86_64 and aarch64), and without one programs could open sockets"
        )
    abi = landlock_abi()
    if abi == -errno.EOPNOTSUPP:
        return (
            "Landlock is built into the kernel but not enabled "
            "(add 'landlock' to the lsm= boot parameter)"
        )
    if abi < 0:
        return (
            "the kernel has no Landlock (Linux 5.13 or later with CONFIG_SECURITY_LANDLOCK), "
            f"or a seccomp profile refuses its system calls ({os.strerror(-abi)})"
        )
    return None


@dataclass(frozen=True)
class Rule:
    """``access`` (``READ``, ``READ_EXEC``, ``WRITE``, …) beneath ``path``.

    An optional rule whose path does not exist is skipped (``/lib32`` on a
    machine without it); a required one is an error."""

    path: Path
    access: int
    required: bool = True


# -- seccomp ---------------------------------------------------------------------------

_BPF_LD_W_ABS: Final = 0x20
_BPF_JEQ: Final = 0x15
_BPF_JGE: Final = 0x35
_BPF_JSET: Final = 0x45
_BPF_RET: Final = 0x06
_RET_ALLOW: Final = 0x7FFF0000
_RET_ERRNO: Final = 0x00050000
_CLONE_NAMESPACES: Final = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET


@dataclass(frozen=True)
class _Arch:
    token: int  # AUDIT_ARCH_*
    x32_bit: int  # syscalls at or above this number are x32 (0: none)
    socket: int
    clone: int
    eperm: tuple[int, ...]
    enosys: tuple[int, ...]


# Numbers from the kernel's unistd tables. EPERM: operations a program has no
# business doing; ENOSYS: interfaces that should look absent (clone3 so that
# glibc falls back to clone, whose flags the filter can read).
_SECCOMP_ARCH: Final[dict[str, _Arch]] = {
    "x86_64": _Arch(
        token=0xC000003E,
        x32_bit=0x40000000,
        socket=41,
        clone=56,
        eperm=(
            101,  # ptrace
            310,  # process_vm_readv
            311,  # process_vm_writev
            438,  # pidfd_getfd
            312,  # kcmp
            321,  # bpf
            298,  # perf_event_open
            323,  # userfaultfd
            165,  # mount
            166,  # umount2
            155,  # pivot_root
            161,  # chroot
            428,  # open_tree
            429,  # move_mount
            430,  # fsopen
            431,  # fsconfig
            432,  # fsmount
            433,  # fspick
            442,  # mount_setattr
            272,  # unshare
            308,  # setns
            303,  # name_to_handle_at
            304,  # open_by_handle_at
            300,  # fanotify_init
            175,  # init_module
            313,  # finit_module
            176,  # delete_module
            246,  # kexec_load
            320,  # kexec_file_load
            169,  # reboot
            167,  # swapon
            168,  # swapoff
            163,  # acct
            179,  # quotactl
            443,  # quotactl_fd
            153,  # vhangup
            103,  # syslog
            164,  # settimeofday
            227,  # clock_settime
            305,  # clock_adjtime
            159,  # adjtimex
            170,  # sethostname
            171,  # setdomainname
            172,  # iopl
            173,  # ioperm
            212,  # lookup_dcookie
            112,  # setsid
            109,  # setpgid
        ),
        enosys=(
            435,  # clone3
            425,  # io_uring_setup
            426,  # io_uring_enter
            427,  # io_uring_register
            248,  # add_key
            249,  # request_key
            250,  # keyctl
        ),
    ),
    "aarch64": _Arch(
        token=0xC00000B7,
        x32_bit=0,
        socket=198,
        clone=220,
        eperm=(
            117,  # ptrace
            270,  # process_vm_readv
            271,  # process_vm_writev
            438,  # pidfd_getfd
            272,  # kcmp
            280,  # bpf
            241,  # perf_event_open
            282,  # userfaultfd
            40,  # mount
            39,  # umount2
            41,  # pivot_root
            51,  # chroot
            428,  # open_tree
            429,  # move_mount
            430,  # fsopen
            431,  # fsconfig
            432,  # fsmount
            433,  # fspick
            442,  # mount_setattr
            97,  # unshare
            268,  # setns
            264,  # name_to_handle_at
            265,  # open_by_handle_at
            262,  # fanotify_init
            105,  # init_module
            273,  # finit_module
            106,  # delete_module
            104,  # kexec_load
            294,  # kexec_file_load
            142,  # reboot
            224,  # swapon
            225,  # swapoff
            89,  # acct
            60,  # quotactl
            443,  # quotactl_fd
            58,  # vhangup
            116,  # syslog
            170,  # settimeofday
            112,  # clock_settime
            266,  # clock_adjtime
            171,  # adjtimex
            161,  # sethostname
            162,  # setdomainname
            18,  # lookup_dcookie
            157,  # setsid
            154,  # setpgid
        ),
        enosys=(
            435,  # clone3
            425,  # io_uring_setup
            426,  # io_uring_enter
            427,  # io_uring_register
            217,  # add_key
            218,  # request_key
            219,  # keyctl
        ),
    ),
}


class _Bpf:
    """A tiny classic-BPF assembler with forward jumps to named labels."""

    def __init__(self) -> None:
        self.insns: list[tuple[int, str | None, str | None, int]] = []
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.labels[name] = len(self.insns)

    def op(self, code: int, k: int, jt: str | None = None, jf: str | None = None) -> None:
        self.insns.append((code, jt, jf, k))

    def assemble(self) -> bytes:
        out = bytearray()
        for i, (code, jt, jf, k) in enumerate(self.insns):
            t = self.labels[jt] - i - 1 if jt else 0
            f = self.labels[jf] - i - 1 if jf else 0
            if not (0 <= t < 256 and 0 <= f < 256):  # pragma: no cover - fixed program
                raise AssertionError("seccomp jump out of range")
            out += struct.pack("<HBBI", code, t, f, k)
        return bytes(out)


def seccomp_filter(machine: str | None = None) -> bytes | None:
    """The Landlock backend's seccomp program (see the module docstring), or
    None on an architecture without syscall numbers here."""
    arch = _SECCOMP_ARCH.get(machine or platform.machine())
    if arch is None:
        return None
    bpf = _Bpf()
    bpf.op(_BPF_LD_W_ABS, 4)  # seccomp_data.arch
    bpf.op(_BPF_JEQ, arch.token, None, "nosys")
    bpf.op(_BPF_LD_W_ABS, 0)  # seccomp_data.nr
    if arch.x32_bit:
        bpf.op(_BPF_JGE, arch.x32_bit, "nosys")
    bpf.op(_BPF_JEQ, arch.socket, "eacces")
    bpf.op(_BPF_JEQ, arch.clone, "clone")
    for nr in arch.eperm:
        bpf.op(_BPF_JEQ, nr, "eperm")
    for nr in arch.enosys:
        bpf.op(_BPF_JEQ, nr, "nosys")
    bpf.op(_BPF_RET, _RET_ALLOW)
    bpf.label("clone")
    bpf.op(_BPF_LD_W_ABS, 16)  # low 32 bits of args[0]: clone's flags on both arches
    bpf.op(_BPF_JSET, _CLONE_NAMESPACES, "eperm")
    bpf.op(_BPF_RET, _RET_ALLOW)
    bpf.label("eacces")
    bpf.op(_BPF_RET, _RET_ERRNO | errno.EACCES)
    bpf.label("eperm")
    bpf.op(_BPF_RET, _RET_ERRNO | errno.EPERM)
    bpf.label("nosys")
    bpf.op(_BPF_RET, _RET_ERRNO | errno.ENOSYS)
    return bpf.assemble()


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_PR_SET_PDEATHSIG: Final = 1
_PR_SET_SECCOMP: Final = 22
_PR_CAPBSET_READ: Final = 23
_PR_CAPBSET_DROP: Final = 24
_PR_SET_NO_NEW_PRIVS: Final = 38
_PR_CAP_AMBIENT: Final = 47
_PR_CAP_AMBIENT_CLEAR_ALL: Final = 4
_SECCOMP_MODE_FILTER: Final = 2
_CAP_VERSION_3: Final = 0x20080522
_SIGKILL: Final = 9


def _last_cap() -> int:
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return 63  # dropping an unknown capability fails harmlessly with EINVAL


# -- the confinement ----------------------------------------------------------------------


class Confinement:
    """A prepared Landlock ruleset and seccomp program for one run.

    Create it in the enclave process with :meth:`prepare`, call
    :meth:`apply_in_child` in the child between fork and exec, and
    :meth:`close` in the enclave once the child has started."""

    def __init__(self, ruleset_fd: int, abi: int, seccomp: bytes) -> None:
        self.ruleset_fd = ruleset_fd
        self.abi = abi
        # Everything the child needs is built here: after fork it only makes
        # syscalls on prepared memory.
        count = len(seccomp) // 8
        self._filters = (_SockFilter * count).from_buffer_copy(seccomp)
        self._fprog = _SockFprog(count, self._filters)
        self._cap_header = _CapHeader(_CAP_VERSION_3, 0)
        self._cap_data = (_CapData * 2)()
        self._last_cap = _last_cap()
        self._libc = _libc()

    @classmethod
    def prepare(cls, rules: Sequence[Rule]) -> Confinement:
        """Build the ruleset: the rights this ABI knows are handled (denied
        unless a rule grants them), TCP bind/connect are handled with no port
        allowed, and signals and abstract Unix sockets are scoped."""
        reason = unavailable_reason()
        if reason is not None:
            raise LandlockError(reason)
        abi = landlock_abi()
        seccomp = seccomp_filter()
        assert seccomp is not None  # unavailable_reason() checked the architecture
        fs_rights = _fs_rights(abi)
        attr = _RulesetAttr(fs_rights, 0, 0)
        size = 8
        if abi >= 4:
            attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP
            size = 16
        if abi >= 6:
            attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
            size = 24
        fd = _syscall(_SYS_CREATE_RULESET, ctypes.c_void_p(ctypes.addressof(attr)), size, 0)
        if fd < 0:
            err = ctypes.get_errno()
            raise LandlockError(f"landlock_create_ruleset failed: {os.strerror(err)}")
        try:
            for rule in rules:
                _add_rule(fd, rule, fs_rights)
        except BaseException:
            os.close(fd)
            raise
        os.set_inheritable(fd, False)
        return cls(fd, abi, seccomp)

    def close(self) -> None:
        if self.ruleset_fd >= 0:
            os.close(self.ruleset_fd)
            self.ruleset_fd = -1

    def apply_in_child(self) -> None:
        """Confine the calling process; runs after fork, before exec.

        Raises OSError (after writing ``nestor-sandbox: …`` to fd 2, which the
        enclave reads back) if a step fails: the exec then never happens."""
        libc = self._libc
        self._check(libc.prctl(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0), "PR_SET_PDEATHSIG")
        # Best effort: without CAP_SETPCAP the bounding set stays, but with
        # no_new_privs and an empty permitted set execve cannot grant anything,
        # not even to uid 0.
        libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
        for cap in range(self._last_cap + 1):
            if libc.prctl(_PR_CAPBSET_READ, cap, 0, 0, 0) == 1:
                libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)
        self._check(
            libc.capset(ctypes.byref(self._cap_header), self._cap_data),
            "dropping capabilities (capset)",
        )
        self._check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")
        self._check(
            int(libc.syscall(_SYS_RESTRICT_SELF, self.ruleset_fd, 0)), "landlock_restrict_self"
        )
        self._check(
            libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(self._fprog), 0, 0),
            "installing the seccomp filter",
        )

    @staticmethod
    def _check(result: int, what: str) -> None:
        if result < 0:
            err = ctypes.get_errno()
            message = f"{what} failed: {os.strerror(err)}"
            os.write(2, f"nestor-sandbox: {message}\n".encode())
            raise OSError(err, message)


def _add_rule(ruleset_fd: int, rule: Rule, fs_rights: int) -> None:
    try:
        fd = os.open(rule.path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        if rule.required:
            raise LandlockError(f"{rule.path} does not exist") from None
        return
    except OSError as exc:
        raise LandlockError(f"cannot open {rule.path}: {exc.strerror}") from None
    try:
        access = rule.access & fs_rights
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            access &= _FILE_RIGHTS
        attr = _PathBeneathAttr(access, fd)
        if (
            _syscall(
                _SYS_ADD_RULE,
                ruleset_fd,
                _RULE_PATH_BENEATH,
                ctypes.c_void_p(ctypes.addressof(attr)),
                0,
            )
            < 0
        ):
            err = ctypes.get_errno()
            raise LandlockError(f"landlock_add_rule for {rule.path} failed: {os.strerror(err)}")
    finally:
        os.close(fd)
