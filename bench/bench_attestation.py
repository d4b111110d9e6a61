"""Verification latency per platform, collateral already in memory.

Usage: python bench/bench_attestation.py [--runs 300]

For each real sample in ../shared/attestation-samples (and simulated
evidence made on the spot) it verifies the evidence --runs times at the
sample's fixed verification time and prints the median and 95th percentile
latency, plus a baseline measured in the same run: one raw ECDSA P-256
verification with pyca/cryptography, so the figures can be compared across
machines as a ratio. Target: at most 5 ms per verification (median).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from nestor.attestation.result import AttestationResult, Platform
from nestor.attestation.verify import verify_evidence
from nestor.simtee import vendor
from nestor.simtee.measure import measure_enclave

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "attestation-samples"
TARGET_MS = 5.0


def _t(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def cases(tmp: Path) -> dict[str, Callable[[], AttestationResult]]:
    s = SAMPLES
    tdx = (s / "intel-tdx" / "tdx_quote").read_bytes()
    tdx_c = (s / "intel-tdx" / "tdx_quote_collateral.json").read_bytes()
    sgx = (s / "intel-sgx" / "sgx_quote").read_bytes()
    sgx_c = (s / "intel-sgx" / "sgx_quote_collateral.json").read_bytes()
    snp = (s / "amd-sev-snp" / "milan_vcek_report.bin").read_bytes()
    vcek = (s / "amd-sev-snp" / "milan_vcek.der").read_bytes()
    vlek_r = (s / "amd-sev-snp" / "milan_vlek_report.bin").read_bytes()
    vlek = (s / "amd-sev-snp" / "milan_vlek.der").read_bytes()
    nitro = (s / "aws-nitro" / "nitro_attestation.b64").read_bytes()
    azure = (s / "azure-vtpm" / "az_snp_vtpm_evidence_v2_milan.json").read_bytes()
    azure_nonce = bytes.fromhex(
        "982f5c6e45df0ed3f10b6f60b02f0c8390e281300f3805e2279c16168cd6ae9a"
        "a398f647caa2338748cd0fd9f5f819ef"
    )
    key = vendor.load_or_create_vendor_key(tmp)
    sim = vendor.issue_evidence(
        key,
        measurement=measure_enclave(),
        report_data=bytes(64),
        issued_at=_t("2027-01-01T00:00:00Z"),
    )
    pub = key.public_key()
    return {
        "intel-tdx (v4 quote)": lambda: verify_evidence(
            tdx, now=_t("2025-07-01T00:00:00Z"), platform=Platform.TDX, collateral=tdx_c
        ),
        "intel-sgx (v3 quote)": lambda: verify_evidence(
            sgx, now=_t("2025-07-01T00:00:00Z"), platform=Platform.SGX, collateral=sgx_c
        ),
        "sev-snp (VCEK, Milan)": lambda: verify_evidence(
            snp, now=_t("2025-06-01T00:00:00Z"), platform=Platform.SEV_SNP, collateral=vcek
        ),
        "sev-snp (VLEK, Milan)": lambda: verify_evidence(
            vlek_r, now=_t("2025-06-01T00:00:00Z"), platform=Platform.SEV_SNP, collateral=vlek
        ),
        "aws-nitro": lambda: verify_evidence(
            nitro, now=_t("2024-09-07T15:00:00Z"), platform=Platform.NITRO
        ),
        "azure-snp-vtpm (Milan)": lambda: verify_evidence(
            azure,
            now=_t("2026-01-01T00:00:00Z"),
            platform=Platform.AZURE_SNP_VTPM,
            nonce=azure_nonce,
        ),
        "simulated": lambda: verify_evidence(
            sim, now=_t("2027-01-01T00:00:00Z"), simulated_vendor_keys=[pub]
        ),
    }


def measure(fn: Callable[[], object], runs: int) -> list[float]:
    fn()  # warm caches (imports, parsed roots)
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=300)
    args = ap.parse_args()
    if not SAMPLES.is_dir():
        raise SystemExit(f"samples not found at {SAMPLES}")
    key = ec.generate_private_key(ec.SECP256R1())
    sig = key.sign(b"x" * 1000, ec.ECDSA(hashes.SHA256()))
    pub = key.public_key()
    baseline = statistics.median(
        measure(lambda: pub.verify(sig, b"x" * 1000, ec.ECDSA(hashes.SHA256())), args.runs)
    )
    print(f"baseline: one ECDSA P-256 verification, median {baseline * 1000:.1f} µs")
    print(f"{'platform':<26}{'median ms':>10}{'p95 ms':>9}{'× ECDSA':>9}  target ≤ {TARGET_MS} ms")
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in cases(Path(tmp)).items():
            times = sorted(measure(fn, args.runs))
            med = statistics.median(times)
            p95 = times[int(len(times) * 0.95) - 1]
            verdict = "PASS" if med <= TARGET_MS else "FAIL"
            print(f"{name:<26}{med:>10.3f}{p95:>9.3f}{med / baseline:>9.1f}  {verdict}")


if __name__ == "__main__":
    main()
