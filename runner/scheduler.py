"""The asyncio loop that runs a list of jobs on a pool of slots.

It knows nothing of ptychography: it launches each job's argv on a free slot, pins it to the
slot's device, enforces the timeout, judges the outcome, retries what may be retried and records
every step in the ledger before it happens. A stop request (Ctrl-C, SIGTERM) stops launching,
terminates every running attempt's process group and records them as interrupted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from runner import faults
from runner.executors import Ended, LaunchError, LaunchSpec
from runner.executors.local import LocalExecutor
from runner.jobs import FailureClass, Job, Outcome
from runner.ledger import Ledger, RunningAttempt
from runner.results import classify_exit, disk_full_signal, no_space, read_metrics, split_status
from runner.slots import Device, Slot, SlotPool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Policy:
    timeout: float | None = None  # seconds per attempt
    grace: float = 10.0  # seconds between SIGTERM and SIGKILL
    retries: int = 0  # extra attempts per job and run after a retryable failure


@dataclass(frozen=True)
class Event:
    """What the scheduler tells the user interface."""

    kind: str  # 'started' | 'finished' | 'retrying' | 'reattached' | 'left'
    job: Job
    attempt: int
    slot: Slot
    outcome: Outcome | None = None
    duration_s: float | None = None
    stderr_log: str | None = None


def child_environment(job: Job, slot: Slot, token: str, threads: int) -> dict[str, str]:
    env = dict(os.environ)
    # Concurrent jobs share the CPU cores: without a cap each would start a thread per core and
    # OpenMP's spinning threads would slow every job down many times over.
    env.setdefault("OMP_NUM_THREADS", str(threads))
    env.update(dict(job.env))
    env.update({
        "CUDA_VISIBLE_DEVICES": slot.device.visible_id,  # '' hides every GPU from CPU jobs
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",  # indices match nvidia-smi's
        "PYTHONUNBUFFERED": "1",  # logs grow as the child writes
        "RUNNER_ATTEMPT_TOKEN": token,  # lets a later runner find strays of this attempt
    })
    return env


def log_paths(job: Job) -> Callable[[int], tuple]:
    folder = job.output_dir / "logs"
    return lambda n: (folder / f"attempt-{n}.stdout.log", folder / f"attempt-{n}.stderr.log")


class Scheduler:
    def __init__(self, ledger: Ledger, pool: SlotPool, run_id: int, policy: Policy,
                 on_event: Callable[[Event], None] = lambda e: None,
                 executor=None) -> None:  # LocalExecutor (default) or SlurmExecutor
        self.ledger, self.pool, self.run_id, self.policy = ledger, pool, run_id, policy
        self.executor = executor or LocalExecutor()
        self.on_event = on_event
        self.stop_signal: int | None = None
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.threads_per_job = max(1, cores // max(1, len(pool.slots)))
        self._stop = asyncio.Event()

    def request_stop(self, signum: int) -> None:
        """Called from a signal handler: stop launching and interrupt what runs."""
        if self.stop_signal is None:
            self.stop_signal = signum
        self._stop.set()

    async def run(self, work: list[tuple[Job, int]],
                  reattach: list[tuple[Job, RunningAttempt]] = ()) -> None:
        """Run `work`; first follow `reattach`: attempts an earlier runner left running on the
        cluster (they hold a seat if one is free, beyond the cap otherwise)."""
        # (job, job_id, retries used, argv of the next attempt)
        queue = deque((job, job_id, 0, job.argv) for job, job_id in work)
        running: dict[asyncio.Task, tuple[Job, int, int, tuple[str, ...], Slot]] = {}
        for job, attempt in reattach:
            slot = self.pool.take() if self.pool.has_free() else Slot("reattached", Device(""))
            task = asyncio.create_task(self._follow(job, attempt, slot))
            running[task] = (job, attempt.job_id, 0, attempt.argv, slot)
        stop_waiter = asyncio.create_task(self._stop.wait())
        try:
            while queue or running:
                while queue and self.pool.has_free() and not self._stop.is_set():
                    job, job_id, tries, argv = queue.popleft()
                    slot = self.pool.take()
                    task = asyncio.create_task(self._attempt(job, job_id, argv, slot))
                    running[task] = (job, job_id, tries, argv, slot)
                if not running:
                    break  # stopping with nothing left to wait for
                done, _ = await asyncio.wait({*running, stop_waiter}, return_when=asyncio.FIRST_COMPLETED)
                for task in done & running.keys():
                    job, job_id, tries, argv, slot = running.pop(task)
                    if slot in self.pool.slots:
                        self.pool.give_back(slot)
                    outcome = task.result()
                    if outcome is None or outcome.succeeded or self._stop.is_set():
                        continue
                    adapted = job.adapt_argv(argv, outcome.failure_class) if job.adapt_argv else None
                    if adapted is not None:
                        self.on_event(Event("retrying", job, tries, slot, outcome))
                        queue.append((job, job_id, tries, adapted))
                    elif self._should_retry(outcome, tries):
                        self.on_event(Event("retrying", job, tries + 1, slot, outcome))
                        queue.append((job, job_id, tries + 1, argv))
        except BaseException:
            # The ledger failed (or we are cancelled): stop every other attempt's processes and
            # wait for them; their rows stay `running` for the next run to reconcile.
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            raise
        finally:
            stop_waiter.cancel()

    def _should_retry(self, outcome: Outcome, tries: int) -> bool:
        if tries >= self.policy.retries:
            return False
        return outcome.failure_class is not None and outcome.failure_class.retryable

    async def _attempt(self, job: Job, job_id: int, argv: tuple[str, ...], slot: Slot) -> Outcome | None:
        token = uuid.uuid4().hex
        argv = list(argv)
        attempt_id, number, stdout_log, stderr_log = await self.ledger.start_attempt(
            job_id, self.run_id, job, argv, slot.name, self.executor.device_label(slot.device.visible_id),
            slot.device.uuid, token, log_paths(job), self.executor.name)
        faults.pause_point("attempt_row")
        self.on_event(Event("started", job, number, slot, stderr_log=str(stderr_log)))
        started = time.monotonic()
        launched_ns = time.time_ns()
        try:
            handle = await self.executor.launch(LaunchSpec(
                tuple(argv), job.cwd, child_environment(job, slot, token, self.threads_per_job),
                stdout_log, stderr_log, token))
        except LaunchError as exc:
            failure = FailureClass.DISK_FULL if exc.no_space else FailureClass.LAUNCH_ERROR
            outcome = Outcome(False, failure_class=failure, detail=str(exc))
        else:
            outcome = await self._follow_handle(job, handle, attempt_id, launched_ns, (stdout_log, stderr_log),
                                                record=True)
        return await self._finish(job, job_id, attempt_id, number, slot, outcome,
                                  round(time.monotonic() - started, 3), stderr_log)

    async def _follow(self, job: Job, attempt: RunningAttempt, slot: Slot) -> Outcome | None:
        """Wait for an attempt an earlier runner launched on the cluster."""
        self.on_event(Event("reattached", job, attempt.number, slot, stderr_log=str(attempt.stderr_log)))
        launched = datetime.fromisoformat(attempt.started_at)
        handle = self.executor.attach(attempt.slurm_job_id)
        outcome = await self._follow_handle(job, handle, attempt.attempt_id, int(launched.timestamp() * 1e9),
                                            (attempt.stdout_log, attempt.stderr_log), record=False)
        duration = round((datetime.now(timezone.utc) - launched).total_seconds(), 3)
        return await self._finish(job, attempt.job_id, attempt.attempt_id, attempt.number, slot,
                                  outcome, duration, attempt.stderr_log)

    async def _finish(self, job: Job, job_id: int, attempt_id: int, number: int, slot: Slot,
                      outcome: Outcome | None, duration: float | None, stderr_log) -> Outcome | None:
        if outcome is None:  # left running on the cluster for a later runner
            self.on_event(Event("left", job, number, slot, stderr_log=str(stderr_log)))
            return None
        faults.pause_point("exited")
        # Shielded: the result of a finished child is recorded even if we are being cancelled.
        await asyncio.shield(self.ledger.finish_attempt(attempt_id, job_id, outcome, duration))
        self.on_event(Event("finished", job, number, slot, outcome, duration, str(stderr_log)))
        return outcome

    async def _follow_handle(self, job: Job, handle, attempt_id: int, launched_ns: int,
                             logs: tuple[Path, Path], record: bool) -> Outcome | None:
        try:
            if record:  # what identifies it: its process, or its SLURM job id
                faults.pause_point("spawned")
                await self.ledger.record_launch(attempt_id, handle.ledger_fields())
            return await self._wait(job, handle, attempt_id, launched_ns, logs)
        except BaseException:
            # The runner is going down (an error or cancellation): take the child with it,
            # unless the executor was told to leave cluster jobs running.
            await asyncio.shield(self.executor.interrupt(handle, self.policy.grace))
            raise

    async def _wait(self, job: Job, handle, attempt_id: int, launched_ns: int,
                    logs: tuple[Path, Path]) -> Outcome | None:
        async def report(status) -> None:  # what the cluster says, recorded as it is seen
            await self.ledger.record_slurm_state(attempt_id, status.state, status.node, status.exit)

        exit_task = asyncio.create_task(self.executor.wait(handle, report))
        stop_task = asyncio.create_task(self._stop.wait())
        try:
            done, _ = await asyncio.wait({exit_task, stop_task}, timeout=self.policy.timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_task.cancel()
        if exit_task in done:
            ended = exit_task.result()
            if await self.executor.clean_up(handle, self.policy.grace):
                log.warning("%s: killed processes its command left running", job.key)
            return self._judge(job, ended, launched_ns, logs)
        exit_task.cancel()
        if self._stop.is_set():
            ended = await self.executor.interrupt(handle, self.policy.grace)
            if ended is None:
                return None
            failure, detail = FailureClass.INTERRUPTED, f"the runner was stopped by signal {self.stop_signal}"
        else:
            ended = await self.executor.terminate(handle, self.policy.grace)
            failure, detail = FailureClass.TIMEOUT, f"ran past --timeout {self.policy.timeout:g}s; process group killed"
        code, sig = split_status(ended.status) if ended.status is not None else (None, None)
        return Outcome(False, exit_code=code, signal=sig, failure_class=failure, detail=detail)

    def _judge(self, job: Job, ended: Ended, launched_ns: int, logs: tuple[Path, Path]) -> Outcome:
        returncode = ended.status
        if ended.failure is not None:
            code, sig = split_status(returncode) if returncode is not None else (None, None)
            return Outcome(False, exit_code=code, signal=sig, failure_class=ended.failure, detail=ended.detail)
        if returncode != 0:
            failure, code, sig = classify_exit(returncode, job.exit_classes)
            detail = f"killed by signal {sig}" if sig else f"exit code {code}"
        else:
            rows, problem = read_metrics(job.check, launched_ns)
            if not problem:
                return Outcome(True, metrics=tuple(rows), exit_code=0)
            failure, code, sig, detail = FailureClass.NO_METRICS, 0, None, problem
        if failure in (FailureClass.EXIT_CODE, FailureClass.SIGNAL, FailureClass.NO_METRICS):
            # A command that could not write its logs or outputs fails for that reason.
            space = no_space(logs, (logs[0].parent, job.output_dir))
            if space or disk_full_signal(sig):
                failure = FailureClass.DISK_FULL
                detail = f"{space or 'file-size limit exceeded (SIGXFSZ)'}; {detail}"
        return Outcome(False, exit_code=code, signal=sig, failure_class=failure, detail=detail)
