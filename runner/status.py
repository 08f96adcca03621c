"""`runner status`: where a study stands, read from the ledger by a read-only connection
(so it works while a run is writing)."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from runner.ledger import QUERIES, LedgerError, connect_reader


def snapshot(ledger: Path) -> dict:
    conn = connect_reader(ledger)
    try:
        conn.execute("BEGIN")  # one consistent snapshot for jobs and run
        jobs = [dict(r) for r in conn.execute(QUERIES["status_jobs"])]
        run = conn.execute(QUERIES["latest_run"]).fetchone()
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot read ledger {ledger}: {exc}") from None
    finally:
        conn.close()
    now = datetime.now(timezone.utc)
    for job in jobs:
        if job["state"] == "running" and job["started_at"]:
            job["duration_s"] = round((now - datetime.fromisoformat(job["started_at"])).total_seconds(), 1)
    return {"ledger": str(ledger), "run": dict(run) if run else None, "jobs": jobs,
            "totals": dict(Counter(j["state"] for j in jobs))}


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


def as_json(snap: dict) -> str:
    return json.dumps(snap, indent=2)
