"""The mission's analyses inside the confidential pipeline against the same
programs on the same plaintext, in the same run.

Usage: python bench/bench_analyses.py [--only dea,workforce] [--scale-factor 1.0] [--rounds 2]

For each example under ``examples/NAME/`` with a scenario (the one
``nestor demo --example NAME`` runs), at the scenario's ``BENCH_SCALE``:

- **plain**: a fresh Python process reads each party's plaintext with pandas
  and calls the program's entry point (no sandbox, no cryptography, one
  thread like the sandbox);
- **confidential**: the enclave job on a real host over loopback, from the
  lease to the completed job: fetch, verify and decrypt every input, run the
  program in the sandbox, seal each recipient's result, sign the receipt,
  append the audit log.

Prints, per analysis, both times and the ratio confidential / plain (best to
best and median to median), and where the job's time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from nestor.cli import demo_scenario
from nestor.cli.demo import running_host
from nestor.cli.demo_scenario import Scenario
from nestor.client import contracts, party, pipeline
from nestor.client.host_api import HostClient
from nestor.enclave import runner as runner_mod
from nestor.enclave.host_link import HostLink
from nestor.enclave.service import EnclaveService
from nestor.enclave.tee import select_producer
from nestor.programs.bundle import copy_bundle
from nestor.protocol.contract import verify_contract
from nestor.simtee.measure import measure_enclave
from nestor.simtee.vendor import load_vendor_public_key

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

PLAIN_SCRIPT = """
import importlib, json, sys, time
from types import MappingProxyType, SimpleNamespace
import pandas as pd
bundle, entry, files, params, k, owners = sys.argv[1:7]
sys.path.insert(0, bundle)
module, func = entry.split(":")
run = getattr(importlib.import_module(module), func)
readers = {"csv": pd.read_csv, "parquet": pd.read_parquet, "arrow": pd.read_feather,
           "jsonl": lambda p: pd.read_json(p, lines=True)}
tables = {ds: readers[fmt](path) for ds, (path, fmt) in json.loads(files).items()}
ctx = SimpleNamespace(program="bench", min_group_size=int(k),
                      owners=MappingProxyType(json.loads(owners)))
run(tables, json.loads(params), ctx)
"""


@dataclass
class Measured:
    name: str
    size_bytes: int
    plains: list[float]
    jobs: list[float]
    phases: dict[str, float]


def _scale_of(name: str) -> float:
    scale = getattr(demo_scenario.load_module(EXAMPLES, name), "BENCH_SCALE", None)
    if not isinstance(scale, int | float):
        raise SystemExit(f"examples/{name}: its scenario defines no BENCH_SCALE")
    return float(scale)


def plain_run(s: Scenario, bundle: Path, owners: dict[str, str]) -> float:
    files = {ds.dataset_id: (str(ds.path), ds.fmt) for ds in s.datasets}
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    t = time.perf_counter()
    subprocess.run(
        [
            sys.executable, "-c", PLAIN_SCRIPT, str(bundle), s.entry_point, json.dumps(files),
            json.dumps(dict(s.job_parameters)), str(s.min_group_size), json.dumps(owners),
        ],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return time.perf_counter() - t


def measure(name: str, work: Path, scale: float, rounds: int, settle: float) -> Measured:
    s = demo_scenario.load(EXAMPLES, name, work / "data", seed=1, scale=scale)
    programs = work / "programs"
    bundle = programs / s.program_id
    copy_bundle(s.bundle, bundle)
    members = [party.init_party(work / f"p{i}", n) for i, n in enumerate(s.parties)]
    now = datetime.now(UTC)
    c = demo_scenario.draft_contract(
        s,
        members,
        bundle=bundle,
        measurement=measure_enclave(),
        not_before=now - timedelta(minutes=5),
        not_after=now + timedelta(days=1),
        retention={"destroy_keys": "at-expiry"},
    )
    submitter = members[s.submitter]
    for m in members:
        c = contracts.sign(c, m)
    verified = verify_contract(c, now=datetime.now(UTC))
    owners = {ds.dataset_id: members[ds.owner].card.party_id for ds in s.datasets}
    size = sum(ds.path.stat().st_size for ds in s.datasets)

    plains: list[float] = []
    jobs: list[tuple[float, dict[str, float]]] = []
    # The host as its own process, as deployed: its request handling does
    # not share the enclave's interpreter (and GIL) with the decryption.
    with running_host(work, None, os.environ) as running:
        url = running.url
        host = HostClient(url, timeout=600)
        host.put_contract(verified.contract.envelope.to_json())
        service = EnclaveService(
            host=HostLink(url, timeout=600),
            contract=verified.contract,
            producer=select_producer("sim"),
            programs_dir=programs,
            runner=runner_mod.make_runner(time_limit=3600, memory_limit_mb=16384),
        )
        service.start()
        enclave = pipeline.verify_enclave(
            host, verified, now=datetime.now(UTC), simulated_vendor_keys=[load_vendor_public_key()]
        )
        for ds in s.datasets:
            d = work / f"p{ds.owner}"
            pipeline.upload_dataset(
                host, members[ds.owner], verified, ds.dataset_id, ds.path,
                now=datetime.now(UTC), enclave=enclave, work_dir=d, party_dir=d,
            )  # fmt: skip
        # Same idle pause before every run: this VM reclaims idle memory
        # after ~2 s and memory touched afterwards is slower (see
        # bench_pipeline.py); both sides get the same treatment.
        for _ in range(rounds):
            time.sleep(settle)
            plains.append(plain_run(s, bundle, owners))
            time.sleep(settle)
            job_id = pipeline.submit_job(
                host, submitter, verified, s.program_id, dict(s.job_parameters),
                now=datetime.now(UTC),
            )  # fmt: skip
            t = time.perf_counter()
            assert service.poll_once()
            job_s = time.perf_counter() - t
            status = host.job_status(job_id)
            if status.status != "done":
                raise SystemExit(f"{name}: job failed: {status.error}")
            jobs.append((job_s, {**service.last_timings, **runner_mod.LAST_TIMINGS}))
    best = min(jobs, key=lambda j: j[0])
    return Measured(name, size, plains, [j[0] for j in jobs], best[1])


def report(m: Measured) -> None:
    best = min(m.jobs) / min(m.plains)
    median = statistics.median(m.jobs) / statistics.median(m.plains)
    print(f"\n{m.name}: {m.size_bytes / 1e6:,.2f} MB of plaintext inputs")
    print("  plain (s):        " + ", ".join(f"{x:.2f}" for x in m.plains))
    print("  confidential (s): " + ", ".join(f"{x:.2f}" for x in m.jobs))
    print(f"  ratio confidential / plain: {best:.2f} best to best, {median:.2f} median to median")
    job = min(m.jobs)
    parts = ", ".join(f"{k} {v:.2f}" for k, v in m.phases.items() if v >= 0.005)
    print(f"  fastest job's phases (s of {job:.2f}): {parts}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="comma-separated example names (default: all)")
    ap.add_argument(
        "--scale-factor", type=float, default=1.0, help="multiply each BENCH_SCALE by this"
    )
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--settle", type=float, default=3.0, help="idle seconds before each run")
    ap.add_argument("--dir", default="/dev/shm" if Path("/dev/shm").is_dir() else None)
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n] or demo_scenario.available(EXAMPLES)
    results = []
    for name in names:
        work = Path(tempfile.mkdtemp(prefix=f"nestor-bench-{name}-", dir=args.dir))
        os.environ["NESTOR_CONFIG_DIR"] = str(work / "config")
        try:
            scale = _scale_of(name) * args.scale_factor
            print(f"{name}: scale {scale:g} ...", flush=True)
            results.append(measure(name, work, scale, args.rounds, args.settle))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    for m in results:
        report(m)
    print("\nsummary (confidential / plain, best to best):")
    for m in results:
        print(f"  {m.name:<14} {min(m.jobs) / min(m.plains):.2f}")


if __name__ == "__main__":
    main()
