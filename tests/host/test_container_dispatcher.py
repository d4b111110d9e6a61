"""The container dispatcher: the podman command it builds, the files it
stages, and real containers from the project's root filesystem (started,
stopped, crashing and restarted with backoff, left behind and cleaned up)."""

from __future__ import annotations

import itertools
import json
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nestor.errors import ConfigurationError
from nestor.host.dispatch_container import (
    CONTAINER_CONTRACT,
    CONTAINER_PROGRAMS_DIR,
    LABEL_DISPATCHER,
    PODMAN_SECCOMP,
    SANDBOX_SYSCALLS,
    ContainerDispatcher,
    ContainerOptions,
    enclave_seccomp_profile,
    exit_reason,
)
from nestor.simtee.vendor import VENDOR_KEY_FILE, load_or_create_vendor_key, vendor_dir

REPO = Path(__file__).resolve().parents[2]


def _fake_rootfs(path: Path) -> Path:
    (path / "etc/nestor-rootfs").mkdir(parents=True)
    (path / "etc/nestor-rootfs/manifest.txt").write_text("key=test\n")
    (path / "opt/nestor/bin").mkdir(parents=True)
    (path / "opt/nestor/bin/nestor").write_text("")
    return path


def _wait_for(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


class Setup:
    def __init__(self, tmp: Path, rootfs: Path) -> None:
        self.tmp = tmp
        self.config = tmp / "config"
        # A party's keys live in the same configuration directory: they must
        # never reach the container.
        (self.config / "parties" / "north").mkdir(parents=True)
        (self.config / "parties" / "north" / "signing.key").write_text("secret")
        load_or_create_vendor_key(self.config)
        self.programs = tmp / "programs"
        (self.programs / "pooled-stats").mkdir(parents=True)
        self.contract = tmp / "contract.json"
        self.contract.write_text('{"contract": 1}')
        self.rootfs = rootfs
        self.dispatchers: list[ContainerDispatcher] = []

    def options(self, **kw: Any) -> ContainerOptions:
        given: dict[str, Any] = {
            "rootfs": self.rootfs,
            "programs_dir": self.programs,
            "state_dir": self.tmp / "host" / "enclaves",
        }
        return ContainerOptions(**{**given, **kw})

    def dispatcher(self, **kw: Any) -> ContainerDispatcher:
        opts = {k: kw.pop(k) for k in list(kw) if k in ContainerOptions.__dataclass_fields__}
        d = ContainerDispatcher(
            "http://127.0.0.1:8000",
            self.options(**opts),
            vendor_config_dir=self.config,
            **kw,
        )
        self.dispatchers.append(d)
        return d


@pytest.fixture
def fake(tmp_path: Path) -> Setup:
    return Setup(tmp_path, _fake_rootfs(tmp_path / "rootfs"))


# -- the command and the staged files ---------------------------------------------------------


def _volumes(argv: list[str]) -> list[tuple[str, str, str]]:
    out = []
    for i, arg in enumerate(argv):
        if arg == "--volume":
            src, dst, opts = argv[i + 1].split(":")
            out.append((src, dst, opts))
    return out


def _pairs(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_command_is_hardened(fake: Setup) -> None:
    d = fake.dispatcher()
    eid = d.add(fake.contract)
    (spec,) = [p.spec for p in d.processes()]
    argv = d.command_for(spec)
    rootfs_at = argv.index("--rootfs")
    options, inside = argv[:rootfs_at], argv[rootfs_at + 2 :]
    assert argv[rootfs_at + 1] == str(fake.rootfs.resolve())
    assert options[:2] == ["podman", "run"]
    for flag in ("--rm", "--replace", "--read-only", "--read-only-tmpfs=false"):
        assert flag in options
    assert _pairs(options, "--runtime") == ["runc"]
    assert _pairs(options, "--user") == ["10001:10001"]
    assert _pairs(options, "--cap-drop") == ["ALL"]
    assert "--cap-add" not in options
    assert not any("privileged" in a for a in options)
    security = _pairs(options, "--security-opt")
    assert "no-new-privileges" in security
    assert "unmask=/proc/*" in security
    assert f"seccomp={d.seccomp_profile}" in security
    assert not any("unconfined" in s for s in security)
    assert sorted(_pairs(options, "--ulimit")) == ["nofile=4096:4096", "nproc=4096:4096"]
    assert _pairs(options, "--pids-limit") == ["2048"]
    (tmpfs,) = _pairs(options, "--tmpfs")
    assert tmpfs.startswith("/tmp:")
    assert {"nosuid", "nodev", "noexec"} <= set(tmpfs.split(","))
    assert _pairs(options, "--name") == [d.container_name(eid)]
    assert f"{LABEL_DISPATCHER}={d.token}" in _pairs(options, "--label")
    # The command inside: the image's entrypoint with in-container paths.
    assert inside == [
        "/opt/nestor/bin/nestor",
        "enclave",
        "run",
        "--host",
        "http://127.0.0.1:8000",
        "--contract",
        CONTAINER_CONTRACT,
        "--tee",
        "sim",
    ]


def test_mounts_are_read_only_and_only_what_the_enclave_needs(fake: Setup) -> None:
    d = fake.dispatcher()
    d.add(fake.contract)
    (spec,) = [p.spec for p in d.processes()]
    volumes = _volumes(d.command_for(spec))
    assert all(opts.split(",")[0] == "ro" for _, _, opts in volumes)
    by_target = {dst: Path(src) for src, dst, _ in volumes}
    assert set(by_target) == {
        CONTAINER_CONTRACT,
        CONTAINER_PROGRAMS_DIR,
        "/etc/nestor/config/simulated-tee",
    }
    assert by_target[CONTAINER_PROGRAMS_DIR] == fake.programs.resolve()
    # Copies in the state directory, never the host's configuration directory.
    staged_contract = by_target[CONTAINER_CONTRACT]
    key_dir = by_target["/etc/nestor/config/simulated-tee"]
    for src in (staged_contract, key_dir):
        assert src.is_relative_to(d.options.state_dir)
    assert not any(Path(src).is_relative_to(fake.config) for src, _, _ in volumes)
    assert staged_contract.read_text() == fake.contract.read_text()
    assert sorted(p.name for p in key_dir.iterdir()) == [VENDOR_KEY_FILE]
    key = key_dir / VENDOR_KEY_FILE
    assert key.read_bytes() == (vendor_dir(fake.config) / VENDOR_KEY_FILE).read_bytes()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_dir.stat().st_mode) == 0o700
    if os.geteuid() == 0:
        assert (key.stat().st_uid, key_dir.stat().st_uid) == (10001, 10001)


def test_a_hardware_tee_gets_no_vendor_key(fake: Setup) -> None:
    d = fake.dispatcher()
    d.add(fake.contract, tee="tsm")
    (spec,) = [p.spec for p in d.processes()]
    argv = d.command_for(spec)
    assert [dst for _, dst, _ in _volumes(argv)] == [CONTAINER_CONTRACT, CONTAINER_PROGRAMS_DIR]
    assert argv[-2:] == ["--tee", "tsm"]
    assert not (spec.contract.parent / "simulated-tee").exists()


def test_limits_and_extra_options_reach_podman(fake: Setup) -> None:
    d = fake.dispatcher(memory="512m", cpus=1.5, network="none", nofile=256, nproc=64)
    d.add(fake.contract)
    (spec,) = [p.spec for p in d.processes()]
    argv = d.command_for(spec)
    assert _pairs(argv, "--memory") == ["512m"]
    assert _pairs(argv, "--memory-swap") == ["512m"]  # no swap beyond the memory limit
    assert _pairs(argv, "--cpus") == ["1.5"]
    assert _pairs(argv, "--network") == ["none"]
    assert sorted(_pairs(argv, "--ulimit")) == ["nofile=256:256", "nproc=64:64"]


def test_paths_podman_cannot_take_are_refused(fake: Setup, tmp_path: Path) -> None:
    odd = tmp_path / "a:b"
    odd.mkdir()
    d = fake.dispatcher(programs_dir=odd)
    d.add(fake.contract)
    (spec,) = [p.spec for p in d.processes()]
    with pytest.raises(ConfigurationError, match="contains ':' or ','"):
        d.command_for(spec)


def test_not_a_rootfs_is_refused(fake: Setup, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not an enclave root filesystem") as info:
        fake.dispatcher(rootfs=tmp_path)
    assert "build-rootfs.sh" in info.value.diagnostics()


def test_missing_podman_is_refused(fake: Setup) -> None:
    with pytest.raises(ConfigurationError, match="not installed"):
        fake.dispatcher(podman="podman-that-does-not-exist")


def test_seccomp_profile_adds_only_the_sandbox_syscalls() -> None:
    base = json.loads(PODMAN_SECCOMP.read_text())
    derived = enclave_seccomp_profile(base)
    assert {k: v for k, v in derived.items() if k != "syscalls"} == {
        k: v for k, v in base.items() if k != "syscalls"
    }

    def rules(profile: dict[str, Any]) -> set[tuple[str, str]]:
        return {
            (name, json.dumps({k: v for k, v in r.items() if k != "names"}, sort_keys=True))
            for r in profile["syscalls"]
            for name in r["names"]
        }

    added = rules(derived) - rules(base)
    removed = rules(base) - rules(derived)
    allow = json.dumps({"action": "SCMP_ACT_ALLOW"})
    assert added == {(n, allow) for n in SANDBOX_SYSCALLS}
    assert {n for n, _ in removed} <= set(SANDBOX_SYSCALLS)
    # Before: sethostname only with CAP_SYS_ADMIN, which the container never has.
    assert any(
        "sethostname" in r["names"] and r.get("includes", {}).get("caps") == ["CAP_SYS_ADMIN"]
        for r in base["syscalls"]
    )
    assert base == json.loads(PODMAN_SECCOMP.read_text())  # the input is not modified


def test_seccomp_profile_is_written_to_the_state_directory(fake: Setup) -> None:
    d = fake.dispatcher()
    assert d.seccomp_profile.parent == d.options.state_dir
    assert json.loads(d.seccomp_profile.read_text()) == enclave_seccomp_profile(
        json.loads(PODMAN_SECCOMP.read_text())
    )


def test_bad_seccomp_base_is_refused(fake: Setup, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    with pytest.raises(ConfigurationError, match="not a seccomp profile"):
        fake.dispatcher(seccomp_base=bad)


def test_exit_reasons() -> None:
    assert exit_reason(None) is None
    assert "podman could not create" in str(exit_reason(125))
    assert "not found" in str(exit_reason(127))
    assert "signal 9" in str(exit_reason(137))
    assert "out of memory" in str(exit_reason(137))
    assert "signal 15" in str(exit_reason(143))
    assert "refused its configuration" in str(exit_reason(2))
    assert "exit status 3" in str(exit_reason(3))
    assert exit_reason(-9) == "podman was killed by signal 9"


# -- real containers ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rootfs() -> Path:
    given = os.environ.get("NESTOR_ROOTFS")
    if given:
        return Path(given)
    proc = subprocess.run(
        [str(REPO / "scripts" / "build-rootfs.sh")],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def real(tmp_path: Path, rootfs: Path) -> Iterator[Setup]:
    s = Setup(tmp_path, rootfs)
    try:
        yield s
    finally:
        for d in s.dispatchers:
            d.stop_all(timeout=2)
            assert d.leftover_containers() == []


def _podman_names(token: str) -> list[str]:
    out = subprocess.run(
        [
            "podman",
            "ps",
            "--all",
            "--format",
            "{{.Names}}",
            "--filter",
            f"label={LABEL_DISPATCHER}={token}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


GRACEFUL = ("/bin/sh", "-c", "trap 'exit 0' TERM; echo up; while :; do sleep 0.1; done")


@pytest.mark.slow
def test_real_container_starts_and_stops(real: Setup) -> None:
    d = real.dispatcher(command=GRACEFUL, log_dir=real.tmp)
    eid = d.add(real.contract)
    t0 = time.monotonic()
    d.start_all()
    _wait_for(lambda: "up" in (real.tmp / f"enclave-{eid}.log").read_text(errors="replace"))
    print(f"container up after {time.monotonic() - t0:.2f} s", file=sys.stderr)
    assert _podman_names(d.token) == [d.container_name(eid)]
    (info,) = d.containers()
    assert info.running
    assert info.starts == 1
    assert info.contract == real.contract
    t1 = time.monotonic()
    d.stop_all(timeout=20)
    stopped = time.monotonic() - t1
    assert stopped < 10, "SIGTERM did not reach the container through podman"
    (info,) = d.containers()
    assert not info.running
    assert info.last_returncode == 0
    assert _podman_names(d.token) == []


@pytest.mark.slow
def test_container_that_ignores_sigterm_is_removed(real: Setup) -> None:
    # sleep as PID 1 of its pid namespace: SIGTERM has no effect on it.
    d = real.dispatcher(command=("/bin/sleep", "600"))
    eid = d.add(real.contract)
    d.start_all()
    _wait_for(lambda: _podman_names(d.token) == [d.container_name(eid)])
    _wait_for(lambda: d.containers()[0].running)
    d.stop_all(timeout=1)
    assert _podman_names(d.token) == []


@pytest.mark.slow
def test_crashing_container_is_restarted_with_backoff(real: Setup) -> None:
    crash = ("/bin/sh", "-c", "date +%s.%N; echo 'enclave: boom' >&2; exit 3")
    d = real.dispatcher(command=crash, log_dir=real.tmp, backoff_initial=1.0, backoff_max=8.0)
    eid = d.add(real.contract)
    d.start_all()
    log = real.tmp / f"enclave-{eid}.log"

    def times() -> list[float]:
        if not log.exists():
            return []
        return [float(x) for x in log.read_text().split() if re.fullmatch(r"\d+\.\d+", x)]

    _wait_for(lambda: len(times()) >= 3, timeout=60)
    # Recorded while it is still being restarted (stopping it mid-start makes
    # podman exit with a status of its own).
    (info,) = d.containers()
    d.stop_all(timeout=5)
    assert info.starts >= 3
    assert info.last_returncode == 3
    assert info.last_exit_reason == "exit status 3: the enclave failed (see its log)"
    t = times()
    gaps = [b - a for a, b in itertools.pairwise(t)]
    assert gaps[0] >= 1.0
    assert gaps[1] >= 2.0
    assert gaps[1] - gaps[0] > 0.5  # doubling, not a fixed delay
    assert "enclave: boom" in log.read_text()


@pytest.mark.slow
def test_missing_command_is_reported(real: Setup) -> None:
    d = real.dispatcher(command=("/opt/nestor/bin/not-there",), restart=False)
    d.add(real.contract)
    d.start_all()
    _wait_for(lambda: d.containers()[0].last_returncode is not None)
    (info,) = d.containers()
    assert info.last_returncode == 127
    assert "not found" in str(info.last_exit_reason)


@pytest.mark.slow
def test_containers_left_by_a_dead_host_are_removed_at_start(real: Setup) -> None:
    first = real.dispatcher(command=("/bin/sleep", "600"))
    first.add(real.contract)
    # A host killed outright: its podman client dies, its container lives on.
    subprocess.run(
        [*first.command_for(first.processes()[0].spec)[:2], "--detach",
         *first.command_for(first.processes()[0].spec)[2:]],
        check=True, capture_output=True,
    )  # fmt: skip
    assert _podman_names(first.token) == [first.container_name(1)]
    second = real.dispatcher(command=GRACEFUL)  # same state directory: same name and label
    second.add(real.contract)
    assert second.token == first.token
    assert second.leftover_containers() == [first.container_name(1)]
    second.start_all()
    _wait_for(lambda: second.containers()[0].running)
    second.stop_all(timeout=10)
    assert _podman_names(second.token) == []


# -- the CLI ----------------------------------------------------------------------------------


def _serve(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nestor.cli.main", "host", "serve", "--data-dir", str(tmp / "h"),
         "--listen", "127.0.0.1:0", *args],
        capture_output=True, text=True, timeout=60, check=False,
        env={
            **{k: v for k, v in os.environ.items() if k != "NESTOR_ROOTFS"},
            "NESTOR_CONFIG_DIR": str(tmp / "config"),
        },
    )  # fmt: skip


def test_cli_container_needs_a_contract_and_a_rootfs(tmp_path: Path) -> None:
    contract = tmp_path / "contract.json"
    contract.write_text("{}")
    env_free = _serve("--dispatcher", "container", tmp=tmp_path)
    assert env_free.returncode == 2
    assert "needs --enclave-contract" in env_free.stderr
    no_rootfs = _serve(
        "--dispatcher", "container", "--enclave-contract", str(contract), tmp=tmp_path
    )
    assert no_rootfs.returncode == 2
    assert "needs --rootfs" in no_rootfs.stderr
    (tmp_path / "empty").mkdir()
    empty = _serve(
        "--dispatcher", "container", "--enclave-contract", str(contract),
        "--rootfs", str(tmp_path / "empty"), tmp=tmp_path,
    )  # fmt: skip
    assert empty.returncode == 2
    assert "not an enclave root filesystem" in empty.stderr
