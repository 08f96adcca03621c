"""Resuming a study: clean up what a dead runner left running, then choose what to run again.

A succeeded job is skipped when its input fingerprint is unchanged and the files it made are
still there; failed, interrupted and changed jobs run again; --force reruns everything,
--only-failed only failed and interrupted ones. A job runs again whenever a job it needs runs
(its inputs will change), and is blocked when a job it needs is blocked.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from runner.config import ConfigError
from runner.executors import Executor, Handle
from runner.jobs import Attempt, Job, JobState, OutputsCheck
from runner.ledger import Ledger
from runner.results import Ending, Facts, judge


@dataclass(frozen=True)
class Selection:
    to_run: list[tuple[Job, int]]  # (job, job_id)
    skipped: list[Job]
    blocked: list[Job]


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


async def select(ledger: Ledger, jobs: list[Job], rows: dict[str, tuple[int, JobState, str | None]],
                 force: bool, only_failed: bool, following: frozenset[str] = frozenset()) -> Selection:
    """`following`: keys of jobs whose attempt still runs on the cluster (never launched twice)."""
    to_run, skipped, blocked = [], [], []
    changes: list[tuple[int, JobState, str | None]] = []  # recorded together, in one event
    will_run = set(following)  # keys whose outputs this run (re)makes
    behind_blocked: dict[str, str] = {}  # per blocked job key, the reason the jobs needing it get
    for job in jobs:  # in the plan's order, where every job comes after what it needs
        if job.key in following:
            continue
        job_id, state, success_fingerprint = rows[job.key]
        need = next((n for n in job.needs if n in behind_blocked), None)
        if job.blocked_reason or need:
            reason = job.blocked_reason or behind_blocked[need]
            # Behind a job blocked by its own input, the reason names it; further on, the same.
            behind_blocked[job.key] = behind_blocked[need] if need and not job.blocked_reason \
                else f"needs {job.key}, which is blocked ({reason})"
            changes.append((job_id, JobState.BLOCKED, reason))
            blocked.append(replace(job, blocked_reason=reason))
            continue
        if force or any(n in will_run for n in job.needs):
            run = True
        elif only_failed:
            run = state in (JobState.FAILED, JobState.INTERRUPTED)
        else:
            run = success_fingerprint != job.fingerprint or _outputs_gone(job)
        if run:
            will_run.add(job.key)
            if state is not JobState.PENDING:
                changes.append((job_id, JobState.PENDING, None))
            to_run.append((job, job_id))
        else:
            if success_fingerprint and state is not JobState.SUCCEEDED:
                # Its success still stands, e.g. after a forced rerun of it was interrupted.
                changes.append((job_id, JobState.SUCCEEDED, None))
            skipped.append(job)
    await ledger.set_job_states(changes)
    return Selection(to_run, skipped, blocked)


def _outputs_gone(job: Job) -> bool:
    """A success whose files (a model, a reconstruction) were removed since stands for nothing."""
    return isinstance(job.check, OutputsCheck) and not all(f.is_file() for f in job.check.files)
