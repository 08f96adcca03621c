"""The asyncio loop that runs a graph of jobs on a pool of slots.

It knows nothing of ptychography: it launches each job's argv on a free slot once every job it
needs has succeeded, pins it to the slot's device, enforces the timeout, judges the outcome,
retries what may be retried and records every step in the ledger before it happens. A job whose
need failed for good is blocked, with every job behind it, naming the need and its log; the other
branches go on. A stop request (Ctrl-C, SIGTERM) stops launching, terminates every running
attempt's process group and records them as interrupted.
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import itertools
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from runner import faults
from runner.executors import Executor, Handle, LaunchError, LaunchSpec
from runner.jobs import Attempt, AttemptStart, FailureClass, Job, JobState, Outcome
from runner.ledger import Ledger
from runner.results import Ending, Facts, PriorFile, judge
from runner.slots import Device, Slot, SlotPool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Policy:
    timeout: float | None = None  # seconds per attempt
    grace: float = 10.0  # seconds between SIGTERM and SIGKILL
    retries: int = 0  # extra attempts per job and run after a retryable failure


class EventKind(str, enum.Enum):
    STARTED = "started"  # an attempt was launched
    FINISHED = "finished"  # an attempt ended and its outcome is recorded
    RETRYING = "retrying"  # a failed job is queued again
    REATTACHED = "reattached"  # following an attempt an earlier runner left on the cluster
    LEFT = "left"  # an attempt is left running on the cluster for a later runner
    BLOCKED = "blocked"  # a job will not run: a job it needs failed, or its input is still missing


@dataclass(frozen=True)
class Event:
    """What the scheduler tells the user interface."""

    kind: EventKind
    job: Job
    attempt: int
    slot: Slot
    outcome: Outcome | None = None
    duration_s: float | None = None
    stderr_log: str | None = None
    reason: str | None = None  # why a job is blocked


NO_SLOT = Slot("-", Device(""))  # the slot of an event that happens outside any slot


@dataclass(frozen=True)
class Queued:
    """A job waiting for a slot: its retries used so far and the argv of its next attempt."""

    job: Job
    job_id: int
    tries: int
    argv: tuple[str, ...]


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


class Scheduler:
    def __init__(self, ledger: Ledger, pool: SlotPool, run_id: int, policy: Policy, executor: Executor,
                 on_event: Callable[[Event], None] = lambda e: None) -> None:
        self.ledger, self.pool, self.run_id, self.policy = ledger, pool, run_id, policy
        self.executor = executor
        self.on_event = on_event
        self.stop_signal: int | None = None
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.threads_per_job = max(1, cores // pool.most_jobs())
        self._stop = asyncio.Event()
        self._base_env = dict(os.environ)  # read once: decoding os.environ per job adds up

    def request_stop(self, signum: int) -> None:
        """Called from a signal handler: stop launching and interrupt what runs."""
        if self.stop_signal is None:
            self.stop_signal = signum
        self._stop.set()

    async def run(self, work: list[tuple[Job, int]],
                  reattach: list[tuple[Job, Attempt, Handle]] = ()) -> None:
        """Run `work` in the given order on the free slots, until done or stopped: a job waits
        until the jobs it needs among `work` and `reattach` have succeeded (a need outside them
        has a standing success). First follow `reattach`: attempts an earlier runner left running
        on the cluster (each holds a slot if one is free, beyond the cap otherwise).

        A slot goes back to the pool as soon as its attempt's outcome is known and recorded
        (submitted to the ledger, which keeps the order of events): the next attempt's row then
        shares a commit with the previous attempt's result."""
        self._rank = itertools.count()  # launch order: `work`'s, then retries in turn
        self._ready: list[tuple[int, Queued]] = []
        in_run = {job.key for job, _ in work} | {job.key for job, _, _ in reattach}
        # Per job not yet queued: its needs still to succeed in this run, and its place in line.
        self._waiting: dict[str, tuple[set[str], int, Queued]] = {}
        self._behind: dict[str, list[str]] = {}  # per job key, the waiting jobs that need it
        for job, job_id in work:
            pending = {need for need in job.needs if need in in_run}
            for need in pending:
                self._behind.setdefault(need, []).append(job.key)
            self._waiting[job.key] = (pending, next(self._rank), Queued(job, job_id, 0, job.argv))
        self._blocking: list[asyncio.Future] = []  # ledger writes of blocked jobs, awaited at the end
        for key in [key for key, (pending, _, _) in self._waiting.items() if not pending]:
            self._enqueue(key, NO_SLOT)
        self._wake = asyncio.Event()  # a slot came free or a stop was requested
        self._stop_waiter = asyncio.create_task(self._stop.wait())
        self._stop_waiter.add_done_callback(lambda _: self._wake.set())
        running: set[asyncio.Task] = set()

        def start(attempt) -> None:
            task = asyncio.create_task(attempt)
            running.add(task)
            task.add_done_callback(lambda _: self._wake.set())

        for job, attempt, handle in reattach:
            cost = self.pool.cost(job.phase)
            slot = self.pool.take(cost) if self.pool.has_free(cost) else Slot("reattached", Device(""))
            start(self._follow(job, attempt, handle, slot))
        try:
            while True:
                # Strictly in launch order: the first ready job waits for room rather than being
                # overtaken for ever by cheaper ones (a training that needs a whole GPU).
                while self._ready and not self._stop.is_set():
                    queued = self._ready[0][1]
                    cost = self.pool.cost(queued.job.phase)
                    if not self.pool.has_free(cost):
                        break
                    heapq.heappop(self._ready)
                    start(self._attempt(queued, self.pool.take(cost)))
                for task in [t for t in running if t.done()]:
                    running.discard(task)
                    task.result()  # a ledger error ends the run here
                if not running and (not self._ready or self._stop.is_set()):
                    break
                await self._wake.wait()
                self._wake.clear()
            await asyncio.gather(*self._blocking)
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

    async def _attempt(self, queued: Queued, slot: Slot) -> None:
        job = queued.job
        token = uuid.uuid4().hex
        # What the metrics file is before the launch: after the exit it must be another file.
        prior = PriorFile.now(job.check.path, job.check.siblings) if job.check else PriorFile(None)
        attempt = await self.ledger.start_attempt(AttemptStart(
            queued.job_id, job.key, self.run_id, queued.argv, job.fingerprint, slot.name,
            self.executor.device_label(slot.device.visible_id), slot.device.uuid, token,
            self.executor.name, prior.to_ledger()), log_paths(job))
        faults.pause_point("attempt_row")
        self.on_event(Event(EventKind.STARTED, job, attempt.number, slot, stderr_log=str(attempt.stderr_log)))
        started = time.monotonic()
        try:
            handle = await self.executor.launch(LaunchSpec(
                queued.argv, job.cwd, self._environment(job, slot, token), attempt.stdout_log,
                attempt.stderr_log, token))
        except LaunchError as exc:
            outcome = judge(Facts(Ending.NOT_LAUNCHED, detail=str(exc), no_space=exc.no_space))
        else:
            outcome = await self._follow_handle(job, attempt, handle, prior, record=True)
        await self._finish(queued, attempt, slot, outcome, round(time.monotonic() - started, 3))

    async def _follow(self, job: Job, attempt: Attempt, handle: Handle, slot: Slot) -> None:
        """Wait for an attempt an earlier runner launched on the cluster."""
        self.on_event(Event(EventKind.REATTACHED, job, attempt.number, slot, stderr_log=str(attempt.stderr_log)))
        launched = datetime.fromisoformat(attempt.started_at)
        prior = PriorFile.from_ledger(attempt.metrics_before, int(launched.timestamp() * 1e9))
        outcome = await self._follow_handle(job, attempt, handle, prior, record=False)
        duration = round((datetime.now(timezone.utc) - launched).total_seconds(), 3)
        await self._finish(Queued(job, attempt.job_id, 0, attempt.argv), attempt, slot, outcome, duration)

    async def _finish(self, queued: Queued, attempt: Attempt, slot: Slot, outcome: Outcome | None,
                      duration: float) -> None:
        """Record the outcome, queue what follows from it, and free the slot."""
        finished = None
        job, stderr_log = queued.job, str(attempt.stderr_log)
        if outcome is None:  # left running on the cluster for a later runner
            self.on_event(Event(EventKind.LEFT, job, attempt.number, slot, stderr_log=stderr_log))
        else:
            faults.pause_point("exited")
            finished = self.ledger.finish_attempt(attempt.attempt_id, attempt.job_id, outcome, duration)
            self.on_event(Event(EventKind.FINISHED, job, attempt.number, slot, outcome, duration, stderr_log))
            self._follow_up(queued, slot, outcome, attempt)
        if self.pool.holds(slot):  # not the stand-in slot of an attempt followed beyond the cap
            self.pool.give_back(slot)
        self._wake.set()
        if finished is not None:
            # The result is queued: it is committed even if this task is cancelled while it waits.
            await finished

    def _follow_up(self, queued: Queued, slot: Slot, outcome: Outcome, attempt: Attempt) -> None:
        """Queue what follows an attempt: the jobs that were waiting for it when it succeeded, its
        next attempt when its failure allows one, else block the jobs behind it."""
        job, tries = queued.job, queued.tries
        if outcome.succeeded:
            self._release(job.key, slot)
            return
        if self._stop.is_set():
            return  # what waits stays pending for the next run
        adapted = job.adapt_argv(queued.argv, outcome.failure_class) if job.adapt_argv else None
        if adapted is not None:
            self.on_event(Event(EventKind.RETRYING, job, tries, slot, outcome))
            heapq.heappush(self._ready, (next(self._rank), Queued(job, queued.job_id, tries, adapted)))
        elif self._should_retry(outcome, tries):
            self.on_event(Event(EventKind.RETRYING, job, tries + 1, slot, outcome))
            heapq.heappush(self._ready, (next(self._rank), Queued(job, queued.job_id, tries + 1, queued.argv)))
        elif outcome.failure_class not in (None, FailureClass.INTERRUPTED):  # failed for good
            self._block_behind(job.key, f"needs {job.key}, which failed ({outcome.failure_class.value}); "
                                        f"see {attempt.stderr_log}", slot)

    def _release(self, key: str, slot: Slot) -> None:
        """A job succeeded: the jobs waiting for it whose needs have all succeeded are planned
        again from the files their needs made (inputs, fingerprint) and queued in their place."""
        for waiting_key in self._behind.pop(key, ()):
            entry = self._waiting.get(waiting_key)
            if entry is None:
                continue
            entry[0].discard(key)
            if not entry[0]:
                self._enqueue(waiting_key, slot)

    def _enqueue(self, key: str, slot: Slot) -> None:
        """A job whose needs have all succeeded: planned again from the files they made (its
        inputs and fingerprint; a job without needs is kept as planned), then queued in its place."""
        _, rank, queued = self._waiting.pop(key)
        job = queued.job
        if job.replan:
            try:
                job = job.replan()
            except Exception as exc:  # e.g. a file its need made cannot be read: this job only
                job = replace(job, blocked_reason=f"cannot be planned from its inputs: {exc}")
        if job.blocked_reason:  # its needs succeeded, yet an input is missing
            self._block(Queued(job, queued.job_id, 0, job.argv), job.blocked_reason, slot)
            self._block_behind(job.key, f"needs {job.key}, which is blocked ({job.blocked_reason})", slot)
            return
        heapq.heappush(self._ready, (rank, Queued(job, queued.job_id, 0, job.argv)))

    def _block_behind(self, key: str, reason: str, slot: Slot) -> None:
        """Block every job waiting, directly or through others, for the job `key`."""
        for waiting_key in self._behind.pop(key, ()):
            entry = self._waiting.pop(waiting_key, None)
            if entry is not None:
                self._block(entry[2], reason, slot)
                self._block_behind(waiting_key, reason, slot)

    def _block(self, queued: Queued, reason: str, slot: Slot) -> None:
        self._blocking.append(self.ledger.set_job_states([(queued.job_id, JobState.BLOCKED, reason)]))
        self.on_event(Event(EventKind.BLOCKED, queued.job, 0, slot, reason=reason))

    async def _follow_handle(self, job: Job, attempt: Attempt, handle: Handle, prior: PriorFile,
                             record: bool) -> Outcome | None:
        try:
            recorded = None
            if record:  # what identifies it: its process, or its SLURM job id
                faults.pause_point("spawned")
                # Not awaited yet: committed with the next batch, in order, while the command runs
                # (a runner that dies before finds a local child by its token, a SLURM job by name).
                recorded = self.ledger.record_launch(attempt.attempt_id, handle.ledger_fields())
            facts = await self._wait(job, handle, attempt.attempt_id)
            if recorded is not None:
                await recorded
            if facts is None:
                return None
            return judge(facts, job, prior, (attempt.stdout_log, attempt.stderr_log))
        except BaseException:
            # The runner is going down (an error or cancellation): take the command with it,
            # unless the executor was told to leave cluster jobs running.
            await asyncio.shield(self.executor.interrupt(handle, self.policy.grace))
            raise

    async def _wait(self, job: Job, handle: Handle, attempt_id: int) -> Facts | None:
        """How the command ended (None: left running on the cluster)."""
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
                return Facts(Ending.EXITED, ended)
            if self._stop.is_set():
                ended = await self.executor.interrupt(handle, self.policy.grace)
                if ended is None:
                    return None
                return Facts(Ending.STOPPED, ended, f"the runner was stopped by signal {self.stop_signal}")
            ended = await self.executor.terminate(handle, self.policy.grace)
            return Facts(Ending.TIMED_OUT, ended,
                         f"ran past --timeout {self.policy.timeout:g}s; process group killed")
        finally:
            exited.cancel()  # stops only the watching, never the command
