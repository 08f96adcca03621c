"""The ledger: the only module that talks to SQLite (queries live in queries.sql and migrations/).

One writer connection (aiosqlite) owned by the scheduler; every write is one `BEGIN IMMEDIATE`
transaction, rolled back on any error, cancellation included. Readers (`status`, `report`, the
user's sqlite3 shell) open their own connections with `connect_reader`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import aiosqlite

from runner import faults
from runner.jobs import AttemptState, FailureClass, Job, JobState, Outcome

APPLICATION_ID = 1347705170  # 'PTYR', set by migration 0001
BUSY_TIMEOUT_MS = 30_000
SQLITE_MAGIC = b"SQLite format 3\x00"


class LedgerError(Exception):
    """A problem with the ledger file that the user can fix."""


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def load_queries() -> dict[str, str]:
    """Split queries.sql into {name: sql} on its `-- name: x` headers."""
    text = resources.files("runner").joinpath("queries.sql").read_text()
    parts = re.split(r"^-- name: (\w+)\s*$", text, flags=re.MULTILINE)
    return {name: sql.strip() for name, sql in zip(parts[1::2], parts[2::2])}


def load_migrations() -> list[tuple[int, str]]:
    """Numbered migration scripts (NNNN_name.sql), in order."""
    folder = resources.files("runner").joinpath("migrations")
    found = sorted(f.name for f in folder.iterdir() if re.match(r"^\d{4}_\w+\.sql$", f.name))
    migrations = [(int(name[:4]), folder.joinpath(name).read_text()) for name in found]
    if [n for n, _ in migrations] != list(range(1, len(migrations) + 1)):
        raise RuntimeError(f"migrations are not numbered 1..n: {found}")
    return migrations


QUERIES = load_queries()
MIGRATIONS = load_migrations()
SCHEMA_VERSION = len(MIGRATIONS)


def check_path(path: Path, must_exist: bool) -> None:
    """Refuse a path that is a folder, missing (for readers) or not a SQLite file."""
    if path.is_dir():
        raise LedgerError(f"ledger path {path} is a directory; give a file path with --ledger")
    if not path.exists():
        if must_exist:
            raise LedgerError(f"no ledger at {path}; start one with `python -m runner run`")
        if not path.parent.is_dir():
            raise LedgerError(f"the folder of ledger {path} does not exist")
        return
    with open(path, "rb") as f:
        head = f.read(16)
    if head and head != SQLITE_MAGIC:
        raise LedgerError(f"{path} is not a SQLite file; point --ledger at a runner ledger")


def probe(path: Path) -> None:
    """Refuse, before anything is written beside it, a ledger the runner could not use: not
    SQLite, damaged, another program's database, or from a newer runner. Opens it read-only."""
    check_path(path, must_exist=False)
    if not os.access(path.parent, os.W_OK):
        read_only = os.statvfs(path.parent).f_flag & os.ST_RDONLY
        raise LedgerError(f"cannot write in the folder of ledger {path} "
                          f"({'read-only file system' if read_only else 'permission denied'}); the "
                          "ledger's folder must be writable (lock, WAL), or choose another --ledger")
    if not path.exists() or path.stat().st_size == 0:
        return
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            _version(conn, path)
            problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise _sqlite_error(path, exc) from None
    if problems != ["ok"]:
        raise LedgerError(f"ledger {path} is damaged ({problems[0]}); restore it from a copy or "
                          "start a new one with --ledger")


def _version(conn: sqlite3.Connection, path: Path) -> int:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    has_tables = conn.execute("SELECT COUNT(*) FROM sqlite_schema").fetchone()[0] > 0
    if has_tables and app_id != APPLICATION_ID:
        raise LedgerError(f"{path} is a SQLite database but not a runner ledger; "
                          "point --ledger at another file")
    if version > SCHEMA_VERSION:
        raise LedgerError(f"ledger {path} has schema version {version}, newer than this runner "
                          f"knows ({SCHEMA_VERSION}); upgrade the runner")
    return version


def migrate(conn: sqlite3.Connection, path: Path) -> int:
    """Apply the migrations the ledger lacks, each with its version bump in one transaction."""
    version = _version(conn, path)
    if faults.armed("migrate"):  # tests: stop inside the transaction, before its version bump
        conn.set_trace_callback(lambda sql: sql.lstrip().startswith("PRAGMA user_version")
                                and faults.pause_point("migrate"))
    for number, script in MIGRATIONS[version:]:
        try:
            conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION


def _sqlite_error(path: Path, exc: sqlite3.Error) -> LedgerError:
    text = str(exc)
    if "readonly" in text or "unable to open" in text:
        return LedgerError(f"cannot write ledger {path} ({text}); check the folder's permissions")
    if "not a database" in text or "malformed" in text:
        return LedgerError(f"{path} is not a usable SQLite ledger ({text})")
    if "locked" in text or "busy" in text:
        return LedgerError(f"ledger {path} is locked by another process ({text})")
    return LedgerError(f"ledger {path}: {text}")


def prepare(path: Path) -> None:
    """Create or upgrade the ledger file (WAL mode, current schema), readable by the user only."""
    check_path(path, must_exist=False)
    if not path.exists():
        path.touch(mode=0o600)
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            migrate(conn, path)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise _sqlite_error(path, exc) from None


def connect_reader(path: Path) -> sqlite3.Connection:
    """A read-only connection for status, report and tests; refuses unknown or newer files."""
    check_path(path, must_exist=True)
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        conn.row_factory = sqlite3.Row
        version = _version(conn, path)
    except sqlite3.Error as exc:
        raise _sqlite_error(path, exc) from None
    if version < SCHEMA_VERSION:
        conn.close()
        raise LedgerError(f"ledger {path} has schema version {version}; run `python -m runner run` "
                          "with this version once to upgrade it")
    return conn


@dataclass(frozen=True)
class RunningAttempt:
    """An attempt the ledger says is running: what reconciliation needs to find its process."""

    attempt_id: int
    job_id: int
    job_key: str
    pid: int | None
    pgid: int | None
    process_start: str | None
    token: str
    started_at: str
    backend: str  # 'local' or 'slurm'
    slurm_job_id: str | None
    number: int
    stdout_log: Path
    stderr_log: Path
    argv: tuple[str, ...]


class Ledger:
    """The single writer. Every method is one transaction."""

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        self.path = path
        self._lock = asyncio.Lock()
        # The first write that failed for a reason outside the runner (locked past the busy
        # timeout, disk full, I/O error): the run is stopping, so later writes fail at once
        # instead of each waiting out the busy timeout again.
        self._failed: sqlite3.OperationalError | None = None

    @classmethod
    async def open(cls, path: Path) -> Ledger:
        prepare(path)
        db = await aiosqlite.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            # FULL: a commit recorded as "succeeded" survives a power loss too (few commits/s).
            for pragma in ("journal_mode = WAL", "synchronous = FULL", "foreign_keys = ON",
                           f"busy_timeout = {BUSY_TIMEOUT_MS}"):
                await db.execute(f"PRAGMA {pragma}")
        except BaseException:
            await db.close()
            raise
        return cls(db, path)

    async def close(self) -> None:
        await self._db.close()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            if self._failed:
                raise self._failed
            try:
                await self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    await self._db.execute("COMMIT")
                except BaseException:
                    # Shielded: a cancelled task must not leave the connection inside a transaction.
                    if self._db.in_transaction:
                        await asyncio.shield(self._db.execute("ROLLBACK"))
                    raise
            except sqlite3.OperationalError as exc:
                self._failed = exc
                raise

    async def _one(self, db: aiosqlite.Connection, name: str, params: dict) -> tuple | None:
        async with db.execute(QUERIES[name], params) as cursor:
            return await cursor.fetchone()

    async def begin_run(self, host: str, user: str, pid: int, argv: list[str], version: str,
                        git_commit: str | None, slots: list[dict]) -> int:
        async with self._transaction() as db:
            cursor = await db.execute(QUERIES["insert_run"], {
                "started_at": utc_now(), "host": host, "user": user, "pid": pid,
                "argv": json.dumps(argv), "runner_version": version, "git_commit": git_commit,
                "slots": json.dumps(slots)})
            run_id = cursor.lastrowid
            await db.execute(QUERIES["mark_unfinished_runs_crashed"], {"run_id": run_id})
            return run_id

    async def end_run(self, run_id: int, outcome: str) -> None:
        async with self._transaction() as db:
            await db.execute(QUERIES["end_run"],
                             {"run_id": run_id, "ended_at": utc_now(), "outcome": outcome})

    async def sync_jobs(self, jobs: Iterable[Job], run_id: int) -> dict[str, tuple[int, JobState, str | None]]:
        """Record the plan; return per job key: (job_id, state, fingerprint of its success)."""
        rows: dict[str, tuple[int, JobState, str | None]] = {}
        async with self._transaction() as db:
            for order, job in enumerate(jobs):
                meta = job.metadata
                job_id, state = await self._one(db, "upsert_job", {
                    "key": job.key, "plan_order": order,
                    "dose": job.condition.get("dose"), "view": job.condition.get("view"),
                    "split": job.condition.get("split"), "argv": json.dumps(list(job.argv)),
                    "cwd": str(job.cwd), "output_dir": str(job.output_dir),
                    "fingerprint": job.fingerprint,
                    "selection_strategy": meta.get("selection_strategy"),
                    "acceptance_rate": meta.get("acceptance_rate"),
                    "spacing_threshold": meta.get("spacing_threshold"),
                    "n_accepted": meta.get("n_accepted"), "n_rejected": meta.get("n_rejected"),
                    "run_id": run_id, "now": utc_now()})
                success = await self._one(db, "succeeded_fingerprint", {"job_id": job_id})
                rows[job.key] = (job_id, JobState(state), success[0] if success else None)
        return rows

    async def set_job_state(self, job_id: int, state: JobState, blocked_reason: str | None = None) -> None:
        async with self._transaction() as db:
            await db.execute(QUERIES["set_job_state"], {
                "job_id": job_id, "state": state.value, "blocked_reason": blocked_reason,
                "now": utc_now()})

    async def start_attempt(self, job_id: int, run_id: int, job: Job, argv: list[str],
                            slot: str, device: str | None, gpu_uuid: str | None, token: str,
                            log_paths: Callable[[int], tuple[Path, Path]],
                            backend: str = "local") -> tuple[int, int, Path, Path]:
        """Write the attempt row (before anything is spawned); returns id, number and log paths."""
        async with self._transaction() as db:
            (number,) = await self._one(db, "next_attempt_number", {"job_id": job_id})
            stdout_log, stderr_log = log_paths(number)
            cursor = await db.execute(QUERIES["insert_attempt"], {
                "job_id": job_id, "run_id": run_id, "number": number, "token": token,
                "argv": json.dumps(argv), "fingerprint": job.fingerprint, "slot": slot,
                "device": device, "gpu_uuid": gpu_uuid, "started_at": utc_now(),
                "stdout_log": str(stdout_log), "stderr_log": str(stderr_log), "backend": backend})
            await db.execute(QUERIES["set_job_state"], {
                "job_id": job_id, "state": JobState.RUNNING.value, "blocked_reason": None,
                "now": utc_now()})
            return cursor.lastrowid, number, stdout_log, stderr_log

    async def record_launch(self, attempt_id: int, fields: dict) -> None:
        """What identifies the launched attempt (pid, pgid, process_start or slurm_job_id)."""
        params = {"pid": None, "pgid": None, "process_start": None, "slurm_job_id": None}
        params.update(fields)
        async with self._transaction() as db:
            await db.execute(QUERIES["record_launch"], {"attempt_id": attempt_id, **params})

    async def record_slurm_state(self, attempt_id: int, state: str, node: str | None,
                                 exit: str | None = None) -> None:
        async with self._transaction() as db:
            await db.execute(QUERIES["record_slurm_state"], {
                "attempt_id": attempt_id, "slurm_state": state, "slurm_node": node or None,
                "slurm_exit": exit})

    async def finish_attempt(self, attempt_id: int, job_id: int, outcome: Outcome,
                             duration_s: float | None) -> None:
        """Close an attempt and move its job to the matching state, in one transaction."""
        if outcome.succeeded:
            attempt_state, job_state = AttemptState.SUCCEEDED, JobState.SUCCEEDED
        elif outcome.failure_class is FailureClass.INTERRUPTED:
            attempt_state, job_state = AttemptState.INTERRUPTED, JobState.INTERRUPTED
        else:
            attempt_state, job_state = AttemptState.FAILED, JobState.FAILED
        async with self._transaction() as db:
            if outcome.succeeded:
                await db.execute(QUERIES["supersede_success"], {"job_id": job_id})
                await db.executemany(QUERIES["insert_metric"], [
                    {"attempt_id": attempt_id, "model": r.model, "metric": r.metric,
                     "amplitude": r.amplitude, "phase": r.phase, "value": r.value}
                    for r in outcome.metrics])
            await db.execute(QUERIES["finish_attempt"], {
                "attempt_id": attempt_id, "state": attempt_state.value, "ended_at": utc_now(),
                "duration_s": duration_s, "exit_code": outcome.exit_code, "signal": outcome.signal,
                "failure_class": outcome.failure_class.value if outcome.failure_class else None,
                "failure_detail": outcome.detail})
            await db.execute(QUERIES["set_job_state"], {
                "job_id": job_id, "state": job_state.value, "blocked_reason": None,
                "now": utc_now()})

    async def running_attempts(self) -> list[RunningAttempt]:
        async with self._lock:
            async with self._db.execute(QUERIES["running_attempts"]) as cursor:
                rows = await cursor.fetchall()
        return [RunningAttempt(attempt_id=r[0], job_id=r[1], job_key=r[7], pid=r[2], pgid=r[3],
                               process_start=r[4], token=r[5], started_at=r[6], backend=r[8],
                               slurm_job_id=r[9], number=r[10], stdout_log=Path(r[11]),
                               stderr_log=Path(r[12]), argv=tuple(json.loads(r[13])))
                for r in rows]

    async def run_results(self, run_id: int) -> list[dict]:
        async with self._lock:
            async with self._db.execute(QUERIES["run_results"], {"run_id": run_id}) as cursor:
                columns = [d[0] for d in cursor.description]
                return [dict(zip(columns, row)) for row in await cursor.fetchall()]
