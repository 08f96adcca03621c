"""The ledger file: migrations, refusal of foreign or newer files, and the rules the schema keeps."""

import sqlite3
from pathlib import Path

import pytest

from runner import ledger as ledger_module
from runner.jobs import AttemptStart, FailureClass, Job, JobState, MetricsCheck, Outcome
from runner.ledger import SCHEMA_VERSION, Ledger, LedgerError, connect_reader, prepare
from runner.ptycho import STUDY


def job(key="dose_1000/dense/train", fingerprint="f1") -> Job:
    return Job(key=key, argv=("python", "x.py"), cwd=Path("/tmp"), output_dir=Path("/tmp/out"),
               check=MetricsCheck(Path("/tmp/out/m.csv"), ("A",)), fingerprint=fingerprint, kind="G",
               labels={"phase": "G", "dose": 1000, "view": "dense", "split": "train",
                       "selection_strategy": "greedy", "acceptance_rate": 0.008})


def start(job_id: int, run_id: int, job: Job, token: str, argv=()) -> AttemptStart:
    return AttemptStart(job_id, job.key, run_id, tuple(argv), job.fingerprint, "cpu0", "", None, token, "local")


def test_new_ledger_has_current_schema_wal_and_private_mode(tmp_path):
    path = tmp_path / "ledger.db"
    prepare(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema")}
    assert {"runs", "jobs", "attempts", "kinds"} <= names
    assert not {name for name in names if name in STUDY.views}  # the engine's schema alone
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_studys_views_are_installed_and_replaced_only_when_they_change(tmp_path):
    path = tmp_path / "ledger.db"

    def stored() -> tuple[dict, int]:  # the views and the schema's change counter
        conn = sqlite3.connect(path)
        try:
            return (dict(conn.execute("SELECT name, sql FROM sqlite_schema WHERE type = 'view'").fetchall()),
                    conn.execute("PRAGMA schema_version").fetchone()[0])
        finally:
            conn.close()
    prepare(path, STUDY.views)
    views, version = stored()
    assert {name: views[name] for name in STUDY.views} == STUDY.views
    prepare(path, STUDY.views)
    assert stored() == (views, version)  # unchanged: nothing rewritten
    newer = {**STUDY.views, "study_metrics": STUDY.views["study_metrics"].replace("m.value,", "m.value AS value,")}
    prepare(path, newer)
    assert {name: stored()[0][name] for name in newer} == newer and stored()[1] > version


def test_ledger_from_a_newer_runner_is_refused(tmp_path):
    path = tmp_path / "ledger.db"
    prepare(path)
    sqlite3.connect(path).execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(LedgerError, match="newer than this runner"):
        prepare(path)
    with pytest.raises(LedgerError, match="newer than this runner"):
        connect_reader(path)


@pytest.mark.parametrize("content, message", [
    (b"just some text, no database here", "not a SQLite file"),
])
def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path, content, message):
    path = tmp_path / "notes.db"
    path.write_bytes(content)
    with pytest.raises(LedgerError, match=message):
        prepare(path)
    assert path.read_bytes() == content


def test_another_programs_sqlite_database_is_refused(tmp_path):
    path = tmp_path / "other.db"
    sqlite3.connect(path).execute("CREATE TABLE photos (id INTEGER)")
    with pytest.raises(LedgerError, match="not a runner ledger"):
        prepare(path)


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(LedgerError, match="is a directory"):
        prepare(tmp_path)


def test_failed_migration_leaves_version_and_schema_unchanged(tmp_path, monkeypatch):
    path = tmp_path / "ledger.db"
    prepare(path)
    broken = ledger_module.MIGRATIONS + [(SCHEMA_VERSION + 1, "CREATE TABLE extra (x INTEGER);\nSELECT no_such_function();")]
    monkeypatch.setattr(ledger_module, "MIGRATIONS", broken)
    monkeypatch.setattr(ledger_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(LedgerError):
        prepare(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("SELECT COUNT(*) FROM sqlite_schema WHERE name = 'extra'").fetchone()[0] == 0


async def test_attempt_lifecycle_moves_job_state(tmp_path):
    path = tmp_path / "ledger.db"
    ledger = await Ledger.open(path, STUDY.views)
    try:
        run_id = await ledger.begin_run("h", "u", 1, ["runner"], "0", None, [])
        rows = await ledger.sync_jobs([job()], run_id)
        row = rows["dose_1000/dense/train"]
        job_id = row.job_id
        assert row.state is JobState.PENDING and row.success_fingerprint is None
        logs = lambda n: (tmp_path / f"{n}.out", tmp_path / f"{n}.err")
        attempt = await ledger.start_attempt(start(job_id, run_id, job(), "t1", ["a"]), logs)
        assert attempt.number == 1 and attempt.stdout_log == tmp_path / "1.out"
        await ledger.finish_attempt(attempt.attempt_id, job_id, Outcome(True, exit_code=0), 1.5)
        row = (await ledger.sync_jobs([job()], run_id))["dose_1000/dense/train"]
        assert (row.state, row.success_fingerprint) == (JobState.SUCCEEDED, "f1")
    finally:
        await ledger.close()
    grid = connect_reader(path).execute("SELECT * FROM condition_grid").fetchone()
    assert (grid["state"], grid["latest_attempt"], grid["selection_strategy"]) == ("succeeded", 1, "greedy")


async def test_a_new_success_supersedes_the_old_one(tmp_path):
    path = tmp_path / "ledger.db"
    ledger = await Ledger.open(path)
    try:
        run_id = await ledger.begin_run("h", "u", 1, [], "0", None, [])
        job_id = (await ledger.sync_jobs([job()], run_id))["dose_1000/dense/train"].job_id
        logs = lambda n: (tmp_path / f"{n}.out", tmp_path / f"{n}.err")
        for token in ("t1", "t2"):
            attempt = await ledger.start_attempt(start(job_id, run_id, job(), token), logs)
            await ledger.finish_attempt(attempt.attempt_id, job_id, Outcome(True, exit_code=0), 1.0)
    finally:
        await ledger.close()
    states = [r[0] for r in sqlite3.connect(path).execute("SELECT state FROM attempts ORDER BY number")]
    assert states == ["superseded", "succeeded"]


def test_schema_refuses_two_successes_and_backward_moves(tmp_path):
    path = tmp_path / "ledger.db"
    prepare(path)
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO runs (run_id, started_at, host, user, pid, argv, runner_version) "
                 "VALUES (1, 'now', 'h', 'u', 1, '[]', '0')")
    conn.execute("INSERT INTO jobs (job_id, key, plan_order, argv, cwd, output_dir, fingerprint, state, updated_at) "
                 "VALUES (1, 'k', 0, '[]', '/', '/', 'f', 'pending', 'now')")
    insert = ("INSERT INTO attempts (job_id, run_id, number, state, token, argv, fingerprint, started_at, "
              "stdout_log, stderr_log) VALUES (1, 1, ?, ?, ?, '[]', 'f', 'now', 'o', 'e')")
    conn.execute(insert, (1, "succeeded", "a"))
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(insert, (2, "succeeded", "b"))
    with pytest.raises(sqlite3.IntegrityError, match="only move forward"):
        conn.execute("UPDATE attempts SET state = 'running' WHERE number = 1")


async def test_reader_sees_committed_rows_while_the_writer_is_open(tmp_path):
    path = tmp_path / "ledger.db"
    ledger = await Ledger.open(path)
    try:
        run_id = await ledger.begin_run("h", "u", 1, [], "0", None, [])
        await ledger.sync_jobs([job("a"), job("b")], run_id)
        reader = connect_reader(path)
        assert [r["key"] for r in reader.execute("SELECT key FROM jobs ORDER BY plan_order")] == ["a", "b"]
        with pytest.raises(sqlite3.OperationalError):
            reader.execute("DELETE FROM jobs")  # read-only connection
        reader.close()
    finally:
        await ledger.close()


async def test_failure_rolls_back_the_whole_transaction(tmp_path):
    path = tmp_path / "ledger.db"
    ledger = await Ledger.open(path)
    try:
        run_id = await ledger.begin_run("h", "u", 1, [], "0", None, [])
        duplicate = [job("same"), job("other"), job("same")]
        await ledger.sync_jobs(duplicate, run_id)  # upsert: the second 'same' updates the first
        bad = job("x")
        object.__setattr__(bad, "fingerprint", object())  # not bindable: it fails inside the transaction
        with pytest.raises(Exception):
            await ledger.sync_jobs([job("y"), bad], run_id)
        count = connect_reader(path).execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
        assert count == 2  # 'y' was rolled back with the failing row
        await ledger.end_run(run_id, "completed")  # the writer is usable: no transaction was left open
    finally:
        await ledger.close()


def test_example_ledger_has_the_schema_the_migrations_build(tmp_path):
    """ledger.db.example (regenerated by scripts/make_example_ledger.py) never drifts from migrations."""
    fresh = tmp_path / "fresh.db"
    prepare(fresh, STUDY.views)  # a run installs its study's views
    schema = "SELECT type, name, sql FROM sqlite_schema ORDER BY name"
    example = Path(__file__).resolve().parent.parent / "ledger.db.example"
    assert [tuple(r) for r in connect_reader(example).execute(schema)] == sqlite3.connect(fresh).execute(schema).fetchall()


async def test_concurrent_events_share_commits_and_each_stays_all_or_nothing(tmp_path):
    import asyncio
    path = tmp_path / "ledger.db"
    ledger = await Ledger.open(path)
    try:
        run_id = await ledger.begin_run("h", "u", 1, [], "0", None, [])
        jobs = [job(f"k{i}") for i in range(50)]
        rows = await ledger.sync_jobs(jobs, run_id)
        logs = lambda n: (tmp_path / f"{n}.out", tmp_path / f"{n}.err")
        before = ledger.commits
        started = await asyncio.gather(*(ledger.start_attempt(start(rows[j.key].job_id, run_id, j, f"t{i}"), logs)
                                         for i, j in enumerate(jobs)))
        assert ledger.commits - before < len(jobs)  # events queued together were committed together
        bad = job("bad")
        object.__setattr__(bad, "fingerprint", object())  # not bindable: it fails inside the transaction
        good = ledger.finish_attempt(started[0].attempt_id, rows["k0"].job_id, Outcome(True, exit_code=0), 1.0)
        failing = ledger.sync_jobs([bad], run_id)
        results = await asyncio.gather(good, failing, return_exceptions=True)
        assert results[0] is None and isinstance(results[1], Exception)
    finally:
        await ledger.close()
    reader = connect_reader(path)
    assert reader.execute("SELECT state FROM attempts WHERE token = 't0'").fetchone()[0] == "succeeded"
    assert reader.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] == 50
    assert reader.execute("SELECT COUNT(*) FROM jobs WHERE key = 'bad'").fetchone()[0] == 0


@pytest.mark.parametrize("query, index", [
    ("run_results", "attempts_by_job_run"),
    ("status_jobs", "jobs_by_plan_order"),
    ("planned_jobs", "jobs_by_run"),
])
def test_the_queries_that_grow_with_the_study_use_an_index(tmp_path, query, index):
    path = tmp_path / "ledger.db"
    prepare(path)
    plan = [row[3] for row in sqlite3.connect(path).execute("EXPLAIN QUERY PLAN " + ledger_module.QUERIES[query],
                                                              {"run_id": 1, "root": None})]
    assert any(index in step for step in plan), plan
    assert not any(step.startswith("SCAN a") or step.startswith("SCAN m") for step in plan), plan


async def test_an_attempt_never_reuses_logs_left_by_a_start_the_ledger_lost(tmp_path):
    path = tmp_path / "ledger.db"
    (tmp_path / "1.err").write_text("an attempt whose start row a power loss took")
    ledger = await Ledger.open(path)
    try:
        run_id = await ledger.begin_run("h", "u", 1, [], "0", None, [])
        job_id = (await ledger.sync_jobs([job()], run_id))["dose_1000/dense/train"].job_id
        logs = lambda n: (tmp_path / f"{n}.out", tmp_path / f"{n}.err")
        attempt = await ledger.start_attempt(start(job_id, run_id, job(), "t"), logs)
    finally:
        await ledger.close()
    assert (attempt.number, attempt.stdout_log, attempt.stderr_log) == (2, tmp_path / "2.out", tmp_path / "2.err")
