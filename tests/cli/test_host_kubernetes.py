"""`nestor host serve --dispatcher kubernetes` as a real process.

The host finds its cluster through a kubeconfig that points at the
in-memory API server of ``nestor.host.testing_k8s`` on loopback (the
official client unchanged), reads the enclave PodTemplate that deploy/base
ships, and creates the worker Job; SIGTERM deletes it. Outside any cluster
the host refuses to start, saying why.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

from nestor.client import contracts as drafting
from nestor.host.testing_k8s import fake_kubernetes

REPO = Path(__file__).resolve().parents[2]
NS = "collab"


def _contract(tmp_path: Path) -> tuple[Path, str]:
    c = drafting.new_contract(
        "Study",
        "k8s-cli",
        not_before=datetime(2026, 1, 1, tzinfo=UTC),
        not_after=datetime(2027, 1, 1, tzinfo=UTC),
    )
    path = tmp_path / "contract.json"
    drafting.save_contract(path, c)
    return path, c.digest


def _serve(tmp_path: Path, contract: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "nestor.cli.main", "host", "serve",
        "--data-dir", str(tmp_path / "host"), "--listen", "127.0.0.1:0",
        "--enclave-contract", str(contract), "--tee", "tdx",
        "--dispatcher", "kubernetes", "--k8s-namespace", NS,
        "--k8s-host-url", "http://nestor-host:8000",
    ]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def test_outside_a_cluster_the_host_says_why_and_exits_2(tmp_path: Path) -> None:
    contract, _ = _contract(tmp_path)
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "none"), "HOME": str(tmp_path)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    proc = _serve(tmp_path, contract, env)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    text = err.decode()
    assert "cannot find a Kubernetes API to dispatch enclave workers to" in text
    assert "Traceback" not in text


def test_the_host_creates_the_worker_job_and_deletes_it_on_sigterm(tmp_path: Path) -> None:
    contract, digest = _contract(tmp_path)
    template = yaml.safe_load((REPO / "deploy/base/enclave-podtemplate.yaml").read_text())
    with fake_kubernetes() as cluster:
        cluster.put("podtemplates", NS, template)
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": cluster.url}}],
                    "users": [{"name": "host", "user": {"token": "t"}}],
                    "contexts": [{"name": "c", "context": {"cluster": "fake", "user": "host"}}],
                    "current-context": "c",
                }
            )
        )
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        proc = _serve(tmp_path, contract, env)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().decode()
            assert line.startswith("listening on http://127.0.0.1:"), proc.stderr
            deadline = time.monotonic() + 20
            while not cluster.list_objects("jobs", NS) and time.monotonic() < deadline:
                time.sleep(0.05)
            (job,) = cluster.list_objects("jobs", NS)
            labels = job["metadata"]["labels"]
            assert labels["app.kubernetes.io/component"] == "enclave"
            assert digest.removeprefix("sha256:")[:32] in labels["nestor.dev/contract"]
            pod = job["spec"]["template"]["spec"]
            (enclave,) = [c for c in pod["containers"] if c["name"] == "enclave"]
            assert "--tee=$(NESTOR_TEE)" in enclave["args"]
            env_values = {e["name"]: e.get("value") for e in enclave.get("env", [])}
            assert env_values["NESTOR_TEE"] == "tdx"
            assert env_values["NESTOR_HOST_URL"] == "http://nestor-host:8000"
            (configmap,) = cluster.list_objects("configmaps", NS)
            assert configmap["data"]["contract.json"] == contract.read_text()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
        assert cluster.list_objects("jobs", NS) == [], proc.stderr.read() if proc.stderr else ""
        assert cluster.list_objects("configmaps", NS) == []
