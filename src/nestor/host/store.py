"""The host's database: contracts, announcements, blob metadata, key grants,
the durable job queue, results, receipts and audit-log entries.

SQLAlchemy 2.0 over SQLite (default, ``sqlite:///DIR/host.db``) or
PostgreSQL (``postgresql+psycopg://...``). Tables are created on start.

Every document is stored as the JSON text the host received (re-serialised
with :func:`json.dumps`) and served back as that text; the host indexes a
few fields and trusts nothing it stores.

The queue lives in the same database, so a restart loses no job. Leasing
is atomic: on SQLite the leasing transaction starts with ``BEGIN
IMMEDIATE`` (one writer at a time, taken before the job is chosen); on
PostgreSQL the job is chosen with ``SELECT ... FOR UPDATE SKIP LOCKED``.
In both, the update is guarded by the job's state and its row count
checked. A ``running`` job whose lease has expired is leasable again.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Dialect,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    create_engine,
    event,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

from nestor.host.errors import (
    BadRequestError,
    HostError,
    JobExistsError,
    JobStateError,
    LogEntryExistsError,
    NotFoundError,
    ReceiptExistsError,
)


class StoreConfigurationError(HostError):
    """The database URL is unusable."""

    type = "store-configuration"
    exit_code = 2


DIGEST_LEN: Final = 71  # "sha256:" + 64 hex
_BEGIN_OPTION: Final = "nestor_sqlite_begin"
# An integer primary key that autoincrements on both dialects (SQLite only
# autoincrements INTEGER PRIMARY KEY).
_SERIAL = BigInteger().with_variant(Integer(), "sqlite")


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


FINAL_STATUSES: Final = (JobStatus.DONE, JobStatus.FAILED)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every dialect (SQLite keeps naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class ContractRow(Base):
    __tablename__ = "contracts"

    digest: Mapped[str] = mapped_column(String(DIGEST_LEN), primary_key=True)
    document: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AnnouncementRow(Base):
    __tablename__ = "announcements"

    id: Mapped[int] = mapped_column(_SERIAL, primary_key=True, autoincrement=True)
    contract: Mapped[str] = mapped_column(String(DIGEST_LEN), index=True)
    keyid: Mapped[str] = mapped_column(String(DIGEST_LEN), index=True)
    document: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BlobRow(Base):
    __tablename__ = "blobs"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class GrantRow(Base):
    __tablename__ = "grants"

    id: Mapped[int] = mapped_column(_SERIAL, primary_key=True, autoincrement=True)
    digest: Mapped[str] = mapped_column(String(DIGEST_LEN), unique=True)
    contract: Mapped[str] = mapped_column(String(DIGEST_LEN), index=True)
    enclave: Mapped[str] = mapped_column(String(DIGEST_LEN), index=True)
    document: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_seq", "status", "seq"),)

    seq: Mapped[int] = mapped_column(_SERIAL, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(32), unique=True)
    contract: Mapped[str] = mapped_column(String(DIGEST_LEN), index=True)
    request: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    lease_owner: Mapped[str | None] = mapped_column(String(256))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ResultRow(Base):
    __tablename__ = "results"

    id: Mapped[int] = mapped_column(_SERIAL, primary_key=True, autoincrement=True)
    digest: Mapped[str] = mapped_column(String(DIGEST_LEN), unique=True)
    contract: Mapped[str] = mapped_column(String(DIGEST_LEN), index=True)
    job: Mapped[str] = mapped_column(String(DIGEST_LEN), index=True)
    recipient: Mapped[str] = mapped_column(String(256), index=True)
    document: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ReceiptRow(Base):
    __tablename__ = "receipts"

    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    document: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LogEntryRow(Base):
    __tablename__ = "log_entries"
    __table_args__ = (UniqueConstraint("enclave", "entry_index", name="uq_log_enclave_index"),)

    id: Mapped[int] = mapped_column(_SERIAL, primary_key=True, autoincrement=True)
    enclave: Mapped[str] = mapped_column(String(DIGEST_LEN))
    entry_index: Mapped[int] = mapped_column(BigInteger)
    document: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


# -- records handed out ------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    contract: str
    status: JobStatus
    error: str | None
    request: str  # the job request envelope, as JSON text
    lease_owner: str | None
    lease_expires_at: datetime | None
    attempts: int
    created_at: datetime
    updated_at: datetime

    def request_json(self) -> Any:
        return json.loads(self.request)


@dataclass(frozen=True)
class LeasedJob:
    job_id: str
    request: str  # JSON text
    worker: str
    lease_expires_at: datetime
    attempts: int


@dataclass(frozen=True)
class BlobMeta:
    name: str
    size: int
    sha256: str
    updated_at: datetime


def _dump(document: object) -> str:
    return json.dumps(document, separators=(",", ":"))


def _job_record(row: JobRow) -> JobRecord:
    return JobRecord(
        row.job_id,
        row.contract,
        JobStatus(row.status),
        row.error,
        row.request,
        row.lease_owner,
        row.lease_expires_at,
        row.attempts,
        row.created_at,
        row.updated_at,
    )


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's one-line reason (SQLAlchemy's own text repeats the SQL)."""
    cause: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0] if lines else ''}"


def default_sqlite_url(data_dir: str) -> str:
    return f"sqlite:///{data_dir}/host.db"


class Store:
    """All of the host's database state. Thread-safe: each call is one
    short transaction on a pooled connection."""

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], datetime] = _utcnow,
        echo: bool = False,
    ) -> None:
        if url.split("?")[0] in ("sqlite://", "sqlite:///:memory:"):
            raise StoreConfigurationError(
                "an in-memory SQLite database cannot back the host", hint="use sqlite:///FILE"
            )
        self.url = url
        self._clock = clock
        hint = "use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB"
        try:
            parsed = make_url(url)
            shown = parsed.render_as_string(hide_password=True)
            if parsed.get_backend_name() not in ("sqlite", "postgresql"):
                raise StoreConfigurationError(
                    f"unsupported database {parsed.get_backend_name()!r}", hint=hint
                )
            self._engine: Engine = self._make_engine(url, echo=echo)
        except (SQLAlchemyError, ImportError) as exc:
            raise StoreConfigurationError("the database URL is not usable", hint=hint) from exc
        self.dialect: str = self._engine.dialect.name
        try:
            Base.metadata.create_all(self._engine)
        except SQLAlchemyError as exc:
            self._engine.dispose()
            raise StoreConfigurationError(
                f"cannot open the database {shown}: {_reason(exc)}"
            ) from exc

    @staticmethod
    def _make_engine(url: str, *, echo: bool) -> Engine:
        if url.startswith("sqlite"):
            engine = create_engine(
                url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30}
            )

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
                # The driver must not open transactions on its own: the
                # "begin" hook below decides DEFERRED or IMMEDIATE.
                dbapi_conn.isolation_level = None
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=FULL")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()

            @event.listens_for(engine, "begin")
            def _on_begin(conn: Connection) -> None:
                mode = conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
                conn.exec_driver_sql(f"BEGIN {mode}")

            return engine
        return create_engine(url, echo=echo, pool_pre_ping=True)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def now(self) -> datetime:
        return self._clock()

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """A write transaction; on SQLite it takes the write lock up front
        (BEGIN IMMEDIATE), so a read-then-write never races another writer."""
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            if self.dialect == "sqlite":
                session.connection(execution_options={_BEGIN_OPTION: "IMMEDIATE"})
            yield session

    def _insert(self, table: Any) -> Any:
        """A dialect INSERT that supports ON CONFLICT (SQLite and PostgreSQL)."""
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    # -- contracts -----------------------------------------------------------------------------

    def put_contract(self, digest: str, envelope: Mapping[str, Any]) -> None:
        """Store a contract envelope; a later one with the same digest (more
        signatures) replaces it."""
        now = self.now()
        doc = _dump(envelope)
        stmt = self._insert(ContractRow).values(
            digest=digest, document=doc, created_at=now, updated_at=now
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[ContractRow.digest], set_={"document": doc, "updated_at": now}
        )
        with self._write() as s:
            s.execute(stmt)

    def get_contract(self, digest: str) -> str | None:
        with self._read() as s:
            return s.scalar(select(ContractRow.document).where(ContractRow.digest == digest))

    def contract_digests(self) -> list[str]:
        with self._read() as s:
            return list(s.scalars(select(ContractRow.digest).order_by(ContractRow.created_at)))

    # -- announcements ------------------------------------------------------------------------

    def add_announcement(self, contract: str, keyid: str, envelope: Mapping[str, Any]) -> None:
        with self._write() as s:
            s.add(
                AnnouncementRow(
                    contract=contract, keyid=keyid, document=_dump(envelope), created_at=self.now()
                )
            )

    def latest_announcement(self, contract: str) -> str | None:
        with self._read() as s:
            return s.scalar(
                select(AnnouncementRow.document)
                .where(AnnouncementRow.contract == contract)
                .order_by(AnnouncementRow.id.desc())
                .limit(1)
            )

    # -- blob metadata ------------------------------------------------------------------------

    def put_blob(self, name: str, size: int, sha256: str) -> None:
        now = self.now()
        stmt = self._insert(BlobRow).values(
            name=name, size=size, sha256=sha256, created_at=now, updated_at=now
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[BlobRow.name], set_={"size": size, "sha256": sha256, "updated_at": now}
        )
        with self._write() as s:
            s.execute(stmt)

    def get_blob(self, name: str) -> BlobMeta | None:
        with self._read() as s:
            row = s.get(BlobRow, name)
            return None if row is None else BlobMeta(row.name, row.size, row.sha256, row.updated_at)

    def list_blobs(self) -> list[BlobMeta]:
        with self._read() as s:
            rows = s.scalars(select(BlobRow).order_by(BlobRow.name))
            return [BlobMeta(r.name, r.size, r.sha256, r.updated_at) for r in rows]

    # -- key grants ---------------------------------------------------------------------------

    def add_grant(
        self, digest: str, contract: str, enclave: str, envelope: Mapping[str, Any]
    ) -> None:
        """Store a key grant. Posting the same grant again keeps its place
        in the order and stores the latest copy."""
        doc = _dump(envelope)
        stmt = self._insert(GrantRow).values(
            digest=digest, contract=contract, enclave=enclave, document=doc, created_at=self.now()
        )
        stmt = stmt.on_conflict_do_update(index_elements=[GrantRow.digest], set_={"document": doc})
        with self._write() as s:
            s.execute(stmt)

    def grants_for(self, enclave: str) -> list[str]:
        with self._read() as s:
            return list(
                s.scalars(
                    select(GrantRow.document)
                    .where(GrantRow.enclave == enclave)
                    .order_by(GrantRow.id)
                )
            )

    # -- the job queue ------------------------------------------------------------------------

    def add_job(self, job_id: str, contract: str, envelope: Mapping[str, Any]) -> JobRecord:
        """Queue a job. Raises :class:`JobExistsError` if the id is taken."""
        now = self.now()
        stmt = (
            self._insert(JobRow)
            .values(
                job_id=job_id,
                contract=contract,
                request=_dump(envelope),
                status=JobStatus.QUEUED.value,
                attempts=0,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=[JobRow.job_id])
            .returning(JobRow.seq)
        )
        with self._write() as s:
            if s.execute(stmt).first() is None:
                raise JobExistsError(f"job {job_id} already exists")
            row = s.scalars(select(JobRow).where(JobRow.job_id == job_id)).one()
            return _job_record(row)

    def get_job(self, job_id: str) -> JobRecord | None:
        with self._read() as s:
            row = s.scalars(select(JobRow).where(JobRow.job_id == job_id)).first()
            return None if row is None else _job_record(row)

    def list_jobs(self, status: JobStatus | None = None) -> list[JobRecord]:
        q = select(JobRow).order_by(JobRow.seq)
        if status is not None:
            q = q.where(JobRow.status == status.value)
        with self._read() as s:
            return [_job_record(r) for r in s.scalars(q)]

    def count_jobs(self, status: JobStatus | None = None) -> int:
        q = select(func.count()).select_from(JobRow)
        if status is not None:
            q = q.where(JobRow.status == status.value)
        with self._read() as s:
            return int(s.scalar(q) or 0)

    @staticmethod
    def _leasable(now: datetime) -> ColumnElement[bool]:
        return or_(
            JobRow.status == JobStatus.QUEUED.value,
            and_(JobRow.status == JobStatus.RUNNING.value, JobRow.lease_expires_at < now),
        )

    def lease_job(
        self, worker: str, lease_seconds: int, *, contract: str | None = None
    ) -> LeasedJob | None:
        """Atomically take the oldest leasable job (queued, or running with an
        expired lease) for ``worker`` and mark it running until the lease
        expires. ``None`` if there is none. Two callers never get the same
        job while its lease runs."""
        for _ in range(16):
            now = self.now()
            expires = now + timedelta(seconds=lease_seconds)
            leasable = self._leasable(now)
            pick = select(JobRow.seq, JobRow.job_id, JobRow.request, JobRow.attempts).where(
                leasable
            )
            if contract is not None:
                pick = pick.where(JobRow.contract == contract)
            pick = pick.order_by(JobRow.seq).limit(1)
            if self.dialect == "postgresql":
                pick = pick.with_for_update(skip_locked=True)
            with self._write() as s:
                found = s.execute(pick).first()
                if found is None:
                    return None
                seq, job_id, request, attempts = found
                taken = s.execute(
                    update(JobRow)
                    .where(JobRow.seq == seq, leasable)
                    .values(
                        status=JobStatus.RUNNING.value,
                        lease_owner=worker,
                        lease_expires_at=expires,
                        attempts=JobRow.attempts + 1,
                        updated_at=now,
                    )
                    .execution_options(synchronize_session=False)
                )
                if getattr(taken, "rowcount", 0) == 1:
                    return LeasedJob(job_id, request, worker, expires, attempts + 1)
            # Another leaser won this row between the pick and the update
            # (only possible on a dialect without the guarantees above): retry.
        return None

    def requeue_expired(self) -> int:
        """Put every running job whose lease expired back in the queue (leasing
        does this implicitly; this makes it visible in the job status)."""
        now = self.now()
        with self._write() as s:
            res = s.execute(
                update(JobRow)
                .where(
                    JobRow.status == JobStatus.RUNNING.value,
                    JobRow.lease_expires_at < now,
                )
                .values(
                    status=JobStatus.QUEUED.value,
                    lease_owner=None,
                    lease_expires_at=None,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            return int(getattr(res, "rowcount", 0))

    def complete_job(
        self,
        job_id: str,
        status: JobStatus,
        error: str | None,
        *,
        worker: str | None = None,
    ) -> JobRecord:
        """Finish a running job as ``done`` or ``failed``.

        Completing a job again with the same status and error is a no-op (a
        retried request); any other completion of a job that is not running,
        or of a job another worker now holds, is a :class:`JobStateError`.
        """
        if status not in FINAL_STATUSES:
            raise BadRequestError("status must be done or failed")
        now = self.now()
        with self._write() as s:
            # FOR UPDATE on PostgreSQL (SQLite's BEGIN IMMEDIATE already
            # serialises): a lease cannot change hands between check and update.
            row = s.scalars(select(JobRow).where(JobRow.job_id == job_id).with_for_update()).first()
            if row is None:
                raise NotFoundError(f"no job {job_id}")
            if row.status in (JobStatus.DONE.value, JobStatus.FAILED.value):
                if row.status == status.value and row.error == error:
                    return _job_record(row)
                raise JobStateError(f"job {job_id} is already {row.status}")
            if row.status != JobStatus.RUNNING.value:
                raise JobStateError(f"job {job_id} is {row.status}, not running: lease it first")
            if worker is not None and row.lease_owner != worker:
                raise JobStateError(f"job {job_id} is leased to another worker")
            row.status = status.value
            row.error = error
            row.lease_expires_at = None
            row.updated_at = now
            s.flush()
            return _job_record(row)

    # -- results ------------------------------------------------------------------------------

    def add_result(
        self, digest: str, contract: str, job: str, recipient: str, envelope: Mapping[str, Any]
    ) -> None:
        doc = _dump(envelope)
        stmt = self._insert(ResultRow).values(
            digest=digest,
            contract=contract,
            job=job,
            recipient=recipient,
            document=doc,
            created_at=self.now(),
        )
        stmt = stmt.on_conflict_do_update(index_elements=[ResultRow.digest], set_={"document": doc})
        with self._write() as s:
            s.execute(stmt)

    def results_for(self, job: str, recipient: str | None = None) -> list[str]:
        q = select(ResultRow.document).where(ResultRow.job == job)
        if recipient is not None:
            q = q.where(ResultRow.recipient == recipient)
        with self._read() as s:
            return list(s.scalars(q.order_by(ResultRow.id)))

    # -- receipts -----------------------------------------------------------------------------

    def put_receipt(self, job_id: str, receipt: Mapping[str, Any]) -> None:
        """Store a job's receipt. The same receipt again is accepted; a
        different one for the same job is a :class:`ReceiptExistsError`."""
        doc = _dump(receipt)
        stmt = (
            self._insert(ReceiptRow)
            .values(job_id=job_id, document=doc, created_at=self.now())
            .on_conflict_do_nothing(index_elements=[ReceiptRow.job_id])
        )
        with self._write() as s:
            s.execute(stmt)
            stored = s.scalar(select(ReceiptRow.document).where(ReceiptRow.job_id == job_id))
        if stored != doc:
            raise ReceiptExistsError(f"job {job_id} already has a different receipt")

    def get_receipt(self, job_id: str) -> str | None:
        with self._read() as s:
            return s.scalar(select(ReceiptRow.document).where(ReceiptRow.job_id == job_id))

    # -- audit log ----------------------------------------------------------------------------

    def add_log_entry(self, enclave: str, index: int, envelope: Mapping[str, Any]) -> None:
        """Append an audit-log entry; the host never overwrites one."""
        stmt = (
            self._insert(LogEntryRow)
            .values(enclave=enclave, entry_index=index, document=_dump(envelope))
            .values(created_at=self.now())
            .on_conflict_do_nothing(index_elements=[LogEntryRow.enclave, LogEntryRow.entry_index])
            .returning(LogEntryRow.id)
        )
        try:
            with self._write() as s:
                inserted = s.execute(stmt).first()
        except IntegrityError:  # pragma: no cover - ON CONFLICT covers it
            inserted = None
        if inserted is None:
            raise LogEntryExistsError(f"enclave {enclave} already has log entry {index}")

    def log_entries(self, enclave: str) -> list[str]:
        with self._read() as s:
            return list(
                s.scalars(
                    select(LogEntryRow.document)
                    .where(LogEntryRow.enclave == enclave)
                    .order_by(LogEntryRow.entry_index)
                )
            )


def json_list(key: str, documents: Sequence[str]) -> str:
    """``{"<key>": [doc, ...]}`` built from stored JSON texts without re-parsing."""
    return '{"' + key + '":[' + ",".join(documents) + "]}"
