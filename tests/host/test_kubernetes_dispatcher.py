"""The Kubernetes dispatcher at its boundary with the official client.

The real ``kubernetes`` client talks HTTP to a fake API server on a
loopback port (nestor.host.testing_k8s); the tests drive what the cluster
does (a pod runs, is OOM-killed, cannot pull its image) and check what the
dispatcher made of it: the Job objects (validated against the Kubernetes
1.37 schemas, strict), the reports, the restarts and the cleanup.
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes
import kubernetes_validate
import pytest
import yaml

from nestor.attestation.initdata import (
    ANNOTATION,
    CONTRACT_ANNOTATION,
    NESTOR_ENTRY,
    POLICY_ENTRY,
    build_initdata,
    decode_annotation,
    expected_initdata,
)
from nestor.client import contracts as drafting
from nestor.errors import ConfigurationError
from nestor.host.dispatch_kubernetes import (
    LABEL_CONTRACT,
    LABEL_DISPATCHER,
    LABEL_ENCLAVE,
    LABEL_START,
    KubernetesDispatcher,
    WorkerFailure,
    build_job,
    describe_ending,
    job_name,
    store_failure_hook,
)
from nestor.host.dispatcher import EnclaveProcessInfo
from nestor.host.store import JobStatus, Store
from nestor.host.testing import Messages
from nestor.host.testing_k8s import FakeKubernetes, fake_kubernetes
from nestor.protocol.contract import InitDataPolicy

NS = "nestor-test"
IMAGE = "ghcr.io/nestor-project/nestor-enclave@sha256:" + "0" * 64
K8S_VERSION = kubernetes_validate.latest_version()
T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2027, 1, 1, tzinfo=UTC)

# What deploy/base/enclave-podtemplate.yaml holds, with what the coco-tdx
# overlay adds: the runtime class, node selection and the init-data.
POD_TEMPLATE = """
apiVersion: v1
kind: PodTemplate
metadata:
  name: nestor-enclave-worker
  labels:
    app.kubernetes.io/name: nestor
    app.kubernetes.io/component: enclave
template:
  metadata:
    labels:
      app.kubernetes.io/name: nestor
      app.kubernetes.io/component: enclave
    annotations:
      io.katacontainers.config.hypervisor.cc_init_data: PLACEHOLDER
  spec:
    runtimeClassName: kata-qemu-tdx
    serviceAccountName: nestor-enclave
    automountServiceAccountToken: false
    enableServiceLinks: false
    restartPolicy: Never
    nodeSelector:
      intel.feature.node.kubernetes.io/tdx: "true"
    tolerations:
      - key: confidential
        operator: Exists
        effect: NoSchedule
    securityContext:
      runAsNonRoot: true
      runAsUser: 10001
      runAsGroup: 10001
      seccompProfile:
        type: RuntimeDefault
    containers:
      - name: enclave
        image: IMAGE
        args: [enclave, run, --help]
        env:
          - name: NESTOR_HOST_URL
            value: http://nestor-host:8000
          - name: NESTOR_TEE
            value: tdx
          - name: NESTOR_CONFIG_DIR
            value: /run/nestor/config
        resources:
          requests: {cpu: "1", memory: 2Gi}
          limits: {cpu: "2", memory: 4Gi}
        securityContext:
          runAsNonRoot: true
          runAsUser: 10001
          runAsGroup: 10001
          readOnlyRootFilesystem: true
          allowPrivilegeEscalation: false
          privileged: false
          capabilities:
            drop: ["ALL"]
          seccompProfile:
            type: RuntimeDefault
        volumeMounts:
          - name: contract
            mountPath: /etc/nestor/contract
            readOnly: true
          - name: scratch
            mountPath: /tmp
    volumes:
      - name: contract
        configMap:
          name: nestor-contract
      - name: scratch
        emptyDir:
          medium: Memory
          sizeLimit: 1Gi
"""


def contract_file(path: Path, name: str) -> tuple[Path, str]:
    c = drafting.new_contract(name, "k8s-test", not_before=T0, not_after=T1)
    drafting.save_contract(path, c)
    return path, c.digest


@pytest.fixture
def contracts(tmp_path: Path) -> tuple[tuple[Path, str], tuple[Path, str]]:
    return contract_file(tmp_path / "a.json", "Study A"), contract_file(tmp_path / "b.json", "B")


def pod_template(initdata_for: str | None, *, algorithm: str = "sha256") -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load(POD_TEMPLATE.replace("IMAGE", IMAGE))
    annotations = obj["template"]["metadata"]["annotations"]
    if initdata_for is None:
        del obj["template"]["metadata"]["annotations"]
    else:
        annotations[ANNOTATION] = build_initdata(initdata_for, algorithm=algorithm).annotation()
    return obj


@pytest.fixture
def cluster() -> Iterator[FakeKubernetes]:
    with fake_kubernetes() as c:
        yield c


def client_for(cluster: FakeKubernetes) -> Any:
    return kubernetes.client.ApiClient(kubernetes.client.Configuration(host=cluster.url))


def dispatcher(cluster: FakeKubernetes, **kwargs: Any) -> KubernetesDispatcher:
    options: dict[str, Any] = {
        "namespace": NS,
        "api_client": client_for(cluster),
        "poll_interval": 0.05,
        "backoff_initial": 0.2,
        "backoff_max": 1.0,
        "watch_timeout": 5,
        "request_timeout": 5.0,
        "active_deadline_seconds": 86400,
        "backoff_limit": 0,
        "ttl_seconds_after_finished": 600,
    }
    options.update(kwargs)
    return KubernetesDispatcher(options.pop("host_url", None), **options)


def wait_for(what: str, cond: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def jobs(cluster: FakeKubernetes) -> list[dict[str, Any]]:
    return cluster.list_objects("jobs", NS)


def validate(obj: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        raise AssertionError(
            f"{obj['kind']} does not validate: {exc.message} at {exc.path}"
        ) from None


def submitted_jobs(cluster: FakeKubernetes) -> list[dict[str, Any]]:
    """The Job bodies exactly as the client sent them (before the server added fields)."""
    return [
        r.body
        for r in cluster.requests
        if r.method == "POST" and r.path.endswith("/jobs") and isinstance(r.body, dict)
    ]


# -- the Job it builds -----------------------------------------------------------------------------


def test_the_job_validates_and_keeps_the_pod_template(
    cluster: FakeKubernetes, contracts: tuple[tuple[Path, str], tuple[Path, str]]
) -> None:
    (path, digest), _ = contracts
    template = pod_template(digest)
    cluster.put("podtemplates", NS, template)
    with dispatcher(cluster) as d:
        eid = d.add(path, tee="tdx")
        d.start_all()
        (sent,) = submitted_jobs(cluster)
        (stored,) = jobs(cluster)
        cms = cluster.list_objects("configmaps", NS)

    validate(sent)
    meta, spec = sent["metadata"], sent["spec"]
    name = meta["name"]
    assert name == stored["metadata"]["name"]
    assert len(name) <= 63
    assert name.startswith("nestor-enclave-" + digest[7:19] + "-")
    assert meta["labels"] == {
        "app.kubernetes.io/name": "nestor",
        "app.kubernetes.io/component": "enclave",
        "app.kubernetes.io/managed-by": "nestor-host",
        LABEL_DISPATCHER: "nestor",
        LABEL_ENCLAVE: str(eid),
        LABEL_CONTRACT: digest[7:39],
        LABEL_START: "1",
    }
    assert all(len(v) <= 63 for v in meta["labels"].values())
    assert meta["annotations"][CONTRACT_ANNOTATION] == digest
    assert spec["activeDeadlineSeconds"] == 86400
    assert spec["backoffLimit"] == 0
    assert spec["ttlSecondsAfterFinished"] == 600

    pod = spec["template"]
    want = template["template"]["spec"]
    assert pod["spec"]["restartPolicy"] == "Never"
    for key in ("runtimeClassName", "nodeSelector", "tolerations", "securityContext"):
        assert pod["spec"][key] == want[key], key
    assert pod["spec"]["automountServiceAccountToken"] is False
    (c,) = pod["spec"]["containers"]
    (want_c,) = want["containers"]
    for key in ("image", "resources", "securityContext"):
        assert c[key] == want_c[key], key
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "enclave"
    # Same contract as the template's init-data: the very same annotation.
    assert (
        pod["metadata"]["annotations"][ANNOTATION]
        == (template["template"]["metadata"]["annotations"][ANNOTATION])
    )
    assert pod["metadata"]["annotations"][CONTRACT_ANNOTATION] == digest

    assert c["args"] == [
        "enclave",
        "run",
        "--host=$(NESTOR_HOST_URL)",
        "--contract=/etc/nestor/contract/contract.json",
        "--tee=$(NESTOR_TEE)",
    ]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["NESTOR_TEE"] == "tdx"
    assert env["NESTOR_HOST_URL"] == "http://nestor-host:8000"  # the template's
    assert env["NESTOR_CONFIG_DIR"] == "/run/nestor/config"
    assert {"name": "contract", "mountPath": "/etc/nestor/contract", "readOnly": True} in c[
        "volumeMounts"
    ]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["scratch"] == want["volumes"][1]
    (cm,) = cms
    assert volumes["contract"]["configMap"]["name"] == cm["metadata"]["name"]
    assert cm["immutable"] is True
    assert cm["data"]["contract.json"] == path.read_text()
    assert cm["metadata"]["labels"][LABEL_DISPATCHER] == "nestor"
    sent_cm = next(r.body for r in cluster.requests if r.path.endswith("/configmaps"))
    validate(sent_cm)
    # The worker's pod (as the Job controller made it) carries our job label.
    assert stored["spec"]["template"]["metadata"]["labels"]["nestor.dev/job"] == name


def test_the_init_data_names_the_contract_served(
    cluster: FakeKubernetes, contracts: tuple[tuple[Path, str], tuple[Path, str]]
) -> None:
    (_, digest_a), (path_b, digest_b) = contracts
    # The overlay's init-data was made for contract A, with sha384 and a policy.
    template = pod_template(digest_a, algorithm="sha384")
    cluster.put("podtemplates", NS, template)
    with dispatcher(cluster, host_url="http://host.example:8000") as d:
        d.add(path_b, tee="snp")
        d.start_all()
        (sent,) = submitted_jobs(cluster)
    validate(sent)
    annotations = sent["spec"]["template"]["metadata"]["annotations"]
    document = tomllib.loads(decode_annotation(annotations[ANNOTATION]))
    assert document["algorithm"] == "sha384"
    assert tomllib.loads(document["data"][NESTOR_ENTRY]) == {"contract_digest": digest_b}
    before = tomllib.loads(
        decode_annotation(template["template"]["metadata"]["annotations"][ANNOTATION])
    )
    assert document["data"][POLICY_ENTRY] == before["data"][POLICY_ENTRY]
    assert annotations[ANNOTATION] != template["template"]["metadata"]["annotations"][ANNOTATION]
    # Byte for byte what a party rebuilds from contract B's init_data parameters.
    spec = InitDataPolicy("sha384", before["data"][POLICY_ENTRY])
    assert decode_annotation(annotations[ANNOTATION]) == expected_initdata(digest_b, spec).document
    assert annotations[CONTRACT_ANNOTATION] == digest_b
    env = {e["name"]: e["value"] for e in sent["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["NESTOR_HOST_URL"] == "http://host.example:8000"
    assert env["NESTOR_TEE"] == "snp"


def test_without_init_data_in_the_template_only_nestors_entry_is_added(
    contracts: tuple[tuple[Path, str], tuple[Path, str]],
) -> None:
    (_, digest), _ = contracts
    job = build_job(
        pod_template(None),
        name=job_name(digest),
        labels={"app.kubernetes.io/name": "nestor"},
        contract_digest=digest,
        config_map="cm",
        tee="auto",
        host_url=None,
        active_deadline_seconds=60,
        backoff_limit=1,
        ttl_seconds_after_finished=0,
    )
    validate(job)
    document = tomllib.loads(
        decode_annotation(job["spec"]["template"]["metadata"]["annotations"][ANNOTATION])
    )
    assert set(document["data"]) == {NESTOR_ENTRY}
    assert job["spec"]["template"]["metadata"]["annotations"][ANNOTATION] == (
        build_initdata(digest, agent_policy=None).annotation()
    )


def test_templates_the_job_cannot_be_built_from(
    contracts: tuple[tuple[Path, str], tuple[Path, str]],
) -> None:
    (_, digest), _ = contracts
    kwargs: dict[str, Any] = {
        "name": job_name(digest),
        "labels": {},
        "contract_digest": digest,
        "config_map": "cm",
        "tee": "auto",
        "host_url": None,
        "active_deadline_seconds": 60,
        "backoff_limit": 0,
        "ttl_seconds_after_finished": 0,
    }
    renamed = pod_template(None)
    renamed["template"]["spec"]["containers"][0]["name"] = "worker"
    with pytest.raises(ConfigurationError, match="no container named 'enclave'"):
        build_job(renamed, **kwargs)
    no_url = pod_template(None)
    no_url["template"]["spec"]["containers"][0]["env"] = []
    with pytest.raises(ConfigurationError, match="NESTOR_HOST_URL"):
        build_job(no_url, **kwargs)
    assert build_job(no_url, **{**kwargs, "host_url": "http://h:1"})  # given: fine
    bad_initdata = pod_template(digest)
    bad_initdata["template"]["metadata"]["annotations"][ANNOTATION] = "not base64!"
    with pytest.raises(ConfigurationError, match=r"init-data annotation .* unreadable"):
        build_job(bad_initdata, **kwargs)


def test_job_names_are_dns_labels_and_differ() -> None:
    digest = "sha256:" + "ab" * 32
    names = {job_name(digest) for _ in range(50)}
    assert len(names) > 40
    for n in names:
        assert len(n) <= 63
        assert n.replace("-", "").isalnum()
        assert n == n.lower()


# -- what it reports -------------------------------------------------------------------------------


def started(
    cluster: FakeKubernetes, path: Path, digest: str, **kwargs: Any
) -> tuple[KubernetesDispatcher, list[WorkerFailure]]:
    cluster.put("podtemplates", NS, pod_template(digest))
    failures: list[WorkerFailure] = []
    hook = kwargs.pop("on_failure", None)

    def record(f: WorkerFailure) -> None:
        failures.append(f)
        if hook is not None:
            hook(f)

    d = dispatcher(cluster, on_failure=record, **kwargs)
    d.add(path, tee="tdx")
    d.start_all()
    return d, failures


def current_job(d: KubernetesDispatcher) -> str:
    name = wait_for("a Job", lambda: d.workers()[0].job_name)
    assert isinstance(name, str)
    return name


def test_an_oom_killed_worker_is_reported_and_started_again(
    cluster: FakeKubernetes, contracts: tuple[tuple[Path, str], tuple[Path, str]]
) -> None:
    (path, digest), _ = contracts
    d, failures = started(cluster, path, digest)
    with d:
        first = current_job(d)
        cluster.set_pod_running(NS, first)
        wait_for("the worker to run", lambda: d.workers()[0].running)
        log = "".join(f"line {i}\n" for i in range(50))
        t0 = time.monotonic()
        cluster.terminate_pod(NS, first, reason="OOMKilled", exit_code=137, log=log)
        (f,) = wait_for("a failure report", lambda: list(failures))
        reported = time.monotonic() - t0
        assert f.reason == "OOMKilled"
        assert f.exit_code == 137
        assert f.job_name == first
        assert f.contract_digest == digest
        assert f.final is False
        assert f.shared is False
        assert "OOMKilled" in f.message
        assert "exit code 137" in f.message
        assert "BackoffLimitExceeded" in f.message
        assert f.log_tail == tuple(f"line {i}" for i in range(30, 50))
        assert "line" not in f.job_error()  # the log stays with the operator
        second = wait_for(
            "a new Job",
            lambda: d.workers()[0].job_name not in (None, first) and d.workers()[0].job_name,
        )
        restarted = time.monotonic() - t0
        info = d.workers()[0]
        assert info.starts == 2
        assert info.last_failure == f
        assert info.failures == 1
        job2 = cluster.get("jobs", NS, second)
        assert job2 is not None
        assert job2["metadata"]["labels"][LABEL_START] == "2"
        # The ended Job stays for its TTL, for `kubectl logs`.
        assert cluster.get("jobs", NS, first) is not None
        (p,) = d.processes()
        assert isinstance(p, EnclaveProcessInfo)
        assert p.starts == 2
        assert p.last_returncode == 137
    print(f"report {reported * 1000:.0f} ms after the pod ended, new Job after {restarted:.2f} s")
    assert jobs(cluster) == []


def test_the_deadline_is_named_as_the_reason(
    cluster: FakeKubernetes, contracts: tuple[tuple[Path, str], tuple[Path, str]]
) -> None:
    (path, digest), _ = contracts
    d, failures = started(cluster, path, digest, restart=False)
    with d:
        name = current_job(d)
        cluster.set_pod_running(NS, name)
        cluster.terminate_pod(
            NS,
            name,
            reason="Error",
            exit_code=143,
            pod_reason="DeadlineExceeded",
            job_reason="DeadlineExceeded",
            job_message="Job was active longer than specified deadline",
        )
        (f,) = wait_for("a failure report", lambda: list(failures))
        assert f.reason == "DeadlineExceeded"
        assert "stopped by SIGTERM" in f.message
        assert "longer than specified deadline" in f.message
        assert f.final is True  # restart=False
        time.sleep(0.5)
        assert d.workers()[0].job_name is None
        assert d.workers()[0].starts == 1


def test_a_pod_that_cannot_pull_its_image_is_reported_and_replaced(
    cluster: FakeKubernetes, contracts: tuple[tuple[Path, str], tuple[Path, str]]
) -> None:
    (path, digest), _ = contracts
    d, failures = started(cluster, path, digest)
    with d:
        first = current_job(d)
        cluster.set_pod_waiting(
            NS, first, "ImagePullBackOff", 'Back-off pulling image "ghcr.io/nestor-project/x"'
        )
        (f,) = wait_for("a failure report", lambda: list(failures))
        assert f.reason == "ImagePullBackOff"
        assert "Back-off pulling image" in f.message
        assert f.exit_code is None
        assert cluster.get("jobs", NS, first) is None  # deleted, with its pods
        assert cluster.job_pods(NS, first) == []
        wait_for("a new Job", lambda: d.workers()[0].job_name not in (None, first))


def test_an_unschedulable_pod_is_shown_but_not_a_failure(
    cluster: FakeKubernetes, contracts: tuple[tuple[Path, str], tuple[Path, str]]
) -> None:
    (path, digest), _ = contracts
    d, failures = started(cluster, path, digest)
    with d:
        name = current_job(d)
        cluster.set_pod_unschedulable(NS, name, "0/3 nodes are available: 3 Insufficient tdx")
        waiting = wait_for("the waiting reason", lambda: d.workers()[0].waiting)
        assert "Insufficient tdx" in waiting
        assert failures == []
        assert d.workers()[0].job_name == name
        cluster.set_pod_running(NS, name)
        wait_for("the worker to run", lambda: d.workers()[0].running)
        assert d.workers()[0].waiting is None


def test_a_pod_retried_inside_the_job_is_reported(
    cluster: FakeKubernetes, contracts: tuple[tuple[Path, str], tuple[Path, str]]
) -> None:
    (path, digest), _ = contracts
    d, failures = started(cluster, path, digest, backoff_limit=2)
    with d:
        name = current_job(d)
        cluster.set_pod_running(NS, name)
        cluster.terminate_pod(NS, name, reason="Error", exit_code=1, log="boom\n", fail_job=False)
        (f,) = wait_for("a failure report", lambda: list(failures))
        assert f.reason == "Error"
        assert f.exit_code == 1
        assert f.log_tail == ("boom",)
        assert f.final is False
        cluster.new_pod(NS, name)  # the Job controller's retry
        time.sleep(0.3)
        assert d.workers()[0].job_name == name
        assert len(failures) == 1


def test_a_job_deleted_by_someone_else_is_replaced(
    cluster: FakeKubernetes, contracts: tuple[tuple[Path, str], tuple[Path, str]]
) -> None:
    (path, digest), _ = contracts
    d, failures = started(cluster, path, digest)
    with d:
        name = current_job(d)
        wait_for("the watch to see it", lambda: d._jobs.get(name))
        time.sleep(0.2)
        with cluster._lock:
            cluster._delete("jobs", NS, name)
        (f,) = wait_for("a failure report", lambda: list(failures))
        assert f.reason == "Deleted"
        wait_for("a new Job", lambda: d.workers()[0].job_name not in (None, name))


def job_lists(cluster: FakeKubernetes) -> int:
    return sum(
        1
        for r in cluster.requests
        if r.method == "GET" and r.path.endswith("/jobs") and r.query.get("watch") != "true"
    )


def test_the_watch_lists_again_after_410_gone(
    cluster: FakeKubernetes, contracts: tuple[tuple[Path, str], tuple[Path, str]]
) -> None:
    (path, digest), _ = contracts
    d, failures = started(cluster, path, digest, watch_timeout=1)
    with d:
        name = current_job(d)
        cluster.set_pod_running(NS, name)
        wait_for("the worker to run", lambda: d.workers()[0].running)
        # An unrelated change moves the version on, then etcd compacts: the
        # next watch (from the Job's older version) gets 410 Gone, and the
        # dispatcher lists again.
        cluster.put("configmaps", NS, {"metadata": {"name": "other"}, "data": {}})
        lists_before = job_lists(cluster)
        cluster.compact()
        wait_for("a list after 410", lambda: job_lists(cluster) > lists_before, timeout=5)
        cluster.terminate_pod(NS, name, reason="OOMKilled", exit_code=137)
        (f,) = wait_for("a failure report", lambda: list(failures))
        assert f.reason == "OOMKilled"
    watches = [r for r in cluster.requests if r.query.get("watch") == "true"]
    assert watches
    assert all(r.query.get("labelSelector") == "nestor.dev/dispatcher=nestor" for r in watches)
    assert all(r.query.get("resourceVersion") for r in watches)


# -- the queue ------------------------------------------------------------------------------------


def status_of(store: Store, job_id: str) -> JobStatus | None:
    job = store.get_job(job_id)
    return None if job is None else job.status


def test_the_store_hook_fails_the_jobs_the_worker_held(
    cluster: FakeKubernetes, contracts: tuple[tuple[Path, str], tuple[Path, str]], tmp_path: Path
) -> None:
    (path, digest), (_, other) = contracts
    msgs = Messages()
    with Store(f"sqlite:///{tmp_path / 'host.db'}") as store:
        for jid, contract in (("j-run", digest), ("j-queued", digest), ("j-other", other)):
            store.add_job(jid, contract, msgs.job(contract, jid))
        assert store.lease_job("enclave-key", 600, contract=digest) is not None  # j-run
        assert store.lease_job("enclave-key-2", 600, contract=other) is not None  # j-other
        d, _ = started(cluster, path, digest, on_failure=store_failure_hook(store), give_up_after=2)
        with d:
            name = current_job(d)
            cluster.set_pod_running(NS, name)
            cluster.terminate_pod(NS, name, reason="OOMKilled", exit_code=137, log="secret-ish\n")
            wait_for("j-run to fail", lambda: status_of(store, "j-run") is JobStatus.FAILED)
            run = store.get_job("j-run")
            assert run is not None
            assert run.error is not None
            assert name in run.error
            assert "OOMKilled" in run.error
            assert "secret-ish" not in run.error
            queued, foreign = store.get_job("j-queued"), store.get_job("j-other")
            assert queued is not None
            assert queued.status is JobStatus.QUEUED
            assert foreign is not None
            assert foreign.status is JobStatus.RUNNING
            # The second death in a row is the last (give_up_after=2): the
            # queued job fails too, rather than wait for a worker that will not come.
            second = wait_for(
                "a new Job",
                lambda: d.workers()[0].job_name not in (None, name) and d.workers()[0].job_name,
            )
            cluster.terminate_pod(NS, second, reason="Error", exit_code=2)
            wait_for("j-queued to fail", lambda: status_of(store, "j-queued") is JobStatus.FAILED)
            queued = store.get_job("j-queued")
            assert queued is not None
            assert queued.error is not None
            assert "refused its configuration" in queued.error
            last = d.workers()[0].last_failure
            assert last is not None
            assert last.final
            foreign = store.get_job("j-other")
            assert foreign is not None
            assert foreign.status is JobStatus.RUNNING


# -- cleanup ------------------------------------------------------------------------------------


def test_stop_deletes_jobs_and_config_maps_and_remove_deletes_one_worker(
    cluster: FakeKubernetes, contracts: tuple[tuple[Path, str], tuple[Path, str]]
) -> None:
    (path_a, digest_a), (path_b, _) = contracts
    cluster.put("podtemplates", NS, pod_template(digest_a))
    foreign = {"metadata": {"name": "someone-elses", "labels": {"app": "x"}}, "spec": {}}
    cluster.put("configmaps", NS, {"metadata": {"name": "unrelated"}, "data": {}})
    d = dispatcher(cluster)
    a = d.add(path_a)
    b = d.add(path_b)
    d.start_all()
    cluster.put("jobs", NS, foreign)
    assert len(jobs(cluster)) == 3
    assert len(cluster.list_objects("configmaps", NS)) == 3
    job_b = next(j for j in jobs(cluster) if j["metadata"]["labels"].get(LABEL_ENCLAVE) == str(b))
    d.remove(b)
    left = {j["metadata"]["name"] for j in jobs(cluster)}
    assert job_b["metadata"]["name"] not in left
    assert len(left) == 2
    assert cluster.job_pods(NS, job_b["metadata"]["name"]) == []
    assert [i.id for i in d.workers()] == [a]
    d.stop_all()
    assert [j["metadata"]["name"] for j in jobs(cluster)] == ["someone-elses"]
    assert [c["metadata"]["name"] for c in cluster.list_objects("configmaps", NS)] == ["unrelated"]
    assert cluster.list_objects("pods", NS) == []
    deletes = [r for r in cluster.requests if r.method == "DELETE" and "/jobs/" in r.path]
    assert deletes
    assert all(r.body == {"propagationPolicy": "Background"} for r in deletes)
    assert not d.running


def test_jobs_a_previous_host_left_are_deleted_at_start(
    cluster: FakeKubernetes, contracts: tuple[tuple[Path, str], tuple[Path, str]]
) -> None:
    (path, digest), _ = contracts
    cluster.put("podtemplates", NS, pod_template(digest))
    left = {"metadata": {"name": "nestor-enclave-old", "labels": {LABEL_DISPATCHER: "nestor"}}}
    other = {"metadata": {"name": "nestor-enclave-b", "labels": {LABEL_DISPATCHER: "other"}}}
    cluster.put("jobs", NS, left)
    cluster.put("jobs", NS, other)
    with dispatcher(cluster) as d:
        d.add(path)
        d.start_all()
        names = {j["metadata"]["name"] for j in jobs(cluster)}
        assert "nestor-enclave-old" not in names
        assert "nestor-enclave-b" in names
        assert len(names) == 2


# -- errors that say what to do ------------------------------------------------------------------


def test_missing_rbac_names_the_verb_the_resource_and_the_namespace(
    cluster: FakeKubernetes, contracts: tuple[tuple[Path, str], tuple[Path, str]]
) -> None:
    (path, digest), _ = contracts
    cluster.put("podtemplates", NS, pod_template(digest))
    cluster.forbid("create", "jobs")
    d = dispatcher(cluster)
    d.add(path)
    with pytest.raises(ConfigurationError) as info:
        d.start_all()
    err = info.value
    assert "refused to create jobs" in err.message
    assert repr(NS) in err.message
    assert "403 Forbidden" in err.message
    assert err.hint is not None
    assert "deploy/base/rbac.yaml" in err.hint
    assert "'create'" in err.hint
    assert not d.running
    assert cluster.list_objects("configmaps", NS) == []  # what it made is gone again

    cluster.forbidden.clear()
    cluster.forbid("get", "podtemplates")
    with pytest.raises(
        ConfigurationError, match=r"refused to get podtemplates 'nestor-enclave-worker'"
    ):
        d.start_all()


def test_a_missing_pod_template_says_how_to_make_one(
    cluster: FakeKubernetes, contracts: tuple[tuple[Path, str], tuple[Path, str]]
) -> None:
    (path, _), _ = contracts
    d = dispatcher(cluster, pod_template="nestor-enclave-gpu")
    d.add(path)
    with pytest.raises(ConfigurationError) as info:
        d.start_all()
    assert "no PodTemplate 'nestor-enclave-gpu'" in info.value.message
    assert repr(NS) in info.value.message
    assert info.value.hint is not None
    assert "kubectl apply -k deploy/overlays" in info.value.hint


def test_an_unreachable_api_is_a_clear_error(
    contracts: tuple[tuple[Path, str], tuple[Path, str]],
) -> None:
    from nestor.errors import NestorError
    from nestor.host.testing import free_port

    (path, _), _ = contracts
    url = f"http://127.0.0.1:{free_port()}"
    cfg = kubernetes.client.Configuration(host=url)
    cfg.retries = 0
    d = KubernetesDispatcher(
        None, namespace=NS, api_client=kubernetes.client.ApiClient(cfg), request_timeout=2.0
    )
    d.add(path)
    with pytest.raises(NestorError, match=f"cannot reach the Kubernetes API at {url} to list jobs"):
        d.start_all()


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="instance name"):
        KubernetesDispatcher(None, namespace=NS, api_client=object(), instance="Not_A_Label")
    with pytest.raises(ConfigurationError, match="active_deadline_seconds"):
        KubernetesDispatcher(None, namespace=NS, api_client=object(), active_deadline_seconds=0)
    d = KubernetesDispatcher(None, namespace=NS, api_client=object())
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigurationError, match="not JSON"):
        d.add(bad)


def test_describe_ending_prefers_the_specific_reason() -> None:
    pod = {
        "metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "status": {
            "phase": "Failed",
            "reason": "Evicted",
            "message": "The node was low on resource: memory.",
            "containerStatuses": [
                {"name": "enclave", "state": {"terminated": {"reason": "Error", "exitCode": 137}}}
            ],
        },
    }
    e = describe_ending(None, [pod], "enclave")
    assert e.reason == "Evicted"
    assert e.exit_code == 137
    assert e.pod == "p"
    assert "SIGKILL" in e.message
    assert "low on resource" in e.message
    assert describe_ending(None, [], "enclave").reason == "Unknown"


def test_the_pod_template_in_deploy_base_makes_a_valid_job(
    contracts: tuple[tuple[Path, str], tuple[Path, str]],
) -> None:
    """The dispatcher and deploy/ agree: the container, the contract volume,
    NESTOR_HOST_URL, and a Job that validates."""
    source = Path(__file__).resolve().parents[2] / "deploy" / "base" / "enclave-podtemplate.yaml"
    if not source.is_file():
        pytest.skip("deploy/base/enclave-podtemplate.yaml is not in this tree")
    template = yaml.safe_load(source.read_text())
    (_, digest), _ = contracts
    job = build_job(
        template,
        name=job_name(digest),
        labels={"app.kubernetes.io/name": "nestor"},
        contract_digest=digest,
        config_map="nestor-contract-1",
        tee="auto",
        host_url=None,
        active_deadline_seconds=3600,
        backoff_limit=0,
        ttl_seconds_after_finished=600,
    )
    validate(job)
    pod = job["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "contract"]
    assert volume["configMap"]["name"] == "nestor-contract-1"
    (c,) = pod["containers"]
    assert "--contract=/etc/nestor/contract/contract.json" in c["args"]
    assert pod["restartPolicy"] == "Never"


PROFILES = ("coco-dev", "coco-tdx", "coco-snp", "sgx", "aks", "gke")


@pytest.mark.parametrize("profile", PROFILES)
def test_each_overlays_pod_template_gives_a_valid_job(
    profile: str, cluster: FakeKubernetes, contracts: tuple[tuple[Path, str], tuple[Path, str]]
) -> None:
    """The PodTemplate each deploy/ overlay renders, served by the API: the
    Job keeps its TEE settings and binds the contract actually served."""
    import shutil
    import subprocess

    overlay = Path(__file__).resolve().parents[2] / "deploy" / "overlays" / profile
    kubectl = shutil.which("kubectl")
    if kubectl is None or not overlay.is_dir():
        pytest.skip("needs kubectl and deploy/overlays")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    (template,) = [o for o in yaml.safe_load_all(rendered) if o and o["kind"] == "PodTemplate"]
    namespace = template["metadata"].get("namespace", NS)
    cluster.put("podtemplates", namespace, template)
    (path, digest), _ = contracts
    with dispatcher(cluster, namespace=namespace) as d:
        d.add(path, tee="tsm")
        d.start_all()
        (sent,) = submitted_jobs(cluster)
    validate(sent)
    want, got = template["template"]["spec"], sent["spec"]["template"]["spec"]
    for key in ("runtimeClassName", "nodeSelector", "tolerations", "affinity", "securityContext"):
        assert got.get(key) == want.get(key), key
    assert got["containers"][0]["resources"] == want["containers"][0]["resources"]
    annotations = sent["spec"]["template"]["metadata"]["annotations"]
    document = tomllib.loads(decode_annotation(annotations[ANNOTATION]))
    assert tomllib.loads(document["data"][NESTOR_ENTRY]) == {"contract_digest": digest}
    before = tomllib.loads(
        decode_annotation(template["template"]["metadata"]["annotations"][ANNOTATION])
    )
    assert document["data"][POLICY_ENTRY] == before["data"][POLICY_ENTRY]
