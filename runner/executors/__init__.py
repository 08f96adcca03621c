"""Ways to run an attempt's command: as a local child process (default) or as a SLURM job.

Every executor offers the same small interface:
  launch(spec) -> handle          start the command (raise LaunchError when it cannot start)
  wait(handle, report)            awaitable Ended, once it ends; `report(status)` hears of cluster
                                  states; cancelling the wait stops nothing
  terminate(handle, grace)        stop it now (timeout) -> Ended
  interrupt(handle, grace)        the runner is stopping -> Ended, or None when left running
  clean_up(handle, grace)         stop what the command left behind; True if there was any
  close()                         the run is over: release what the executor holds
and each handle says what the ledger records about it (`ledger_fields`).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path

from runner.jobs import FailureClass


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


@dataclass(frozen=True)
class Ended:
    """How a command ended, as the executor saw it."""

    status: int | None  # exit status as subprocess gives it (-N: killed by signal N); None: unknown
    failure: FailureClass | None = None  # set when the executor or cluster ended it for its own reason
    detail: str | None = None
