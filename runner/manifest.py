"""The reference Phase G files, so existing downstream scripts keep working:
`comparison_manifest.json` (plan and results) and the numbered `comparison_summary.txt`; and,
for a run of several phases, `job_graph.json`: every job with its phase, its needs and its state."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

from runner.jobs import Job


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


def _relative(path: str | None, root: str) -> str | None:
    if not path:
        return None
    return path[len(root):] if path.startswith(root) else path


def write_plan(artifact_root: Path, jobs: list[Job], plan: dict | None = None) -> tuple[Path, Path]:
    """The dry-run files: the manifest without results and a numbered list of commands.
    `plan` holds the reference's `filters` and per-job inputs (`jobs`), merged in when given."""
    plan = plan or {}
    inputs = plan.get("jobs") or [{} for _ in jobs]
    manifest = {"n_jobs": len(jobs), "n_executed": 0, "n_success": 0, "n_failed": 0, "dry_run": True,
                **{k: v for k, v in plan.items() if k != "jobs"},
                "jobs": [{**job.condition, **fields, "command": list(job.argv), "blocked": job.blocked_reason}
                         for job, fields in zip(jobs, inputs)],
                "execution_results": []}
    lines = [f"Comparison plan: {len(jobs)} jobs"]
    for number, job in enumerate(jobs, 1):
        lines.append(f"{number:3d}. {job.key}" + (f"  [blocked: {job.blocked_reason}]" if job.blocked_reason else ""))
        lines.append(f"     {shlex.join(job.argv)}")
    manifest_path = artifact_root / "comparison_manifest.json"
    summary_path = artifact_root / "comparison_summary.txt"
    write_atomic(manifest_path, json.dumps(manifest, indent=2) + "\n")
    write_atomic(summary_path, "\n".join(lines) + "\n")
    return manifest_path, summary_path


def write_graph(artifact_root: Path, jobs: list[Job], results: list[dict] | None = None) -> Path:
    """job_graph.json: the jobs in the order given (a dry run's launch order, a run's plan), each
    with its phase, condition, the jobs it needs, its command and, after a run, its state."""
    states = {r["key"]: r for r in results or ()}
    entries = []
    for job in jobs:
        result = states.get(job.key, {})
        entries.append({"key": job.key, "phase": job.phase, **job.condition, "needs": list(job.needs),
                        "command": list(job.argv),
                        "state": result.get("state", "planned" if results is None else None),
                        "blocked": result.get("blocked_reason", job.blocked_reason),
                        "log": result.get("stdout_log")})
    path = artifact_root / "job_graph.json"
    write_atomic(path, json.dumps({"n_jobs": len(jobs), "dry_run": results is None, "jobs": entries}, indent=2) + "\n")
    return path


NOT_A_SUCCESS = -1  # the reference's return code for a job that failed without an exit status of its own


def returncode_and_error(result: dict) -> tuple[int, str | None]:
    """The entry's `returncode` (0 exactly when the job's standing result is a success) and, for
    any other job, an `error` saying why: a blocked job names its missing input."""
    if result["state"] == "succeeded":
        return 0, None
    code = -result["signal"] if result["signal"] else result["exit_code"]
    if not code:  # exit 0 without metrics, never started, blocked, interrupted before it ended
        code = NOT_A_SUCCESS
    if result["state"] == "blocked":
        return code, f"blocked: {result['blocked_reason']}"
    if result["failure_class"]:
        detail = result["failure_detail"]
        return code, result["failure_class"] + (f": {detail}" if detail else "")
    return code, "not run" if result["state"] == "pending" else result["state"]


def write_results(artifact_root: Path, results: list[dict], plan: dict | None = None) -> Path:
    """The manifest of a run: every planned job with its attempt of this run, else its standing
    result. The counts describe the study as it stands, so a resumed run with nothing left to do
    still reports every success: n_success + n_failed = n_jobs; n_executed = run by this run."""
    entries = []
    root = str(artifact_root).rstrip("/") + "/"
    for r in results:
        returncode, error = returncode_and_error(r)
        entry = {"dose": r["dose"], "view": r["view"], "split": r["split"],
                 "returncode": returncode, "log_path": _relative(r["stdout_log"], root),
                 "state": r["state"],
                 "failure_class": "blocked" if r["state"] == "blocked" else r["failure_class"],
                 "executed": bool(r["executed"])}
        if error is not None:
            entry["error"] = error
        entries.append(entry)
    n_success = sum(e["returncode"] == 0 for e in entries)
    manifest = {"n_jobs": len(results), "n_executed": sum(e["executed"] for e in entries),
                "n_success": n_success, "n_failed": len(entries) - n_success,
                **(plan or {}), "execution_results": entries}
    path = artifact_root / "comparison_manifest.json"
    write_atomic(path, json.dumps(manifest, indent=2) + "\n")
    return path
