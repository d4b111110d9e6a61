"""The enclave service: the trusted side of the pipeline (brief §3, steps 3-9).

On start it checks the contract, makes fresh signing and HPKE keys, binds
them into evidence from its TEE, and publishes an announcement through the
host. Then it only calls out: it fetches key grants and jobs, verifies every
message against the contract, keeps data keys in memory only, verifies and
decrypts inputs into a memory-backed scratch directory, runs the program in
the sandbox, applies the output policy, seals each recipient's result,
signs a receipt, appends the audit log and destroys keys as the retention
policy says.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nestor.attestation.binding import report_data_for
from nestor.crypto import hpke, signing
from nestor.crypto.dataset import DataKey, decrypt_stream
from nestor.enclave.audit import AuditLog
from nestor.enclave.host_link import HostLink
from nestor.enclave.sandbox import FAILED_SUFFIX
from nestor.enclave.tee import EvidenceProducer
from nestor.errors import NestorError
from nestor.programs.bundle import bundle_digest
from nestor.protocol.canonical import digest_bytes
from nestor.protocol.contract import Contract, View, verify_contract
from nestor.protocol.messages import (
    JobRequest,
    KeyGrant,
    blob_name,
    grant_context,
    make_announcement,
    make_receipt,
    new_id,
    seal_result,
    verify_job_request,
    verify_key_grant,
)

log = logging.getLogger("nestor.enclave")


class JobFailedError(NestorError):
    """A job cannot run or its program failed; the message goes to the job status."""


class ProgramRunner(Protocol):
    def __call__(
        self,
        *,
        bundle: Path,
        entry_point: str,
        inputs: Mapping[str, tuple[Path, str]],
        parameters: Mapping[str, Any],
        context: Mapping[str, Any],
        out_dir: Path,
    ) -> dict[str, Path]: ...


@dataclass
class HeldKey:
    key: DataKey
    commitment: str
    grant: str
    runs: int = 0


@dataclass
class EnclaveKeys:
    """Fresh for every enclave start; never written anywhere."""

    signing: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    x25519: x25519.X25519PrivateKey = field(default_factory=x25519.X25519PrivateKey.generate)
    hybrid: hpke.HybridPrivateKey = field(
        default_factory=lambda: hpke.HybridPrivateKey(
            mlkem.MLKEM768PrivateKey.generate(), x25519.X25519PrivateKey.generate()
        )
    )

    @property
    def keyid(self) -> str:
        return signing.key_id(self.signing.public_key())

    def hpke_public(self) -> dict[str, bytes]:
        return {
            hpke.Suite.X25519_SHA256_AES256GCM.label: self.x25519.public_key().public_bytes_raw(),
            hpke.Suite.MLKEM768X25519_SHA256_AES256GCM.label: (
                self.hybrid.public_key().public_bytes_raw()
            ),
        }

    def hpke_private(self, suite: hpke.Suite) -> hpke.HpkePrivateKey:
        if suite is hpke.Suite.X25519_SHA256_AES256GCM:
            return self.x25519
        return self.hybrid


def format_phases(phases: Mapping[str, float]) -> str:
    """``name=seconds`` pairs (logfmt), as the enclave logs them."""
    return " ".join(
        f"{name}={value:.3f}".rstrip("0").removesuffix(".") for name, value in phases.items()
    )


def _scratch_root() -> Path:
    # Plaintext inputs live in memory-backed files: engines keep their
    # streaming readers, and nothing reaches a disk.
    shm = Path("/dev/shm")  # noqa: S108 - a private mkdtemp is made inside it
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


class EnclaveService:
    def __init__(
        self,
        *,
        host: HostLink,
        contract: Contract,
        producer: EvidenceProducer,
        programs_dir: Path,
        runner: ProgramRunner,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.host = host
        self.contract = contract
        self.producer = producer
        self.programs_dir = programs_dir
        self.runner = runner
        self.clock = clock
        self.keys = EnclaveKeys()
        self.enclave_id = new_id()
        self.held: dict[str, HeldKey] = {}
        self.seen_grants: set[str] = set()
        # Seconds per phase of the last job, for benchmarks and operators.
        self.last_timings: dict[str, float] = {}
        self.completed: set[str] = set()
        self.runs = 0
        self.evidence_digest = ""
        self.platform = ""
        self.audit = AuditLog(
            self.keys.signing, lambda entry: self.host.post("/v1/log", entry), clock=clock
        )

    # -- start -------------------------------------------------------------------------

    def start(self) -> None:
        """Check the contract, attest, announce."""
        verify_contract(self.contract, now=self.clock())
        report_data = report_data_for(
            self.contract.digest,
            self.keys.signing.public_key().public_bytes_raw(),
            self.keys.hpke_public(),
        )
        evidence = self.producer.produce(report_data)
        self.evidence_digest = digest_bytes(evidence.evidence)
        self.platform = evidence.platform.value
        announcement = make_announcement(
            contract=self.contract.digest,
            enclave_id=self.enclave_id,
            signing_key=self.keys.signing,
            hpke_keys=self.keys.hpke_public(),
            platform=evidence.platform.value,
            evidence=evidence.evidence,
            collateral=evidence.auxiliary,
            started_at=self.clock(),
        )
        self.host.post("/v1/announcements", announcement.to_json())
        self.audit.append(
            "enclave-started",
            {
                "contract": self.contract.digest,
                "enclave_id": self.enclave_id,
                "platform": self.platform,
                "evidence": self.evidence_digest,
            },
        )
        log.info("enclave %s announced for contract %s", self.keys.keyid, self.contract.digest)

    # -- grants ---------------------------------------------------------------------------

    def sync_grants(self) -> None:
        body = self.host.get("/v1/grants", enclave=self.keys.keyid)
        for obj in body.get("grants", []):
            try:
                grant = verify_key_grant(obj, contract=self.contract, enclave_keyid=self.keys.keyid)
            except NestorError as exc:
                log.warning("refused a key grant: %s", exc.message)
                continue
            if grant.digest in self.seen_grants:
                continue
            self.seen_grants.add(grant.digest)
            self._accept_grant(grant)

    def _accept_grant(self, grant: KeyGrant) -> None:
        context = grant_context(
            contract=self.contract.digest,
            dataset=grant.dataset,
            commitment=grant.commitment,
            enclave=self.keys.keyid,
        )
        try:
            secret = hpke.open_key(
                grant.wrapped_key, self.keys.hpke_private(grant.wrapped_key.suite), context=context
            )
            key = DataKey(secret)
        except NestorError as exc:
            log.warning("key grant for %s does not open: %s", grant.dataset, exc.message)
            return
        self.held[grant.dataset] = HeldKey(key, grant.commitment, grant.digest)
        self.audit.append(
            "key-granted",
            {"dataset": grant.dataset, "commitment": grant.commitment, "grant": grant.digest},
        )

    # -- jobs --------------------------------------------------------------------------------

    def poll_once(self, *, worker: str | None = None) -> bool:
        """Take one job if there is one. Returns whether a job was handled."""
        worker = worker or self.keys.keyid
        leased = self.host.lease_job(worker, 600, contract=self.contract.digest)
        # Grants after the lease: every grant a party stored before it queued
        # the job is then seen (fetching them first raced with a fast client).
        self.sync_grants()
        if leased is None:
            return False
        job_id = str(leased.get("job_id"))
        started = time.perf_counter()
        try:
            self.run_job(leased["request"])
        except NestorError as exc:
            message = exc.message
            self.audit.append("job-failed", {"job_id": job_id, "reason": message})
            self.host.post(
                f"/v1/jobs/{job_id}/complete",
                {"status": "failed", "error": message, "worker": worker},
            )
            log.warning("job %s failed: %s", job_id, message)
        else:
            self.host.post(
                f"/v1/jobs/{job_id}/complete", {"status": "done", "error": None, "worker": worker}
            )
            # Coarse phases only, which the host can see anyway from when the
            # ciphertext is fetched and the results arrive.
            log.info(
                "job %s done in %.2f s: %s",
                job_id,
                time.perf_counter() - started,
                format_phases(self.last_timings),
            )
        return True

    def run_forever(
        self, *, poll_interval: float = 0.2, stop: Callable[[], bool] = lambda: False
    ) -> None:
        while not stop():
            try:
                handled = self.poll_once()
            except NestorError as exc:
                log.warning("host error: %s", exc.message)
                handled = False
            if not handled:
                time.sleep(poll_interval)

    def run_job(self, request: object) -> None:
        job = verify_job_request(request, contract=self.contract)
        if job.job_id in self.completed:
            raise JobFailedError(
                f"job {job.job_id} already ran in this enclave: the request was replayed"
            )
        self.completed.add(job.job_id)
        policy = self.contract.job_policy
        if policy.max_runs is not None and self.runs >= policy.max_runs:
            raise JobFailedError(
                f"the contract allows at most {policy.max_runs} runs; this would exceed it"
            )
        program = self.contract.program(job.program)
        assert program is not None  # verify_job_request checked it
        bundle = self.programs_dir / program.id
        if not bundle.is_dir():
            raise JobFailedError(f"this enclave holds no bundle for program {program.id!r}")
        actual = bundle_digest(bundle)
        if actual != program.digest:
            raise JobFailedError(
                f"the bundle of program {program.id!r} has digest {actual}, not the contract's "
                f"{program.digest}"
            )
        missing = [ds for ds in job.inputs if ds not in self.held]
        if missing:
            raise JobFailedError(
                "no key grant for dataset(s) " + ", ".join(missing) + ": their owners must grant "
                "their keys to this enclave first"
            )
        scratch = Path(
            tempfile.mkdtemp(prefix=f"nestor-job-{job.job_id[:8]}-", dir=_scratch_root())
        )
        try:
            self._run_in(scratch, job)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _run_in(self, scratch: Path, job: JobRequest) -> None:
        program = self.contract.program(job.program)
        assert program is not None
        timings = self.last_timings = {"fetch_decrypt_verify": 0.0}
        inputs: dict[str, tuple[Path, str]] = {}
        commitments: dict[str, str] = {}
        (scratch / "inputs").mkdir()
        for ds in job.inputs:
            dataset = self.contract.dataset(ds)
            assert dataset is not None
            inputs[ds] = (scratch / "inputs" / f"{ds}.{dataset.format}", dataset.format)
            commitments[ds] = self.held[ds].commitment
        # Inputs are decrypted in the order the program reads them while the
        # sandbox starts and the program scans the ones already delivered:
        # each appears, whole and verified, as a memory-backed regular file
        # that the program's engine reads at full speed.
        delivery = _Delivery(
            self.host,
            [(ds, self.held[ds], inputs[ds][0]) for ds in job.inputs],
            staging=scratch / "staging",
        )
        delivery.start()
        out_dir = scratch / "outputs"
        out_dir.mkdir()
        owners = {ds: self.contract.dataset(ds).owner for ds in job.inputs}  # type: ignore[union-attr]
        t = time.perf_counter()
        program_error: NestorError | None = None
        outputs: dict[str, Path] = {}
        try:
            outputs = self.runner(
                bundle=self.programs_dir / program.id,
                entry_point=program.entry_point,
                inputs=inputs,
                parameters=job.parameters,
                context={"min_group_size": program.outputs.min_group_size, "owners": owners},
                out_dir=out_dir,
            )
        except NestorError as exc:
            program_error = exc
        finally:
            delivery.finish()
        timings["fetch_decrypt_verify"] = delivery.seconds
        if delivery.error is not None:
            # The root cause: the program saw only that an input never came.
            ds, detail = delivery.error
            raise _ciphertext_error(ds, detail)
        if program_error is not None:
            raise program_error
        timings["sandbox_and_program"] = time.perf_counter() - t
        t = time.perf_counter()
        for path in inputs.values():
            path[0].unlink(missing_ok=True)  # plaintext gone before anything is released
        self.runs += 1
        index, head = self.audit.append(
            "job-run",
            {
                "job_id": job.job_id,
                "job_request": job.digest,
                "program": program.digest,
                "inputs": commitments,
            },
        )
        released: list[dict[str, str]] = []
        for recipient in program.outputs.recipients:
            party = self.contract.party(recipient.party)
            assert party is not None
            data = {
                name: _view(path, recipient.view, recipient.party) for name, path in outputs.items()
            }
            sealed = seal_result(
                contract=self.contract.digest,
                job=job.digest,
                recipient=recipient.party,
                recipient_key=party.card.hpke_key(),
                outputs=data,
                enclave_key=self.keys.signing,
            )
            self.host.post("/v1/results", sealed.to_json())
            for o in sealed.signed["outputs"]:
                released.append(
                    {"recipient": recipient.party, "name": o["name"], "digest": o["digest"]}
                )
        index, head = self.audit.append(
            "result-released", {"job_id": job.job_id, "recipients": len(program.outputs.recipients)}
        )
        receipt = make_receipt(
            contract=self.contract,
            job=job,
            program_digest=program.digest,
            input_commitments=commitments,
            outputs=released,
            enclave_keyid=self.keys.keyid,
            evidence_digest=self.evidence_digest,
            platform=self.platform,
            finished_at=self.clock(),
            log_index=index,
            log_head=head,
            enclave_key=self.keys.signing,
        )
        self.host.post("/v1/receipts", {"job_id": job.job_id, "receipt": receipt})
        timings["seal_sign_publish"] = time.perf_counter() - t
        self._apply_retention(job)

    def _apply_retention(self, job: JobRequest) -> None:
        rule = self.contract.retention
        for ds in job.inputs:
            held = self.held.get(ds)
            if held is None:
                continue
            held.runs += 1
            destroy = rule.destroy_keys == "after-each-job" or (
                rule.destroy_keys == "after-runs"
                and rule.runs is not None
                and held.runs >= rule.runs
            )
            if destroy:
                # Python cannot wipe immutable bytes; dropping the only reference
                # is what the runtime allows. The log records the destruction.
                del self.held[ds]
                self.audit.append("key-destroyed", {"dataset": ds, "reason": rule.destroy_keys})


class _Writable(Protocol):
    def write(self, data: memoryview, /) -> int | None: ...


def _stream_input(host: HostLink, ds: str, held: HeldKey, dst: _Writable) -> None:
    """Verify and decrypt a granted input while its ciphertext streams from
    the host: no copy of the ciphertext is stored, and the commitment named in
    the owner's grant must hold."""
    with host.open_blob(blob_name(ds, held.commitment)) as (src, length):
        decrypt_stream(
            src, dst, held.key, expected_commitment=held.commitment, source_length=length
        )


def _ciphertext_error(ds: str, detail: str) -> JobFailedError:
    return JobFailedError(
        f"the ciphertext of dataset {ds!r} fetched from the host is not the one its owner "
        f"granted: {detail}"
    )


class _Delivery(threading.Thread):
    """Fetches, verifies and decrypts a job's inputs one after another into
    ``staging`` and renames each, whole, to the path the program host waits
    for. An input that fails gets a ``.failed`` marker instead, and so does
    every input after it, so the program host stops waiting."""

    def __init__(
        self, host: HostLink, items: list[tuple[str, HeldKey, Path]], *, staging: Path
    ) -> None:
        super().__init__(daemon=True, name="deliver-inputs")
        self.host, self.items, self.staging = host, items, staging
        self.stop = threading.Event()
        self.error: tuple[str, str] | None = None  # (dataset, what failed)
        self.seconds = 0.0

    def run(self) -> None:
        t = time.perf_counter()
        self.staging.mkdir(exist_ok=True)
        try:
            for ds, held, path in self.items:
                if self.stop.is_set() or self.error is not None:
                    _mark_failed(path)
                    continue
                part = self.staging / path.name
                try:
                    with part.open("wb") as dst:
                        _stream_input(self.host, ds, held, dst)
                except NestorError as exc:
                    part.unlink(missing_ok=True)
                    self.error = (ds, exc.message)
                    _mark_failed(path)
                    continue
                part.rename(path)  # same filesystem: the program sees all or nothing
        finally:
            self.seconds = time.perf_counter() - t

    def finish(self) -> None:
        """After the program exits: deliver nothing more."""
        self.stop.set()
        self.join()


def _mark_failed(path: Path) -> None:
    path.with_name(path.name + FAILED_SUFFIX).touch()


def _view(path: Path, view: View, party_id: str) -> bytes:
    """Apply a recipient's view to one output file.

    Tables with an ``_owner`` column are cut to the recipient's own rows for
    ``view: own``; other outputs are aggregates and go to every recipient."""
    data = path.read_bytes()
    if view is View.FULL or path.suffix != ".csv":
        return data
    reader = csv.reader(io.StringIO(data.decode("utf-8")))
    header = next(reader, None)
    if header is None or "_owner" not in header:
        return data
    col = header.index("_owner")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in reader:
        if len(row) > col and row[col] == party_id:
            writer.writerow(row)
    return out.getvalue().encode("utf-8")
