"""Run an attempt as a SLURM batch job: `sbatch` to submit, `squeue` to follow, `scancel` to stop.

Each attempt is one `sbatch --parsable` of a batch script written beside its logs, whose only
command is the attempt's argv, every element quoted (no shell string is built from job values).
The job writes into the attempt's two log files, which the runner creates first, exclusively,
as it does locally. SLURM sets CUDA_VISIBLE_DEVICES on the node. One `squeue` call per poll
serves every job being followed; a cluster that stops answering is waited out with backoff.
Where the nodes mount the study's root at another path, what SLURM is handed names theirs (to_node).
Without accounting (no `sacct`), a finished job stays visible to squeue for MinJobAge seconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from runner.config import OnInterrupt
from runner.executors import Ended, LaunchError, LaunchSpec, Recovered
from runner.executors.local import open_log
from runner.jobs import Attempt

log = logging.getLogger(__name__)

# States of a job that has not ended yet (squeue %T).
ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED",
          "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED",
          "RESV_DEL_HOLD", "SPECIAL_EXIT"}
# sbatch errors worth retrying: the controller is down or busy, not a refused request.
TRANSIENT = ("unable to contact", "socket timed out", "connection refused", "temporarily unavailable",
             "try again", "connect failure", "slurm_persist_conn")


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    time: str | None = None  # SLURM's format: minutes, MM:SS, HH:MM:SS, D-HH...
    account: str | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    extra_args: tuple[str, ...] = ()  # passed to sbatch as given
    on_interrupt: OnInterrupt = OnInterrupt.CANCEL  # what to do with the jobs when the runner is stopped
    poll_min: float = 1.0  # seconds between polls right after a change...
    poll_max: float = 10.0  # ...growing to this while nothing changes
    outage_max: float = 60.0  # longest wait between polls while the cluster does not answer
    node_paths: tuple[str, str] | None = None  # (study root here, study root on the nodes): see to_node
    # A resumable job (one that saves its work and continues from it) is sent SIGUSR1 this many seconds before its time limit (0: not).
    # B: to the batch shell, which is the command itself (the script execs it).
    signal_before: int = 120

    def sbatch_options(self) -> list[str]:
        opts = ["--gres=gpu:1"]
        for flag, value in (("--partition", self.partition), ("--time", self.time),
                            ("--account", self.account), ("--cpus-per-task", self.cpus_per_task),
                            ("--mem", self.mem)):
            if value is not None:
                opts.append(f"{flag}={value}")
        return opts + list(self.extra_args)


@dataclass(frozen=True)
class JobStatus:
    state: str
    node: str | None
    exit: str | None  # 'exit:signal', as SLURM's ExitCode
    reason: str | None = None


@dataclass
class SlurmHandle:
    job_id: str
    cancelled: bool = False  # the runner asked SLURM to cancel it

    def ledger_fields(self) -> dict:
        return {"slurm_job_id": self.job_id}


class ClusterUnavailable(Exception):
    """squeue/sbatch could not reach the controller (at start-up: a user error, try again later)."""


def batch_script(argv: tuple[str, ...], token: str) -> str:
    """A POSIX sh script that runs exactly `argv`: each element single-quoted by shlex.quote."""
    return ("#!/bin/sh\n"
            f"# runner attempt {token}: the command below is the attempt's argv, quoted.\n"
            f"exec {shlex.join(argv)}\n")


def to_node(text: str, paths: tuple[str, str] | None) -> str:
    """`text` as the compute nodes must read it. They may mount the study's root at another path
    than this host (`paths` = (root here, root there)): a path that is the root or under it (at a
    '/' boundary), whole or after the first '=' (`--flag=/root/x`), is moved to the nodes' root.
    Anything else, such as an interpreter outside the study, is left as it is. Only what is
    handed to SLURM goes through this; the runner itself keeps reading the host's paths."""
    if not paths:
        return text
    host, node = paths
    under = host.rstrip("/") + "/"

    def moved(path: str) -> str | None:
        if path == host:
            return node
        if path.startswith(under):
            return node.rstrip("/") + "/" + path[len(under):]
        return None

    whole = moved(text)
    if whole is not None:
        return whole
    flag, equals, value = text.partition("=")
    after = moved(value) if equals else None
    return text if after is None else f"{flag}={after}"


def log_pattern(path: Path) -> str:
    """sbatch reads --output as a pattern (%j is the job id): a literal % is written %%, except
    in a name with a backslash, which SLURM takes literally as a whole."""
    text = str(path)
    return text if "\\" in text else text.replace("%", "%%")


def exit_of_status(raw: str) -> str | None:
    """squeue's exit_code is a wait status (768 = exit 3, 9 = signal 9) -> 'exit:signal'."""
    if not raw.strip().isdigit():
        return None
    status = int(raw)
    return f"{(status >> 8) & 0xFF}:{status & 0x7F}"


def ended_from(status: JobStatus) -> Ended:
    """What a terminal SLURM state says: the exit status, and the state itself when SLURM ended
    the job for its own reason (anything but COMPLETED, or FAILED with a non-zero exit)."""
    code, sig = (int(x) for x in (status.exit or "0:0").split(":"))
    returncode = -sig if sig else code
    if status.state == "COMPLETED" or (status.state == "FAILED" and returncode != 0):
        return Ended(returncode)
    return Ended(returncode, status.state, status.reason)


async def _command(argv: list[str], env: dict | None = None, timeout: float = 60) -> tuple[int, str, str]:
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True)  # a Ctrl-C meant for the runner must not kill a half-done sbatch
    except OSError as exc:
        raise ClusterUnavailable(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise ClusterUnavailable(f"{argv[0]} did not answer within {timeout:g}s") from None
    return process.returncode, out.decode(errors="replace"), err.decode(errors="replace").strip()


class SlurmExecutor:
    """Submits attempts with sbatch and follows them with squeue."""

    name = "slurm"

    def __init__(self, options: SlurmOptions) -> None:
        self.options = options
        self._watched: set[str] = set()
        self._latest: dict[str, JobStatus] = {}
        self._polled_at = float("-inf")
        self._interval = options.poll_min
        self._poll_lock = asyncio.Lock()
        self._outage_since: float | None = None

    def close(self) -> None:
        pass  # nothing held between calls: each squeue, sbatch and scancel is its own process

    def device_label(self, device: str) -> str | None:
        return None  # SLURM picks the GPU on the node; the ledger records the node instead

    # -- submit ---------------------------------------------------------------------------------
    async def launch(self, spec: LaunchSpec) -> SlurmHandle:
        script = spec.stdout_log.with_name(spec.stdout_log.name.replace(".stdout.log", ".sbatch"))
        paths = self.options.node_paths
        try:
            spec.stdout_log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            for log_path in (spec.stdout_log, spec.stderr_log):
                os.close(open_log(log_path))  # ours, fresh, 0600; the job appends to it
            fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o700)
            with os.fdopen(fd, "w") as f:
                f.write(batch_script(tuple(to_node(arg, paths) for arg in spec.argv), spec.token))
        except OSError as exc:
            raise LaunchError(f"cannot create {exc.filename}: {exc.strerror}", exc.errno) from None
        name = f"runner-{spec.token}"
        # What the job reads and writes, in the nodes' paths; sbatch reads the script here.
        cwd, stdout_log, stderr_log = (Path(to_node(str(p), paths))
                                       for p in (spec.cwd, spec.stdout_log, spec.stderr_log))
        warning = [f"--signal=B:USR1@{self.options.signal_before}"] \
            if spec.resumable and self.options.signal_before else []
        argv = ["sbatch", "--parsable", f"--job-name={name}", f"--chdir={cwd}", "--export=ALL",
                f"--output={log_pattern(stdout_log)}", f"--error={log_pattern(stderr_log)}",
                "--open-mode=append", *warning, *self.options.sbatch_options(), str(script)]
        env = dict(spec.env)
        env.pop("CUDA_VISIBLE_DEVICES", None)  # SLURM sets it on the node for the GPU it gives
        if "OMP_NUM_THREADS" not in os.environ:  # the local share of cores means nothing there
            env["OMP_NUM_THREADS"] = str(self.options.cpus_per_task or 1)
        delay = 2.0
        for _ in range(6):
            try:
                code, out, err = await _command(argv, env)
            except ClusterUnavailable as exc:
                code, out, err = 1, "", str(exc)
            if code == 0 and out.strip():
                job_id = out.strip().split(";")[0]
                self._watched.add(job_id)
                return SlurmHandle(job_id)
            if not any(t in err.lower() for t in TRANSIENT):
                raise LaunchError(f"sbatch refused the job: {err.splitlines()[-1] if err else f'exit {code}'}")
            # The submission may have gone through before the error: never submit twice.
            try:
                found = await self.find(spec.token)
            except ClusterUnavailable:
                found = None  # then sbatch cannot get through either
            if found:
                return found
            log.warning("sbatch: %s; retrying in %.0fs", err, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.options.outage_max)
        raise LaunchError(f"sbatch could not reach the cluster: {err}")

    async def find(self, token: str) -> SlurmHandle | None:
        """The job of an attempt whose id was never recorded (the runner died during sbatch).
        Raises ClusterUnavailable when SLURM cannot say."""
        code, out, err = await _command(["squeue", "-h", "-t", "all", "-n", f"runner-{token}", "-o", "%i"])
        if code != 0:
            raise ClusterUnavailable(f"squeue: {err or f'exit {code}'}")
        ids = out.split()
        if not ids:
            return None
        self._watched.add(ids[0])
        return SlurmHandle(ids[0])

    def attach(self, job_id: str) -> SlurmHandle:
        """Follow a job submitted by an earlier runner."""
        self._watched.add(job_id)
        return SlurmHandle(job_id)

    # -- follow ---------------------------------------------------------------------------------
    async def _poll(self) -> None:
        """One squeue call for every followed job; sets the next interval (backoff)."""
        ids = sorted(self._watched)
        fmt = "JobID:0|,State:0|,NodeList:0|,exit_code:0|,Reason:0"
        try:
            code, out, err = await _command(["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-O", fmt])
            if code != 0 and "invalid job id" not in err.lower():
                raise ClusterUnavailable(err or f"squeue exit {code}")
        except ClusterUnavailable as exc:
            if self._outage_since is None:
                self._outage_since = time.monotonic()
                log.warning("SLURM does not answer (%s); waiting for it", exc)
            self._interval = min(max(self._interval, self.options.poll_min) * 2, self.options.outage_max)
            return
        if self._outage_since is not None:
            log.warning("SLURM answers again after %.0fs", time.monotonic() - self._outage_since)
            self._outage_since = None
        seen = {}
        for line in out.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) >= 5 and parts[0] in self._watched:
                seen[parts[0]] = JobStatus(parts[1].split()[0], parts[2] or None,
                                           exit_of_status(parts[3]), parts[4] or None)
        for job_id in ids:
            if job_id not in seen:  # gone from squeue: ask accounting, else it is unknown
                seen[job_id] = await self._accounting(job_id)
        changed = seen != {k: v for k, v in self._latest.items() if k in seen}
        self._latest.update(seen)
        self._interval = self.options.poll_min if changed else min(self._interval * 1.5, self.options.poll_max)

    async def _accounting(self, job_id: str) -> JobStatus:
        try:
            code, out, _ = await _command(["sacct", "-n", "-P", "-X", "-j", job_id, "-o",
                                           "State,NodeList,ExitCode,Reason"])
        except ClusterUnavailable:
            code, out = 1, ""
        fields = out.splitlines()[0].split("|") if code == 0 and out.strip() else []
        if len(fields) >= 3 and fields[0]:
            return JobStatus(fields[0].split()[0], fields[1] or None, fields[2] or None,
                             fields[3] if len(fields) > 3 else None)
        return JobStatus("UNKNOWN", None, None)

    async def status(self, job_id: str, fresh: bool = False) -> JobStatus | None:
        """The latest status of a followed job; polls when the last poll is older than the interval."""
        async with self._poll_lock:  # concurrent waiters share one squeue call
            age = time.monotonic() - self._polled_at
            if fresh or age >= self._interval or job_id not in self._latest:
                await self._poll()
                self._polled_at = time.monotonic()
        return self._latest.get(job_id)

    async def wait(self, handle: SlurmHandle,
                   report: Callable[[JobStatus], Awaitable[None]] | None = None) -> Ended:
        """Until the job ends; `report` hears every change of state or node."""
        last = None
        try:
            while True:
                current = await self.status(handle.job_id)
                if current is not None and current != last:
                    last = current
                    if report:
                        await report(current)
                if current is not None and current.state not in ACTIVE:
                    if current.state == "UNKNOWN":
                        return Ended(None, "UNKNOWN", f"job {handle.job_id} is in neither squeue nor sacct")
                    if current.state == "CANCELLED" and handle.cancelled:
                        return Ended(ended_from(current).status)
                    return ended_from(current)
                await asyncio.sleep(self._interval)
        finally:
            if last is not None and last.state not in ACTIVE:
                self._watched.discard(handle.job_id)

    # -- stop -----------------------------------------------------------------------------------
    async def terminate(self, handle: SlurmHandle, grace: float) -> Ended:
        """scancel (SLURM sends SIGTERM, then SIGKILL after its KillWait) and wait for the end."""
        handle.cancelled = True
        for _ in range(5):
            try:
                code, _, err = await _command(["scancel", handle.job_id])
                if code == 0 or "invalid job id" in err.lower() or "already completing" in err.lower():
                    break
            except ClusterUnavailable as exc:
                err = str(exc)
            log.warning("scancel %s: %s; retrying", handle.job_id, err)
            await asyncio.sleep(2)
        try:
            return await asyncio.wait_for(self.wait(handle), grace + 60)
        except asyncio.TimeoutError:
            return Ended(None)

    async def interrupt(self, handle: SlurmHandle, grace: float) -> Ended | None:
        """The runner is stopping: cancel the job, or leave it for a later runner to re-attach."""
        if self.options.on_interrupt is OnInterrupt.LEAVE:
            return None
        return await self.terminate(handle, grace)

    async def clean_up(self, handle: SlurmHandle, grace: float) -> bool:
        return False  # SLURM stops whatever a job leaves behind on its node

    async def recover(self, attempt: Attempt, grace: float) -> Recovered:
        """A job a dead runner submitted is SLURM's, not ours to kill: follow it. If the runner
        died during sbatch (no job id recorded), look for the job by its name."""
        if attempt.slurm_job_id is not None:
            return Recovered(handle=self.attach(attempt.slurm_job_id))
        try:
            handle = await self.find(attempt.token)
        except ClusterUnavailable as exc:
            raise ClusterUnavailable(f"cannot tell whether {attempt.job_key} reached SLURM ({exc}); "
                                     "run again when the cluster answers") from None
        if handle is None:
            return Recovered(stopped="the runner died while submitting this attempt; SLURM has no such job",
                             note="attempt never reached SLURM; now interrupted")
        return Recovered(handle=handle)
