"""Files that appear whole or not at all: what a reader (the runner's success check, a resumed
training) finds is the old file or the new one, never a torn one, even after a crash."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Callable


def write_atomically(path: Path, content: bytes | Callable[[BinaryIO], None]) -> None:
    """Write `content` (bytes, or a function writing to a binary file) into a temporary file of the
    same folder (.NAME.tmp-PID), fsync it, rename it onto `path` and fsync the folder: a reader
    finds the old file or the new one, never a torn one."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as handle:
            if callable(content):
                content(handle)
            else:
                handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a crash
    except OSError:
        pass  # a file system that cannot sync a folder still renamed atomically
    finally:
        os.close(folder)
