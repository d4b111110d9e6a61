"""A small in-memory Kubernetes API server for testing the Kubernetes dispatcher.

Real HTTP on a loopback port, so the official ``kubernetes`` client runs
unchanged against it (``Configuration(host=server.url)``). It implements
exactly the REST endpoints the dispatcher uses, with the API server's
conventions: ``Status`` bodies for errors, ``resourceVersion`` on every
object and list, label selectors, and watch streams of JSON lines that end
with a ``410 Gone`` ERROR event when the requested version was compacted.

There is no controller: the test drives what Kubernetes would do (a pod
that starts, is OOM-killed, cannot pull its image; a Job that fails) with
the methods under "what the cluster does". Creating a Job creates its first
pod, as the Job controller would, so the dispatcher finds one to inspect.

Test code only (nothing in the host's runtime imports this module).
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

_CORE: Final = re.compile(
    r"^/api/v1/namespaces/([^/]+)/(podtemplates|configmaps|pods)(?:/([^/]+))?$"
)
_LOG: Final = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$")
_JOBS: Final = re.compile(r"^/apis/batch/v1/namespaces/([^/]+)/jobs(?:/([^/]+))?$")
_KINDS: Final = {
    "podtemplates": ("v1", "PodTemplate", ""),
    "configmaps": ("v1", "ConfigMap", ""),
    "pods": ("v1", "Pod", ""),
    "jobs": ("batch/v1", "Job", "batch"),
}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def matches_selector(labels: Mapping[str, str], selector: str) -> bool:
    """Equality-based label selectors: ``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


@dataclass(frozen=True)
class Request:
    """One request as the server saw it (for assertions on what the client did)."""

    method: str
    path: str
    query: Mapping[str, str]
    body: Any


class FakeKubernetes:
    """The objects of a cluster, in memory, and the HTTP server in front of them."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._rv = itertools.count(1000)
        self.resource_version = 999
        # (resource, namespace, name) -> object
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.logs: dict[tuple[str, str], str] = {}  # (namespace, pod) -> log text
        self.events: list[tuple[int, str, dict[str, Any]]] = []  # job watch events
        self.compacted_before = 0  # watches from older versions get 410 Gone
        self.forbidden: set[tuple[str, str]] = set()  # (verb, resource)
        self.requests: list[Request] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._closing = False

    # -- serving --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake API server is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> str:
        fake = self

        class Handler(_Handler):
            cluster = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-kube-apiserver",
            daemon=True,
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    # -- what the operator does ---------------------------------------------------------------

    def put(self, resource: str, namespace: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Store an object as ``kubectl apply`` would (no events for non-Jobs)."""
        with self._lock:
            return self._store(resource, namespace, copy.deepcopy(dict(obj)), "ADDED")

    def forbid(self, verb: str, resource: str) -> None:
        """Answer ``verb`` on ``resource`` with 403, as RBAC does without a rule."""
        with self._lock:
            self.forbidden.add((verb, resource))

    def compact(self) -> None:
        """Forget every watch event so far (etcd compaction): older watches get 410."""
        with self._lock:
            self.compacted_before = self.resource_version + 1
            self.events.clear()

    # -- what the cluster does ----------------------------------------------------------------

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            obj = self.objects.get((resource, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def list_objects(
        self, resource: str, namespace: str, selector: str = ""
    ) -> list[dict[str, Any]]:
        with self._lock:
            return [
                copy.deepcopy(o)
                for (r, ns, _), o in sorted(self.objects.items())
                if r == resource
                and ns == namespace
                and matches_selector(o["metadata"].get("labels", {}), selector)
            ]

    def job_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        return self.list_objects("pods", namespace, f"job-name={job}")

    def set_pod_running(self, namespace: str, job: str) -> None:
        """The newest pod of ``job`` runs (its container started)."""

        def change(pod: dict[str, Any], container: str) -> None:
            pod["status"] = {
                "phase": "Running",
                "containerStatuses": [
                    {"name": container, "ready": True, "state": {"running": {"startedAt": _now()}}}
                ],
            }

        self._change_pod(namespace, job, change)
        self._change_job(namespace, job, lambda j: j["status"].update(active=1, ready=1))

    def set_pod_waiting(self, namespace: str, job: str, reason: str, message: str) -> None:
        """The newest pod of ``job`` is stuck before starting (image pull, config)."""

        def change(pod: dict[str, Any], container: str) -> None:
            pod["status"] = {
                "phase": "Pending",
                "containerStatuses": [
                    {
                        "name": container,
                        "ready": False,
                        "state": {"waiting": {"reason": reason, "message": message}},
                    }
                ],
            }

        self._change_pod(namespace, job, change)

    def set_pod_unschedulable(self, namespace: str, job: str, message: str) -> None:
        def change(pod: dict[str, Any], container: str) -> None:
            pod["status"] = {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": message,
                    }
                ],
            }

        self._change_pod(namespace, job, change)

    def terminate_pod(
        self,
        namespace: str,
        job: str,
        *,
        reason: str,
        exit_code: int,
        log: str = "",
        pod_reason: str | None = None,
        fail_job: bool = True,
        job_reason: str = "BackoffLimitExceeded",
        job_message: str = "Job has reached the specified backoff limit",
    ) -> None:
        """The newest pod of ``job`` ends (``reason`` as the kubelet reports it:
        OOMKilled, Error, Completed); with ``fail_job`` the Job then fails (or
        completes, for exit code 0) as the Job controller would decide."""

        def change(pod: dict[str, Any], container: str) -> None:
            pod["status"] = {
                "phase": "Succeeded" if exit_code == 0 else "Failed",
                "containerStatuses": [
                    {
                        "name": container,
                        "ready": False,
                        "state": {
                            "terminated": {
                                "reason": reason,
                                "exitCode": exit_code,
                                "finishedAt": _now(),
                            }
                        },
                    }
                ],
            }
            if pod_reason is not None:
                pod["status"]["reason"] = pod_reason
            self.logs[(namespace, pod["metadata"]["name"])] = log

        self._change_pod(namespace, job, change)

        def finish(j: dict[str, Any]) -> None:
            st = j["status"]
            st["active"] = 0
            st["ready"] = 0
            if exit_code == 0:
                st["succeeded"] = st.get("succeeded", 0) + 1
            else:
                st["failed"] = st.get("failed", 0) + 1
            if fail_job:
                kind = "Complete" if exit_code == 0 else "Failed"
                cond = {"type": kind, "status": "True", "lastTransitionTime": _now()}
                if kind == "Failed":
                    cond.update(reason=job_reason, message=job_message)
                st["conditions"] = [*st.get("conditions", []), cond]

        self._change_job(namespace, job, finish)

    def new_pod(self, namespace: str, job: str) -> dict[str, Any]:
        """The Job controller starts another pod for ``job`` (a retry)."""
        with self._lock:
            j = self.objects[("jobs", namespace, job)]
            return self._create_pod(namespace, j)

    # -- internals ----------------------------------------------------------------------------

    def _store(
        self, resource: str, namespace: str, obj: dict[str, Any], event: str
    ) -> dict[str, Any]:
        api_version, kind, _ = _KINDS[resource]
        obj.setdefault("apiVersion", api_version)
        obj.setdefault("kind", kind)
        meta = obj.setdefault("metadata", {})
        meta["namespace"] = namespace
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", _now())
        self.resource_version = next(self._rv)
        meta["resourceVersion"] = str(self.resource_version)
        self.objects[(resource, namespace, meta["name"])] = obj
        if resource == "jobs":
            self.events.append((self.resource_version, event, copy.deepcopy(obj)))
            self._lock.notify_all()
        return copy.deepcopy(obj)

    def _delete(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.objects.pop((resource, namespace, name), None)
        if obj is None:
            return None
        self.resource_version = next(self._rv)
        obj["metadata"]["resourceVersion"] = str(self.resource_version)
        if resource == "jobs":
            self.events.append((self.resource_version, "DELETED", copy.deepcopy(obj)))
            self._lock.notify_all()
        return obj

    def _create_pod(self, namespace: str, job: dict[str, Any]) -> dict[str, Any]:
        template = copy.deepcopy(job["spec"]["template"])
        jname = job["metadata"]["name"]
        suffix = uuid.uuid4().hex[:5]
        meta = template.get("metadata", {})
        labels = {
            **meta.get("labels", {}),
            "job-name": jname,
            "batch.kubernetes.io/job-name": jname,
            "controller-uid": job["metadata"]["uid"],
        }
        pod = {
            "metadata": {
                "name": f"{jname}-{suffix}",
                "labels": labels,
                "annotations": meta.get("annotations", {}),
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": jname,
                        "uid": job["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": template["spec"],
            "status": {"phase": "Pending"},
        }
        return self._store("pods", namespace, pod, "ADDED")

    def _newest_pod(self, namespace: str, job: str) -> dict[str, Any]:
        pods = [
            o
            for (r, ns, _), o in self.objects.items()
            if r == "pods" and ns == namespace and o["metadata"]["labels"].get("job-name") == job
        ]
        if not pods:
            raise KeyError(f"job {job} has no pod")
        return max(pods, key=lambda p: int(p["metadata"]["resourceVersion"]))

    def _change_pod(self, namespace: str, job: str, change: Any) -> None:
        with self._lock:
            pod = self._newest_pod(namespace, job)
            container = pod["spec"]["containers"][0]["name"]
            change(pod, container)
            self._store("pods", namespace, pod, "MODIFIED")

    def _change_job(self, namespace: str, job: str, change: Any) -> None:
        with self._lock:
            obj = self.objects[("jobs", namespace, job)]
            obj.setdefault("status", {})
            change(obj)
            self._store("jobs", namespace, obj, "MODIFIED")

    def _record(self, req: Request) -> None:
        with self._lock:
            self.requests.append(req)

    def watch_events(
        self, namespace: str, selector: str, since: int, timeout: float
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Job events after ``since``, as they happen, until ``timeout``; a
        compacted ``since`` yields one ERROR event (410 Gone) and ends."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if since < self.compacted_before - 1:
                yield "ERROR", _status(410, "Expired", f"too old resource version: {since}")
                return
        sent = since
        while True:
            with self._lock:
                batch = [
                    (rv, t, copy.deepcopy(o))
                    for rv, t, o in self.events
                    if rv > sent
                    and o["metadata"]["namespace"] == namespace
                    and matches_selector(o["metadata"].get("labels", {}), selector)
                ]
                if not batch:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._closing:
                        return
                    self._lock.wait(min(left, 0.5))
                    continue
            for rv, t, o in batch:
                sent = rv
                yield t, o


def _status(
    code: int, reason: str, message: str, details: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        out["details"] = dict(details)
    return out


class _Handler(BaseHTTPRequestHandler):
    cluster: FakeKubernetes
    protocol_version = "HTTP/1.1"
    # Headers and body are separate writes: with Nagle's algorithm, each
    # keep-alive response would wait 40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing -----------------------------------------------------------------------------

    def _body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        return json.loads(raw) if raw else None

    def _send(self, code: int, obj: Any, content_type: str = "application/json") -> None:
        data = obj.encode() if isinstance(obj, str) else json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(
        self, code: int, reason: str, message: str, resource: str = "", name: str = ""
    ) -> None:
        group = _KINDS.get(resource, ("", resource, ""))[2]
        self._send(
            code, _status(code, reason, message, {"name": name, "group": group, "kind": resource})
        )

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        body = self._body() if method in ("POST", "PUT", "DELETE", "PATCH") else None
        self.cluster._record(Request(method, parts.path, query, body))
        if m := _LOG.match(parts.path):
            return self._log(m.group(1), m.group(2), query)
        if m := _CORE.match(parts.path):
            ns, resource, name = m.group(1), m.group(2), m.group(3)
        elif m := _JOBS.match(parts.path):
            ns, resource, name = m.group(1), "jobs", m.group(2)
        else:
            return self._error(404, "NotFound", f"the server could not find {parts.path}")
        verb = {
            "GET": "get" if name else ("watch" if query.get("watch") in ("true", "1") else "list"),
            "POST": "create",
            "DELETE": "delete",
        }.get(method)
        if verb is None or (method == "POST" and name):
            return self._error(405, "MethodNotAllowed", f"{method} is not supported here")
        group = _KINDS[resource][2]
        qualified = f"{resource}.{group}" if group else resource
        if (verb, resource) in self.cluster.forbidden:
            user = "system:serviceaccount:" + ns + ":nestor-host"
            where = f'in API group "{group}" in the namespace "{ns}"'
            return self._error(
                403,
                "Forbidden",
                f"{qualified}{' ' + repr(name).replace(chr(39), chr(34)) if name else ''} is "
                f'forbidden: User "{user}" cannot {verb} resource "{resource}" {where}',
                resource,
                name or "",
            )
        if verb == "watch":
            return self._watch(ns, query)
        if verb == "list":
            return self._list(ns, resource, query)
        if verb == "get":
            obj = self.cluster.get(resource, ns, name)
            if obj is None:
                return self._error(
                    404, "NotFound", f'{qualified} "{name}" not found', resource, name
                )
            return self._send(200, obj)
        if verb == "create":
            return self._create(ns, resource, body)
        return self._remove(ns, resource, name, body)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- verbs --------------------------------------------------------------------------------

    def _list(self, ns: str, resource: str, query: Mapping[str, str]) -> None:
        c = self.cluster
        with c._lock:
            items = c.list_objects(resource, ns, query.get("labelSelector", ""))
            rv = str(c.resource_version)
        api_version, kind, _ = _KINDS[resource]
        self._send(
            200,
            {
                "apiVersion": api_version,
                "kind": f"{kind}List",
                "metadata": {"resourceVersion": rv},
                "items": items,
            },
        )

    def _create(self, ns: str, resource: str, body: Any) -> None:
        c = self.cluster
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}).get("name"), str):
            return self._error(422, "Invalid", "metadata.name: Required value", resource)
        name = body["metadata"]["name"]
        if resource == "jobs" and (
            len(name) > 63 or not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)
        ):
            return self._error(
                422, "Invalid", f"Job.batch {name!r} is invalid: metadata.name", resource, name
            )
        with c._lock:
            if (resource, ns, name) in c.objects:
                return self._error(
                    409, "AlreadyExists", f'{resource} "{name}" already exists', resource, name
                )
            body.setdefault("status", {}) if resource == "jobs" else None
            stored = c._store(resource, ns, body, "ADDED")
            if resource == "jobs":
                c._create_pod(ns, stored)
        self._send(201, stored)

    def _remove(self, ns: str, resource: str, name: str | None, body: Any) -> None:
        c = self.cluster
        if name is None:
            return self._error(405, "MethodNotAllowed", "deletecollection is not served here")
        with c._lock:
            obj = c._delete(resource, ns, name)
            if obj is None:
                return self._error(
                    404, "NotFound", f'{resource} "{name}" not found', resource, name
                )
            policy = (body or {}).get("propagationPolicy", "Background")
            if resource == "jobs" and policy != "Orphan":
                for pod in c.list_objects("pods", ns, f"job-name={name}"):
                    c._delete("pods", ns, pod["metadata"]["name"])
        self._send(200, _status(200, "", "") | {"status": "Success", "details": {"name": name}})

    def _log(self, ns: str, pod: str, query: Mapping[str, str]) -> None:
        c = self.cluster
        if ("get", "pods/log") in c.forbidden:
            return self._error(403, "Forbidden", f'pods "{pod}" is forbidden: cannot get pods/log')
        if c.get("pods", ns, pod) is None:
            return self._error(404, "NotFound", f'pods "{pod}" not found', "pods", pod)
        text = c.logs.get((ns, pod), "")
        if "tailLines" in query:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-int(query["tailLines"]) :]) if int(query["tailLines"]) else ""
        if "limitBytes" in query:
            text = text.encode()[: int(query["limitBytes"])].decode(errors="replace")
        self._send(200, text, "text/plain")

    def _watch(self, ns: str, query: Mapping[str, str]) -> None:
        since = int(query.get("resourceVersion") or self.cluster.resource_version)
        timeout = float(query.get("timeoutSeconds", "30"))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for kind, obj in self.cluster.watch_events(
                ns, query.get("labelSelector", ""), since, timeout
            ):
                line = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


@contextmanager
def fake_kubernetes() -> Iterator[FakeKubernetes]:
    """A running fake API server; stopped on exit."""
    cluster = FakeKubernetes()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
