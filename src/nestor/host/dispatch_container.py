"""The container dispatcher: each enclave worker runs as an OCI container (podman).

:class:`ContainerDispatcher` is the :class:`~nestor.host.dispatcher.LocalDispatcher`
(same supervision, restart backoff, log files and shutdown) with a podman
command in place of a local process: ``podman run`` in the foreground is the
supervised process, and its exit status is the container's. The container
runs from a root filesystem directory that ``scripts/build-rootfs.sh``
builds (the layout of ``deploy/images/enclave.Containerfile``), so the same
entrypoint and paths that Kubernetes runs are exercised on one machine.

What a container gets (docs/dispatcher-container.md explains each flag):

- the root filesystem read-only, a private size-limited ``/tmp`` and
  ``/dev/shm`` (job scratch: decrypted inputs stay in memory), user
  10001 with no capabilities, ``no-new-privileges``, limits on processes,
  open files, pids and optionally memory/CPU;
- podman's default seccomp profile with one change: ``sethostname`` and
  ``setdomainname`` are allowed without CAP_SYS_ADMIN, because bubblewrap
  names the sandbox's own UTS namespace (``--hostname``). The kernel still
  lets a process change only a UTS namespace that its user namespace owns,
  so the container's own hostname stays out of reach;
- ``/proc`` without podman's masks (``unmask=/proc/*``): the program sandbox
  inside is bubblewrap, which mounts a fresh procfs in its own user
  namespace, and the kernel allows that only when no part of the existing
  procfs is covered by another mount. The process is uid 10001 with no
  capabilities, so the unmasked files stay unreadable or read-only to it;
- read-only binds of exactly three things: a copy of the contract, the
  programs directory, and (simulated TEE only) a copy of the simulated
  vendor root key, the stand-in for the TEE's hardware key. Nothing else
  of the host's configuration directory (party keys live there) is mounted.

Names and labels tie each container to this dispatcher's state directory,
so :meth:`ContainerDispatcher.stop_all` and the next start remove
containers left behind by a host that died.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from nestor.errors import ConfigurationError
from nestor.host.dispatcher import EnclaveSpec, LocalDispatcher, fill_command
from nestor.simtee.vendor import VENDOR_KEY_FILE, load_or_create_vendor_key, vendor_dir

log = logging.getLogger("nestor.host.dispatcher")

ENTRYPOINT: Final = "/opt/nestor/bin/nestor"
CONTAINER_CONTRACT: Final = "/etc/nestor/contract.json"
CONTAINER_CONFIG_DIR: Final = "/etc/nestor/config"
CONTAINER_PROGRAMS_DIR: Final = "/var/lib/nestor/programs"
ENCLAVE_UID: Final = 10001
CONTAINER_COMMAND: Final[tuple[str, ...]] = (
    ENTRYPOINT,
    "enclave",
    "run",
    "--host",
    "{host}",
    "--contract",
    "{contract}",
    "--tee",
    "{tee}",
)
"""The command inside the container; ``{contract}`` is the in-container path."""
LABEL_DISPATCHER: Final = "io.nestor.dispatcher"
LABEL_ENCLAVE: Final = "io.nestor.enclave"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
MANIFEST: Final = "etc/nestor-rootfs/manifest.txt"
PODMAN_SECCOMP: Final = Path("/usr/share/containers/seccomp.json")
"""podman's default seccomp profile on Debian (containers.conf ``seccomp_profile``)."""
SANDBOX_SYSCALLS: Final = ("sethostname", "setdomainname")
"""What bubblewrap needs beyond podman's default profile for a process without CAP_SYS_ADMIN."""
# TEE kinds whose evidence is signed with the simulated vendor key.
_SIMULATED_TEES: Final = frozenset({"sim", "auto"})
# podman run's own exit statuses (podman-run(1), "Exit Status").
_PODMAN_STATUSES: Final = {
    125: "podman could not create or start the container (bad option, missing rootfs, "
    "runtime error)",
    126: "the container's command could not be invoked",
    127: "the container's command was not found in the root filesystem",
}


@dataclass(frozen=True)
class ContainerOptions:
    """How enclave containers are run.

    ``rootfs``: the root filesystem (``scripts/build-rootfs.sh`` prints it).
    ``programs_dir``: the host directory of program bundles, bound read-only.
    ``state_dir``: where the dispatcher stages each enclave's contract copy
    and key copy; its path also names the containers.
    ``network``: podman's ``--network``; ``host`` lets the enclave reach a
    host URL on loopback (the enclave only ever calls out to the host).
    ``nofile``/``nproc``: RLIMIT_NOFILE/RLIMIT_NPROC (soft = hard); podman on
    this kind of machine needs them explicit, and RLIMIT_NPROC counts every
    process of uid 10001 on the machine, all enclave containers together.
    ``memory``: podman's ``--memory`` (e.g. ``8g``); ``None`` for no limit.
    ``command``: the command inside the container (a template, as
    :data:`CONTAINER_COMMAND`).
    ``extra_args``: more ``podman run`` options, before the root filesystem.
    ``seccomp_base``: the seccomp profile that :func:`enclave_seccomp_profile`
    extends (podman's default).
    """

    rootfs: Path
    programs_dir: Path
    state_dir: Path
    podman: str = "podman"
    runtime: str = "runc"
    network: str = "host"
    user: int = ENCLAVE_UID
    nofile: int = 4096
    nproc: int = 4096
    pids_limit: int = 2048
    memory: str | None = None
    cpus: float | None = None
    tmp_mb: int = 1024
    shm_mb: int = 2048
    command: tuple[str, ...] = CONTAINER_COMMAND
    seccomp_base: Path = PODMAN_SECCOMP
    extra_args: tuple[str, ...] = ()


def enclave_seccomp_profile(base: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` (an OCI/podman seccomp profile) with :data:`SANDBOX_SYSCALLS`
    allowed unconditionally and nothing else changed."""
    profile = copy.deepcopy(dict(base))
    rules = []
    for rule in profile.get("syscalls", []):
        names = [n for n in rule.get("names", []) if n not in SANDBOX_SYSCALLS]
        if names:
            rules.append({**rule, "names": names})
    rules.append({"names": list(SANDBOX_SYSCALLS), "action": "SCMP_ACT_ALLOW"})
    profile["syscalls"] = rules
    return profile


def write_seccomp_profile(base: Path, target: Path) -> Path:
    """Derive the enclave profile from ``base`` and write it to ``target``."""
    try:
        loaded = json.loads(base.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(
            f"cannot read podman's seccomp profile {base}: {exc}",
            hint="install podman (its package ships the profile), or pass another base profile",
        ) from None
    if not isinstance(loaded, dict) or not isinstance(loaded.get("syscalls"), list):
        raise ConfigurationError(f"{base} is not a seccomp profile (no syscalls list)")
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(enclave_seccomp_profile(loaded), indent=1), encoding="utf-8")
    tmp.replace(target)
    return target


def exit_reason(code: int | None) -> str | None:
    """Why ``podman run`` ended, in words: podman's own statuses, a signal,
    or the enclave's exit status (1: a Nestor error, 2: configuration)."""
    if code is None:
        return None
    if code in _PODMAN_STATUSES:
        return f"exit status {code}: {_PODMAN_STATUSES[code]}"
    if code < 0:
        return f"podman was killed by signal {-code}"
    if code > 128:
        sig = code - 128
        extra = " (SIGKILL: out of memory, or stopped by force)" if sig == 9 else ""
        return f"the enclave was killed by signal {sig}{extra}"
    if code == 0:
        return "the enclave exited normally"
    if code == 2:
        return "exit status 2: the enclave refused its configuration (see its log)"
    return f"exit status {code}: the enclave failed (see its log)"


def container_token(state_dir: Path) -> str:
    """A short name for one dispatcher, stable across host restarts."""
    return hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]


def _check_mount_path(path: Path, what: str) -> str:
    text = str(path)
    # podman's --volume splits on ':' and its options on ','.
    if ":" in text or "," in text:
        raise ConfigurationError(
            f"the {what} path {text!r} contains ':' or ',', which podman's --volume cannot take",
            hint="use a directory whose path has neither",
        )
    return text


def check_rootfs(rootfs: Path) -> None:
    """Refuse a directory that is not a root filesystem from build-rootfs.sh."""
    if not (rootfs / MANIFEST).is_file() or not (rootfs / ENTRYPOINT.lstrip("/")).exists():
        raise ConfigurationError(
            f"{rootfs} is not an enclave root filesystem (no {MANIFEST} or {ENTRYPOINT})",
            hint="build one with scripts/build-rootfs.sh, which prints its path",
        )


def podman_command(
    options: ContainerOptions,
    *,
    name: str,
    labels: Mapping[str, str],
    host_url: str,
    tee: str,
    contract: Path,
    vendor_key_dir: Path | None,
    seccomp_profile: Path,
) -> list[str]:
    """The full ``podman run`` argv for one enclave container."""
    o = options
    binds = [
        (_check_mount_path(contract, "staged contract"), CONTAINER_CONTRACT),
        (_check_mount_path(o.programs_dir, "programs directory"), CONTAINER_PROGRAMS_DIR),
    ]
    if vendor_key_dir is not None:
        binds.append(
            (
                _check_mount_path(vendor_key_dir, "staged vendor key"),
                f"{CONTAINER_CONFIG_DIR}/simulated-tee",
            )
        )
    argv = [
        o.podman,
        "run",
        "--rm",
        "--replace",
        "--name",
        name,
        "--runtime",
        o.runtime,
        "--network",
        o.network,
        "--hostname",
        "nestor-enclave",
        "--user",
        f"{o.user}:{o.user}",
        "--read-only",
        "--read-only-tmpfs=false",
        "--tmpfs",
        f"/tmp:rw,nosuid,nodev,noexec,mode=1777,size={o.tmp_mb}m",  # noqa: S108
        "--shm-size",
        f"{o.shm_mb}m",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--security-opt",
        f"seccomp={_check_mount_path(seccomp_profile, 'seccomp profile')}",
        "--security-opt",
        "unmask=/proc/*",
        "--ulimit",
        f"nofile={o.nofile}:{o.nofile}",
        "--ulimit",
        f"nproc={o.nproc}:{o.nproc}",
        "--pids-limit",
        str(o.pids_limit),
        "--env",
        f"NESTOR_CONFIG_DIR={CONTAINER_CONFIG_DIR}",
        "--env",
        f"NESTOR_PROGRAMS_DIR={CONTAINER_PROGRAMS_DIR}",
        "--env",
        "PYTHONDONTWRITEBYTECODE=1",
    ]
    if o.memory is not None:
        argv += ["--memory", o.memory, "--memory-swap", o.memory]
    if o.cpus is not None:
        argv += ["--cpus", f"{o.cpus:g}"]
    for key, value in labels.items():
        argv += ["--label", f"{key}={value}"]
    for src, dst in binds:
        argv += ["--volume", f"{src}:{dst}:ro,nosuid,nodev"]
    argv += [*o.extra_args, "--rootfs", str(o.rootfs)]
    inside = EnclaveSpec(Path(CONTAINER_CONTRACT), tee)
    return argv + fill_command(o.command, host=host_url, spec=inside)


@dataclass(frozen=True)
class ContainerInfo:
    id: int
    name: str
    contract: Path  # the contract as registered (not the staged copy)
    tee: str
    running: bool
    starts: int
    last_returncode: int | None
    last_exit_reason: str | None


class ContainerDispatcher(LocalDispatcher):
    """Start, supervise and stop enclave containers on this machine."""

    def __init__(
        self,
        host_url: str,
        options: ContainerOptions,
        *,
        vendor_config_dir: Path | None = None,
        restart: bool = True,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        healthy_after: float = 60.0,
        stop_timeout: float = 10.0,
        poll_interval: float = 0.2,
        env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
        die_with_host: bool = True,
    ) -> None:
        """``host_url`` is the URL as seen from inside the container.
        ``vendor_config_dir``: where the simulated vendor root key is (by
        default the host's ``$NESTOR_CONFIG_DIR``); made there if missing.
        The other arguments are :class:`LocalDispatcher`'s."""
        super().__init__(
            host_url,
            command=(options.podman,),  # unused: command_for builds each argv
            restart=restart,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            healthy_after=healthy_after,
            stop_timeout=stop_timeout,
            poll_interval=poll_interval,
            env=env,
            log_dir=log_dir,
            die_with_host=die_with_host,
        )
        if shutil.which(options.podman) is None:
            raise ConfigurationError(
                f"cannot run enclave containers: {options.podman!r} is not installed",
                hint="apt-get install podman runc (scripts/bootstrap.sh does it)",
            )
        check_rootfs(options.rootfs)
        if not options.programs_dir.is_dir():
            raise ConfigurationError(
                f"the programs directory {options.programs_dir} is not a directory",
                hint="pass --programs DIR (one sub-directory per program id)",
            )
        self.options = replace(
            options,
            rootfs=options.rootfs.resolve(),
            programs_dir=options.programs_dir.resolve(),
            state_dir=options.state_dir.resolve(),
        )
        self.vendor_config_dir = vendor_config_dir
        self.token = container_token(self.options.state_dir)
        self.seccomp_profile = self.options.state_dir / "seccomp-enclave.json"
        try:
            self.options.state_dir.mkdir(parents=True, exist_ok=True)
            write_seccomp_profile(self.options.seccomp_base, self.seccomp_profile)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot write to the state directory {self.options.state_dir}: "
                f"{exc.strerror or exc}",
                hint="the host's data directory must be writable",
            ) from None
        # staged contract path -> (enclave id, registered contract)
        self._staged: dict[Path, tuple[int, Path]] = {}

    # -- registering ------------------------------------------------------------------------

    def add(self, contract: Path, *, tee: str = "sim") -> int:
        """Register an enclave container for ``contract``. Its contract (and,
        for the simulated TEE, the vendor key) is copied into the state
        directory, readable by the container's user only where it must be."""
        with self._lock:
            eid = len(self._managed) + 1
            staged = self._stage(eid, contract, tee)
            self._staged[staged] = (eid, contract)
            got = super().add(staged, tee=tee)
        if got != eid:  # pragma: no cover - add() numbers enclaves in order under the lock
            raise AssertionError("enclave ids out of step")
        return got

    def _stage(self, eid: int, contract: Path, tee: str) -> Path:
        d = self.options.state_dir / f"enclave-{eid}"
        try:
            d.mkdir(parents=True, exist_ok=True)
            staged = d / "contract.json"
            shutil.copyfile(contract, staged)
            staged.chmod(0o644)  # public data
            if tee in _SIMULATED_TEES:
                self._stage_vendor_key(d / "simulated-tee")
        except OSError as exc:
            raise ConfigurationError(
                f"cannot stage enclave {eid}'s files in {d}: {exc.strerror or exc}",
                hint="the host's data directory must be writable",
            ) from None
        return staged

    def _stage_vendor_key(self, target: Path) -> None:
        # The simulated TEE's stand-in for the hardware key: made on the host
        # side, because the container's configuration directory is read-only.
        load_or_create_vendor_key(self.vendor_config_dir)
        source = vendor_dir(self.vendor_config_dir) / VENDOR_KEY_FILE
        target.mkdir(mode=0o700, exist_ok=True)
        key = target / VENDOR_KEY_FILE
        tmp = target / f".{VENDOR_KEY_FILE}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(source.read_bytes())
        if os.geteuid() == 0:
            # Owned by the container's user, still 0600: the enclave refuses a
            # key file others may read.
            for p in (target, tmp):
                os.chown(p, self.options.user, self.options.user)
        tmp.replace(key)

    # -- the command --------------------------------------------------------------------------

    def container_name(self, eid: int) -> str:
        return f"nestor-enclave-{self.token}-{eid}"

    def command_for(self, spec: EnclaveSpec) -> list[str]:
        eid, _ = self._staged[spec.contract]
        key_dir = spec.contract.parent / "simulated-tee" if spec.tee in _SIMULATED_TEES else None
        return podman_command(
            self.options,
            name=self.container_name(eid),
            labels={
                LABEL_DISPATCHER: self.token,
                LABEL_ENCLAVE: str(eid),
                LABEL_COMPONENT: "enclave",
            },
            host_url=self.host_url,
            tee=spec.tee,
            contract=spec.contract,
            vendor_key_dir=key_dir,
            seccomp_profile=self.seccomp_profile,
        )

    # -- inspecting ---------------------------------------------------------------------------

    def containers(self) -> list[ContainerInfo]:
        """Each enclave container: running or not, starts, why it last ended."""
        out = []
        for p in self.processes():
            eid, contract = self._staged[p.spec.contract]
            out.append(
                ContainerInfo(
                    eid,
                    self.container_name(eid),
                    contract,
                    p.spec.tee,
                    p.running,
                    p.starts,
                    p.last_returncode,
                    exit_reason(p.last_returncode),
                )
            )
        return out

    def leftover_containers(self) -> list[str]:
        """Names of this dispatcher's containers that podman knows, running or not."""
        proc = subprocess.run(
            [
                self.options.podman,
                "ps",
                "--all",
                "--filter",
                f"label={LABEL_DISPATCHER}={self.token}",
                "--format",
                "{{.Names}}",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if proc.returncode != 0:
            log.warning("podman ps failed: %s", proc.stderr.strip()[-500:])
            return []
        return [n for n in proc.stdout.split() if n]

    def remove_leftovers(self) -> list[str]:
        """Force-remove this dispatcher's containers; returns their names."""
        names = self.leftover_containers()
        if names:
            log.warning("removing enclave containers left behind: %s", ", ".join(names))
            subprocess.run(
                [self.options.podman, "rm", "--force", "--ignore", "--time", "0", *names],
                capture_output=True,
                check=False,
                timeout=120,
            )
        return names

    # -- lifecycle --------------------------------------------------------------------------

    def start_all(self, *, wait: float = 10.0) -> None:
        """Remove containers a previous host left behind, then start as
        :meth:`LocalDispatcher.start_all` does."""
        if not self.running:
            self.remove_leftovers()
        super().start_all(wait=wait)

    def stop_all(self, timeout: float | None = None) -> None:
        """Stop every container (SIGTERM through podman, then SIGKILL), then
        remove any that podman still has: a podman client killed before its
        container stopped leaves the container running."""
        super().stop_all(timeout)
        self.remove_leftovers()
