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
from runner.jobs import FailureClass, Job, Outcome, RunningAttempt
from runner.ledger import Ledger
from runner.results import PriorFile, classify_exit, disk_full_signal, no_space, read_metrics, split_status
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


def child_environment(job: Job, slot: Slot, token: str, threads: int,
                      base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
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


def longest_first(work: list[tuple[Job, int]], expected: dict[int, float]) -> list[tuple[Job, int]]:
    """The launch order that keeps the slots evenly busy to the end: jobs whose duration is
    unknown (never succeeded) first, in plan order, since they may be long and running them
    tells the next run; then the others by expected duration, longest first (ties keep plan
    order). With the long jobs started early, the short ones fill the gaps at the end."""
    unknown = [item for item in work if item[1] not in expected]
    known = sorted((item for item in work if item[1] in expected), key=lambda item: -expected[item[1]])
    return unknown + known


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
        self._base_env = dict(os.environ)  # read once: decoding os.environ per job adds up

    def request_stop(self, signum: int) -> None:
        """Called from a signal handler: stop launching and interrupt what runs."""
        if self.stop_signal is None:
            self.stop_signal = signum
        self._stop.set()

    async def run(self, work: list[tuple[Job, int]],
                  reattach: list[tuple[Job, RunningAttempt]] = ()) -> None:
        """Run `work` in the given order on the free slots, until done or stopped. First follow
        `reattach`: attempts an earlier runner left running on the cluster (each holds a slot
        if one is free, beyond the cap otherwise).

        A slot goes back to the pool as soon as its attempt's outcome is known and recorded
        (submitted to the ledger, which keeps the order of events): the next attempt's row then
        shares a commit with the previous attempt's result."""
        # (job, job_id, retries used, argv of the next attempt)
        self._queue = deque((job, job_id, 0, job.argv) for job, job_id in work)
        self._wake = asyncio.Event()  # a slot came free or a stop was requested
        self._stop_waiter = asyncio.create_task(self._stop.wait())
        self._stop_waiter.add_done_callback(lambda _: self._wake.set())
        running: set[asyncio.Task] = set()

        def start(attempt) -> None:
            task = asyncio.create_task(attempt)
            running.add(task)
            task.add_done_callback(lambda _: self._wake.set())

        for job, attempt in reattach:
            slot = self.pool.take() if self.pool.has_free() else Slot("reattached", Device(""))
            start(self._follow(job, attempt, slot))
        try:
            while True:
                while self._queue and self.pool.has_free() and not self._stop.is_set():
                    job, job_id, tries, argv = self._queue.popleft()
                    start(self._attempt(job, job_id, tries, argv, self.pool.take()))
                for task in [t for t in running if t.done()]:
                    running.discard(task)
                    task.result()  # a ledger error ends the run here
                if not running and (not self._queue or self._stop.is_set()):
                    break
                await self._wake.wait()
                self._wake.clear()
        except BaseException:
            # The ledger failed (or we are cancelled): stop every other attempt's processes and
            # wait for them; their rows stay `running` for the next run to reconcile.
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            raise
        finally:
            self._stop_waiter.cancel()
            self.executor.close()

    def _environment(self, job: Job, slot: Slot, token: str) -> dict[str, str]:
        return child_environment(job, slot, token, self.threads_per_job, self._base_env)

    def _should_retry(self, outcome: Outcome, tries: int) -> bool:
        if tries >= self.policy.retries:
            return False
        return outcome.failure_class is not None and outcome.failure_class.retryable

    async def _attempt(self, job: Job, job_id: int, tries: int, argv: tuple[str, ...], slot: Slot) -> None:
        token = uuid.uuid4().hex
        # What the metrics file is before the launch: after the exit it must be another file.
        prior = PriorFile.now(job.check.path) if job.check else PriorFile(None)
        attempt_id, number, stdout_log, stderr_log = await self.ledger.start_attempt(
            job_id, self.run_id, job, list(argv), slot.name,
            self.executor.device_label(slot.device.visible_id), slot.device.uuid, token,
            log_paths(job), self.executor.name, prior.to_ledger())
        faults.pause_point("attempt_row")
        self.on_event(Event("started", job, number, slot, stderr_log=str(stderr_log)))
        started = time.monotonic()
        try:
            handle = await self.executor.launch(LaunchSpec(
                argv, job.cwd, self._environment(job, slot, token), stdout_log, stderr_log, token))
        except LaunchError as exc:
            failure = FailureClass.DISK_FULL if exc.no_space else FailureClass.LAUNCH_ERROR
            outcome = Outcome(False, failure_class=failure, detail=str(exc))
        else:
            outcome = await self._follow_handle(job, handle, attempt_id, prior,
                                                (stdout_log, stderr_log), record=True)
        await self._finish(job, job_id, tries, argv, attempt_id, number, slot, outcome,
                           round(time.monotonic() - started, 3), stderr_log)

    async def _follow(self, job: Job, attempt: RunningAttempt, slot: Slot) -> None:
        """Wait for an attempt an earlier runner launched on the cluster."""
        self.on_event(Event("reattached", job, attempt.number, slot, stderr_log=str(attempt.stderr_log)))
        launched = datetime.fromisoformat(attempt.started_at)
        handle = self.executor.attach(attempt.slurm_job_id)
        prior = PriorFile.from_ledger(attempt.metrics_before, int(launched.timestamp() * 1e9))
        outcome = await self._follow_handle(job, handle, attempt.attempt_id, prior,
                                            (attempt.stdout_log, attempt.stderr_log), record=False)
        duration = round((datetime.now(timezone.utc) - launched).total_seconds(), 3)
        await self._finish(job, attempt.job_id, 0, attempt.argv, attempt.attempt_id, attempt.number,
                           slot, outcome, duration, attempt.stderr_log)

    async def _finish(self, job: Job, job_id: int, tries: int, argv: tuple[str, ...], attempt_id: int,
                      number: int, slot: Slot, outcome: Outcome | None, duration: float,
                      stderr_log: Path) -> None:
        """Record the outcome, queue what follows from it, and free the slot."""
        finished = None
        if outcome is None:  # left running on the cluster for a later runner
            self.on_event(Event("left", job, number, slot, stderr_log=str(stderr_log)))
        else:
            faults.pause_point("exited")
            finished = self.ledger.finish_attempt(attempt_id, job_id, outcome, duration)
            self.on_event(Event("finished", job, number, slot, outcome, duration, str(stderr_log)))
            self._follow_up(job, job_id, tries, argv, slot, outcome)
        if slot in self.pool.slots:  # not the stand-in slot of an attempt followed beyond the cap
            self.pool.give_back(slot)
        self._wake.set()
        if finished is not None:
            # The result is queued: it is committed even if this task is cancelled while it waits.
            await finished

    def _follow_up(self, job: Job, job_id: int, tries: int, argv: tuple[str, ...], slot: Slot,
                   outcome: Outcome) -> None:
        """Queue the next attempt of a job that failed, when its failure allows one."""
        if outcome.succeeded or self._stop.is_set():
            return
        adapted = job.adapt_argv(argv, outcome.failure_class) if job.adapt_argv else None
        if adapted is not None:
            self.on_event(Event("retrying", job, tries, slot, outcome))
            self._queue.append((job, job_id, tries, adapted))
        elif self._should_retry(outcome, tries):
            self.on_event(Event("retrying", job, tries + 1, slot, outcome))
            self._queue.append((job, job_id, tries + 1, argv))

    async def _follow_handle(self, job: Job, handle, attempt_id: int, prior: PriorFile,
                             logs: tuple[Path, Path], record: bool) -> Outcome | None:
        try:
            recorded = None
            if record:  # what identifies it: its process, or its SLURM job id
                faults.pause_point("spawned")
                # Not awaited yet: committed with the next batch, in order, while the command runs
                # (a runner that dies before finds a local child by its token, a SLURM job by name).
                recorded = self.ledger.record_launch(attempt_id, handle.ledger_fields())
            outcome = await self._wait(job, handle, attempt_id, prior, logs)
            if recorded is not None:
                await recorded
            return outcome
        except BaseException:
            # The runner is going down (an error or cancellation): take the command with it,
            # unless the executor was told to leave cluster jobs running.
            await asyncio.shield(self.executor.interrupt(handle, self.policy.grace))
            raise

    async def _wait(self, job: Job, handle, attempt_id: int, prior: PriorFile,
                    logs: tuple[Path, Path]) -> Outcome | None:
        async def report(status) -> None:  # what the cluster says, recorded as it is seen
            await self.ledger.record_slurm_state(attempt_id, status.state, status.node, status.exit)

        exited = asyncio.ensure_future(self.executor.wait(handle, report))
        try:
            await asyncio.wait({exited, self._stop_waiter}, timeout=self.policy.timeout,
                               return_when=asyncio.FIRST_COMPLETED)
            if exited.done():
                ended = exited.result()
                if await self.executor.clean_up(handle, self.policy.grace):
                    log.warning("%s: killed processes its command left running", job.key)
                return self._judge(job, ended, prior, logs)
            if self._stop.is_set():
                ended = await self.executor.interrupt(handle, self.policy.grace)
                if ended is None:
                    return None
                failure, detail = FailureClass.INTERRUPTED, f"the runner was stopped by signal {self.stop_signal}"
            else:
                ended = await self.executor.terminate(handle, self.policy.grace)
                failure, detail = FailureClass.TIMEOUT, f"ran past --timeout {self.policy.timeout:g}s; process group killed"
        finally:
            exited.cancel()  # stops only the watching, never the command
        code, sig = split_status(ended.status) if ended.status is not None else (None, None)
        return Outcome(False, exit_code=code, signal=sig, failure_class=failure, detail=detail)

    def _judge(self, job: Job, ended: Ended, prior: PriorFile, logs: tuple[Path, Path]) -> Outcome:
        returncode = ended.status
        if ended.failure is not None:  # the cluster ended it for its own reason
            code, sig = split_status(returncode) if returncode is not None else (None, None)
            return Outcome(False, exit_code=code, signal=sig, failure_class=ended.failure, detail=ended.detail)
        if returncode != 0:
            failure, code, sig = classify_exit(returncode, job.exit_classes)
            detail = f"killed by signal {sig}" if sig else f"exit code {code}"
        elif job.check is None:  # --success exit-code
            return Outcome(True, exit_code=0)
        else:
            rows, problem = read_metrics(job.check, prior)
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
