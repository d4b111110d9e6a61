"""The Kubernetes dispatcher: each enclave worker runs as a ``batch/v1`` Job.

:class:`KubernetesDispatcher` has the public shape of
:class:`~nestor.host.dispatcher.LocalDispatcher` (``add``, ``start_all``,
``stop_all``, ``processes``, context manager), so the host runs either. For
every registered contract it keeps one enclave worker running in the cluster:

- the contract goes into a ConfigMap it creates (``<instance>-contract-<id>``,
  immutable), mounted read-only at the PodTemplate's ``contract`` volume;
- the worker's pod is the PodTemplate ``nestor-enclave-worker`` that the
  ``deploy/`` overlay applied (runtime class or TEE device resources, node
  selection, resources, hardening), read through the API at every start so
  a re-applied overlay takes effect on the next restart. The dispatcher
  sets only the enclave container's arguments and two environment values,
  points the ``contract`` volume at the ConfigMap, and writes the
  Confidential Containers init-data for *this* contract (the template's
  other init-data entries and algorithm are kept);
- the Job gets labels naming the dispatcher instance, the enclave and the
  contract, ``restartPolicy: Never``, ``activeDeadlineSeconds``,
  ``backoffLimit`` and ``ttlSecondsAfterFinished``.

A watch on the instance's Jobs (list, then watch from the list's
``resourceVersion``; ``410 Gone`` lists again) tells the supervisor thread
when a Job ends. It then reads why from the pod (OOMKilled, the deadline,
an eviction, the exit code and the last lines of its log), records it in
:meth:`KubernetesDispatcher.workers`, calls ``on_failure`` (see
:func:`store_failure_hook`, which fails the queue's jobs that the worker
held) and starts a new Job after a backoff that doubles while workers keep
dying young, as the local dispatcher does. A pod that cannot start (image
pull, container configuration) counts as a failure too: its Job is
deleted and started again later.

Stopping deletes the instance's Jobs (propagation ``Background``, so their
pods go too) and its ConfigMaps; starting first deletes Jobs that a host
of the same instance left behind. docs/dispatcher-kubernetes.md lists the
objects, the RBAC rules and the failure reports.
"""

from __future__ import annotations

import copy
import importlib
import json
import logging
import re
import secrets
import threading
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from nestor.attestation.initdata import (
    ANNOTATION as INITDATA_ANNOTATION,
)
from nestor.attestation.initdata import (
    CONTRACT_ANNOTATION,
    NESTOR_ENTRY,
    VERSION,
    build_initdata,
    decode_annotation,
    encode_annotation,
    render_document,
)
from nestor.errors import ConfigurationError, NestorError
from nestor.host.dispatcher import EnclaveProcessInfo, EnclaveSpec
from nestor.protocol.contract import parse_contract

if TYPE_CHECKING:
    from nestor.host.store import Store

log = logging.getLogger("nestor.host.dispatcher")

DEFAULT_POD_TEMPLATE: Final = "nestor-enclave-worker"
DEFAULT_CONTAINER: Final = "enclave"
CONTRACT_VOLUME: Final = "contract"
CONTRACT_KEY: Final = "contract.json"
DEFAULT_CONTRACT_DIR: Final = "/etc/nestor/contract"
SERVICE_ACCOUNT_NAMESPACE: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_CONTRACT: Final = "nestor.dev/contract"
LABEL_DISPATCHER: Final = "nestor.dev/dispatcher"
LABEL_ENCLAVE: Final = "nestor.dev/enclave"
LABEL_JOB: Final = "nestor.dev/job"
LABEL_START: Final = "nestor.dev/start"

# ConfigMaps hold at most 1 MiB in all.
MAX_CONTRACT_BYTES: Final = 1_000_000
# Container states in which a pod will not run the enclave without someone
# changing the image, the registry or the pod's configuration.
STUCK_REASONS: Final = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
_DNS_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE: Final = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
# Job names: the Job controller copies them into a label of each pod (<= 63).
_SUFFIX_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' generateName alphabet
_MAX_ERROR: Final = 4000
_EXIT_MEANINGS: Final = {
    1: "the enclave failed (see its log)",
    2: "the enclave refused its configuration (see its log)",
    137: "killed by SIGKILL (out of memory, or stopped by force)",
    143: "stopped by SIGTERM",
}


# -- what the dispatcher reports -------------------------------------------------------------


@dataclass(frozen=True)
class WorkerFailure:
    """Why an enclave worker's Job ended, as far as Kubernetes can tell.

    ``reason`` is one word (``OOMKilled``, ``DeadlineExceeded``,
    ``ImagePullBackOff``, ``Error``, ``Completed``, ``Evicted``, ``Deleted``);
    ``message`` says it in a sentence; ``log_tail`` holds the container's
    last log lines (for the operator: :meth:`job_error` leaves them out).
    ``final``: the dispatcher will not start this worker again.
    ``shared``: another worker of the dispatcher serves the same contract,
    so queued jobs the failed one held cannot be told apart from its.
    """

    enclave_id: int
    contract: Path
    contract_digest: str
    job_name: str
    pod_name: str | None
    reason: str
    exit_code: int | None
    message: str
    log_tail: tuple[str, ...] = ()
    final: bool = False
    shared: bool = False
    at: float = field(default_factory=time.time)

    def job_error(self) -> str:
        """The text a queued job failed by this gets as its error."""
        text = f"the enclave worker {self.job_name} ended: {self.message}"
        return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 3] + "..."


@dataclass(frozen=True)
class KubernetesWorkerInfo:
    """One registered enclave worker, as the dispatcher sees it now."""

    id: int
    contract: Path
    contract_digest: str
    tee: str
    job_name: str | None  # the current Job; None between a failure and the restart
    running: bool  # its container has started and the Job has not ended
    waiting: str | None  # why its pod has not started yet (e.g. Unschedulable: ...)
    starts: int  # Jobs created for it
    failures: int
    last_failure: WorkerFailure | None


def _kubernetes(module: str) -> Any:
    """A module of the ``kubernetes`` client (an optional dependency, untyped)."""
    return importlib.import_module(f"kubernetes.{module}")


# -- the Kubernetes API, with errors that say what to do ---------------------------------------


def _status_message(exc: Any) -> str:
    try:
        body = json.loads(exc.body)
        return str(body.get("message") or exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(getattr(exc, "reason", "") or exc)


class KubernetesApi:
    """The few calls the dispatcher makes, each turning an API error into a
    :class:`~nestor.errors.NestorError` that names the verb, the resource and
    the namespace (and, for 403, the Role that grants it)."""

    def __init__(self, api_client: Any, namespace: str, *, request_timeout: float = 30.0) -> None:
        from kubernetes import client

        self.api_client = api_client
        self.namespace = namespace
        self.core = client.CoreV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.request_timeout = request_timeout
        self._watch_lock = threading.Lock()
        self._watch_response: Any = None

    @property
    def host(self) -> str:
        return str(self.api_client.configuration.host)

    def _call(
        self,
        verb: str,
        resource: str,
        fn: Callable[..., Any],
        *args: Any,
        name: str | None = None,
        accept: frozenset[int] = frozenset(),
        **kwargs: Any,
    ) -> Any:
        """``fn(*args, **kwargs)``; an API error whose status is in ``accept``
        returns that status instead of raising."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        kwargs.setdefault("_preload_content", False)
        kwargs.setdefault("_request_timeout", self.request_timeout)
        try:
            resp = fn(*args, **kwargs)
            if not kwargs.get("watch"):
                # Read the body whole (kept in resp.data) and give the
                # connection back to the pool, which raw responses do not do.
                _ = resp.data
                resp.release_conn()
            return resp
        except ApiException as exc:
            if exc.status in accept:
                return int(exc.status)
            raise self.error(exc, verb, resource, name) from None
        except (HTTPError, OSError) as exc:
            raise NestorError(
                f"cannot reach the Kubernetes API at {self.host} to {verb} {resource} "
                f"in namespace {self.namespace}: {exc}",
                hint="check that the API server is reachable from the host's pod",
            ) from None

    def error(self, exc: Any, verb: str, resource: str, name: str | None = None) -> NestorError:
        status = int(getattr(exc, "status", 0) or 0)
        what = f"{resource} {name!r}" if name else resource
        where = f"in namespace {self.namespace!r}"
        detail = _status_message(exc)
        if status == 403:
            return ConfigurationError(
                f"the Kubernetes API refused to {verb} {what} {where} (403 Forbidden): {detail}",
                hint=f"the host's ServiceAccount needs the verb {verb!r} on {resource!r}: apply "
                "the Role and RoleBinding nestor-dispatcher (deploy/base/rbac.yaml; "
                "docs/dispatcher-kubernetes.md lists the rules)",
            )
        if status == 401:
            return ConfigurationError(
                f"the Kubernetes API did not accept the host's credentials to {verb} {what} "
                f"{where} (401 Unauthorized): {detail}",
                hint="the host pod needs its ServiceAccount token: "
                "automountServiceAccountToken: true on the host's pod",
            )
        if status == 422:
            return ConfigurationError(
                f"the Kubernetes API rejected the {what} it was asked to {verb} {where} as "
                f"invalid: {detail}",
                hint="the Job is built from the PodTemplate: fix the overlay that renders it",
            )
        if status == 404:
            return ConfigurationError(f"cannot {verb} {what} {where}: not found ({detail})")
        return NestorError(
            f"the Kubernetes API failed to {verb} {what} {where} ({status} "
            f"{getattr(exc, 'reason', '')}): {detail}",
            hint="retry; if it persists, check the API server's health",
        )

    @staticmethod
    def _json(response: Any) -> Any:
        return json.loads(response.data)

    # -- the calls ------------------------------------------------------------------------------

    def read_pod_template(self, name: str) -> dict[str, Any]:
        resp = self._call(
            "get",
            "podtemplates",
            self.core.read_namespaced_pod_template,
            name,
            self.namespace,
            name=name,
            accept=frozenset({404}),
        )
        if resp == 404:
            raise ConfigurationError(
                f"there is no PodTemplate {name!r} in namespace {self.namespace!r}: the "
                "Kubernetes dispatcher builds each enclave worker's Job from it",
                hint="apply a deploy/ overlay (kubectl apply -k deploy/overlays/PROFILE) in "
                "this namespace, or name another template with --k8s-pod-template",
            )
        out: dict[str, Any] = self._json(resp)
        return out

    def create_job(self, body: Mapping[str, Any]) -> bool:
        """Create a Job; False if its name is taken (409 AlreadyExists)."""
        resp = self._call(
            "create",
            "jobs",
            self.batch.create_namespaced_job,
            self.namespace,
            dict(body),
            name=str(body["metadata"]["name"]),
            accept=frozenset({409}),
        )
        return bool(resp != 409)

    def list_jobs(self, selector: str) -> tuple[list[dict[str, Any]], str]:
        resp = self._call(
            "list", "jobs", self.batch.list_namespaced_job, self.namespace, label_selector=selector
        )
        data = self._json(resp)
        return list(data.get("items") or []), str(data["metadata"].get("resourceVersion", ""))

    def watch_jobs(
        self,
        selector: str,
        resource_version: str,
        timeout: int,
        stop: threading.Event | None = None,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Job events after ``resource_version`` until the server ends the
        watch (``timeout`` seconds), or ``stop`` is set and :meth:`stop_watch`
        called."""
        # The client's Watch helper fails on ERROR events when asked not to
        # deserialize (kubernetes 37: KeyError 'raw_object'); the lines are read here.
        iter_resp_lines: Callable[[Any], Iterator[str]] = _kubernetes("watch.watch").iter_resp_lines

        resp = self._call(
            "watch",
            "jobs",
            self.batch.list_namespaced_job,
            self.namespace,
            label_selector=selector,
            resource_version=resource_version,
            watch=True,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout,
            _request_timeout=(self.request_timeout, timeout + self.request_timeout),
        )
        from urllib3.exceptions import HTTPError

        with self._watch_lock:
            self._watch_response = resp
        try:
            # Set before this response was registered, stop_watch missed it.
            if stop is not None and stop.is_set():
                return
            for line in iter_resp_lines(resp):
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    raise NestorError(
                        f"the Job watch sent a line that is not JSON: {line[:200]!r}"
                    ) from None
                yield str(event.get("type")), dict(event.get("object") or {})
        except (HTTPError, OSError):
            return  # the connection closed (stop_watch, or the server went away): list again
        finally:
            with self._watch_lock:
                self._watch_response = None
            # Never reuse a watch's connection: cut short, it may still carry
            # the rest of the stream (the client's Watch closes it too).
            resp.close()
            resp.release_conn()

    def stop_watch(self) -> None:
        """End a watch blocked in another thread."""
        with self._watch_lock:
            resp = self._watch_response
        if resp is None:
            return
        shutdown = getattr(resp, "shutdown", None)  # urllib3 >= 2.3
        try:
            if shutdown is not None:
                shutdown()
            else:  # pragma: no cover - older urllib3
                resp.close()
        except OSError:
            pass

    def delete_job(self, name: str) -> bool:
        """Delete a Job and (in the background) its pods; False if it was gone."""
        return self._delete("jobs", self.batch.delete_namespaced_job, name)

    def create_config_map(self, body: Mapping[str, Any]) -> None:
        self._call(
            "create",
            "configmaps",
            self.core.create_namespaced_config_map,
            self.namespace,
            dict(body),
            name=str(body["metadata"]["name"]),
        )

    def delete_config_map(self, name: str) -> bool:
        return self._delete("configmaps", self.core.delete_namespaced_config_map, name)

    def _delete(self, resource: str, fn: Callable[..., Any], name: str) -> bool:
        resp = self._call(
            "delete",
            resource,
            fn,
            name,
            self.namespace,
            name=name,
            body={"propagationPolicy": "Background"},
            accept=frozenset({404}),
        )
        return bool(resp != 404)

    def list_pods(self, selector: str) -> list[dict[str, Any]]:
        resp = self._call(
            "list", "pods", self.core.list_namespaced_pod, self.namespace, label_selector=selector
        )
        return list(self._json(resp).get("items") or [])

    def pod_log(self, pod: str, container: str, *, lines: int, limit_bytes: int = 16384) -> str:
        resp = self._call(
            "get",
            "pods/log",
            self.core.read_namespaced_pod_log,
            pod,
            self.namespace,
            name=pod,
            container=container,
            tail_lines=lines,
            limit_bytes=limit_bytes,
        )
        data: bytes = resp.data
        return data.decode("utf-8", errors="replace")


def load_api_client() -> Any:
    """An API client for the cluster this process runs in (its ServiceAccount),
    else for the current context of ``$KUBECONFIG`` / ``~/.kube/config``."""
    client, config = _kubernetes("client"), _kubernetes("config")
    cfg = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=cfg)
    except config.ConfigException as in_cluster:
        try:
            config.load_kube_config(client_configuration=cfg, persist_config=False)
        except (config.ConfigException, OSError, TypeError, ValueError) as kube_config:
            raise ConfigurationError(
                "cannot find a Kubernetes API to dispatch enclave workers to: not in a pod "
                f"({in_cluster}) and no usable kubeconfig ({kube_config})",
                hint="run the host in the cluster with its ServiceAccount (deploy/), or set "
                "KUBECONFIG",
            ) from None
    return client.ApiClient(cfg)


def pod_namespace() -> str:
    """The namespace this pod runs in (its ServiceAccount's)."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text(encoding="utf-8").strip()
    except OSError:
        raise ConfigurationError(
            "the Kubernetes dispatcher needs a namespace, and this process is not in a pod "
            f"({SERVICE_ACCOUNT_NAMESPACE} is unreadable)",
            hint="pass --k8s-namespace NAMESPACE",
        ) from None


# -- building the Job ----------------------------------------------------------------------------


def check_label_value(value: str, what: str) -> str:
    if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
        raise ConfigurationError(
            f"{what} {value!r} cannot be a Kubernetes label value",
            hint="at most 63 letters, digits, '-', '_' or '.', beginning and ending "
            "with a letter or digit",
        )
    return value


def contract_label(digest: str) -> str:
    """The contract's label value: 32 hex digits of its digest (the full
    digest is in the annotation nestor.dev/contract-digest)."""
    return digest.removeprefix("sha256:")[:32]


def job_name(digest: str, suffix: str | None = None) -> str:
    """``nestor-enclave-<12 hex of the contract>-<5 random>``: a DNS-1123 label."""
    if suffix is None:
        suffix = "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(5))
    name = f"nestor-enclave-{digest.removeprefix('sha256:')[:12]}-{suffix}"
    if len(name) > 63 or not _DNS_LABEL.fullmatch(name):  # pragma: no cover - by construction
        raise AssertionError(f"bad Job name {name!r}")
    return name


def initdata_annotations(annotations: Mapping[str, str], digest: str, where: str) -> dict[str, str]:
    """The init-data annotations for a pod serving the contract ``digest``.

    The template's init-data keeps its algorithm and every entry but Nestor's,
    which is set to this contract: the TEE measures the document, so each
    contract gets its own. Without one in the template, the document holds
    Nestor's entry only (no agent policy is imposed that the operator did not
    choose)."""
    existing = annotations.get(INITDATA_ANNOTATION)
    if not existing:
        document = build_initdata(digest, agent_policy=None).document
    else:
        try:
            top = tomllib.loads(decode_annotation(existing))
        except (NestorError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(
                f"the init-data annotation of {where} is unreadable: {exc}",
                hint="write it with `nestor deploy init-data`, or remove it",
            ) from None
        data = top.get("data", {})
        if (
            top.get("version") != VERSION
            or not isinstance(top.get("algorithm"), str)
            or not isinstance(data, dict)
            or not all(isinstance(v, str) for v in data.values())
        ):
            raise ConfigurationError(
                f"the init-data annotation of {where} is not a version {VERSION} document "
                "with an algorithm and [data] text entries",
                hint="write it with `nestor deploy init-data`",
            )
        entries = {**data, NESTOR_ENTRY: f'contract_digest = "{digest}"\n'}
        document = render_document(str(top["algorithm"]), entries)
    return {INITDATA_ANNOTATION: encode_annotation(document), CONTRACT_ANNOTATION: digest}


def _set_env(container: dict[str, Any], name: str, value: str) -> None:
    env = [e for e in container.get("env") or [] if e.get("name") != name]
    env.append({"name": name, "value": value})
    container["env"] = env


def build_job(
    template: Mapping[str, Any],
    *,
    name: str,
    labels: Mapping[str, str],
    contract_digest: str,
    config_map: str,
    tee: str,
    host_url: str | None,
    active_deadline_seconds: int,
    backoff_limit: int,
    ttl_seconds_after_finished: int,
    container: str = DEFAULT_CONTAINER,
) -> dict[str, Any]:
    """The ``batch/v1`` Job for one enclave worker, from a PodTemplate object.

    Everything the template's pod says stays (runtime class, resources,
    security contexts, node selection, tolerations, annotations) except: the
    ``container``'s arguments and its ``NESTOR_TEE`` (and ``NESTOR_HOST_URL``
    when ``host_url`` is given), the ``contract`` volume (the ConfigMap
    ``config_map``), the init-data annotation (this contract), the labels
    (added) and ``restartPolicy`` (``Never``: restarts are the dispatcher's,
    so each one is seen and reported)."""
    tname = str(template.get("metadata", {}).get("name", "?"))
    where = f"the PodTemplate {tname!r}"
    if not isinstance(template.get("template"), Mapping) or not isinstance(
        template["template"].get("spec"), Mapping
    ):
        raise ConfigurationError(f"{where} has no pod spec (template.spec)")
    pod = copy.deepcopy(dict(template["template"]))
    spec: dict[str, Any] = pod["spec"]
    meta: dict[str, Any] = dict(pod.get("metadata") or {})
    meta.pop("name", None)
    meta.pop("namespace", None)
    containers = spec.get("containers") or []
    found = [c for c in containers if c.get("name") == container]
    if not found:
        raise ConfigurationError(
            f"{where} has no container named {container!r}",
            hint="the enclave's container must be named 'enclave' "
            "(deploy/base/enclave-podtemplate.yaml)",
        )
    enclave = found[0]

    mount_path = DEFAULT_CONTRACT_DIR
    mounts = [m for m in enclave.get("volumeMounts") or [] if m.get("name") == CONTRACT_VOLUME]
    if mounts:
        mounts[0]["readOnly"] = True
        mount_path = str(mounts[0]["mountPath"]).rstrip("/") or "/"
    else:
        enclave["volumeMounts"] = [
            *(enclave.get("volumeMounts") or []),
            {"name": CONTRACT_VOLUME, "mountPath": mount_path, "readOnly": True},
        ]
    volume = {
        "name": CONTRACT_VOLUME,
        "configMap": {
            "name": config_map,
            "items": [{"key": CONTRACT_KEY, "path": CONTRACT_KEY}],
            "defaultMode": 0o444,
        },
    }
    spec["volumes"] = [
        *(v for v in spec.get("volumes") or [] if v.get("name") != CONTRACT_VOLUME),
        volume,
    ]
    if host_url is not None:
        _set_env(enclave, "NESTOR_HOST_URL", host_url)
    elif not any(e.get("name") == "NESTOR_HOST_URL" for e in enclave.get("env") or []):
        raise ConfigurationError(
            f"the enclave workers cannot know the host's URL: {where} sets no NESTOR_HOST_URL "
            "in its 'enclave' container and none was given",
            hint="set NESTOR_HOST_URL in the PodTemplate (the host Service's URL), "
            "or give the dispatcher host_url",
        )
    _set_env(enclave, "NESTOR_TEE", tee)
    enclave["args"] = [
        "enclave",
        "run",
        "--host=$(NESTOR_HOST_URL)",
        f"--contract={mount_path.rstrip('/')}/{CONTRACT_KEY}",
        "--tee=$(NESTOR_TEE)",
    ]
    spec["restartPolicy"] = "Never"

    meta["labels"] = {**(meta.get("labels") or {}), **labels, LABEL_JOB: name}
    meta["annotations"] = {
        **(meta.get("annotations") or {}),
        **initdata_annotations(meta.get("annotations") or {}, contract_digest, where),
    }
    pod["metadata"] = meta
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "labels": dict(labels),
            "annotations": {CONTRACT_ANNOTATION: contract_digest},
        },
        "spec": {
            "parallelism": 1,
            "completions": 1,
            "backoffLimit": backoff_limit,
            "activeDeadlineSeconds": active_deadline_seconds,
            "ttlSecondsAfterFinished": ttl_seconds_after_finished,
            "template": pod,
        },
    }


# -- reading why a Job ended -----------------------------------------------------------------------


@dataclass(frozen=True)
class Ending:
    reason: str
    exit_code: int | None
    message: str
    pod: str | None


def _container_status(pod: Mapping[str, Any], container: str) -> Mapping[str, Any]:
    st = pod.get("status") or {}
    for cs in [*(st.get("containerStatuses") or []), *(st.get("initContainerStatuses") or [])]:
        if cs.get("name") == container:
            return dict(cs)
    return {}


def _pod_order(pod: Mapping[str, Any]) -> tuple[str, str]:
    meta = pod.get("metadata") or {}
    return str(meta.get("creationTimestamp", "")), str(meta.get("name", ""))


def describe_ending(
    job: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]], container: str
) -> Ending:
    """Why a worker's Job ended or is stuck: from its newest pod's container
    state and the pod's and Job's reasons."""
    pod = max(pods, key=_pod_order) if pods else None
    parts: list[str] = []
    reason: str | None = None
    exit_code: int | None = None
    weak: str | None = None  # Error/Completed: said by the exit code better than by the word
    if pod is not None:
        cs = _container_status(pod, container)
        state = cs.get("state") or {}
        term = state.get("terminated") or (cs.get("lastState") or {}).get("terminated")
        waiting = state.get("waiting")
        if term:
            exit_code = term.get("exitCode")
            treason = str(term.get("reason") or "Terminated")
            text = f"container {container!r} {treason}"
            if exit_code is not None:
                meaning = _EXIT_MEANINGS.get(int(exit_code))
                text += f" (exit code {exit_code}{': ' + meaning if meaning else ''})"
            if term.get("message"):
                text += f": {term['message']}"
            parts.append(text)
            if treason in ("Error", "Completed"):
                weak = treason
            else:
                reason = treason
        elif waiting:
            wreason = str(waiting.get("reason") or "Waiting")
            parts.append(
                f"container {container!r} {wreason}: {waiting.get('message', '')}".rstrip(": ")
            )
            reason = wreason
        pst = pod.get("status") or {}
        if pst.get("reason"):
            parts.append(f"pod {pst['reason']}: {pst.get('message', '')}".rstrip(": "))
            reason = reason or str(pst["reason"])
    for cond in ((job or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Failed" and cond.get("status") == "True":
            creason = str(cond.get("reason") or "Failed")
            parts.append(f"Job {creason}: {cond.get('message', '')}".rstrip(": "))
            if creason == "DeadlineExceeded":
                reason = reason or creason
            weak = weak or creason
    final_reason = reason or weak or "Unknown"
    if not parts:
        parts.append("no pod or Job condition says why")
    return Ending(
        final_reason,
        exit_code,
        "; ".join(parts),
        None if pod is None else str(pod["metadata"]["name"]),
    )


def _job_finished(job: Mapping[str, Any]) -> str | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Failed", "Complete") and cond.get("status") == "True":
            return str(cond["type"])
    return None


def _stuck(pod: Mapping[str, Any], container: str) -> bool:
    waiting = (_container_status(pod, container).get("state") or {}).get("waiting") or {}
    return waiting.get("reason") in STUCK_REASONS


def _started(pod: Mapping[str, Any], container: str) -> bool:
    state = _container_status(pod, container).get("state") or {}
    return bool(state.get("running") or state.get("terminated"))


def _unschedulable(pod: Mapping[str, Any]) -> str | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return f"{cond.get('reason', 'Unschedulable')}: {cond.get('message', '')}".rstrip(": ")
    return None


# -- the dispatcher ------------------------------------------------------------------------------


@dataclass
class _Worker:
    id: int
    contract: Path
    digest: str
    tee: str
    contract_bytes: bytes = field(repr=False)
    config_map: str = ""
    config_map_ready: bool = False
    job_name: str | None = None
    created_at: float = 0.0
    seen: bool = False  # the watch has shown the current Job
    running_since: float | None = None
    waiting: str | None = None
    failed_pods: int = 0  # the current Job's status.failed already reported
    last_pod_check: float = 0.0
    starts: int = 0
    failures: int = 0
    backoff: float = 0.0
    next_start: float | None = 0.0
    last_failure: WorkerFailure | None = None
    removed: bool = False


class KubernetesDispatcher:
    """Start, follow, restart and stop enclave workers as Kubernetes Jobs."""

    def __init__(
        self,
        host_url: str | None = None,
        *,
        namespace: str | None = None,
        pod_template: str = DEFAULT_POD_TEMPLATE,
        container: str = DEFAULT_CONTAINER,
        active_deadline_seconds: int = 7 * 24 * 3600,
        backoff_limit: int = 0,
        ttl_seconds_after_finished: int = 3600,
        instance: str = "nestor",
        restart: bool = True,
        give_up_after: int | None = None,
        backoff_initial: float = 5.0,
        backoff_max: float = 300.0,
        healthy_after: float = 60.0,
        poll_interval: float = 2.0,
        watch_timeout: int = 300,
        log_lines: int = 20,
        on_failure: Callable[[WorkerFailure], None] | None = None,
        api_client: Any = None,
        request_timeout: float = 30.0,
    ) -> None:
        """
        ``host_url``: the host's URL as enclave pods reach it (the host
        Service); ``None`` keeps the PodTemplate's ``NESTOR_HOST_URL``.
        ``namespace``: where the PodTemplate is and the Jobs go (default:
        this pod's). ``instance``: names this dispatcher's Jobs and
        ConfigMaps (label ``nestor.dev/dispatcher``); one per host.
        ``active_deadline_seconds``: a worker's Job is stopped after this
        long and a fresh worker (fresh keys) replaces it.
        ``backoff_limit``: pod retries inside one Job (0: every enclave death
        comes back to the dispatcher, which reports it and restarts).
        ``ttl_seconds_after_finished``: how long an ended Job stays for
        ``kubectl logs`` before Kubernetes removes it.
        ``restart``/``backoff_*``/``healthy_after``: as LocalDispatcher's.
        ``give_up_after``: stop restarting after this many failures in a row
        (the last failure is then ``final``); ``None``: never give up.
        ``on_failure``: called (from the supervisor thread) with every
        :class:`WorkerFailure`; see :func:`store_failure_hook`.
        ``api_client``: a ``kubernetes.client.ApiClient`` (default: in-cluster
        configuration, else the kubeconfig).
        """
        if active_deadline_seconds <= 0:
            raise ConfigurationError(
                f"active_deadline_seconds must be positive, not {active_deadline_seconds}"
            )
        for what, value in (
            ("ttl_seconds_after_finished", ttl_seconds_after_finished),
            ("backoff_limit", backoff_limit),
        ):
            if value < 0:
                raise ConfigurationError(f"{what} must be zero or more, not {value}")
        if len(instance) > 40 or not _DNS_LABEL.fullmatch(instance):
            raise ConfigurationError(
                f"the dispatcher instance name {instance!r} is not a DNS label of at most "
                "40 characters",
                hint="lower-case letters, digits and '-', e.g. nestor",
            )
        self.host_url = host_url
        self.namespace = namespace
        self.pod_template = pod_template
        self.container = container
        self.active_deadline_seconds = active_deadline_seconds
        self.backoff_limit = backoff_limit
        self.ttl_seconds_after_finished = ttl_seconds_after_finished
        self.instance = instance
        self.restart = restart
        self.give_up_after = give_up_after
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.healthy_after = healthy_after
        self.poll_interval = poll_interval
        self.watch_timeout = watch_timeout
        self.log_lines = log_lines
        self.on_failure = on_failure
        self.request_timeout = request_timeout
        self._api_client = api_client
        self._api: KubernetesApi | None = None
        self._lock = threading.RLock()
        self._launch_lock = threading.Lock()  # one worker's create/delete at a time
        self._workers: list[_Worker] = []
        self._jobs: dict[str, dict[str, Any]] = {}  # the watch's view of this instance's Jobs
        self._synced = threading.Event()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- registering and inspecting -------------------------------------------------------------

    @property
    def selector(self) -> str:
        """The label selector of every Job this dispatcher instance owns."""
        return f"{LABEL_DISPATCHER}={self.instance}"

    def add(self, contract: Path, *, tee: str = "auto") -> int:
        """Register an enclave worker for the signed contract file ``contract``;
        it starts with :meth:`start_all`, or at once if the dispatcher runs."""
        try:
            data = contract.read_bytes()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read the contract {contract}: {exc.strerror or exc}"
            ) from None
        if len(data) > MAX_CONTRACT_BYTES:
            raise ConfigurationError(
                f"the contract {contract} is {len(data)} bytes; a ConfigMap holds at most "
                f"{MAX_CONTRACT_BYTES}"
            )
        try:
            digest = parse_contract(json.loads(data)).digest
        except ValueError as exc:
            raise ConfigurationError(f"the contract {contract} is not JSON: {exc}") from None
        check_label_value(tee, "the TEE kind")
        with self._lock:
            w = _Worker(len(self._workers) + 1, contract, digest, tee, data)
            w.config_map = f"{self.instance}-contract-{w.id}"
            self._workers.append(w)
        self._wake.set()
        return w.id

    def workers(self) -> list[KubernetesWorkerInfo]:
        with self._lock:
            return [
                KubernetesWorkerInfo(
                    w.id,
                    w.contract,
                    w.digest,
                    w.tee,
                    w.job_name,
                    w.job_name is not None and w.running_since is not None,
                    w.waiting,
                    w.starts,
                    w.failures,
                    w.last_failure,
                )
                for w in self._workers
                if not w.removed
            ]

    def processes(self) -> list[EnclaveProcessInfo]:
        """The workers in :class:`LocalDispatcher`'s terms (no pids here)."""
        return [
            EnclaveProcessInfo(
                i.id,
                EnclaveSpec(i.contract, i.tee),
                None,
                i.running,
                i.starts,
                None if i.last_failure is None else i.last_failure.exit_code,
            )
            for i in self.workers()
        ]

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    @property
    def api(self) -> KubernetesApi:
        if self._api is None:
            client = self._api_client if self._api_client is not None else load_api_client()
            namespace = self.namespace if self.namespace is not None else pod_namespace()
            self._api = KubernetesApi(client, namespace, request_timeout=self.request_timeout)
        return self._api

    def labels_for(self, w: _Worker) -> dict[str, str]:
        return {
            LABEL_NAME: "nestor",
            LABEL_COMPONENT: "enclave",
            LABEL_MANAGED_BY: "nestor-host",
            LABEL_DISPATCHER: self.instance,
            LABEL_ENCLAVE: str(w.id),
            LABEL_CONTRACT: contract_label(w.digest),
        }

    # -- lifecycle --------------------------------------------------------------------------

    def start_all(self, *, wait: float = 10.0) -> None:
        """Delete Jobs a previous host of this instance left, start a Job for
        every registered worker, then follow them. Errors that a retry will
        not cure (RBAC, no PodTemplate, an invalid Job) are raised here."""
        if self.running:
            return
        self._stopping.clear()
        self.delete_leftovers()
        with self._lock:
            pending = [w for w in self._workers if not w.removed and w.job_name is None]
            for w in pending:
                w.next_start, w.backoff = 0.0, 0.0
        try:
            for w in pending:
                self._launch(w)
        except NestorError:
            self._cleanup()
            raise
        self._threads = [
            threading.Thread(target=self._watch_loop, name="nestor-k8s-watch", daemon=True),
            threading.Thread(target=self._supervise, name="nestor-dispatcher", daemon=True),
        ]
        for t in self._threads:
            t.start()
        self._synced.wait(wait)

    def stop_all(self, timeout: float | None = None) -> None:
        """Stop following the workers, delete their Jobs and ConfigMaps."""
        self._stopping.set()
        self._wake.set()
        if self._api is not None:
            self._api.stop_watch()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout)
        self._threads = []
        self._synced.clear()
        if self._api is not None:
            self._cleanup()

    def remove(self, enclave_id: int) -> None:
        """Unregister a worker: delete its Jobs and its ConfigMap."""
        with self._lock:
            found = [w for w in self._workers if w.id == enclave_id and not w.removed]
            if not found:
                raise ConfigurationError(f"there is no enclave worker {enclave_id}")
            w = found[0]
            w.removed = True
            w.next_start = None
        if self._api is not None:
            with self._launch_lock:
                self._delete_jobs(f"{self.selector},{LABEL_ENCLAVE}={w.id}")
                self._api.delete_config_map(w.config_map)
                w.config_map_ready = False
                w.job_name = None

    def __enter__(self) -> KubernetesDispatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def delete_leftovers(self) -> list[str]:
        """Delete this instance's Jobs that no worker here owns (a previous host's)."""
        with self._lock:
            ours = {w.job_name for w in self._workers if w.job_name}
        items, _ = self.api.list_jobs(self.selector)
        names = [str(j["metadata"]["name"]) for j in items if j["metadata"]["name"] not in ours]
        if names:
            log.warning("deleting enclave worker Jobs left behind: %s", ", ".join(names))
        for n in names:
            self.api.delete_job(n)
        return names

    def _delete_jobs(self, selector: str) -> None:
        items, _ = self.api.list_jobs(selector)
        for j in items:
            self.api.delete_job(str(j["metadata"]["name"]))

    def _cleanup(self) -> None:
        """Best effort: a host shutting down reports, it does not raise."""
        with self._launch_lock:
            try:
                self._delete_jobs(self.selector)
            except NestorError as exc:
                log.error("cannot delete the enclave worker Jobs: %s", exc.diagnostics())
            with self._lock:
                workers = list(self._workers)
            for w in workers:
                try:
                    if w.config_map_ready or w.starts:
                        self.api.delete_config_map(w.config_map)
                except NestorError as exc:
                    log.error("cannot delete the ConfigMap %s: %s", w.config_map, exc.diagnostics())
                with self._lock:
                    w.config_map_ready = False
                    if w.job_name is not None:
                        w.job_name = None
                        w.running_since = None

    # -- starting one worker --------------------------------------------------------------------

    def _config_map(self, w: _Worker) -> dict[str, Any]:
        labels = {**self.labels_for(w), LABEL_COMPONENT: "contract"}
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": w.config_map,
                "labels": labels,
                "annotations": {CONTRACT_ANNOTATION: w.digest},
            },
            "immutable": True,
            "data": {CONTRACT_KEY: w.contract_bytes.decode("utf-8")},
        }

    def build_job(self, w: _Worker, template: Mapping[str, Any], name: str) -> dict[str, Any]:
        return build_job(
            template,
            name=name,
            labels={**self.labels_for(w), LABEL_START: str(w.starts + 1)},
            contract_digest=w.digest,
            config_map=w.config_map,
            tee=w.tee,
            host_url=self.host_url,
            active_deadline_seconds=self.active_deadline_seconds,
            backoff_limit=self.backoff_limit,
            ttl_seconds_after_finished=self.ttl_seconds_after_finished,
            container=self.container,
        )

    def _launch(self, w: _Worker) -> None:
        with self._launch_lock:
            if w.removed or self._stopping.is_set():
                return
            api = self.api
            if not w.config_map_ready:
                # Immutable, and the same digest may come with other signatures:
                # replace rather than trust what is there.
                api.delete_config_map(w.config_map)
                api.create_config_map(self._config_map(w))
                w.config_map_ready = True
            template = api.read_pod_template(self.pod_template)
            for _ in range(3):
                name = job_name(w.digest)
                if api.create_job(self.build_job(w, template, name)):
                    break
            else:  # pragma: no cover - three random suffixes taken
                raise NestorError(f"cannot find a free Job name for enclave worker {w.id}")
            with self._lock:
                w.job_name = name
                w.created_at = time.monotonic()
                w.seen = False
                w.running_since = None
                w.waiting = None
                w.failed_pods = 0
                w.last_pod_check = 0.0
                w.starts += 1
                w.next_start = None
        log.info("created Job %s for enclave worker %d (%s)", name, w.id, w.digest)

    # -- following the Jobs ---------------------------------------------------------------------

    def _watch_loop(self) -> None:
        version: str | None = None
        pause = 1.0
        while not self._stopping.is_set():
            try:
                if version is None:
                    items, version = self.api.list_jobs(self.selector)
                    with self._lock:
                        self._jobs = {str(j["metadata"]["name"]): j for j in items}
                    self._synced.set()
                    self._wake.set()
                for kind, obj in self.api.watch_jobs(
                    self.selector, version, self.watch_timeout, self._stopping
                ):
                    if kind == "ERROR":
                        if obj.get("code") == 410:  # compacted: list again
                            version = None
                            break
                        raise NestorError(f"the Job watch failed: {obj.get('message', obj)}")
                    rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if rv:
                        version = str(rv)
                    if kind == "BOOKMARK":
                        continue
                    name = str(obj["metadata"]["name"])
                    with self._lock:
                        if kind == "DELETED":
                            self._jobs.pop(name, None)
                        else:
                            self._jobs[name] = obj
                    self._wake.set()
                pause = 1.0
            except NestorError as exc:
                if self._stopping.is_set():
                    return
                log.warning("watching the enclave worker Jobs: %s", exc.message)
                version = None
                self._stopping.wait(pause)
                pause = min(pause * 2, 30.0)

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            try:
                self._tick()
            except Exception:  # keep supervising whatever one step did
                log.exception("dispatcher supervision step failed")
            self._wake.wait(self.poll_interval)
            self._wake.clear()

    def _tick(self) -> None:
        with self._lock:
            workers = [w for w in self._workers if not w.removed]
        for w in workers:
            if self._stopping.is_set():
                return
            if w.job_name is None:
                if w.next_start is not None and time.monotonic() >= w.next_start:
                    try:
                        self._launch(w)
                    except NestorError as exc:
                        log.error("cannot start enclave worker %d: %s", w.id, exc.diagnostics())
                        self._schedule(w, ran=0.0, count=False)
                continue
            self._follow(w)

    def _follow(self, w: _Worker) -> None:
        name = w.job_name
        if name is None or not self._synced.is_set():
            return
        with self._lock:
            job = self._jobs.get(name)
        now = time.monotonic()
        if job is None:
            if w.seen:
                self._ended(
                    w, None, [], reason="Deleted", note="the Job was deleted outside the dispatcher"
                )
            return
        w.seen = True
        if _job_finished(job):
            self._ended(w, job, self._pods(w))
            return
        failed = int((job.get("status") or {}).get("failed") or 0)
        if failed > w.failed_pods:
            # A pod died and the Job runs another (backoffLimit > 0): the
            # jobs that pod held are lost all the same.
            w.failed_pods = failed
            self._report(w, job, self._pods(w), final=False)
            w.running_since = None
        status = job.get("status") or {}
        if w.running_since is None and int(status.get("ready") or 0) > 0:
            w.running_since = now
            w.waiting = None
        if w.running_since is None and now - w.last_pod_check >= self.poll_interval:
            w.last_pod_check = now
            pods = self._pods(w)
            newest = max(pods, key=_pod_order) if pods else None
            if newest is not None and _stuck(newest, self.container):
                self._ended(w, job, pods)  # reads the pods first: deleting takes them along
                self.api.delete_job(name)
                return
            if newest is not None and _started(newest, self.container):
                w.running_since = now
                w.waiting = None
            elif newest is not None:
                waiting = _unschedulable(newest)
                if waiting and waiting != w.waiting:
                    log.warning("enclave worker %d (Job %s) waits: %s", w.id, name, waiting)
                w.waiting = waiting

    def _pods(self, w: _Worker) -> list[dict[str, Any]]:
        try:
            return self.api.list_pods(f"{LABEL_JOB}={w.job_name}")
        except NestorError as exc:
            log.warning("cannot list the pods of Job %s: %s", w.job_name, exc.message)
            return []

    def _log_tail(self, pod: str | None) -> tuple[str, ...]:
        if pod is None or self.log_lines <= 0:
            return ()
        try:
            text = self.api.pod_log(pod, self.container, lines=self.log_lines)
        except NestorError as exc:
            log.warning("cannot read the log of pod %s: %s", pod, exc.message)
            return ()
        return tuple(text.splitlines()[-self.log_lines :])

    def _ended(
        self,
        w: _Worker,
        job: Mapping[str, Any] | None,
        pods: Sequence[Mapping[str, Any]],
        *,
        reason: str | None = None,
        note: str | None = None,
    ) -> None:
        now = time.monotonic()
        ran = now - (w.running_since if w.running_since is not None else w.created_at)
        with self._lock:
            w.job_name = None
            w.running_since = None
            w.waiting = None
        self._schedule(w, ran=ran)
        self._report(w, job, pods, final=w.next_start is None, reason=reason, note=note)

    def _schedule(self, w: _Worker, *, ran: float, count: bool = True) -> None:
        """Plan the next start after a failure (``count``: of the worker, not
        of an API call), or none."""
        with self._lock:
            if count:
                w.failures += 1
                if ran >= self.healthy_after:
                    w.backoff, w.failures = 0.0, 1
            gave_up = count and self.give_up_after is not None and w.failures >= self.give_up_after
            if not self.restart or gave_up or w.removed:
                w.next_start = None
                return
            w.backoff = (
                self.backoff_initial if w.backoff == 0.0 else min(w.backoff * 2, self.backoff_max)
            )
            w.next_start = time.monotonic() + w.backoff

    def _report(
        self,
        w: _Worker,
        job: Mapping[str, Any] | None,
        pods: Sequence[Mapping[str, Any]],
        *,
        final: bool,
        reason: str | None = None,
        note: str | None = None,
    ) -> None:
        ending = describe_ending(job, pods, self.container)
        with self._lock:
            shared = any(
                o is not w and not o.removed and o.digest == w.digest for o in self._workers
            )
            name = (job or {}).get("metadata", {}).get("name") or w.job_name or "?"
        failure = WorkerFailure(
            enclave_id=w.id,
            contract=w.contract,
            contract_digest=w.digest,
            job_name=str(name),
            pod_name=ending.pod,
            reason=reason or ending.reason,
            exit_code=ending.exit_code,
            message=note or ending.message,
            # A container that never ran has no log (the API answers 400).
            log_tail=self._log_tail(ending.pod) if ending.exit_code is not None else (),
            final=final,
            shared=shared,
        )
        with self._lock:
            w.last_failure = failure
        then = (
            "not restarting it"
            if final
            else (
                f"restarting in {w.backoff:.0f} s"
                if w.next_start is not None
                else "the Job retries it"
            )
        )
        log.warning(
            "enclave worker %d (Job %s) ended: %s; %s%s",
            w.id,
            failure.job_name,
            failure.message,
            then,
            "".join(f"\n  | {line}" for line in failure.log_tail),
        )
        if self.on_failure is not None:
            try:
                self.on_failure(failure)
            except Exception:  # the hook's trouble must not stop supervision
                log.exception("the worker failure hook failed")


# -- telling the queue -----------------------------------------------------------------------------


DISPATCHER_WORKER: Final = "nestor-dispatcher"


def store_failure_hook(store: Store, *, lease_seconds: int = 60) -> Callable[[WorkerFailure], None]:
    """A ``on_failure`` hook that fails the queue's jobs a dead worker took along.

    Running jobs of the worker's contract fail with :meth:`WorkerFailure.job_error`
    (their keys and inputs were in the dead worker's memory; a new worker has
    new keys, which the parties have not granted). When the failure is
    ``final`` (no worker will serve the contract again), its queued jobs
    fail too, rather than wait forever. A ``shared`` contract (two workers)
    leaves running jobs to their lease expiry: which worker held which is
    not known here. Only existing Store calls are used: a queued job is
    leased by ``nestor-dispatcher`` and then failed."""
    from nestor.host.errors import HostError
    from nestor.host.store import JobStatus

    def hook(failure: WorkerFailure) -> None:
        error = failure.job_error()
        failed: list[str] = []
        if not failure.shared:
            for job in store.list_jobs(JobStatus.RUNNING):
                if job.contract != failure.contract_digest:
                    continue
                try:
                    store.complete_job(job.job_id, JobStatus.FAILED, error)
                    failed.append(job.job_id)
                except HostError:  # it finished meanwhile
                    pass
        if failure.final:
            while (
                leased := store.lease_job(
                    DISPATCHER_WORKER, lease_seconds, contract=failure.contract_digest
                )
            ) is not None:
                store.complete_job(leased.job_id, JobStatus.FAILED, error, worker=DISPATCHER_WORKER)
                failed.append(leased.job_id)
        if failed:
            log.warning(
                "failed %d job(s) of enclave worker %d: %s",
                len(failed),
                failure.enclave_id,
                ", ".join(failed),
            )

    return hook


__all__ = [
    "KubernetesApi",
    "KubernetesDispatcher",
    "KubernetesWorkerInfo",
    "WorkerFailure",
    "build_job",
    "describe_ending",
    "initdata_annotations",
    "job_name",
    "store_failure_hook",
]
