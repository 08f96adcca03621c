"""Run an attempt as a local child process in its own session (process group).

The child writes stdout and stderr straight into its two log files: the runner reads no pipe, so
nothing can fill up, and the logs keep growing even if the runner dies. Stopping an attempt
signals its whole process group, so grandchildren go with it, and then every process still
carrying the attempt's RUNNER_ATTEMPT_TOKEN, so a grandchild that left the group goes too.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from runner.executors import Ended, LaunchError, LaunchSpec

LOG_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC


@dataclass
class Handle:
    pid: int
    pgid: int
    process_start: str | None
    process: asyncio.subprocess.Process
    token: str | None = None  # RUNNER_ATTEMPT_TOKEN of the attempt, inherited by its descendants

    def ledger_fields(self) -> dict:
        return {"pid": self.pid, "pgid": self.pgid, "process_start": self.process_start}


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown-boot"


def process_start(pid: int) -> str | None:
    """'<boot id>:<start ticks>' identifies a process even after its pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
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


def pids_with_token(token: str) -> list[int]:
    """Processes whose environment carries this attempt's token (they escaped the group or the
    runner died before it recorded the pid)."""
    needle = f"RUNNER_ATTEMPT_TOKEN={token}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
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
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return os.open(path, LOG_FLAGS, 0o600)


class LocalExecutor:
    """Runs attempts as child processes of this runner."""

    name = "local"

    def device_label(self, device: str) -> str | None:
        return device  # the CUDA_VISIBLE_DEVICES this runner gives the child

    async def launch(self, spec: LaunchSpec) -> Handle:
        try:
            out_fd = open_log(spec.stdout_log)
        except OSError as exc:
            raise LaunchError(f"cannot create log {spec.stdout_log}: {exc.strerror}", exc.errno) from None
        try:
            err_fd = open_log(spec.stderr_log)
        except OSError as exc:
            os.close(out_fd)
            raise LaunchError(f"cannot create log {spec.stderr_log}: {exc.strerror}", exc.errno) from None
        try:
            process = await asyncio.create_subprocess_exec(
                *spec.argv, cwd=spec.cwd, env=spec.env, stdin=asyncio.subprocess.DEVNULL,
                stdout=out_fd, stderr=err_fd, start_new_session=True)
        except OSError as exc:
            raise LaunchError(f"cannot start {spec.argv[0]}: {exc.strerror or exc}") from None
        finally:
            os.close(out_fd)
            os.close(err_fd)
        # start_new_session: the child leads a new session and group whose id is its pid.
        return Handle(process.pid, process.pid, process_start(process.pid), process, spec.token or None)

    async def wait(self, handle: Handle, report=None) -> Ended:
        """The exit status (negative: killed by that signal)."""
        return Ended(await asyncio.shield(handle.process.wait()))

    def is_alive(self, handle: Handle) -> bool:
        return handle.process.returncode is None

    async def terminate(self, handle: Handle, grace: float) -> Ended:
        """SIGTERM the whole group, SIGKILL what is left after `grace` seconds; reap the child."""
        signal_group(handle.pgid, signal.SIGTERM)
        deadline = asyncio.get_running_loop().time() + grace
        while asyncio.get_running_loop().time() < deadline:
            if handle.process.returncode is not None and not group_alive(handle.pgid):
                break
            await asyncio.sleep(0.05)
        signal_group(handle.pgid, signal.SIGKILL)
        status = await handle.process.wait()
        await self._stop_escaped(handle, grace)
        return Ended(status)

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

    async def _stop_escaped(self, handle: Handle, grace: float) -> bool:
        escaped = pids_with_token(handle.token) if handle.token else []
        await stop_pids(escaped, grace)
        return bool(escaped)
