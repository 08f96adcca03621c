"""`runner status`: where a study stands, read from the ledger by a read-only connection
(so it works while a run is writing)."""

from __future__ import annotations

import json
from pathlib import Path

from runner.ledger import QUERIES, read_snapshot, study_root


def _read(ledger: Path, jobs_query: str) -> tuple[list[tuple], list[str], dict | None, dict[str, int], dict[str, str]]:
    """Jobs (rows of `jobs_query` and their column names), the latest run, the totals by state
    and the headings of the kinds of job, from one consistent snapshot of the ledger."""
    def read(conn):
        conn.row_factory = None  # plain tuples: sqlite3.Row costs more than the query at 10,000 jobs
        cursor = conn.execute(QUERIES[jobs_query], {"root": study_root(conn, ledger)})
        columns = [d[0] for d in cursor.description]
        jobs = cursor.fetchall()
        cursor = conn.execute(QUERIES["latest_run"])
        run = cursor.fetchone()
        run = dict(zip([d[0] for d in cursor.description], run)) if run else None
        totals = dict(conn.execute(QUERIES["job_totals"]).fetchall())
        titles = dict(conn.execute(QUERIES["kind_titles"]).fetchall())
        return jobs, columns, run, totals, titles
    return read_snapshot(ledger, read)


def _time_so_far(started_at: str | None) -> float | None:
    if not started_at:
        return None
    from datetime import datetime, timezone  # only when something runs

    return round((datetime.now(timezone.utc) - datetime.fromisoformat(started_at)).total_seconds(), 1)


def as_json(ledger: Path) -> str:
    """Where the study stands, as JSON (one line), the job list encoded by SQLite."""
    ((jobs,),), _, run, totals, _ = _read(ledger, "status_jobs_json")
    return (f'{{"ledger": {json.dumps(str(ledger))}, "run": {json.dumps(run)}, "jobs": {jobs}, '
            f'"totals": {json.dumps(totals)}}}')


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


def text(ledger: Path) -> str:
    """The table `runner status` prints. Rows stay tuples: at 10,000 jobs, making a dict of each
    would cost as much as formatting it."""
    rows, columns, run, totals, titles = _read(ledger, "status_jobs")
    lines = []
    if run:
        ended = f"ended {run['ended_at']} ({run['outcome']})" if run["ended_at"] else \
            ("crashed" if run["outcome"] == "crashed" else "in progress")
        lines.append(f"ledger {ledger}: run {run['run_id']} on {run['host']} "
                     f"started {run['started_at']}, {ended}")
    lines.append(f"{'condition':<26} {'state':<11} {'try':>3} {'device':<8} {'time':>8}  {'exit/class':<14} log")
    (key, kind, state, attempt, device_, started, duration, exit_code, failure, detail, stderr_log, backend,
     slurm_job, slurm_node, slurm_state, resume_step) = map(columns.index, (
        "key", "kind", "state", "latest_attempt", "device", "started_at", "duration_s", "exit_code",
        "failure_class", "detail", "stderr_log", "backend", "slurm_job_id", "slurm_node", "slurm_state",
        "resume_step"))
    by_kind: dict[str, dict[str, int]] = {}
    for job in rows:
        counted = by_kind.setdefault(job[kind], {})
        counted[job[state]] = counted.get(job[state], 0) + 1
    grouped = len(by_kind) > 1  # a ledger of several kinds of job: a heading per kind
    shown = None
    for job in rows:
        if grouped and job[kind] != shown:
            shown = job[kind]
            counts = ", ".join(f"{n} {s}" for s, n in sorted(by_kind[shown].items()))
            lines.append(f"-- {titles.get(shown) or shown} ({counts})")
        if job[state] == "blocked":
            outcome, log = "blocked", job[detail]
        else:
            outcome = job[failure] or ("" if job[exit_code] is None else f"exit {job[exit_code]}")
            if job[resume_step] and job[state] != "running":  # saved work the next attempt continues
                outcome = f"{outcome}, resumes at step {job[resume_step]}".lstrip(", ")
            log = job[stderr_log] or ""
        device = "-" if job[device_] is None else (job[device_] or "cpu")
        if job[backend] == "slurm":  # SLURM picked the GPU: show the node and the job
            device = job[slurm_node] or "-"
            if job[state] == "running":
                outcome = f"{job[slurm_state] or 'submitted'} {job[slurm_job] or ''}".strip()
        seconds = _time_so_far(job[started]) if job[state] == "running" else job[duration]
        lines.append(f"{job[key]:<26} {job[state]:<11} {job[attempt] or '-':>3} "
                     f"{device:<8} {_duration(seconds):>8}  {outcome:<14} {log}")
    counts = ", ".join(f"{n} {s}" for s, n in sorted(totals.items()))
    lines.append(f"{len(rows)} jobs: {counts or 'none planned'}")
    return "\n".join(lines)
