"""The study's manifests, as PtychoPINN's phases write them, so its tools keep working:

    analysis/comparison_manifest.json   the comparisons planned, and after a run their results (§6-7)
    analysis/comparison_summary.txt     a dry run's numbered list of commands
    phase_f/reconstruction_manifest.json  the reconstructions with their outcome, cost and Phase D metadata (§3)
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any

from runner.commands import flag_value
from runner.files import write_atomic
from runner.jobs import Job
from runner.ptycho import layout as files
from runner.ptycho.settings import StudySettings

CONDITION = ("dose", "view", "split")
NOT_A_SUCCESS = -1  # the reference's return code for a job that failed without an exit status of its own


REPLICATE = ("seed", "train_size")  # a comparison's replicate: extra fields beside the reference's


def condition(labels: dict[str, Any]) -> dict[str, Any]:
    return {name: labels.get(name) for name in CONDITION}


def comparison_fields(labels: dict[str, Any]) -> dict[str, Any]:
    return {name: labels.get(name) for name in (*CONDITION, *REPLICATE)}


def _filter(given: tuple) -> object:
    """A run filter as the reference wrote it: null when none was given, the value when one was,
    the list when several were."""
    if not given:
        return None
    return given[0] if len(given) == 1 else list(given)


def comparison_inputs(settings: StudySettings, job: Job) -> dict[str, Any]:
    """One comparison as the reference Phase G listed it (STUDY.md §6), from the command it runs:
    `phase_c_npz` is the test data, the checkpoints are the model folders, and `phase_f_manifest`
    is the legacy per-split Phase F manifest when the study has one, else the reconstruction NPZ
    itself (`tike_recon_path` always names the NPZ)."""
    labels = job.labels
    legacy = settings.layout.legacy_manifest(labels["dose"], labels["view"], labels["split"])
    reconstruction = flag_value(job.argv, "--tike_recon_path")
    sigma = flag_value(job.argv, "--ms-ssim-sigma")
    try:
        sigma_value: float | str | None = float(sigma) if sigma is not None else None
    except ValueError:
        sigma_value = sigma  # passed on as written; the compare script will refuse it
    return {"phase_c_npz": flag_value(job.argv, "--test_data"),
            "pinn_checkpoint": flag_value(job.argv, "--pinn_dir"),
            "baseline_checkpoint": flag_value(job.argv, "--baseline_dir"),
            "phase_f_manifest": legacy if os.path.isfile(legacy) else reconstruction,
            "tike_recon_path": reconstruction,
            "ms_ssim_sigma": sigma_value,
            "skip_registration": "--skip-registration" in job.argv,
            "register_ptychi_only": "--register-ptychi-only" in job.argv}


def plan_fields(settings: StudySettings, jobs: list[Job]) -> dict:
    """`filters`, `phase_c_root` and `jobs[]` (one per planned comparison, the reference's fields)."""
    return {"filters": {"dose": _filter(settings.doses), "view": _filter(settings.views),
                        "split": _filter(settings.splits)},
            "phase_c_root": str(settings.layout.phase_c),
            "jobs": [{**comparison_fields(job.labels), **comparison_inputs(settings, job)} for job in jobs]}


def write_plan(settings: StudySettings, jobs: list[Job], folder: Path) -> tuple[Path, Path]:
    """The dry-run files, in `folder`: the manifest without results and a numbered list of
    commands (PtychoPINN's dry run writes them; ours never over the run's own)."""
    plan = plan_fields(settings, jobs)
    manifest = {"n_jobs": len(jobs), "n_executed": 0, "n_success": 0, "n_failed": 0, "dry_run": True,
                **{k: v for k, v in plan.items() if k != "jobs"},
                "jobs": [{**fields, "command": list(job.argv), "blocked": job.blocked_reason}
                         for job, fields in zip(jobs, plan["jobs"])],
                "execution_results": []}
    lines = [f"Comparison plan: {len(jobs)} jobs"]
    for number, job in enumerate(jobs, 1):
        lines.append(f"{number:3d}. {job.key}" + (f"  [blocked: {job.blocked_reason}]" if job.blocked_reason else ""))
        lines.append(f"     {shlex.join(job.argv)}")
    manifest_path = folder / files.COMPARISON_MANIFEST
    summary_path = folder / files.COMPARISON_SUMMARY
    write_atomic(manifest_path, json.dumps(manifest, indent=2) + "\n")
    write_atomic(summary_path, "\n".join(lines) + "\n")
    return manifest_path, summary_path


def _relative(path: str | None, root: str) -> str | None:
    if not path:
        return None
    return path[len(root):] if path.startswith(root) else path


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


def write_results(settings: StudySettings, jobs: list[Job], results: list[dict]) -> Path:
    """The comparison manifest of a run: every planned comparison with its attempt of this run,
    else its standing result. The counts describe the study as it stands, so a resumed run with
    nothing left to do still reports every success: n_success + n_failed = n_jobs; n_executed =
    run by this run. `results`: the run's rows of the comparisons, in plan order."""
    entries = []
    root = str(settings.layout.artifacts).rstrip("/") + "/"
    for r in results:
        returncode, error = returncode_and_error(r)
        entry = {**comparison_fields(r["labels"]), "returncode": returncode, "log_path": _relative(r["stdout_log"], root),
                 "state": r["state"],
                 "failure_class": "blocked" if r["state"] == "blocked" else r["failure_class"],
                 "executed": bool(r["executed"])}
        if error is not None:
            entry["error"] = error
        entries.append(entry)
    n_success = sum(e["returncode"] == 0 for e in entries)
    manifest = {"n_jobs": len(results), "n_executed": sum(e["executed"] for e in entries),
                "n_success": n_success, "n_failed": len(entries) - n_success,
                **plan_fields(settings, jobs), "execution_results": entries}
    path = settings.layout.artifact(files.COMPARISON_MANIFEST)
    write_atomic(path, json.dumps(manifest, indent=2) + "\n")
    return path


def write_reconstruction_manifest(settings: StudySettings, jobs: list[Job], results: list[dict],
                                  numbers: dict[str, dict[str, float]]) -> Path | None:
    """phase_f/reconstruction_manifest.json as Phase F writes it: one entry per reconstruction of
    this plan (entries of conditions outside it are kept), with its outcome, time, final cost
    and Phase D metadata. `results`: the run's rows of the reconstructions; `numbers`: per key,
    its standing success's numbers. The one writer of this file."""
    planned = {job.key: job for job in jobs}
    if not planned:
        return None
    path = settings.layout.reconstruction_manifest
    try:
        earlier = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        earlier = {}
    entries = {}
    for entry in earlier.get("execution_results", []) if isinstance(earlier, dict) else []:
        if isinstance(entry, dict) and set(CONDITION) <= entry.keys():
            entries[(entry["dose"], entry["view"], entry["split"])] = entry
    algorithm = None
    for result in results:
        job = planned.get(result["key"])
        if job is None:
            continue
        found = numbers.get(job.key, {})
        succeeded = result["state"] == "succeeded"
        job_algorithm = flag_value(job.argv, "--algorithm") or "LSQML"
        algorithm = algorithm or job_algorithm
        key = tuple(job.labels[name] for name in CONDITION)
        phase_d = {name: value for name, value in job.labels.items() if name not in ("phase", *CONDITION)}
        entry = {**condition(job.labels),
                 "output_dir": os.path.relpath(job.check.files[0].parent, settings.layout.phase_f),
                 "status": "success" if succeeded else result["state"],
                 "returncode": 0 if succeeded else result["exit_code"],
                 "algorithm": job_algorithm,
                 "n_positions": phase_d.get("n_accepted"),
                 "computation_time_s": found.get("computation_time_s"), "final_cost": found.get("final_cost"),
                 **phase_d}
        if not succeeded:
            entry["error"] = result["failure_detail"] or result["blocked_reason"] or result["state"]
        entries[key] = entry
    manifest = {**(earlier if isinstance(earlier, dict) else {}), "algorithm": algorithm,
                "output_dirs_relative_to": "phase_f",
                "execution_results": [entries[k] for k in sorted(entries, key=lambda c: (float(c[0]), str(c[1]), str(c[2])))]}
    write_atomic(path, json.dumps(manifest, indent=2) + "\n")
    return path
