"""Run an attempt as a local child process in its own session (process group).

The child writes stdout and stderr straight into its two log files: the runner reads no pipe, so
nothing can fill up, and the logs keep growing even if the runner dies. Stopping an attempt
signals its whole process group, so grandchildren go with it, and then every process still
carrying the attempt's RUNNER_ATTEMPT_TOKEN, so a grandchild that left the group goes too.

Spawning is a plain `subprocess.Popen` (vfork + exec, no pipes, no asyncio transport) and the exit
is watched through a pidfd registered with the event loop: no thread per child, so thousands of
short jobs cost little more than their fork and exec.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import functools
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from runner.executors import Ended, LaunchError, LaunchSpec, Recovered
from runner.jobs import Attempt

LOG_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC


@dataclass
class Handle:
    pid: int
    pgid: int
    process_start: str | None
    process: subprocess.Popen
    token: str | None = None  # RUNNER_ATTEMPT_TOKEN of the attempt, inherited by its descendants
    exited: asyncio.Future | None = None  # resolves with how it ended (Ended); made by wait()

    def ledger_fields(self) -> dict:
        return {"pid": self.pid, "pgid": self.pgid, "process_start": self.process_start}


@functools.cache
def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown-boot"


def process_start(pid: int) -> str | None:
    """'<boot id>:<start ticks>' identifies a process even after its pid is reused."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            stat = os.read(fd, 4096).decode(errors="replace")
        finally:
            os.close(fd)
    except OSError:
        return None
    # The command name (field 2) may hold spaces or parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    return f"{boot_id()}:{fields[19]}"


def signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to a process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


def pid_alive(pid: int) -> bool:
    """True while the process runs (a zombie, dead but not yet reaped by its parent, is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def group_alive(pgid: int) -> bool:
    return signal_group(pgid, 0)


PR_SET_CHILD_SUBREAPER = 36  # from <linux/prctl.h>


def become_subreaper() -> bool:
    """Have orphaned descendants re-parented to this process (Linux 3.4+); False elsewhere."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def main_thread_children() -> list[int] | None:
    """Children of this process's main thread, which is where the kernel re-parents orphans (the
    first live thread of the subreaper; the commands themselves are children of the spawner
    threads). None where the kernel keeps no list."""
    try:
        with open(f"/proc/self/task/{os.getpid()}/children", "rb") as f:
            return list(map(int, f.read().split()))
    except OSError:
        return None


def reap(pids: list[int]) -> None:
    """Collect the exit status of the children among `pids` that have ended (never blocks)."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def carries_token(pid: int, token: str) -> bool:
    """Whether the process's environment holds this attempt's RUNNER_ATTEMPT_TOKEN. OSError when
    the process is gone, or a zombie (an ended process has no environment to read)."""
    with open(f"/proc/{pid}/environ", "rb") as f:
        return f"RUNNER_ATTEMPT_TOKEN={token}".encode() in f.read().split(b"\0")


def pids_with_token(token: str) -> list[int]:
    """Processes whose environment carries this attempt's token (they escaped the group or the
    runner died before it recorded the pid)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if carries_token(int(entry.name), token):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


async def stop_pids(pids: list[int], grace: float) -> None:
    """SIGTERM the processes, wait up to `grace` seconds for them to go, SIGKILL the rest."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        if sig == signal.SIGTERM:
            for _ in range(int(grace / 0.05) + 1):
                if not any(pid_alive(pid) for pid in pids):
                    return
                await asyncio.sleep(0.05)


def open_log(path: Path) -> int:
    """Create a log file readable by the user only; never reuse an earlier attempt's file."""
    return os.open(path, LOG_FLAGS, 0o600)


def start(spec: LaunchSpec) -> Handle:
    """Create the logs and start the child (blocking: vfork waits until the child has exec'd)."""
    try:
        spec.stdout_log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        out_fd = open_log(spec.stdout_log)
    except OSError as exc:
        raise LaunchError(f"cannot create log {spec.stdout_log}: {exc.strerror}", exc.errno) from None
    try:
        err_fd = open_log(spec.stderr_log)
    except OSError as exc:
        os.close(out_fd)
        raise LaunchError(f"cannot create log {spec.stderr_log}: {exc.strerror}", exc.errno) from None
    try:
        process = subprocess.Popen(spec.argv, cwd=spec.cwd, env=spec.env, stdin=subprocess.DEVNULL,
                                   stdout=out_fd, stderr=err_fd, start_new_session=True)
    except OSError as exc:
        raise LaunchError(f"cannot start {spec.argv[0]}: {exc.strerror or exc}") from None
    finally:
        os.close(out_fd)
        os.close(err_fd)
    # start_new_session: the child leads a new session and group whose id is its pid.
    return Handle(process.pid, process.pid, process_start(process.pid), process, spec.token or None)


class LocalExecutor:
    """Runs attempts as child processes of this runner.

    Children are started by a few spawner threads: creating log files and vfork + exec block
    for a while (longer on a busy machine), and the event loop keeps scheduling meanwhile."""

    name = "local"

    def __init__(self, spawners: int = 4) -> None:
        self._spawners = spawners
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._orphans_come_here = False  # whether escaped processes become our children
        self._leaders: set[int] = set()  # pids of the commands we started and have not reaped
        self._spawning = 0  # launches in flight: a child of theirs may not be in _leaders yet

    def device_label(self, device: str) -> str | None:
        return device  # the CUDA_VISIBLE_DEVICES this runner gives the child

    async def launch(self, spec: LaunchSpec) -> Handle:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(self._spawners, "spawner")
            self._orphans_come_here = become_subreaper() and main_thread_children() is not None
        self._spawning += 1
        starting = self._pool.submit(start, spec)
        try:
            handle = await asyncio.wrap_future(starting)
            self._leaders.add(handle.pid)
            return handle
        except asyncio.CancelledError:
            # The runner is going down while the child starts: stop it as soon as it has.
            starting.add_done_callback(lambda f: not f.cancelled() and f.exception() is None
                                       and signal_group(f.result().pgid, signal.SIGKILL))
            raise
        finally:
            self._spawning -= 1

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            if self._orphans_come_here:
                self._orphans()  # for its reaping of the orphans that ended since the last attempt

    def wait(self, handle: Handle, report=None) -> asyncio.Future:
        """A future that resolves with how the child ended (Ended). Cancelling it stops nothing,
        neither the child nor other waiters."""
        if handle.exited is None:
            handle.exited = _exit_future(handle.process)
            handle.exited.add_done_callback(lambda _: self._leaders.discard(handle.pid))
        return asyncio.shield(handle.exited)

    async def terminate(self, handle: Handle, grace: float) -> Ended:
        """SIGTERM the whole group, SIGKILL what is left after `grace` seconds; reap the child."""
        signal_group(handle.pgid, signal.SIGTERM)
        deadline = asyncio.get_running_loop().time() + grace
        while asyncio.get_running_loop().time() < deadline:
            if handle.process.poll() is not None and not group_alive(handle.pgid):
                break
            await asyncio.sleep(0.05)
        signal_group(handle.pgid, signal.SIGKILL)
        ended = await self.wait(handle)
        await self._stop_escaped(handle, grace)
        return ended

    async def interrupt(self, handle: Handle, grace: float) -> Ended:
        """The runner is stopping: a local child cannot outlive it usefully, so it stops too."""
        return await self.terminate(handle, grace)

    async def clean_up(self, handle: Handle, grace: float) -> bool:
        """After the leader exited: stop anything it left running, in its group or escaped from
        it. True if there was any."""
        if group_alive(handle.pgid):
            await self.terminate(handle, grace)
            return True
        return await self._stop_escaped(handle, grace)

    async def recover(self, attempt: Attempt, grace: float) -> Recovered:
        """A dead runner's child cannot be followed (it is not ours to wait for): stop it and
        everything it started. Its group is signalled only if the leader is the very process
        that was started (pid and start time: a reused pid is never signalled); every process
        carrying the attempt's token goes too, even one that left the group or whose pid was
        never recorded."""
        leader_ours = bool(attempt.pid and attempt.pgid and attempt.process_start
                           and process_start(attempt.pid) == attempt.process_start)
        if leader_ours:
            signal_group(attempt.pgid, signal.SIGTERM)
        stray = pids_with_token(attempt.token)
        await stop_pids(stray, grace)
        if leader_ours:
            signal_group(attempt.pgid, signal.SIGKILL)
        note = "attempt left running by an earlier runner is now interrupted"
        if leader_ours or stray:
            return Recovered(stopped="the runner died while this attempt ran; its leftover processes were killed",
                             note=f"{note} (its processes were killed)")
        return Recovered(stopped="the runner died while this attempt ran; no process was left", note=note)

    async def _stop_escaped(self, handle: Handle, grace: float) -> bool:
        if not handle.token:
            return False
        if not self._orphans_come_here:
            escaped = pids_with_token(handle.token)
            await stop_pids(escaped, grace)
            return bool(escaped)
        found = False
        # Stopping an escaped process re-parents its own children to us: look again.
        for _ in range(100):
            escaped = self._orphans(handle.token)
            if not escaped:
                break
            found = True
            await stop_pids(escaped, grace)
            reap(escaped)
        return found

    def _orphans(self, token: str = "") -> list[int]:
        """Our children that are not commands we started: orphans re-parented to us. Returns the
        live ones carrying `token`; reaps the ended ones (when no launch is in flight, every
        command we started is known, so no command's exit status can be taken from its waiter)."""
        found, ended = [], []
        for pid in main_thread_children() or []:
            if pid in self._leaders:
                continue
            try:
                if carries_token(pid, token):
                    found.append(pid)
            except OSError:  # ESRCH: a zombie, an orphan that ended
                ended.append(pid)
        if ended and not self._spawning:
            reap(ended)  # a live one is left alone: waitpid(WNOHANG) returns at once
        return found


def _exit_future(process: subprocess.Popen) -> asyncio.Future:
    """Watch for the child's exit without blocking the loop or starting a thread: its pidfd
    becomes readable when it exits (Linux 5.3+); elsewhere, poll."""
    loop = asyncio.get_running_loop()
    exited = loop.create_future()
    if process.poll() is not None:
        exited.set_result(Ended(process.returncode))
        return exited
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):
        loop.create_task(_poll_exit(process, exited))
        return exited

    def on_exit() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        status = process.wait()  # the child is gone: this reaps it at once
        if not exited.done():
            exited.set_result(Ended(status))
    loop.add_reader(pidfd, on_exit)
    return exited


async def _poll_exit(process: subprocess.Popen, exited: asyncio.Future) -> None:
    while process.poll() is None:
        await asyncio.sleep(0.05)
    if not exited.done():
        exited.set_result(Ended(process.returncode))
