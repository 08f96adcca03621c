"""The asyncio loop that runs a graph of jobs on a pool of slots.

It knows jobs, their needs and their kinds, never what a study means: it launches each job's argv
on a free slot once every job it needs has succeeded (then fingerprints the job again from the
files they made, in a worker thread), pins it to the slot's device, enforces the timeout, judges
the outcome, asks runner.retry what follows a failure, and records every step in the ledger before
it happens. A job whose need failed for good is blocked, with every job behind it, naming the need
and its log; the other branches go on. A stop request (Ctrl-C, SIGTERM) stops launching,
terminates every running attempt's process group and records them as interrupted.
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
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from runner import faults, graph
from runner.executors import Executor, Handle, LaunchError, LaunchSpec
from runner.jobs import Attempt, AttemptStart, Job, JobState, Outcome
from runner.ledger import Ledger
from runner.results import Ending, Facts, PriorFile, judge
from runner.retry import Action, decide
from runner.saved_steps import Steps, read_steps
from runner.slots import Device, Slot, SlotPool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Policy:
    timeout: float | None = None  # seconds per attempt
    grace: float = 30.0  # seconds between SIGTERM and SIGKILL
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
    steps: Steps | None = None  # FINISHED: the steps the attempt saved; RETRYING: it continues from them


NO_SLOT = Slot("-", Device(""))  # the slot of an event that happens outside any slot


@dataclass(frozen=True)
class Queued:
    """A job waiting for a slot: its retries used so far and the argv of its next attempt."""

    job: Job
    job_id: int
    tries: int
    argv: tuple[str, ...]


@dataclass
class Waiting:
    """A job not yet queued: the needs it still waits for in this run, and its place in line."""

    queued: Queued
    rank: int
    pending: set[str] = field(default_factory=set)
    refresh: bool = False  # a need of it runs in this run: fingerprint it again once all have succeeded


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
                 on_event: Callable[[Event], None] = lambda e: None, *,
                 refresh: Callable[[Job], Job]) -> None:
        # How a job is fingerprinted again once its needs have made its inputs (inputs.refresh).
        self.refresh = refresh
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
        """Run `work` (jobs and their ids) in the given order on the free slots, until done or
        stopped: a job waits until the jobs it needs among `work` and `reattach` have succeeded (a
        need outside them has a standing success). First follow `reattach`: attempts an earlier
        runner left running on the cluster (each holds a slot if one is free, beyond the cap
        otherwise).

        A slot goes back to the pool as soon as its attempt's outcome is known and recorded
        (submitted to the ledger, which keeps the order of events): the next attempt's row then
        shares a commit with the previous attempt's result."""
        self._rank = itertools.count()  # launch order: `work`'s, then retries in turn
        self._ready: list[tuple[int, Queued]] = []
        in_run = {job.key for job, _ in work} | {job.key for job, _, _ in reattach}
        self._waiting: dict[str, Waiting] = {}
        self._behind: dict[str, list[str]] = {}  # per job key, the waiting jobs that need it
        for job, job_id in work:
            pending = {need for need in job.needs if need in in_run}
            for need in pending:
                self._behind.setdefault(need, []).append(job.key)
            self._waiting[job.key] = Waiting(Queued(job, job_id, 0, job.argv), next(self._rank), pending,
                                             refresh=bool(pending))
        self._blocking: list[asyncio.Future] = []  # ledger writes of blocked jobs, awaited at the end
        self._running: set[asyncio.Task] = set()
        self._wake = asyncio.Event()  # a slot came free, a job became ready, or a stop was requested
        for key in [key for key, waiting in self._waiting.items() if not waiting.pending]:
            self._enqueue(key, NO_SLOT)
        self._stop_waiter = asyncio.create_task(self._stop.wait())
        self._stop_waiter.add_done_callback(lambda _: self._wake.set())
        for job, attempt, handle in reattach:
            cost = self.pool.cost(job.kind)
            slot = self.pool.take(cost) if self.pool.has_free(cost) else Slot("reattached", Device(""))
            self._start(self._follow(job, attempt, handle, slot))
        try:
            while True:
                # Strictly in launch order: the first ready job waits for room rather than being
                # overtaken for ever by cheaper ones (a job that needs a whole GPU).
                while self._ready and not self._stop.is_set():
                    queued = self._ready[0][1]
                    cost = self.pool.cost(queued.job.kind)
                    if not self.pool.has_free(cost):
                        break
                    heapq.heappop(self._ready)
                    self._start(self._attempt(queued, self.pool.take(cost)))
                for task in [t for t in self._running if t.done()]:
                    self._running.discard(task)
                    task.result()  # a ledger error ends the run here
                if not self._running and (not self._ready or self._stop.is_set()):
                    break
                await self._wake.wait()
                self._wake.clear()
            await asyncio.gather(*self._blocking)
        except BaseException:
            # The ledger failed (or we are cancelled): stop every other attempt's processes and
            # wait for them; their rows stay `running` for the next run to reconcile.
            for task in self._running:
                task.cancel()
            await asyncio.gather(*self._running, return_exceptions=True)
            raise
        finally:
            self._stop_waiter.cancel()
            self.executor.close()

    def _start(self, work) -> None:
        """Run `work` (an attempt, a follow, a refresh) as a task the loop waits for."""
        task = asyncio.create_task(work)
        self._running.add(task)
        task.add_done_callback(lambda _: self._wake.set())

    def _environment(self, job: Job, slot: Slot, token: str) -> dict[str, str]:
        return child_environment(job, slot, token, self.threads_per_job, self._base_env)

    async def _attempt(self, queued: Queued, slot: Slot) -> None:
        job = queued.job
        token = uuid.uuid4().hex
        # What the metrics file is before the launch: after the exit it must be another file.
        prior = PriorFile.now(job.check.path, job.check.siblings) if job.check else PriorFile(None)
        attempt = await self.ledger.start_attempt(AttemptStart(
            queued.job_id, job.key, self.run_id, queued.argv, job.fingerprint, slot.name,
            self.executor.device_label(slot.device.visible_id), slot.device.uuid, token,
            self.executor.name, prior.to_ledger(), job.basis), log_paths(job))
        faults.pause_point("attempt_row")
        self.on_event(Event(EventKind.STARTED, job, attempt.number, slot, stderr_log=str(attempt.stderr_log)))
        started = time.monotonic()
        try:
            handle = await self.executor.launch(LaunchSpec(
                queued.argv, job.cwd, self._environment(job, slot, token), attempt.stdout_log,
                attempt.stderr_log, token, resumable=job.progress is not None))
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
            steps = read_steps(job.progress, attempt.token)
            faults.pause_point("exited")
            finished = self.ledger.finish_attempt(attempt.attempt_id, attempt.job_id, outcome, duration, steps)
            self.on_event(Event(EventKind.FINISHED, job, attempt.number, slot, outcome, duration, stderr_log,
                                steps=steps))
            self._follow_up(queued, slot, outcome, attempt, steps)
        if self.pool.holds(slot):  # not the stand-in slot of an attempt followed beyond the cap
            self.pool.give_back(slot)
        self._wake.set()
        if finished is not None:
            # The result is queued: it is committed even if this task is cancelled while it waits.
            await finished

    def _follow_up(self, queued: Queued, slot: Slot, outcome: Outcome, attempt: Attempt,
                   steps: Steps | None = None) -> None:
        """Queue what follows an attempt: the jobs that were waiting for it when it succeeded, else
        what runner.retry decides: its next attempt, or nothing, and when it failed for good the
        jobs behind it are blocked."""
        job = queued.job
        if outcome.succeeded:
            self._release(job.key, slot)
            return
        decision = decide(outcome, queued.argv, queued.tries, self.policy.retries, job.adapt, self._stop.is_set(),
                          advanced=steps is not None and steps.advanced)
        if decision.action is Action.GIVE_UP:
            if decision.final:
                self._block_behind(job.key, f"failed ({outcome.failure_class.value}); see {attempt.stderr_log}", slot)
            return  # otherwise (stopped) what waits stays pending for the next run
        self.on_event(Event(EventKind.RETRYING, job, decision.tries, slot, outcome,
                            steps=steps if decision.action is Action.CONTINUE else None))
        heapq.heappush(self._ready, (next(self._rank), Queued(job, queued.job_id, decision.tries, decision.argv)))

    def _release(self, key: str, slot: Slot) -> None:
        """A job succeeded: the jobs waiting for it whose needs have all succeeded are queued."""
        for waiting_key in self._behind.pop(key, ()):
            waiting = self._waiting.get(waiting_key)
            if waiting is None:
                continue
            waiting.pending.discard(key)
            if not waiting.pending:
                self._enqueue(waiting_key, slot)

    def _enqueue(self, key: str, slot: Slot) -> None:
        """A job whose needs have all succeeded: queued in its place, after being fingerprinted
        again (off the event loop) from the files its needs made in this run."""
        waiting = self._waiting.pop(key)
        if waiting.refresh:
            self._start(self._refreshed(waiting, slot))
        else:
            heapq.heappush(self._ready, (waiting.rank, waiting.queued))

    async def _refreshed(self, waiting: Waiting, slot: Slot) -> None:
        job = waiting.queued.job
        try:
            job = await asyncio.to_thread(self.refresh, job)
        except OSError as exc:  # e.g. a file its need made cannot be read: this job only
            job = replace(job, blocked_reason=f"its inputs cannot be read: {exc}")
        if job.blocked_reason:  # its needs succeeded, yet an input is missing
            self._block(Queued(job, waiting.queued.job_id, 0, job.argv), job.blocked_reason, slot)
            self._block_behind(job.key, f"is blocked ({job.blocked_reason})", slot)
            return
        heapq.heappush(self._ready, (waiting.rank, Queued(job, waiting.queued.job_id, 0, job.argv)))

    def _block_behind(self, key: str, why: str, slot: Slot) -> None:
        """Block every job waiting, directly or through others, for the job `key` (graph.spread_block
        gives each its reason)."""
        for waiting_key, reason in graph.spread_block(key, why, self._behind, lambda k: k in self._waiting):
            self._block(self._waiting.pop(waiting_key).queued, reason, slot)

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
