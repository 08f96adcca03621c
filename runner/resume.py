"""Resuming a study: clean up what a dead runner left running, then choose what to run again.

A succeeded job is skipped when its fingerprint is unchanged and the files it made are still
there; failed, interrupted and changed jobs run again; --force reruns everything, --only-failed
only failed and interrupted ones. A job runs again whenever a job it needs runs (its inputs will
change), and is blocked when a job it needs is blocked.
"""

from __future__ import annotations

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


async def select(ledger: Ledger, jobs: list[Job], rows: dict[str, PlannedRow], force: bool,
                 only_failed: bool, following: frozenset[str] = frozenset()) -> Selection:
    """`jobs` in the plan's order, where every job comes after what it needs; `following`: keys of
    jobs whose attempt still runs on the cluster (never launched twice)."""
    # Blocked by a missing input of its own, in plan order; then every job behind one of them.
    own = {job.key: job.blocked_reason for job in jobs if job.blocked_reason and job.key not in following}
    blocked = dict(own)
    behind = graph.dependents(jobs)
    for key, reason in own.items():
        for waiting, why in graph.spread_block(key, f"is blocked ({reason})", behind,
                                               lambda k: k not in blocked and k not in following):
            blocked[waiting] = why
    to_run, skipped, held = [], [], []
    changes: list[tuple[int, JobState, str | None]] = []  # recorded together, in one event
    will_run = set(following)  # keys whose outputs this run (re)makes
    for job in jobs:
        if job.key in following:
            continue
        row = rows[job.key]
        if job.key in blocked:
            changes.append((row.job_id, JobState.BLOCKED, blocked[job.key]))
            held.append(replace(job, blocked_reason=blocked[job.key]))
            continue
        if force or any(n in will_run for n in job.needs):
            run = True
        elif only_failed:
            run = row.state in (JobState.FAILED, JobState.INTERRUPTED)
        else:
            run = row.success_fingerprint != job.fingerprint or _outputs_gone(job)
        if run:
            will_run.add(job.key)
            if row.state is not JobState.PENDING:
                changes.append((row.job_id, JobState.PENDING, None))
            to_run.append(ToRun(job, row.job_id))
        else:
            if row.success_fingerprint and row.state is not JobState.SUCCEEDED:
                # Its success still stands, e.g. after a forced rerun of it was interrupted.
                changes.append((row.job_id, JobState.SUCCEEDED, None))
            skipped.append(job)
    await ledger.set_job_states(changes)
    return Selection(to_run, skipped, held)


def _outputs_gone(job: Job) -> bool:
    """A success whose files were removed since stands for nothing."""
    return isinstance(job.check, OutputsCheck) and not all(f.is_file() for f in job.check.files)
