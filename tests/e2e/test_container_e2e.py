"""A whole collaboration with the enclave in a real OCI container on this
machine: `nestor host serve --dispatcher container` runs `podman run` from the
root filesystem that scripts/build-rootfs.sh builds (the layout of
deploy/images/enclave.Containerfile); three parties verify its evidence,
upload, grant, run pooled-stats, and fetch and verify their results.

The first run builds the root filesystem (debootstrap from the Debian mirror,
about a minute and a half); later runs reuse the cached one while the inputs
are unchanged. $NESTOR_ROOTFS points at a root filesystem built elsewhere."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nestor.client import contracts, party, pipeline
from nestor.client.host_api import HostClient
from nestor.errors import NestorError
from nestor.host.dispatch_container import LABEL_DISPATCHER, container_token
from nestor.protocol.contract import VerifiedContract, verify_contract
from nestor.simtee.measure import measure_enclave
from nestor.simtee.vendor import load_vendor_public_key

REPO = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_S = 1800
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rootfs() -> Path:
    given = os.environ.get("NESTOR_ROOTFS")
    if given:
        return Path(given)
    t0 = time.monotonic()
    proc = subprocess.run(
        [str(REPO / "scripts" / "build-rootfs.sh")],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    path = Path(proc.stdout.strip().splitlines()[-1])
    print(f"rootfs {path} ready in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    return path


def _podman(*args: str) -> str:
    out = subprocess.run(["podman", *args], capture_output=True, text=True, check=True, timeout=120)
    return out.stdout


def _containers(token: str, *, all_states: bool = False) -> list[dict[str, object]]:
    args = ["ps", "--format", "json", "--filter", f"label={LABEL_DISPATCHER}={token}"]
    found = json.loads(_podman(*args, *(["--all"] if all_states else [])) or "[]")
    assert isinstance(found, list)
    return found


def _status_fields(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _wait_enclave(host: HostClient, contract: VerifiedContract) -> pipeline.VerifiedEnclave:
    deadline = time.monotonic() + 90
    while True:
        try:
            return pipeline.verify_enclave(
                host,
                contract,
                now=datetime.now(UTC),
                simulated_vendor_keys=[load_vendor_public_key()],
            )
        except (pipeline.NoEnclaveError, NestorError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def parties(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[party.Party]:
    monkeypatch.setenv("NESTOR_CONFIG_DIR", str(tmp_path / "config"))
    names = ("Northside Hospital", "Riverside Hospital", "Lakeside Clinic")
    members = [party.init_party(tmp_path / f"party-{i + 1}", n) for i, n in enumerate(names)]
    return members


def test_collaboration_with_enclave_in_a_container(
    tmp_path: Path, rootfs: Path, parties: list[party.Party]
) -> None:
    from nestor.cli.demo import make_visits

    root = tmp_path
    programs = root / "programs"
    shutil.copytree(REPO / "examples" / "pooled-stats", programs / "pooled-stats")
    dirs = [root / f"party-{i + 1}" for i in range(3)]
    for i, d in enumerate(dirs):
        make_visits(d / "visits.csv", 200, seed=i + 1)
    now = datetime.now(UTC).replace(microsecond=0)
    c = contracts.new_contract(
        "container-e2e",
        "container-e2e",
        not_before=now - timedelta(minutes=5),
        not_after=now + timedelta(days=1),
    )
    for i, m in enumerate(parties):
        roles = ["data-provider", "result-recipient"] + (["job-submitter"] if i == 0 else [])
        c = contracts.add_party(c, m.card, roles)
        c = contracts.add_dataset(
            c,
            dataset_id=f"visits-{i + 1}",
            owner=m.card.party_id,
            description="visits",
            fmt="csv",
            columns=None,
        )
    c = contracts.add_program(
        c,
        program_id="pooled-stats",
        bundle=programs / "pooled-stats",
        entry_point="pooled_stats.main:run",
        description="pooled statistics",
        inputs=[f"visits-{i + 1}" for i in range(3)],
        recipients=[(parties[0].card.party_id, "full"), (parties[1].card.party_id, "own")],
        min_group_size=5,
        parameters={"group_by": {"type": "string", "required": False}},
    )
    # The measurement the parties expect is that of this source tree: the
    # container's code must be the very same files.
    c = contracts.set_policy(
        c,
        platforms=[{"platform": "simulated", "measurements": [measure_enclave()]}],
        submitters=[parties[0].card.party_id],
        retention={"destroy_keys": "at-expiry"},
    )
    for m in parties:
        c = contracts.sign(c, m)
    contract_path = root / "contract.json"
    contracts.save_contract(contract_path, c)
    contract = verify_contract(contracts.load_contract(contract_path), now=datetime.now(UTC))

    env = {**os.environ, "NESTOR_CONFIG_DIR": str(root / "config")}
    host_log = root / "host.log"
    t_start = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nestor.cli.main",
            "host",
            "serve",
            "--data-dir",
            str(root / "host"),
            "--listen",
            "127.0.0.1:0",
            "--enclave-contract",
            str(contract_path),
            "--tee",
            "sim",
            "--dispatcher",
            "container",
            "--rootfs",
            str(rootfs),
            "--programs",
            str(programs),
        ],
        stdout=subprocess.PIPE,
        stderr=host_log.open("ab"),
        env=env,
    )
    token = container_token(root / "host" / "enclaves")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        assert line.startswith("listening on "), host_log.read_text()[-3000:]
        host = HostClient(line.removeprefix("listening on "))
        host.put_contract(contract.contract.envelope.to_json())
        try:
            enclave = _wait_enclave(host, contract)
        except NestorError:
            raise AssertionError(host_log.read_text()[-3000:]) from None
        print(f"enclave announced {time.monotonic() - t_start:.1f} s after start", file=sys.stderr)

        # The enclave that announced runs in a container from the rootfs.
        (info,) = _containers(token)
        assert info["State"] == "running"
        name = str(info["Names"][0])  # type: ignore[index]
        pid = int(_podman("inspect", "--format", "{{.State.Pid}}", name))
        status = _status_fields(pid)
        assert status["Uid"].split() == ["10001"] * 4
        assert status["CapEff"] == "0000000000000000"
        assert status["NoNewPrivs"] == "1"
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[1:4] == [b"/opt/nestor/bin/nestor", b"enclave", b"run"]
        inside = Path(f"/proc/{pid}/root")
        manifest = (inside / "etc/nestor-rootfs/manifest.txt").read_text()
        assert manifest == (rootfs / "etc/nestor-rootfs/manifest.txt").read_text()
        assert re.search(rf"^simulated_enclave_measurement={measure_enclave()}$", manifest, re.M)
        assert "libpod" in Path(f"/proc/{pid}/cgroup").read_text()
        # Of the host's configuration only the simulated vendor key is inside;
        # no party directory is.
        assert sorted(p.name for p in (inside / "etc/nestor/config").iterdir()) == ["simulated-tee"]
        assert not (inside / str(dirs[0]).lstrip("/")).exists()
        assert not (inside / str(root / "config").lstrip("/")).exists()

        uploads = [
            pipeline.upload_dataset(
                host,
                m,
                contract,
                f"visits-{i + 1}",
                d / "visits.csv",
                now=datetime.now(UTC),
                enclave=enclave,
                work_dir=d,
                party_dir=d,
            )
            for i, (m, d) in enumerate(zip(parties, dirs, strict=True))
        ]
        job_id = pipeline.submit_job(
            host, parties[0], contract, "pooled-stats", {"group_by": "ward"}, now=datetime.now(UTC)
        )
        try:
            pipeline.wait_job(host, job_id, timeout=120)
        except NestorError:
            raise AssertionError(host_log.read_text()[-3000:]) from None
        north = pipeline.fetch_results(
            host,
            parties[0],
            contract,
            job_id,
            enclave=enclave,
            out_dir=dirs[0] / "results",
            known_commitments={u.dataset: [u.commitment] for u in uploads},
        )
        assert {"summary.csv", "per_owner.csv", "meta.json"} <= set(north)
        rows = north["summary.csv"].read_text().splitlines()
        assert rows[0].startswith("ward") or "ward" in rows[0]
        assert len(rows) > 2
        river = pipeline.fetch_results(
            host, parties[1], contract, job_id, enclave=enclave, out_dir=dirs[1] / "results"
        )
        own = river["per_owner.csv"].read_text().splitlines()[1:]
        assert own
        assert all(parties[1].card.party_id in row for row in own)
        head = pipeline.verify_audit_log(
            host, parties[0], enclave, state_file=dirs[0] / "heads.json"
        )
        assert head.index >= 5
        # The same container served the whole collaboration.
        assert [c["Id"] for c in _containers(token)] == [info["Id"]]
    finally:
        _stop(proc)
    assert proc.returncode == 0, host_log.read_text()[-3000:]
    assert _containers(token, all_states=True) == []
