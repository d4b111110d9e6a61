"""`nestor host ...`: the untrusted host service."""

from __future__ import annotations

import shlex
import signal
import socket
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from nestor.errors import NestorError

if TYPE_CHECKING:
    from nestor.host.dispatch_kubernetes import KubernetesDispatcher
    from nestor.host.dispatcher import LocalDispatcher

app = typer.Typer(
    help="Run the untrusted host: HTTP API, store, queue, dispatcher.", no_args_is_help=True
)


class ServeError(NestorError):
    """The host cannot start: it cannot listen where it was asked to, or the
    data directory is unusable."""

    exit_code = 2


class DispatcherKind(StrEnum):
    """Where the enclaves this host starts run."""

    local = "local"  # a process on this machine
    container = "container"  # an OCI container on this machine (podman)
    kubernetes = "kubernetes"  # a Kubernetes Job per enclave worker, from a PodTemplate


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) into a host and a port."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ServeError(f"--listen {text!r} is not HOST:PORT", hint="e.g. 127.0.0.1:8000")
    return host.removeprefix("[").removesuffix("]"), int(port_text)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose
    # proto says TCP; with proto 0, Nagle plus delayed ACKs add 40 ms to
    # every keep-alive request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _local_url(host: str, port: int) -> str:
    """Where processes on this machine reach the server (not a wildcard address)."""
    if host in ("0.0.0.0", ""):  # noqa: S104 - mapping the wildcard, not binding it
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return _url(host, port)


def _log_config(level: str, access_log: bool) -> dict[str, Any]:
    """Everything to stderr: stdout carries only the `listening on` line."""
    handler = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "default": {
                "()": "uvicorn.logging.DefaultFormatter",
                "fmt": "%(levelprefix)s %(message)s",
                "use_colors": None,
            },
            "access": {
                "()": "uvicorn.logging.AccessFormatter",
                "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
            },
            "plain": {"format": "host: %(message)s"},
        },
        "handlers": {
            "default": {**handler, "formatter": "default"},
            "access": {**handler, "formatter": "access"},
            "plain": {**handler, "formatter": "plain"},
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {
                "handlers": ["access"],
                "level": level.upper() if access_log else "WARNING",
                "propagate": False,
            },
            "nestor": {"handlers": ["plain"], "level": level.upper(), "propagate": False},
        },
    }


def _container_dispatcher(
    data_dir: Path,
    host_url: str,
    *,
    rootfs: Path | None,
    programs: Path | None,
    network: str,
    memory: str | None,
    cpus: float | None,
) -> LocalDispatcher:
    from nestor.cli.enclave import default_programs_dir
    from nestor.host.dispatch_container import ContainerDispatcher, ContainerOptions

    if rootfs is None:
        raise ServeError(
            "--dispatcher container needs --rootfs (or $NESTOR_ROOTFS)",
            hint="build it with scripts/build-rootfs.sh, which prints its path",
        )
    options = ContainerOptions(
        rootfs=rootfs,
        programs_dir=programs or default_programs_dir(),
        state_dir=data_dir / "enclaves",
        network=network,
        memory=memory,
        cpus=cpus,
    )
    return ContainerDispatcher(host_url, options)


@app.command()
def serve(
    data_dir: Annotated[
        Path,
        typer.Option(
            "--data-dir",
            file_okay=False,
            help="Directory for the database (host.db, unless --database) and the blobs.",
        ),
    ],
    database: Annotated[
        str | None,
        typer.Option(
            envvar="NESTOR_DATABASE_URL",
            help="SQLAlchemy URL: sqlite:///PATH (default DATA_DIR/host.db) or "
            "postgresql+psycopg://USER@HOST:PORT/DB.",
        ),
    ] = None,
    blob_store: Annotated[
        str | None,
        typer.Option(
            envvar="NESTOR_BLOB_STORE",
            help="Where ciphertext blobs go: a directory (default DATA_DIR/blobs) or "
            "s3://BUCKET[/PREFIX], with the endpoint, region and credentials from AWS_* "
            "variables (docs/blob-storage.md).",
        ),
    ] = None,
    listen: Annotated[
        str, typer.Option(help="HOST:PORT to listen on; port 0 picks a free port.")
    ] = "127.0.0.1:8000",
    enclave_contract: Annotated[
        Path | None,
        typer.Option(
            "--enclave-contract",
            exists=True,
            dir_okay=False,
            readable=True,
            help="Start an enclave for this signed contract on this machine, pointed at "
            "this host, and keep it running.",
        ),
    ] = None,
    tee: Annotated[str, typer.Option(help="The enclave's TEE: sim, tsm, gramine or auto.")] = "sim",
    max_blob_size: Annotated[int, typer.Option(help="Largest blob accepted, in bytes.", min=0)] = 64
    * 1024**3,
    max_json_size: Annotated[
        int, typer.Option(help="Largest JSON request body accepted, in bytes.", min=1)
    ] = 16 * 1024 * 1024,
    log_level: Annotated[
        str, typer.Option(help="debug, info, warning or error (logs go to stderr).")
    ] = "info",
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
    enclave_command: Annotated[
        str | None,
        typer.Option(
            hidden=True,
            help="Enclave command template (shell words; {host}, {contract}, {tee}).",
        ),
    ] = None,
    dispatcher_kind: Annotated[
        DispatcherKind,
        typer.Option(
            "--dispatcher",
            help="How --enclave-contract's enclave runs: local (a process), container "
            "(an OCI container with podman, from --rootfs) or kubernetes (a Job built from "
            "the --k8s-pod-template PodTemplate, through the in-cluster API).",
        ),
    ] = DispatcherKind.local,
    rootfs: Annotated[
        Path | None,
        typer.Option(
            envvar="NESTOR_ROOTFS",
            file_okay=False,
            help="Container dispatcher: the enclave root filesystem (scripts/build-rootfs.sh "
            "builds it and prints its path).",
        ),
    ] = None,
    programs: Annotated[
        Path | None,
        typer.Option(
            file_okay=False,
            help="Container dispatcher: the program bundles, bound read-only into the "
            "container (default: $NESTOR_PROGRAMS_DIR, else examples/ beside the source).",
        ),
    ] = None,
    container_network: Annotated[
        str, typer.Option(help="Container dispatcher: podman's --network.")
    ] = "host",
    container_host_url: Annotated[
        str | None,
        typer.Option(
            help="Container dispatcher: this host's URL as the container reaches it "
            "(default: the listening address, which --container-network host reaches)."
        ),
    ] = None,
    container_memory: Annotated[
        str | None, typer.Option(help="Container dispatcher: memory limit, e.g. 8g.")
    ] = None,
    container_cpus: Annotated[
        float | None, typer.Option(help="Container dispatcher: CPU limit.", min=0.01)
    ] = None,
    k8s_namespace: Annotated[
        str | None,
        typer.Option(
            help="Kubernetes dispatcher: the namespace of the Jobs (default: this pod's)."
        ),
    ] = None,
    k8s_pod_template: Annotated[
        str, typer.Option(help="Kubernetes dispatcher: the enclave worker's PodTemplate.")
    ] = "nestor-enclave-worker",
    k8s_host_url: Annotated[
        str | None,
        typer.Option(
            help="Kubernetes dispatcher: this host's URL as enclave pods reach it "
            "(default: NESTOR_HOST_URL in the PodTemplate)."
        ),
    ] = None,
    k8s_instance: Annotated[
        str,
        typer.Option(
            help="Kubernetes dispatcher: label that tells hosts sharing a namespace apart."
        ),
    ] = "nestor",
    k8s_active_deadline: Annotated[
        int, typer.Option(help="Kubernetes dispatcher: a worker Job's deadline, seconds.", min=1)
    ] = 7 * 24 * 3600,
    k8s_backoff_limit: Annotated[
        int, typer.Option(help="Kubernetes dispatcher: pod retries inside one Job.", min=0)
    ] = 0,
    k8s_ttl: Annotated[
        int,
        typer.Option(help="Kubernetes dispatcher: seconds a finished Job is kept.", min=0),
    ] = 3600,
) -> None:
    """Serve the host API until SIGTERM or Ctrl-C.

    The first line on stdout is `listening on http://HOST:PORT` (the real
    port when --listen asks for port 0). SIGTERM shuts down gracefully and
    stops the enclave processes this host started.
    """
    import uvicorn

    from nestor.host.app import create_app
    from nestor.host.blob_backends import open_blob_store
    from nestor.host.dispatcher import DEFAULT_COMMAND, LocalDispatcher
    from nestor.host.store import Store, default_sqlite_url

    if log_level.lower() not in ("debug", "info", "warning", "error"):
        raise ServeError(f"--log-level {log_level!r}: use debug, info, warning or error")
    host, port = parse_listen(listen)
    if dispatcher_kind is not DispatcherKind.local and enclave_contract is None:
        raise ServeError(f"--dispatcher {dispatcher_kind.value} needs --enclave-contract")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ServeError(f"cannot create the data directory {data_dir}: {exc.strerror}") from None
    data_dir = data_dir.resolve()
    store = Store(database or default_sqlite_url(str(data_dir)))
    try:
        blobs = open_blob_store(blob_store or str(data_dir / "blobs"), max_size=max_blob_size)
    except NestorError:
        store.close()
        raise
    sock = bind_socket(host, port)
    port = sock.getsockname()[1]

    dispatcher: LocalDispatcher | KubernetesDispatcher | None = None
    try:
        if enclave_contract is not None and dispatcher_kind is DispatcherKind.kubernetes:
            from nestor.host.dispatch_kubernetes import KubernetesDispatcher, store_failure_hook

            dispatcher = KubernetesDispatcher(
                k8s_host_url,
                namespace=k8s_namespace,
                pod_template=k8s_pod_template,
                instance=k8s_instance,
                active_deadline_seconds=k8s_active_deadline,
                backoff_limit=k8s_backoff_limit,
                ttl_seconds_after_finished=k8s_ttl,
                on_failure=store_failure_hook(store),
            )
        elif enclave_contract is not None and dispatcher_kind is DispatcherKind.container:
            dispatcher = _container_dispatcher(
                data_dir,
                container_host_url or _local_url(host, port),
                rootfs=rootfs,
                programs=programs,
                network=container_network,
                memory=container_memory,
                cpus=container_cpus,
            )
        elif enclave_contract is not None:
            dispatcher = LocalDispatcher(
                _local_url(host, port),
                command=shlex.split(enclave_command) if enclave_command else DEFAULT_COMMAND,
            )
        if dispatcher is not None and enclave_contract is not None:
            dispatcher.add(enclave_contract.resolve(), tee=tee)
        if dispatcher is not None:
            # Start the enclaves before serving, so that a dispatcher that
            # cannot (no cluster API, RBAC, no podman, a bad rootfs) ends here
            # with its diagnosis instead of in uvicorn's startup traceback.
            # The listening socket queues the enclaves' first requests until
            # uvicorn accepts them; the app's own start is then a no-op.
            dispatcher.start_all()
    except NestorError:
        sock.close()
        store.close()
        raise

    config = uvicorn.Config(
        create_app(store, blobs, dispatcher=dispatcher, max_json_bytes=max_json_size),
        log_config=_log_config(log_level, access_log),
        timeout_graceful_shutdown=10,
        lifespan="on",
    )
    server = uvicorn.Server(config)

    def _sigterm(*_: object) -> None:
        # uvicorn handles SIGTERM while it runs, and re-raises it here once it
        # has shut down: a graceful shutdown ends with status 0. A SIGTERM
        # before uvicorn took over just ends the process.
        if not server.should_exit:
            raise SystemExit(0)

    signal.signal(signal.SIGTERM, _sigterm)
    try:
        typer.echo(f"listening on {_url(host, port)}")
        sys.stdout.flush()
        server.run(sockets=[sock])
    finally:
        if dispatcher is not None:
            # Also when a signal ended the process before uvicorn ran the
            # app's shutdown (the Kubernetes workers were started above).
            dispatcher.stop_all()
        sock.close()
        store.close()
    if not server.started:
        raise ServeError("the host did not start (see the log above)")
