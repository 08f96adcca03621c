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

from runner import faults
from runner.executors.local import LaunchError, LaunchSpec, LocalExecutor
from runner.jobs import FailureClass, Job, Outcome
from runner.ledger import Ledger
from runner.results import classify_exit, disk_full_signal, no_space, read_metrics, split_status
from runner.slots import Slot, SlotPool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Policy:
    timeout: float | None = None  # seconds per attempt
    grace: float = 10.0  # seconds between SIGTERM and SIGKILL
    retries: int = 0  # extra attempts per job and run after a retryable failure


@dataclass(frozen=True)
class Event:
    """What the scheduler tells the user interface."""

    kind: str  # 'started' | 'finished' | 'retrying'
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
                 executor: LocalExecutor | None = None) -> None:
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

    async def run(self, work: list[tuple[Job, int]]) -> None:
        # (job, job_id, retries used, argv of the next attempt)
        queue = deque((job, job_id, 0, job.argv) for job, job_id in work)
        running: dict[asyncio.Task, tuple[Job, int, int, tuple[str, ...], Slot]] = {}
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
                    self.pool.give_back(slot)
                    outcome = task.result()
                    if outcome.succeeded or self._stop.is_set():
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

    async def _attempt(self, job: Job, job_id: int, argv: tuple[str, ...], slot: Slot) -> Outcome:
        token = uuid.uuid4().hex
        argv = list(argv)
        attempt_id, number, stdout_log, stderr_log = await self.ledger.start_attempt(
            job_id, self.run_id, job, argv, slot.name, slot.device.visible_id, slot.device.uuid,
            token, log_paths(job))
        faults.pause_point("attempt_row")
        self.on_event(Event("started", job, number, slot, stderr_log=str(stderr_log)))
        started = time.monotonic()
        launched_ns = time.time_ns()
        try:
            handle = await self.executor.launch(LaunchSpec(
                tuple(argv), job.cwd, child_environment(job, slot, token, self.threads_per_job),
                stdout_log, stderr_log))
        except LaunchError as exc:
            failure = FailureClass.DISK_FULL if exc.no_space else FailureClass.LAUNCH_ERROR
            outcome = Outcome(False, failure_class=failure, detail=str(exc))
        else:
            try:
                faults.pause_point("spawned")
                await self.ledger.record_process(attempt_id, handle.pid, handle.pgid, handle.process_start)
                outcome = await self._wait(job, handle, launched_ns)
            except BaseException:
                # The runner is going down (an error or cancellation): take the child with it.
                await asyncio.shield(self.executor.terminate(handle, self.policy.grace))
                raise
        duration = round(time.monotonic() - started, 3)
        faults.pause_point("exited")
        # Shielded: the result of a finished child is recorded even if we are being cancelled.
        await asyncio.shield(self.ledger.finish_attempt(attempt_id, job_id, outcome, duration))
        self.on_event(Event("finished", job, number, slot, outcome, duration, str(stderr_log)))
        return outcome

    async def _wait(self, job: Job, handle, launched_ns: int) -> Outcome:
        exit_task = asyncio.create_task(self.executor.wait(handle))
        stop_task = asyncio.create_task(self._stop.wait())
        try:
            done, _ = await asyncio.wait({exit_task, stop_task}, timeout=self.policy.timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_task.cancel()
        if exit_task in done:
            returncode = exit_task.result()
            if await self.executor.clean_up(handle, self.policy.grace):
                log.warning("%s: killed processes its command left running", job.key)
            return self._judge(job, returncode, launched_ns, handle)
        exit_task.cancel()
        code, sig = split_status(await self.executor.terminate(handle, self.policy.grace))
        if self._stop.is_set():
            failure, detail = FailureClass.INTERRUPTED, f"the runner was stopped by signal {self.stop_signal}"
        else:
            failure, detail = FailureClass.TIMEOUT, f"ran past --timeout {self.policy.timeout:g}s; process group killed"
        return Outcome(False, exit_code=code, signal=sig, failure_class=failure, detail=detail)

    def _judge(self, job: Job, returncode: int, launched_ns: int, handle) -> Outcome:
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
            space = no_space(handle.logs, (handle.logs[0].parent, job.output_dir))
            if space or disk_full_signal(sig):
                failure = FailureClass.DISK_FULL
                detail = f"{space or 'file-size limit exceeded (SIGXFSZ)'}; {detail}"
        return Outcome(False, exit_code=code, signal=sig, failure_class=failure, detail=detail)
