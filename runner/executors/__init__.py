"""Ways to run an attempt's command: as a local child process (default) or as a SLURM job.

Both implement `Executor`. They report facts (an exit status, the state the cluster ended a job
in) and never decide a failure class: `results.judge` does.
"""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from runner.jobs import Attempt


class LaunchError(Exception):
    """The command could not be started."""

    def __init__(self, message: str, error: int | None = None) -> None:
        super().__init__(message)
        self.no_space = error in (errno.ENOSPC, errno.EDQUOT)  # then the attempt failed as disk_full


@dataclass(frozen=True)
class LaunchSpec:
    argv: tuple[str, ...]
    cwd: Path
    env: dict[str, str]
    stdout_log: Path
    stderr_log: Path
    token: str = ""  # the attempt's RUNNER_ATTEMPT_TOKEN: names it where the executor can
    resumable: bool = False  # the command saves its work when warned (SIGUSR1) and continues from it


@dataclass(frozen=True)
class Ended:
    """How a command ended, as the executor saw it: facts, not a verdict."""

    status: int | None  # exit status as subprocess gives it (-N: killed by signal N); None: unknown
    cluster_state: str | None = None  # the terminal state a cluster reported (SLURM's, e.g. TIMEOUT)
    detail: str | None = None  # what else the executor knows (e.g. SLURM's reason)


@dataclass(frozen=True)
class Recovered:
    """What an executor found of an attempt that a runner which died left `running`."""

    handle: Any | None = None  # still running where it can be followed (a SLURM job): follow it
    stopped: str | None = None  # otherwise what became of it, for the ledger (it is interrupted)
    note: str = ""  # and for the person running: "<job key>: <note>"


class Handle(Protocol):
    def ledger_fields(self) -> dict:
        """What the ledger records to find the attempt again (pid, pgid, ... or a SLURM job id)."""


class Executor(Protocol):
    name: str  # stored in attempts.backend: 'local' or 'slurm'

    def device_label(self, device: str) -> str | None:
        """The device recorded for an attempt given this CUDA_VISIBLE_DEVICES (None: unknown here)."""

    async def launch(self, spec: LaunchSpec) -> Handle:
        """Start the command; raise LaunchError when it cannot start."""

    def wait(self, handle: Handle, report: Callable[[Any], Awaitable[None]] | None = None) -> Awaitable[Ended]:
        """How the command ended, once it has; `report` hears of cluster states as they change.
        Cancelling the wait stops nothing."""

    async def terminate(self, handle: Handle, grace: float) -> Ended:
        """Stop it now (a timeout): SIGTERM, SIGKILL after `grace` seconds."""

    async def interrupt(self, handle: Handle, grace: float) -> Ended | None:
        """The runner is stopping: stop it, or leave it running (None) for a later runner."""

    async def clean_up(self, handle: Handle, grace: float) -> bool:
        """After the command ended: stop whatever it left running; True if there was any."""

    async def recover(self, attempt: Attempt, grace: float) -> Recovered:
        """An attempt a dead runner left `running`: stop what is left of it, or hand it back to
        be followed."""

    def close(self) -> None:
        """The run is over: release what the executor holds."""
