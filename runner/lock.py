"""One runner per ledger: an exclusive flock on `<ledger>.lock`, released by the kernel when the
holder dies, so a crashed runner's lock is taken over without any clean-up."""

from __future__ import annotations

import fcntl
import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path


class LockError(Exception):
    """Another live runner drives this ledger."""


class RunnerLock:
    def __init__(self, ledger: Path) -> None:
        self.path = ledger.with_name(ledger.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise LockError(f"cannot create lock file {self.path} ({exc.strerror}); the ledger's "
                            "folder must be writable, or choose another --ledger") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read_holder(fd)
            os.close(fd)
            raise LockError(f"ledger {self.path.with_suffix('')} is driven by another runner "
                            f"(pid {holder.get('pid', '?')} on {holder.get('host', '?')} since "
                            f"{holder.get('since', '?')}); wait for it or stop it") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}).encode())
        self._fd = fd

    @staticmethod
    def _read_holder(fd: int) -> dict:
        try:
            return json.loads(os.pread(fd, 4096, 0) or b"{}")
        except (OSError, ValueError):
            return {}

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
