"""Resuming a study: clean up what a dead runner left running, then choose what to run again.

A succeeded job is skipped when its fingerprint is unchanged and the files it made are still
there; failed, interrupted and changed jobs run again; --force reruns everything, --only-failed
only failed and interrupted ones. A job runs again whenever a job it needs runs (its inputs will
change), and is blocked when a job it needs is blocked.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace

from runner import graph
from runner.config import ConfigError
from runner.executors import Executor, Handle
from runner.jobs import Attempt, Job, JobState, OutputsCheck, PlannedRow
from runner.ledger import Ledger
from runner.results import Ending, Facts, judge


@dataclass(frozen=True)
class ToRun:
    job: Job
    job_id: int


@dataclass(frozen=True)
class Selection:
    to_run: list[ToRun]
    skipped: list[Job]
    blocked: list[Job]  # each with the reason it is blocked


async def reconcile(ledger: Ledger, grace: float, executors: dict[str, Executor],
                    ) -> tuple[list[str], list[tuple[Attempt, Handle]]]:
    """Attempts a runner that died left `running`, each recovered by the executor of its backend
    (`executors`, by name): what is left of it is stopped and it becomes interrupted, or it is
    handed back to be followed (a SLURM job goes on without us)."""
    notes: list[str] = []
    follow: list[tuple[Attempt, Handle]] = []
    left = await ledger.running_attempts()
    for backend in sorted({a.backend for a in left} - set(executors)):
        theirs = [a for a in left if a.backend == backend]
        ids = ", ".join(a.slurm_job_id or "?" for a in theirs)
        raise ConfigError(f"{len(theirs)} attempts of this ledger may still run on {backend.upper()} (job ids {ids}); "
                          f"rerun with --backend {backend} to re-attach to them, or cancel them first")
    for attempt in left:
        recovered = await executors[attempt.backend].recover(attempt, grace)
        if recovered.handle is not None:
            if attempt.pid is None and attempt.slurm_job_id is None:  # found, never recorded
                await ledger.record_launch(attempt.attempt_id, recovered.handle.ledger_fields())
            follow.append((attempt, recovered.handle))
            continue
        outcome = judge(Facts(Ending.ORPHANED, detail=recovered.stopped))
        await ledger.finish_attempt(attempt.attempt_id, attempt.job_id, outcome, None)
        notes.append(f"{attempt.job_key}: {recovered.note}")
    return notes, follow


@dataclass(frozen=True)
class Choice:
    """What a run does with one job, and why (the words a dry run prints)."""

    job: Job  # blocked ones carry their reason
    action: str  # RUN, SKIP or BLOCK
    reason: str = ""


RUN, SKIP, BLOCK = "run", "skip", "block"


def choose(jobs: list[Job], rows: dict[str, PlannedRow], force: bool, only_failed: bool,
           following: frozenset[str] = frozenset(),
           legacy: Callable[[Job], str] | None = None) -> list[Choice]:
    """For each job of `jobs` (in the plan's order, every job after what it needs; `following`:
    keys of jobs whose attempt still runs on the cluster, left out) whether it runs, is skipped or
    blocked, and why. `rows`: what the ledger holds of each (a job without one is new). `legacy`
    gives a job's fingerprint as runners before the basis computed it: a success recorded by one
    stands when it matches (the caller stamps it anew)."""
    # Blocked by a missing input of its own, in plan order; then every job behind one of them.
    own = {job.key: job.blocked_reason for job in jobs if job.blocked_reason and job.key not in following}
    blocked = dict(own)
    behind = graph.dependents(jobs)
    for key, reason in own.items():
        for waiting, why in graph.spread_block(key, f"is blocked ({reason})", behind,
                                               lambda k: k not in blocked and k not in following):
            blocked[waiting] = why
    choices: list[Choice] = []
    will_run = set(following)  # keys whose outputs this run (re)makes
    for job in jobs:
        if job.key in following:
            continue
        if job.key in blocked:
            choices.append(Choice(replace(job, blocked_reason=blocked[job.key]), BLOCK, blocked[job.key]))
            continue
        reason = _why_run(job, rows.get(job.key), force, only_failed, will_run, legacy)
        if reason:
            will_run.add(job.key)
        choices.append(Choice(job, RUN if reason else SKIP, reason or ""))
    return choices


def _why_run(job: Job, row: PlannedRow | None, force: bool, only_failed: bool, will_run: set[str],
             legacy: Callable[[Job], str] | None) -> str | None:
    """Why the job must run, or None when its success stands."""
    if force:
        return "forced (--force)"
    new = row is None or (row.attempts == 0 and row.success_fingerprint is None)
    rerun = [need for need in job.needs if need in will_run]
    if rerun and not new:
        return f"a job it needs runs ({rerun[0]})" if len(rerun) == 1 else \
            f"jobs it needs run ({rerun[0]} and {len(rerun) - 1} more)"
    if new:
        return "new" if rerun or not only_failed else None
    if only_failed:
        return _failed_before(row) if row.state in (JobState.FAILED, JobState.INTERRUPTED) else None
    if row.success_fingerprint is None:
        return _failed_before(row)
    if row.success_fingerprint != job.fingerprint and not (legacy and row.success_basis is None
                                                           and legacy(job) == row.success_fingerprint):
        return changed(row.success_basis, job.basis)
    if _outputs_gone(job):
        return "its outputs were removed since its success"
    return None


def _failed_before(row: PlannedRow) -> str:
    if row.state is JobState.INTERRUPTED or row.failure_class == "interrupted":
        return "interrupted before"
    if row.failure_class:
        return f"failed before ({row.failure_class})"
    return "never succeeded"


def changed(before: str | None, now: str) -> str:
    """What differs between the basis of a job's success and its basis now, in a few words."""
    if before is None:
        return "its command, inputs or script changed since its success"
    try:
        old, new = json.loads(before), json.loads(now)
    except ValueError:
        return "its fingerprint changed"
    parts = []
    if old[:1] != new[:1]:
        return "its fingerprint changed"
    if old[1] != new[1]:
        parts.append("command changed")
    old_files = {path: rest for path, *rest in old[2]}
    new_files = {path: rest for path, *rest in new[2]}
    files = sorted(p for p in old_files.keys() | new_files.keys() if old_files.get(p) != new_files.get(p))
    if files:
        shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        parts.append(f"inputs changed: {shown}")
    if old[3:] != new[3:]:
        parts.append("script changed")
    return "; ".join(parts) or "its fingerprint changed"


async def select(ledger: Ledger, jobs: list[Job], rows: dict[str, PlannedRow], force: bool,
                 only_failed: bool, following: frozenset[str] = frozenset(),
                 legacy: Callable[[Job], str] | None = None) -> Selection:
    """The choices of `choose`, recorded: the jobs' states, and the successes of older runners
    stamped with today's fingerprint."""
    to_run, skipped, held = [], [], []
    changes: list[tuple[int, JobState, str | None]] = []  # recorded together, in one event
    stamps: list[tuple[int, str, str]] = []
    for choice in choose(jobs, rows, force, only_failed, following, legacy):
        job, row = choice.job, rows[choice.job.key]
        if choice.action == BLOCK:
            changes.append((row.job_id, JobState.BLOCKED, job.blocked_reason))
            held.append(job)
        elif choice.action == RUN:
            if row.state is not JobState.PENDING:
                changes.append((row.job_id, JobState.PENDING, None))
            to_run.append(ToRun(job, row.job_id))
        else:
            if row.success_fingerprint and row.success_fingerprint != job.fingerprint:
                stamps.append((row.job_id, job.fingerprint, job.basis))
            if row.success_fingerprint and row.state is not JobState.SUCCEEDED:
                # Its success still stands, e.g. after a forced rerun of it was interrupted.
                changes.append((row.job_id, JobState.SUCCEEDED, None))
            skipped.append(job)
    await ledger.restamp(stamps)
    await ledger.set_job_states(changes)
    return Selection(to_run, skipped, held)


def _outputs_gone(job: Job) -> bool:
    """A success whose files were removed since stands for nothing."""
    return isinstance(job.check, OutputsCheck) and not all(f.is_file() for f in job.check.files)
