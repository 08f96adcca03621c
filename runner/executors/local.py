"""Run an attempt as a local child process in its own session (process group).

The child writes stdout and stderr straight into its two log files: the runner reads no pipe, so
nothing can fill up, and the logs keep growing even if the runner dies. Stopping an attempt
signals its whole process group, so grandchildren go with it.
"""

from __future__ import annotations

import asyncio
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
            raise LaunchError(f"cannot create log {spec.stdout_log}: {exc.strerror}") from None
        try:
            err_fd = open_log(spec.stderr_log)
        except OSError as exc:
            os.close(out_fd)
            raise LaunchError(f"cannot create log {spec.stderr_log}: {exc.strerror}") from None
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
        return Handle(process.pid, process.pid, process_start(process.pid), process)

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
        return Ended(await handle.process.wait())

    async def interrupt(self, handle: Handle, grace: float) -> Ended:
        """The runner is stopping: a local child cannot outlive it usefully, so it stops too."""
        return await self.terminate(handle, grace)

    async def clean_up_group(self, handle: Handle, grace: float) -> bool:
        """After the leader exited: stop anything it left running in its group. True if any."""
        if not group_alive(handle.pgid):
            return False
        await self.terminate(handle, grace)
        return True
