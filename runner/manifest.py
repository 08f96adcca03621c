"""The reference Phase G files, so existing downstream scripts keep working:
`comparison_manifest.json` (plan and results) and the numbered `comparison_summary.txt`."""

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


def write_plan(artifact_root: Path, jobs: list[Job]) -> tuple[Path, Path]:
    """The dry-run files: the manifest without results and a numbered list of commands."""
    manifest = {"n_jobs": len(jobs), "n_executed": 0, "n_success": 0, "n_failed": 0, "dry_run": True,
                "jobs": [{**job.condition, "command": list(job.argv), "blocked": job.blocked_reason}
                         for job in jobs],
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


def write_results(artifact_root: Path, results: list[dict]) -> Path:
    """The manifest of a run: every planned job with the return code of its attempt this run."""
    executed = [r for r in results if r["executed"]]
    success = [r for r in executed if r["state"] == "succeeded"]
    entries = []
    root = str(artifact_root).rstrip("/") + "/"
    for r in results:
        returncode = r["exit_code"] if not r["signal"] else -r["signal"]
        entries.append({"dose": r["dose"], "view": r["view"], "split": r["split"],
                        "returncode": returncode, "log_path": _relative(r["stdout_log"], root),
                        "state": r["state"], "failure_class": r["failure_class"],
                        "executed": bool(r["executed"])})
    manifest = {"n_jobs": len(results), "n_executed": len(executed), "n_success": len(success),
                "n_failed": len(executed) - len(success), "execution_results": entries}
    path = artifact_root / "comparison_manifest.json"
    write_atomic(path, json.dumps(manifest, indent=2) + "\n")
    return path
