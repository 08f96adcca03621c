"""`runner status`: where a study stands, read from the ledger by a read-only connection
(so it works while a run is writing)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from runner.ledger import QUERIES, LedgerError, connect_reader


def _read(ledger: Path, jobs_query: str) -> tuple[object, dict | None, dict[str, int]]:
    """Jobs (as `jobs_query` returns them), the latest run and the totals by state, from one
    consistent snapshot of the ledger."""
    conn = connect_reader(ledger)
    try:
        conn.row_factory = None  # plain tuples: sqlite3.Row costs more than the query at 10,000 jobs
        conn.execute("BEGIN")
        cursor = conn.execute(QUERIES[jobs_query])
        columns = [d[0] for d in cursor.description]
        jobs = cursor.fetchall()
        if jobs_query == "status_jobs":
            jobs = [dict(zip(columns, row)) for row in jobs]
        cursor = conn.execute(QUERIES["latest_run"])
        run = cursor.fetchone()
        run = dict(zip([d[0] for d in cursor.description], run)) if run else None
        totals = dict(conn.execute(QUERIES["job_totals"]).fetchall())
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot read ledger {ledger}: {exc}") from None
    finally:
        conn.close()
    return jobs, run, totals


def snapshot(ledger: Path) -> dict:
    jobs, run, totals = _read(ledger, "status_jobs")
    running = [job for job in jobs if job["state"] == "running" and job["started_at"]]
    if running:
        from datetime import datetime, timezone

        now = datetime.now(timezone.utc)
        for job in running:
            job["duration_s"] = round((now - datetime.fromisoformat(job["started_at"])).total_seconds(), 1)
    return {"ledger": str(ledger), "run": run, "jobs": jobs, "totals": totals}


def as_json(ledger: Path) -> str:
    """The snapshot as JSON (one line), the job list encoded by SQLite."""
    ((jobs,),), run, totals = _read(ledger, "status_jobs_json")
    return (f'{{"ledger": {json.dumps(str(ledger))}, "run": {json.dumps(run)}, "jobs": {jobs}, '
            f'"totals": {json.dumps(totals)}}}')


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


def render(snap: dict) -> str:
    run = snap["run"]
    lines = []
    if run:
        ended = f"ended {run['ended_at']} ({run['outcome']})" if run["ended_at"] else \
            ("crashed" if run["outcome"] == "crashed" else "in progress")
        lines.append(f"ledger {snap['ledger']}: run {run['run_id']} on {run['host']} "
                     f"started {run['started_at']}, {ended}")
    header = f"{'condition':<26} {'state':<11} {'try':>3} {'device':<8} {'time':>8}  {'exit/class':<14} log"
    lines.append(header)
    for job in snap["jobs"]:
        if job["state"] == "blocked":
            outcome, log = "blocked", job["detail"]
        else:
            outcome = job["failure_class"] or ("" if job["exit_code"] is None else f"exit {job['exit_code']}")
            log = job["stderr_log"] or ""
        device = "-" if job["device"] is None else (job["device"] or "cpu")
        if job.get("backend") == "slurm":  # SLURM picked the GPU: show the node and the job
            device = job["slurm_node"] or "-"
            if job["state"] == "running":
                outcome = f"{job['slurm_state'] or 'submitted'} {job['slurm_job_id'] or ''}".strip()
        lines.append(f"{job['key']:<26} {job['state']:<11} {job['latest_attempt'] or '-':>3} "
                     f"{device:<8} {_duration(job['duration_s']):>8}  {outcome:<14} {log}")
    totals = ", ".join(f"{n} {state}" for state, n in sorted(snap["totals"].items()))
    lines.append(f"{len(snap['jobs'])} jobs: {totals or 'none planned'}")
    return "\n".join(lines)
