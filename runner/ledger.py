"""The ledger: the only module that talks to SQLite (the engine's queries live in queries.sql, its
schema in migrations/, a study's views and queries in the study's own .sql files, loaded here).

One writer connection, owned by the scheduler and used by one thread only (the discipline of
aiosqlite: one queue, one thread). Every write is a `BEGIN IMMEDIATE` transaction rolled back on
any error. Writes that arrive while a commit is in flight are committed together by the next
transaction, each inside its own savepoint (group commit): one thread hop and one fsync serve many
events, and each event stays all-or-nothing. Readers (`status`, `report`, the user's sqlite3 shell)
open their own connections with `connect_reader`.

A job's condition is a JSON object of labels (`jobs.labels`) that the engine stores and never
reads: a new axis of a study needs no migration. The study's SQL views (installed by `prepare`,
and shadowed by TEMP views in a study's own snapshot) give the labels columns.

`runner status` imports this module and must start in a few tens of milliseconds: asyncio and the
writer's vocabulary (runner.jobs, with dataclasses and enums) are imported by the writer's methods.
"""

from __future__ import annotations

import json
import math
import os
import queue
import re
import sqlite3
import threading
from pathlib import Path
from urllib.parse import quote

from runner import faults, places

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Iterable
    from typing import Any, TypeVar

    from runner.jobs import Attempt, AttemptStart, Job, Kind, Outcome, PlannedRow
    from runner.saved_steps import Steps

    T = TypeVar("T")
    Op = Callable[[sqlite3.Connection], Any]

APPLICATION_ID = 1347705170  # 'PTYR', set by migration 0001
BUSY_TIMEOUT_MS = 30_000
SQLITE_MAGIC = b"SQLite format 3\x00"


class LedgerError(Exception):
    """A problem with the ledger file that the user can fix."""


def utc_now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


# The SQL files are read by path rather than through importlib.resources, whose import alone costs
# `status` 8 ms. queries.sql sits beside this module. The migrations are the project's top-level
# migrations/ folder, which the wheel's build maps into the package (pyproject.toml): an installed
# runner finds them in its own folder, a checkout (or an editable install) beside it.
PACKAGE = Path(__file__).resolve().parent
MIGRATIONS_DIR = PACKAGE / "migrations"
if not MIGRATIONS_DIR.is_dir():
    MIGRATIONS_DIR = PACKAGE.parent / "migrations"


def load_queries(path: Path = PACKAGE / "queries.sql") -> dict[str, str]:
    """Split a named-queries file into {name: sql} on its `-- name: x` headers."""
    text = path.read_text()
    parts = re.split(r"^-- name: (\w+)\s*$", text, flags=re.MULTILINE)
    return {name: sql.strip() for name, sql in zip(parts[1::2], parts[2::2])}


def load_migrations() -> list[tuple[int, str]]:
    """Numbered migration scripts (NNNN_name.sql), in order."""
    folder = MIGRATIONS_DIR
    found = sorted(f.name for f in folder.iterdir() if re.match(r"^\d{4}_\w+\.sql$", f.name))
    migrations = [(int(name[:4]), (folder / name).read_text()) for name in found]
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


def prepare(path: Path, views: dict[str, str] | None = None) -> None:
    """Create or upgrade the ledger file (WAL mode, current schema), readable by the user only, and
    install a study's views (name -> CREATE VIEW statement) where they differ from the stored ones."""
    check_path(path, must_exist=False)
    if not path.exists():
        path.touch(mode=0o600)
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            migrate(conn, path)
            install_views(conn, views or {})
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise _sqlite_error(path, exc) from None


def install_views(conn: sqlite3.Connection, views: dict[str, str]) -> None:
    """Replace, in one transaction, each view whose stored statement is not the one given."""
    stored = dict(conn.execute("SELECT name, sql FROM sqlite_schema WHERE type = 'view'").fetchall())
    changed = {name: sql for name, sql in views.items() if stored.get(name) != sql.rstrip().rstrip(";")}
    if not changed:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        for name, sql in changed.items():
            conn.execute(f'DROP VIEW IF EXISTS "{name}"')
            conn.execute(sql)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _with_sqrt(conn: sqlite3.Connection) -> None:
    """A study's views may take square roots (intervals); SQLite builds without its math
    functions get Python's."""
    try:
        conn.execute("SELECT sqrt(4.0)")
    except sqlite3.OperationalError:
        conn.create_function("sqrt", 1, math.sqrt, deterministic=True)


def connect_reader(path: Path) -> sqlite3.Connection:
    """A read-only connection for status, report and tests; refuses unknown or newer files."""
    check_path(path, must_exist=True)
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        conn.row_factory = sqlite3.Row
        _with_sqrt(conn)
        version = _version(conn, path)
    except sqlite3.Error as exc:
        raise _sqlite_error(path, exc) from None
    if version < SCHEMA_VERSION:
        conn.close()
        raise LedgerError(f"ledger {path} has schema version {version}; run `python -m runner run` "
                          "with this version once to upgrade it")
    return conn


def read_snapshot(path: Path, read: Callable[[sqlite3.Connection], T], views: dict[str, str] | None = None) -> T:
    """`read(conn)` in one read transaction of a read-only connection: a consistent snapshot, also
    while a run writes. `views` (a study's, name -> CREATE VIEW) are made TEMP views for this read:
    they shadow the stored ones, so a reader always sees its own study's definitions. A failure to
    read is a LedgerError naming the ledger."""
    conn = connect_reader(path)
    try:
        conn.execute("BEGIN")
        for sql in (views or {}).values():
            conn.execute(sql.replace("CREATE VIEW", "CREATE TEMP VIEW", 1))
        result = read(conn)
        conn.execute("COMMIT")
        return result
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot read ledger {path}: {exc}") from None
    finally:
        conn.close()


def _commit(conn: sqlite3.Connection, ops: list[Op]) -> list[tuple[bool, Any]]:
    """Run `ops` in one BEGIN IMMEDIATE transaction, each in a savepoint of its own: an op that
    raises is rolled back alone and gets its exception; a failed COMMIT fails them all."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        results: list[tuple[bool, Any]] = []
        for op in ops:
            conn.execute("SAVEPOINT op")
            try:
                results.append((True, op(conn)))
            except Exception as exc:
                conn.execute("ROLLBACK TO op")
                results.append((False, exc))
            conn.execute("RELEASE op")
        conn.execute("COMMIT")
        return results
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _writer_thread(path: Path, requests: queue.SimpleQueue, loop: asyncio.AbstractEventLoop,
                   opened: asyncio.Future) -> None:
    """The only thread that touches the writer connection: it commits one batch per request."""
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000,
                               check_same_thread=True)
        # WAL; synchronous is FULL (fsync at commit) for a batch holding a durable event and
        # NORMAL (no fsync; durable at the next FULL commit) otherwise: see Ledger.
        for pragma in ("journal_mode = WAL", "synchronous = FULL", "foreign_keys = ON",
                       f"busy_timeout = {BUSY_TIMEOUT_MS}"):
            conn.execute(f"PRAGMA {pragma}")
    except BaseException as exc:
        loop.call_soon_threadsafe(lambda e=exc: opened.done() or opened.set_exception(e))
        return
    loop.call_soon_threadsafe(lambda: opened.done() or opened.set_result(None))
    synchronous = "FULL"
    try:
        while (request := requests.get()) is not None:
            ops, durable, done = request
            try:
                if synchronous != ("FULL" if durable else "NORMAL"):
                    synchronous = "FULL" if durable else "NORMAL"
                    conn.execute(f"PRAGMA synchronous = {synchronous}")
                outcome: tuple[bool, Any] = (True, _commit(conn, ops))
            except BaseException as exc:
                outcome = (False, exc)
            loop.call_soon_threadsafe(lambda d=done, o=outcome: d.done() or d.set_result(o))
    finally:
        conn.close()


def expected_durations(db: sqlite3.Connection) -> dict[str, float]:
    """Per job key: how long its latest successful attempt ran (jobs that never succeeded are
    absent). For the writer and for a reader's snapshot (a dry run)."""
    return {key: duration for key, duration, _ in db.execute(QUERIES["expected_durations"])}


def run_results(db: sqlite3.Connection, run_id: int, root: str | None = None) -> list[dict]:
    """Each job the run planned, in plan order, with its attempt of that run, else its standing
    success, else its latest attempt: what the run's files report (log paths made absolute
    against the study's `root`). For a reader's snapshot."""
    cursor = db.execute(QUERIES["run_results"], {"run_id": run_id})
    columns = [d[0] for d in cursor.description]
    rows = [dict(zip(columns, row)) for row in cursor.fetchall()]
    return [{**row, "labels": json.loads(row["labels"]), "stdout_log": places.resolve(row["stdout_log"], root),
             "stderr_log": places.resolve(row["stderr_log"], root)} for row in rows]


def study_root(db: sqlite3.Connection, path: Path) -> str | None:
    """The study's root as it is now, from where the ledger at `path` is (None: no run recorded
    it, and every path in the ledger is absolute)."""
    row = db.execute(QUERIES["study_root"]).fetchone()
    return places.root_from_ledger(path, row[0] if row else None)


def known_hashes(db: sqlite3.Connection) -> dict[str, tuple[int, int, int, int, str]]:
    """The content hashes the ledger keeps (inputs.ContentHashes.known)."""
    return {path: (size, mtime, ctime, inode, sha) for path, size, mtime, ctime, inode, sha
            in db.execute(QUERIES["file_hashes"])}


def planned_rows(cursor: sqlite3.Cursor) -> dict[str, PlannedRow]:
    from runner.jobs import JobState, PlannedRow

    return {key: PlannedRow(job_id, JobState(state), success, basis, failure, number or 0)
            for key, job_id, state, success, basis, failure, number in cursor}


def known_jobs(db: sqlite3.Connection) -> dict[str, PlannedRow]:
    """What the ledger holds of every job it knows (a dry run's view of it)."""
    return planned_rows(db.execute(QUERIES["known_jobs"]))


def _quietly(future: asyncio.Future) -> None:
    """Mark a settled future's exception as seen (its awaiter, if any, still gets it)."""
    if not future.cancelled():
        future.exception()


def _statement(name: str, params: dict) -> Op:
    """An op that runs one named query and returns nothing."""
    def op(db: sqlite3.Connection) -> None:
        db.execute(QUERIES[name], params)
    return op


class Ledger:
    """The single writer. Every method is one all-or-nothing event; see the module docstring.

    Durability: an attempt's end (its outcome and metrics) and every run-level change are
    fsynced before they count as recorded (synchronous=FULL). An attempt's start and pid rows
    are committed before the process is spawned (other connections see them, and they survive
    the runner being killed) but reach the disk with the next fsync, at the latest when some
    attempt ends: a power loss can lose them, and with them only the news of a start whose
    process the power loss has ended anyway. This keeps an fsync out of the path of every
    launch."""

    def __init__(self, path: Path, loop: asyncio.AbstractEventLoop, thread: threading.Thread,
                 requests: queue.SimpleQueue, root: str | None = None) -> None:
        self.path = path
        # The study's root (absolute): paths under it are recorded relative to it (runner.places).
        self.root = root
        self._loop, self._thread, self._requests = loop, thread, requests
        self._pending: list[tuple[Op, bool, asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None
        self.commits = 0  # transactions so far (group commit makes this far less than the events)
        # The first write that failed for a reason outside the runner (locked past the busy
        # timeout, disk full, I/O error): the run is stopping, so later writes fail at once
        # instead of each waiting out the busy timeout again.
        self._failed: sqlite3.OperationalError | None = None

    @classmethod
    async def open(cls, path: Path, views: dict[str, str] | None = None, root: Path | None = None) -> Ledger:
        """The writer of the ledger at `path`, created or upgraded, with a study's `views`;
        `root`: the study's root, under which paths are recorded relative to it."""
        import asyncio  # here, not at the top: see the module docstring

        prepare(path, views)
        loop = asyncio.get_running_loop()
        requests: queue.SimpleQueue = queue.SimpleQueue()
        opened = loop.create_future()
        thread = threading.Thread(target=_writer_thread, args=(path, requests, loop, opened),
                                  name="ledger-writer", daemon=True)
        thread.start()
        try:
            await opened
        except sqlite3.Error as exc:
            thread.join()
            raise _sqlite_error(path, exc) from None
        return cls(path, loop, thread, requests,
                   None if root is None else os.path.normpath(os.path.abspath(root)))

    def _record(self, path: Path | str) -> str:
        return str(path) if self.root is None else places.record(path, self.root)

    def _resolve(self, text: str) -> Path:
        return Path(places.resolve(text, self.root) or text)

    async def close(self) -> None:
        """Commit what is pending, then close the connection and end the writer thread."""
        if self._flusher is not None:
            await self._flusher
        self._requests.put(None)
        await self._loop.run_in_executor(None, self._thread.join)

    def _submit(self, op: Callable[[sqlite3.Connection], T], durable: bool = True) -> asyncio.Future[T]:
        """Queue `op` for the next transaction, now, in call order; the future resolves once
        that transaction has committed (and, when `durable`, reached the disk). A queued op is
        committed even if its future is cancelled."""
        future = self._loop.create_future()
        # A write whose waiter is gone (its task was cancelled when the run stopped) must not
        # print a traceback at exit: the failure is reported by the write that stopped the run.
        future.add_done_callback(_quietly)
        if self._failed is not None:
            future.set_exception(self._failed)
            return future
        self._pending.append((op, durable, future))
        if self._flusher is None:
            self._flusher = self._loop.create_task(self._flush())
        return future

    async def _write(self, op: Callable[[sqlite3.Connection], T]) -> T:
        return await self._submit(op)

    async def _flush(self) -> None:
        """Commit batches until nothing is pending. A batch holds every op submitted while the
        previous batch was being committed."""
        import asyncio

        try:
            while self._pending:
                # Every queued event commits, even when its waiter was cancelled meanwhile (the
                # scheduler need not shield the record of a finished attempt).
                batch, self._pending = self._pending, []
                done = self._loop.create_future()
                self._requests.put(([op for op, _, _ in batch], any(d for _, d, _ in batch), done))
                try:
                    # Shielded: once handed to the thread, the batch commits or rolls back there.
                    committed, results = await asyncio.shield(done)
                except BaseException:
                    for _, _, future in batch + self._pending:
                        future.cancel()
                    raise
                self.commits += 1
                for index, (_, _, future) in enumerate(batch):
                    if future.done():
                        continue
                    ok, value = results[index] if committed else (False, results)
                    if isinstance(value, sqlite3.OperationalError):
                        self._failed = self._failed or value
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self._flusher = None

    async def begin_run(self, host: str, user: str, pid: int, argv: list[str], version: str,
                        git_commit: str | None, slots: list[dict], study: dict | None = None) -> int:
        """A run starts; `study` is what the study says of itself for this run (its folders)."""
        root = None if self.root is None else places.root_for_ledger(Path(self.root), self.path)

        def op(db: sqlite3.Connection) -> int:
            run_id = db.execute(QUERIES["insert_run"], {
                "started_at": utc_now(), "host": host, "user": user, "pid": pid,
                "argv": json.dumps(argv), "runner_version": version, "git_commit": git_commit,
                "slots": json.dumps(slots), "study": json.dumps(study) if study is not None else None,
                "root": root}).lastrowid
            db.execute(QUERIES["mark_unfinished_runs_crashed"], {"run_id": run_id})
            if self.root is not None:  # what older runners recorded absolute, made relative
                prefix = self.root.rstrip("/") + "/"
                where = {"root": self.root, "prefix": prefix, "n": len(prefix)}
                db.execute(QUERIES["relative_paths"], where)
                db.execute(QUERIES["relative_logs"], where)
            return run_id
        return await self._write(op)

    async def end_run(self, run_id: int, outcome: str) -> None:
        await self._write(_statement("end_run", {
            "run_id": run_id, "ended_at": utc_now(), "outcome": outcome}))

    async def sync_jobs(self, jobs: Iterable[Job], run_id: int, kinds: Iterable[Kind] = ()) -> dict[str, PlannedRow]:
        """Record the plan, its dependencies and the study's kinds of job; return per job key what
        the ledger holds of it (its id, state and the fingerprint of its success)."""
        now = utc_now()
        params = [{"key": job.key, "plan_order": order, "kind": job.kind, "labels": json.dumps(job.labels),
                   "argv": json.dumps(list(job.argv)), "cwd": self._record(job.cwd),
                   "output_dir": self._record(job.output_dir),
                   "fingerprint": job.fingerprint, "run_id": run_id, "now": now}
                  for order, job in enumerate(jobs)]
        needs = [{"key": job.key, "needs": need} for job in jobs for need in job.needs]
        titles = [{"name": kind.name, "title": kind.title} for kind in kinds]

        def op(db: sqlite3.Connection) -> dict[str, PlannedRow]:
            db.executemany(QUERIES["upsert_kind"], titles)
            db.executemany(QUERIES["upsert_job"], params)
            db.executemany(QUERIES["forget_needs"], [{"key": p["key"]} for p in params])
            db.executemany(QUERIES["insert_need"], needs)
            return planned_rows(db.execute(QUERIES["planned_jobs"], {"run_id": run_id}))
        return await self._write(op)

    async def restamp(self, stamps: list[tuple[int, str, str]]) -> None:
        """Successes whose older fingerprint still matches: (job_id, fingerprint, basis) of now."""
        params = [{"job_id": job_id, "fingerprint": fingerprint, "basis": basis}
                  for job_id, fingerprint, basis in stamps]
        if params:
            await self._write(lambda db: db.executemany(QUERIES["restamp_success"], params))

    async def remember_hashes(self, hashes: dict[str, tuple[int, int, int, int, str]]) -> None:
        """Content hashes learned in this run (inputs.ContentHashes.take_new), kept for the next."""
        params = [{"path": path, "size": size, "mtime_ns": mtime, "ctime_ns": ctime, "inode": inode,
                   "sha256": sha} for path, (size, mtime, ctime, inode, sha) in hashes.items()]
        if params:
            await self._write(lambda db: db.executemany(QUERIES["remember_hash"], params))

    def set_job_states(self, changes: list[tuple[int, JobState, str | None]]) -> asyncio.Future[None]:
        """Move many jobs at once: (job_id, state, blocked reason). Queued now; await the result."""
        now = utc_now()
        params = [{"job_id": job_id, "state": state.value, "blocked_reason": reason, "now": now}
                  for job_id, state, reason in changes]
        if not params:  # nothing to commit: no transaction, no fsync
            nothing = self._loop.create_future()
            nothing.set_result(None)
            return nothing
        return self._submit(lambda db: db.executemany(QUERIES["set_job_state"], params))

    async def set_job_state(self, job_id: int, state: JobState, blocked_reason: str | None = None) -> None:
        await self.set_job_states([(job_id, state, blocked_reason)])

    # The three events of an attempt are queued when called and return a future: the scheduler
    # awaits the attempt row before it spawns, and lets the others share later commits.
    def start_attempt(self, start: AttemptStart,
                      log_paths: Callable[[int], tuple[Path, Path]]) -> asyncio.Future[Attempt]:
        """The attempt row, to be committed before anything is spawned."""
        from runner.jobs import Attempt, JobState

        def op(db: sqlite3.Connection) -> Attempt:
            (number,) = db.execute(QUERIES["next_attempt_number"], {"job_id": start.job_id}).fetchone()
            stdout_log, stderr_log = log_paths(number)
            while stdout_log.exists() or stderr_log.exists():  # a start a power loss took (see above)
                number += 1
                stdout_log, stderr_log = log_paths(number)
            now = utc_now()
            attempt_id = db.execute(QUERIES["insert_attempt"], {
                "job_id": start.job_id, "run_id": start.run_id, "number": number, "token": start.token,
                "argv": json.dumps(list(start.argv)), "fingerprint": start.fingerprint,
                "basis": start.basis or None, "slot": start.slot,
                "device": start.device, "gpu_uuid": start.gpu_uuid, "started_at": now,
                "stdout_log": self._record(stdout_log), "stderr_log": self._record(stderr_log),
                "backend": start.backend,
                "metrics_before": start.metrics_before}).lastrowid
            db.execute(QUERIES["set_job_state"], {
                "job_id": start.job_id, "state": JobState.RUNNING.value, "blocked_reason": None, "now": now})
            return Attempt(attempt_id, start.job_id, start.job_key, number, start.token, start.argv,
                           stdout_log, stderr_log, now, start.backend, start.metrics_before)
        return self._submit(op, durable=False)

    def record_launch(self, attempt_id: int, fields: dict) -> asyncio.Future[None]:
        """What identifies the launched attempt (pid, pgid, process_start or slurm_job_id)."""
        params = {"attempt_id": attempt_id, "pid": None, "pgid": None, "process_start": None,
                  "slurm_job_id": None, **fields}
        return self._submit(_statement("record_launch", params), durable=False)

    async def record_slurm_state(self, attempt_id: int, state: str, node: str | None,
                                 exit: str | None = None) -> None:
        """What SLURM last said about the attempt's job (recorded as seen, not fsynced)."""
        await self._submit(_statement("record_slurm_state", {
            "attempt_id": attempt_id, "slurm_state": state, "slurm_node": node or None,
            "slurm_exit": exit}), durable=False)

    def finish_attempt(self, attempt_id: int, job_id: int, outcome: Outcome,
                       duration_s: float | None, steps: Steps | None = None) -> asyncio.Future[None]:
        """Close an attempt (with the steps it started from and saved, for a resumable job)
        and move its job to the matching state, in one event."""
        attempt_state, job_state = outcome.states

        def op(db: sqlite3.Connection) -> None:
            now = utc_now()
            if outcome.succeeded:
                db.execute(QUERIES["supersede_success"], {"job_id": job_id})
                db.executemany(QUERIES["insert_metric"], [
                    {"attempt_id": attempt_id, "model": r.model, "metric": r.metric,
                     "amplitude": r.amplitude, "phase": r.phase, "value": r.value}
                    for r in outcome.metrics])
            db.execute(QUERIES["finish_attempt"], {
                "attempt_id": attempt_id, "state": attempt_state.value, "ended_at": now,
                "duration_s": duration_s, "exit_code": outcome.exit_code, "signal": outcome.signal,
                "failure_class": outcome.failure_class.value if outcome.failure_class else None,
                "failure_detail": outcome.detail, "start_step": steps.start if steps else None,
                "end_step": steps.end if steps else None})
            db.execute(QUERIES["set_job_state"], {
                "job_id": job_id, "state": job_state.value, "blocked_reason": None, "now": now})
        return self._submit(op)

    async def running_attempts(self) -> list[Attempt]:
        from runner.jobs import Attempt

        def op(db: sqlite3.Connection) -> list[Attempt]:
            cursor = db.execute(QUERIES["running_attempts"])
            columns = [d[0] for d in cursor.description]  # the query names every field of Attempt
            rows = [dict(zip(columns, row)) for row in cursor.fetchall()]
            return [Attempt(**{**row, "argv": tuple(json.loads(row["argv"])),
                               "stdout_log": self._resolve(row["stdout_log"]),
                               "stderr_log": self._resolve(row["stderr_log"])}) for row in rows]
        return await self._write(op)

    async def expected_durations(self) -> dict[str, float]:
        return await self._write(expected_durations)
