"""Progress of a run for the person watching: one plain line per event, and on a terminal a
status line kept at the bottom with counts and elapsed time."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TextIO

from runner.scheduler import Event, EventKind


class Progress:
    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        # sys.stdout is looked up now, not at import: it may have been replaced since.
        self.total, self.stream = total, stream or sys.stdout
        self.tty = self.stream.isatty()
        self.done = self.failed = self.running = self.blocked = 0
        self.started = time.monotonic()

    def _write(self, line: str | None) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")  # clear the status line before a permanent line
        if line is not None:
            self.stream.write(line + "\n")
        if self.tty:
            elapsed = int(time.monotonic() - self.started)
            self.stream.write(f"[{self.done}/{self.total} done, {self.running} running, "
                              f"{self.failed} failed" + (f", {self.blocked} blocked" if self.blocked else "")
                              + f", {elapsed // 60}m{elapsed % 60:02d}s]")
        self.stream.flush()

    async def tick(self) -> None:
        """On a terminal, keep the elapsed time moving between events."""
        while self.tty:
            await asyncio.sleep(1)
            self._write(None)

    def message(self, line: str) -> None:
        self._write(line)

    def __call__(self, event: Event) -> None:
        device = event.slot.device.visible_id
        if event.kind is EventKind.STARTED:
            self.running += 1
            pinned = f" (CUDA_VISIBLE_DEVICES={device})" if device else ""
            self._write(f"start   {event.job.key}  attempt {event.attempt} on {event.slot.name}{pinned}")
        elif event.kind is EventKind.FINISHED:
            self.running -= 1
            outcome = event.outcome
            if outcome.succeeded:
                self.done += 1
                self._write(f"ok      {event.job.key}  attempt {event.attempt} in {event.duration_s:.1f}s")
            else:
                self.failed += 1
                saved = f"; saved steps {event.steps.start}-{event.steps.end}" if event.steps else ""
                self._write(f"FAILED  {event.job.key}  attempt {event.attempt}: "
                            f"{outcome.failure_class.value} ({outcome.detail}){saved}; log {event.stderr_log}")
        elif event.kind is EventKind.REATTACHED:
            self.running += 1
            self._write(f"follow  {event.job.key}  attempt {event.attempt}: still running on SLURM")
        elif event.kind is EventKind.LEFT:
            self.running -= 1
            self._write(f"left    {event.job.key}  attempt {event.attempt} running on SLURM "
                        "(--on-interrupt leave); the next run re-attaches")
        elif event.kind is EventKind.BLOCKED:
            self.blocked += 1
            self._write(f"blocked {event.job.key}: {event.reason}")
        elif event.kind is EventKind.RETRYING:
            self.failed -= 1
            if event.steps:  # continued from its saved work: not counted against --retries
                self._write(f"resume  {event.job.key}  at step {event.steps.end} after "
                            f"{event.outcome.failure_class.value} (not counted against --retries)")
            else:
                self._write(f"retry   {event.job.key}  after {event.outcome.failure_class.value}")

    def close(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
