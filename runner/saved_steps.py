"""What an attempt of a resumable job saved: the steps in its progress file.

A command that saves its work as it goes, and continues from it when run again, writes a small JSON
file beside it and replaces it atomically whenever it saves:

    {"token": "<RUNNER_ATTEMPT_TOKEN of the attempt that wrote it>", "start_step": K0, "step": K, ...}

`start_step` is where this attempt started (0, or the step of the saved work it continued from) and
`step` the step whose work is on disk. The token ties the file to one attempt: a file left by an
earlier attempt, or by a command run by hand, says nothing about this one (an attempt that died
before writing it saved nothing).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Steps:
    start: int  # the step the attempt started from
    end: int  # the step whose work it left saved

    @property
    def advanced(self) -> bool:
        return self.end > self.start


def read_steps(path: Path | None, token: str) -> Steps | None:
    """The steps the attempt with `token` recorded in `path`; None when it recorded none."""
    if path is None:
        return None
    try:
        found = json.loads(Path(path).read_text(encoding="utf-8"))
        if found.get("token") != token:
            return None
        start, end = found["start_step"], found["step"]
    except (OSError, ValueError, AttributeError, KeyError):
        return None  # no file, or not one we can read: nothing is claimed
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in (start, end)):
        return None
    return Steps(start, end)
