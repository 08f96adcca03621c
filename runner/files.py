"""Files the engine writes: every file through `write_atomic`, and job_graph.json (the jobs of a
plan with what each needs, and after a run its state)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from runner.jobs import Job

JOB_GRAPH = "job_graph.json"
DRY_RUN = "dry_run"  # the folder of the artifact root a dry run writes its plan into


def write_atomic(path: Path, text: str) -> None:
    """Temp file + rename: a reader never sees half a file, a crash never leaves one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # e.g. the disk is full: leave no half-written file behind
        raise


def is_graph(jobs: list[Job]) -> bool:
    """Whether a plan is more than a flat list of jobs: several kinds, or jobs that need others."""
    return len({job.kind for job in jobs}) > 1 or any(job.needs for job in jobs)


def write_job_graph(folder: Path, jobs: list[Job], results: list[dict] | None = None,
                    choices: list | None = None) -> Path:
    """job_graph.json: the jobs in the order given (a dry run's launch order, a run's plan), each
    with its kind, its labels, the jobs it needs, its command and, after a run, its state; after
    a dry run (`choices`: resume.Choice) what a run would do with it and why."""
    states = {r["key"]: r for r in results or ()}
    would = {choice.job.key: choice for choice in choices or ()}
    entries = []
    for job in jobs:
        result = states.get(job.key, {})
        entry = {"key": job.key, **job.labels, "kind": job.kind, "needs": list(job.needs),
                 "command": list(job.argv),
                 "state": result.get("state", "planned" if results is None else None),
                 "blocked": result.get("blocked_reason", job.blocked_reason),
                 "log": result.get("stdout_log")}
        if job.key in would:
            entry.update({"would": would[job.key].action, "why": would[job.key].reason or None})
        entries.append(entry)
    path = folder / JOB_GRAPH
    write_atomic(path, json.dumps({"n_jobs": len(jobs), "dry_run": results is None, "jobs": entries}, indent=2) + "\n")
    return path
