"""The dispatcher: starts enclave processes on this machine and keeps them running.

:class:`LocalDispatcher` launches each registered enclave as a local
subprocess (by default ``python -m nestor.cli.main enclave run --host URL
--contract FILE --tee TEE``), restarts one that dies (with exponential
backoff), and stops them all on shutdown: SIGTERM to the process group,
then SIGKILL after a grace period.

Every process is started by the dispatcher's own supervisor thread, which
lives as long as the dispatcher. On Linux each child asks the kernel for
SIGTERM when that thread goes away (``PR_SET_PDEATHSIG``), so a host killed
with SIGKILL does not leave orphaned enclaves behind. The command line is a
template, so tests can run a stand-in instead of a real enclave.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

log = logging.getLogger("nestor.host.dispatcher")

DEFAULT_COMMAND: Final[tuple[str, ...]] = (
    sys.executable,
    "-m",
    "nestor.cli.main",
    "enclave",
    "run",
    "--host",
    "{host}",
    "--contract",
    "{contract}",
    "--tee",
    "{tee}",
)
"""The enclave command; ``{host}``, ``{contract}`` and ``{tee}`` are filled in."""

# Runs before the real command: asks for SIGTERM when the parent (thread)
# dies, exits if the parent is already gone, then becomes the command.
_LAUNCHER: Final = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(1)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


@dataclass(frozen=True)
class EnclaveSpec:
    """One enclave to keep running: the contract it serves and its TEE."""

    contract: Path
    tee: str = "sim"


@dataclass(frozen=True)
class EnclaveProcessInfo:
    id: int
    spec: EnclaveSpec
    pid: int | None
    running: bool
    starts: int  # how many times it was started (1 + restarts)
    last_returncode: int | None


@dataclass
class _Managed:
    id: int
    spec: EnclaveSpec
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    starts: int = 0
    attempts: int = 0  # starts tried, including those that failed to exec
    backoff: float = 0.0
    next_start: float | None = 0.0  # monotonic time of the next start; None: never
    last_returncode: int | None = None
    log_file: Path | None = field(default=None)


def fill_command(template: Sequence[str], *, host: str, spec: EnclaveSpec) -> list[str]:
    """The command for one enclave: the template with its placeholders filled in."""
    values = {"{host}": host, "{contract}": str(spec.contract), "{tee}": spec.tee}
    out = []
    for arg in template:
        for key, value in values.items():
            arg = arg.replace(key, value)
        out.append(arg)
    return out


class LocalDispatcher:
    """Start, supervise and stop enclave processes on this machine."""

    def __init__(
        self,
        host_url: str,
        *,
        command: Sequence[str] = DEFAULT_COMMAND,
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
        """
        ``command``: argv template (``{host}``, ``{contract}``, ``{tee}``).
        ``restart``: start a process again when it exits on its own, after
        ``backoff_initial`` seconds, doubling up to ``backoff_max`` while it
        keeps dying within ``healthy_after`` seconds of starting.
        ``stop_timeout``: seconds between SIGTERM and SIGKILL on stop.
        ``log_dir``: append each enclave's output to ``enclave-<id>.log``
        there; by default it goes to this process's stderr.
        """
        self.host_url = host_url
        self.command = tuple(command)
        self.restart = restart
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.healthy_after = healthy_after
        self.stop_timeout = stop_timeout
        self.poll_interval = poll_interval
        self.env = dict(env) if env is not None else None
        self.log_dir = log_dir
        self.die_with_host = die_with_host and sys.platform.startswith("linux")
        self._lock = threading.RLock()
        self._managed: list[_Managed] = []
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- registering and inspecting -------------------------------------------------------------

    def add(self, contract: Path, *, tee: str = "sim") -> int:
        """Register an enclave; it starts with :meth:`start_all`, or at once
        if the dispatcher is already running. Returns its id."""
        with self._lock:
            m = _Managed(len(self._managed) + 1, EnclaveSpec(contract, tee))
            if self.log_dir is not None:
                m.log_file = self.log_dir / f"enclave-{m.id}.log"
            self._managed.append(m)
        self._wake.set()
        return m.id

    def command_for(self, spec: EnclaveSpec) -> list[str]:
        return fill_command(self.command, host=self.host_url, spec=spec)

    def processes(self) -> list[EnclaveProcessInfo]:
        with self._lock:
            return [
                EnclaveProcessInfo(
                    m.id,
                    m.spec,
                    None if m.process is None else m.process.pid,
                    m.process is not None and m.process.poll() is None,
                    m.starts,
                    m.last_returncode,
                )
                for m in self._managed
            ]

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- lifecycle --------------------------------------------------------------------------

    def start_all(self, *, wait: float = 10.0) -> None:
        """Start the supervisor thread, which starts every registered enclave.
        Returns once each start has been tried (or ``wait`` seconds passed)."""
        with self._lock:
            if self._thread is not None:
                return
            for m in self._managed:
                if m.process is None:
                    m.next_start, m.backoff = 0.0, 0.0
            self._stopping.clear()
            self._thread = threading.Thread(
                target=self._supervise, name="nestor-dispatcher", daemon=True
            )
            self._thread.start()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with self._lock:
                if all(m.attempts > 0 or m.next_start is None for m in self._managed):
                    return
            time.sleep(0.01)

    def stop_all(self, timeout: float | None = None) -> None:
        """Stop supervising and stop every process: SIGTERM, then SIGKILL
        after ``timeout`` (default ``stop_timeout``) seconds."""
        grace = self.stop_timeout if timeout is None else timeout
        with self._lock:
            self._stopping.set()
            self._wake.set()
            procs = [m.process for m in self._managed if m.process is not None]
        for p in procs:
            _signal_group(p, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in procs:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("enclave process %d ignored SIGTERM; killing it", p.pid)
                _signal_group(p, signal.SIGKILL)
                p.wait()
        with self._lock:
            for m in self._managed:
                if m.process is not None:
                    m.last_returncode = m.process.returncode
                    m.process = None
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def __enter__(self) -> LocalDispatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    # -- supervision --------------------------------------------------------------------------

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            try:
                self._tick()
            except Exception:  # keep supervising whatever one start did
                log.exception("dispatcher supervision step failed")
            self._wake.wait(self.poll_interval)
            self._wake.clear()

    def _tick(self) -> None:
        now = time.monotonic()
        with self._lock:
            if self._stopping.is_set():
                return
            for m in self._managed:
                if m.process is not None:
                    code = m.process.poll()
                    if code is None:
                        continue
                    m.last_returncode = code
                    m.process = None
                    ran = now - m.started_at
                    if not self.restart:
                        m.next_start = None
                        log.warning("enclave %d exited with %d; not restarting", m.id, code)
                        continue
                    if ran >= self.healthy_after:
                        m.backoff = 0.0
                    m.backoff = (
                        self.backoff_initial
                        if m.backoff == 0.0
                        else min(m.backoff * 2, self.backoff_max)
                    )
                    m.next_start = now + m.backoff
                    log.warning(
                        "enclave %d exited with %d; restarting in %.1f s", m.id, code, m.backoff
                    )
                if m.next_start is not None and now >= m.next_start:
                    self._launch(m)

    def _launch(self, m: _Managed) -> None:
        argv = self.command_for(m.spec)
        m.attempts += 1
        if self.die_with_host:
            argv = [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *argv]
        out = m.log_file.open("ab") if m.log_file is not None else None
        try:
            m.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out if out is not None else 2,  # never onto the host's stdout
                stderr=out if out is not None else None,
                env=self.env,
                start_new_session=True,
            )
        except OSError as exc:
            m.process = None
            m.backoff = min(max(m.backoff * 2, self.backoff_initial), self.backoff_max)
            m.next_start = time.monotonic() + m.backoff if self.restart else None
            log.error("cannot start enclave %d: %s", m.id, exc)
            return
        finally:
            if out is not None:
                out.close()
        m.started_at = time.monotonic()
        m.starts += 1
        m.next_start = None
        log.info("started enclave %d (pid %d) for %s", m.id, m.process.pid, m.spec.contract)


def _signal_group(p: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Signal the process's group (its own session), so helpers it started go too."""
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:  # pragma: no cover - a reused pgid we do not own
        p.send_signal(sig)
