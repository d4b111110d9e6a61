"""`nestor demo`: a whole collaboration on this machine, narrated.

Three hospitals create identities, sign a contract, start a real host on
loopback whose dispatcher launches the simulated enclave as its own process,
verify the enclave's evidence, upload encrypted data with key grants, run
the agreed program, and each open their own result and check the receipt
and the audit log. Everything a party does goes through the same library
calls as the `nestor` commands.
"""

from __future__ import annotations

import csv
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from nestor.cli import demo_scenario
from nestor.cli.console import err, out
from nestor.cli.demo_scenario import Scenario, ScenarioDataset
from nestor.cli.enclave import default_programs_dir
from nestor.client import contracts, party, pipeline
from nestor.client.host_api import HostClient
from nestor.errors import ConfigurationError
from nestor.programs.bundle import copy_bundle
from nestor.protocol.contract import VerifiedContract, verify_contract
from nestor.simtee.measure import measure_enclave
from nestor.simtee.vendor import load_vendor_public_key

PARTIES = ("Northside Hospital", "Riverside Hospital", "Lakeside Clinic")
WARDS = ("cardiology", "oncology", "surgery", "geriatrics", "neurology")


def _step(n: int, text: str) -> None:
    err.print(f"\n[bold cyan]{n}.[/bold cyan] [bold]{text}[/bold]")


def _say(text: str) -> None:
    err.print(f"   {text}")


def examples_dir() -> Path:
    here = default_programs_dir()
    if not (here / "pooled-stats").is_dir():
        raise ConfigurationError(
            f"the example program bundle is not at {here / 'pooled-stats'}",
            hint="run the demo from a source checkout (make demo), or set NESTOR_PROGRAMS_DIR",
        )
    return here


def make_visits(path: Path, rows: int, seed: int) -> None:
    """Synthetic hospital visits; each hospital has its own case mix."""
    rng = random.Random(seed)  # noqa: S311 - synthetic demo data, not secrets
    weights = [rng.uniform(0.5, 2.0) for _ in WARDS]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["patient", "age", "ward", "length_of_stay_days", "readmitted"])
        for i in range(rows):
            ward = rng.choices(WARDS, weights)[0]
            stay = round(rng.expovariate(1 / (3.0 + WARDS.index(ward))), 1)
            w.writerow(
                [f"P{seed:02d}{i:06d}", rng.randint(18, 95), ward, stay, int(rng.random() < 0.1)]
            )


@dataclass(frozen=True)
class RunningHost:
    url: str
    pid: int  # benchmarks count its CPU time


@contextmanager
def running_host(
    workspace: Path, contract: Path | None, env: Mapping[str, str]
) -> Iterator[RunningHost]:
    """`nestor host serve` as its own process on a free loopback port, its
    data in ``workspace/host``; with ``contract``, its dispatcher starts the
    simulated enclave for it. Stopped (and the enclave with it) on exit."""
    cmd = [
        sys.executable, "-m", "nestor.cli.main", "host", "serve",
        "--data-dir", str(workspace / "host"), "--listen", "127.0.0.1:0",
    ]  # fmt: skip
    if contract is not None:
        cmd += ["--enclave-contract", str(contract), "--tee", "sim"]
    log = (workspace / "host.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=dict(env))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        if not line.startswith("listening on "):
            raise ConfigurationError(f"the host did not start; see {workspace / 'host.log'}")
        yield RunningHost(line.removeprefix("listening on "), proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def wait_for_enclave(
    host: HostClient, verified: VerifiedContract, *, timeout: float = 30.0
) -> pipeline.VerifiedEnclave:
    """Verify the simulated enclave's announcement once it is there: the
    enclave process publishes it (and the simulated vendor key) a moment
    after it starts. Raises the last error after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return pipeline.verify_enclave(
                host,
                verified,
                now=datetime.now(UTC),
                simulated_vendor_keys=[load_vendor_public_key()],
            )
        except (pipeline.NoEnclaveError, ConfigurationError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def pooled_stats_scenario(work_dir: Path, *, seed: int, rows: int) -> Scenario:
    """The default demo: three hospitals pool visit statistics by ward."""
    programs = examples_dir()
    datasets = []
    for i, name in enumerate(PARTIES):
        path = work_dir / f"visits-{i + 1}.csv"
        make_visits(path, rows, seed=seed + i + 1)
        datasets.append(
            ScenarioDataset(
                dataset_id=f"visits-{i + 1}",
                owner=i,
                description=f"Hospital visits at {name}",
                fmt="csv",
                columns=(
                    ("patient", "string"),
                    ("age", "integer"),
                    ("ward", "string"),
                    ("length_of_stay_days", "float"),
                    ("readmitted", "integer"),
                ),
                path=path,
            )
        )

    def describe(party_name: str, files: Mapping[str, Path]) -> list[str]:
        summary = files.get("summary.csv")
        lines = summary.read_text().splitlines() if summary else []
        shown = [f"summary has {max(0, len(lines) - 1)} groups"]
        if party_name == PARTIES[0]:
            shown += ["   " + line[:110] for line in lines[:4]]
        return shown

    return Scenario(
        name="pooled-stats",
        title="Length of stay and readmissions by ward",
        collaboration_id="readmissions-demo",
        parties=PARTIES,
        datasets=tuple(datasets),
        program_id="pooled-stats",
        bundle=programs / "pooled-stats",
        entry_point="pooled_stats.main:run",
        program_description=(
            "Pooled length of stay and readmission rate by ward, small groups suppressed"
        ),
        parameters={
            "group_by": {"type": "string", "required": False},
            "value_column": {"type": "string", "required": False},
        },
        job_parameters={"group_by": "ward"},
        recipients=((0, "full"), (1, "own"), (2, "own")),
        min_group_size=10,
        describe_result=describe,
    )


def demo(
    example: Annotated[
        str,
        typer.Option(
            "--example",
            help="Which collaboration to run: pooled-stats (default), dea, ehr-lstm, "
            "workforce or mobility-ev (each under examples/NAME/).",
        ),
    ] = "pooled-stats",
    workspace: Annotated[
        Path | None,
        typer.Option(help="Keep the demo's files here instead of a temporary directory."),
    ] = None,
    rows: Annotated[
        int, typer.Option(help="Rows of synthetic data per party (pooled-stats).")
    ] = 50_000,
    scale: Annotated[
        float,
        typer.Option(help="Size of the other examples' synthetic data, relative to their default."),
    ] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed for the synthetic data.")] = 0,
) -> None:
    """Run a whole confidential collaboration on this machine, narrated.

    Several parties create identities and sign a contract; a real host runs on
    loopback and its dispatcher starts the simulated enclave as its own
    process; each party verifies the enclave's evidence, uploads encrypted data
    with a key grant, the agreed program runs in the sandbox, and each
    recipient opens its own sealed result and checks the receipt and the audit
    log. Exits 0 when every check passed.
    """
    started = time.perf_counter()
    tmp = None
    if workspace is None:
        tmp = tempfile.mkdtemp(prefix="nestor-demo-")
        root = Path(tmp)
    else:
        root = workspace
        root.mkdir(parents=True, exist_ok=True)
    try:
        data_dir = root / "generated"
        data_dir.mkdir(parents=True, exist_ok=True)
        if example == "pooled-stats":
            scenario = pooled_stats_scenario(data_dir, seed=seed, rows=rows)
        else:
            scenario = demo_scenario.load(examples_dir(), example, data_dir, seed=seed, scale=scale)
        _run(root, scenario)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    err.print(f"\n[bold green]demo finished[/bold green] in {time.perf_counter() - started:.1f} s")
    out.print("ok")


def _install_bundle(scenario: Scenario, programs: Path) -> Path:
    """The operator's program directory: the enclave finds bundles by program id.
    Caches that running the example's tests may leave are not part of it."""
    target = programs / scenario.program_id
    shutil.rmtree(target, ignore_errors=True)
    return copy_bundle(scenario.bundle, target)


def _run(root: Path, scenario: Scenario) -> None:
    env = {**os.environ, "NESTOR_CONFIG_DIR": str(root / "config")}
    os.environ["NESTOR_CONFIG_DIR"] = env["NESTOR_CONFIG_DIR"]
    programs = root / "programs"
    bundle = _install_bundle(scenario, programs)
    env["NESTOR_PROGRAMS_DIR"] = str(programs)
    names = scenario.parties
    n = len(names)

    _step(1, "Each party creates its identity on its own machine")
    dirs = [root / f"party-{i + 1}" for i in range(n)]
    members = [party.init_party(d, name) for d, name in zip(dirs, names, strict=True)]
    for m in members:
        _say(f"{m.card.name}: party id {m.card.party_id[:23]}…  (private keys 0600)")

    _step(2, "They exchange party cards and verify each other's self-signatures")
    for i, d in enumerate(dirs):
        for j in range(n):
            if i != j:
                party.import_card(d, dirs[j] / party.CARD_FILE)
    _say("every card verified: party id = fingerprint of its signing key, self-signed")

    submitter = members[scenario.submitter]
    _step(3, f"{submitter.card.name} drafts the contract; every party reviews and signs it")
    measurement = measure_enclave()
    now = datetime.now(UTC).replace(microsecond=0)
    draft = demo_scenario.draft_contract(
        scenario,
        members,
        bundle=bundle,
        measurement=measurement,
        not_before=now - timedelta(minutes=5),
        not_after=now + timedelta(days=90),
        max_runs=10,
    )
    contract_path = root / "contract.json"
    signed = draft
    for m in members:
        signed = contracts.sign(signed, m)
        _say(f"{m.card.name} signed digest {signed.digest[:23]}…")
    contracts.save_contract(contract_path, signed)
    verified = verify_contract(contracts.load_contract(contract_path), now=datetime.now(UTC))
    program_digest = verified.contract.programs[0].digest
    _say(
        f"in effect: {n} parties, {len(scenario.datasets)} datasets, program "
        f"{scenario.program_id} {program_digest[:23]}…; "
        f"the enclave must measure {measurement[:16]}… (simulated TEE, accepted by name)"
    )

    _step(4, "The untrusted host starts; its dispatcher launches the enclave in the simulated TEE")
    with running_host(root, contract_path, env) as running:
        url = running.url
        host = HostClient(url)
        host.put_contract(verified.contract.envelope.to_json())
        _say(f"host listening on {url} (SQLite, local blob directory, local dispatcher)")
        enclave = wait_for_enclave(host, verified)

        _step(5, "Each party verifies the enclave's evidence before releasing anything")
        _say(
            f"platform {enclave.result.platform.value}, measurement "
            f"{enclave.result.measurements['measurement'][:16]}… = the contract's reference value"
        )
        _say(
            "report data binds the contract digest and the enclave's fresh keys: "
            + "; ".join(enclave.decision.checked[-1:])
        )

        _step(6, "Each party encrypts its data locally, uploads ciphertext and grants its key")
        for ds in scenario.datasets:
            m, d = members[ds.owner], dirs[ds.owner]
            up = pipeline.upload_dataset(
                host, m, verified, ds.dataset_id, ds.path,
                now=datetime.now(UTC), enclave=enclave, work_dir=d, party_dir=d,
            )  # fmt: skip
            _say(
                f"{m.card.name}: {ds.dataset_id}, {ds.path.stat().st_size:,} bytes → commitment "
                f"{up.commitment[:23]}…, data key sealed with HPKE to the enclave only"
            )

        _step(
            7,
            f"{submitter.card.name} submits the job; the enclave verifies it and runs the program",
        )
        job_id = pipeline.submit_job(
            host, submitter, verified, scenario.program_id, dict(scenario.job_parameters),
            now=datetime.now(UTC),
        )  # fmt: skip
        status = pipeline.wait_job(host, job_id, timeout=1800)
        _say(
            f"job {job_id[:12]}… {status.status}: inputs decrypted and checked inside the "
            "enclave, program run in the sandbox (no network, read-only filesystem)"
        )

        _step(8, "Each recipient fetches its own result, sealed to it, and checks the receipt")
        for i, _view in scenario.recipients:
            m, d = members[i], dirs[i]
            files = pipeline.fetch_results(
                host, m, verified, job_id, enclave=enclave, out_dir=d / "results",
                log_state=d / "log-heads.json",
            )  # fmt: skip
            _say(
                f"{m.card.name}: {', '.join(sorted(files))}; receipt verified "
                "(contract, input commitments, program digest, outputs)"
            )
            for line in scenario.describe_result(m.card.name, files):
                _say("   " + line)

        _step(9, "Each recipient verifies the enclave's audit log against the head it remembers")
        for i, _view in scenario.recipients:
            m, d = members[i], dirs[i]
            head = pipeline.verify_audit_log(host, m, enclave, state_file=d / "log-heads.json")
            _say(f"{m.card.name}: {head.index + 1} entries, hash chain and signatures intact")
    _say("host stopped; the enclave stopped with it and its keys are gone")
