"""Resuming a study: clean up what a dead runner left running, then choose what to run again.

A succeeded job is skipped when its input fingerprint is unchanged; failed, interrupted and
changed jobs run again; --force reruns everything, --only-failed only failed and interrupted ones.
"""

from __future__ import annotations

import dataclasses
import signal
from dataclasses import dataclass

from runner.config import ConfigError
from runner.executors.local import pids_with_token, process_start, signal_group, stop_pids
from runner.executors.slurm import ClusterUnavailable
from runner.jobs import FailureClass, Job, JobState, Outcome, RunningAttempt
from runner.ledger import Ledger


@dataclass(frozen=True)
class Selection:
    to_run: list[tuple[Job, int]]  # (job, job_id)
    skipped: list[Job]
    blocked: list[Job]


async def reconcile(ledger: Ledger, grace: float, executor=None) -> tuple[list[str], list[RunningAttempt]]:
    """Local attempts left `running` by a runner that died become interrupted and their processes
    die. SLURM attempts are not ours to kill: they are returned to be re-attached."""
    notes: list[str] = []
    reattach: list[RunningAttempt] = []
    left = await ledger.running_attempts()
    on_slurm = [a for a in left if a.backend == "slurm"]
    if on_slurm and getattr(executor, "name", None) != "slurm":
        ids = ", ".join(a.slurm_job_id or "?" for a in on_slurm)
        raise ConfigError(f"{len(on_slurm)} attempts of this ledger may still run on SLURM (job ids {ids}); "
                          "rerun with --backend slurm to re-attach to them, or scancel them first")
    for attempt in on_slurm:
        if attempt.slurm_job_id is None:  # the runner died while submitting: did sbatch succeed?
            try:
                handle = await executor.find(attempt.token)
            except ClusterUnavailable as exc:
                raise ClusterUnavailable(f"cannot tell whether {attempt.job_key} reached SLURM ({exc}); "
                                         "run again when the cluster answers") from None
            if handle is None:
                await ledger.finish_attempt(attempt.attempt_id, attempt.job_id, Outcome(
                    False, failure_class=FailureClass.INTERRUPTED,
                    detail="the runner died while submitting this attempt; SLURM has no such job"), None)
                notes.append(f"{attempt.job_key}: attempt never reached SLURM; now interrupted")
                continue
            await ledger.record_launch(attempt.attempt_id, handle.ledger_fields())
            attempt = dataclasses.replace(attempt, slurm_job_id=handle.job_id)
        reattach.append(attempt)
    for attempt in left:
        if attempt.backend == "slurm":
            continue
        # The group is ours only if its leader is the very process we started (pid and start time).
        leader_ours = bool(attempt.pid and attempt.pgid and attempt.process_start
                           and process_start(attempt.pid) == attempt.process_start)
        if leader_ours:
            signal_group(attempt.pgid, signal.SIGTERM)
        # Every process of the attempt carries its token, even one that left the group or whose
        # pid was never recorded.
        stray = pids_with_token(attempt.token)
        await stop_pids(stray, grace)
        if leader_ours:
            signal_group(attempt.pgid, signal.SIGKILL)
        killed = leader_ours or bool(stray)
        detail = ("the runner died while this attempt ran; its leftover processes were killed"
                  if killed else "the runner died while this attempt ran; no process was left")
        await ledger.finish_attempt(attempt.attempt_id, attempt.job_id,
                                    Outcome(False, failure_class=FailureClass.INTERRUPTED, detail=detail),
                                    None)
        notes.append(f"{attempt.job_key}: attempt left running by an earlier runner is now interrupted"
                     + (" (its processes were killed)" if killed else ""))
    return notes, reattach


async def select(ledger: Ledger, jobs: list[Job], rows: dict[str, tuple[int, JobState, str | None]],
                 force: bool, only_failed: bool, following: frozenset[str] = frozenset()) -> Selection:
    """`following`: keys of jobs whose attempt still runs on the cluster (never launched twice)."""
    to_run, skipped, blocked = [], [], []
    changes: list[tuple[int, JobState, str | None]] = []  # recorded together, in one event
    for job in jobs:
        if job.key in following:
            continue
        job_id, state, success_fingerprint = rows[job.key]
        if job.blocked_reason:
            changes.append((job_id, JobState.BLOCKED, job.blocked_reason))
            blocked.append(job)
            continue
        if force:
            run = True
        elif only_failed:
            run = state in (JobState.FAILED, JobState.INTERRUPTED)
        else:
            run = success_fingerprint != job.fingerprint
        if run:
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
