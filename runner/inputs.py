"""What the engine learns about the files a job reads (its `inputs`): whether each is there (a
missing one blocks the job, unless a job it needs makes it), and the job's fingerprint.

A fingerprint is the SHA-256 of the job's argv, the path, size and modification time of every
input file (folders walked), and its `identity` (the script it runs, ...), as Nextflow hashes a
task's inputs. A job is fingerprinted when it is planned, and again once its needs have
succeeded, from the files they made: that is done here, off the event loop.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace

from runner.jobs import Input, Job


def _walk_files(folder: str) -> list[str]:
    """The files `Path(folder).rglob('*')` finds (symlinked folders are not entered), in the
    order sorted() gives those paths (part by part)."""
    found: list[tuple[tuple[str, ...], str]] = []

    def visit(directory: str, parts: tuple[str, ...]) -> None:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_dir() and not entry.is_symlink():
                    visit(entry.path, (*parts, entry.name))
                elif entry.is_file():
                    found.append(((*parts, entry.name), entry.path))
    visit(folder, ())
    return [path for _, path in sorted(found)]


def _problem(item: Input) -> str | None:
    """Why the input cannot be read now, in a blocked reason's words, or None."""
    if not item.folder:
        return None if os.path.isfile(item.path) else f"missing {item.what} {item.path}"
    if not os.path.isdir(item.path):
        return f"missing {item.what} folder {item.path}"
    if item.holds:
        held = os.path.join(item.path, item.holds)
        return None if os.path.isfile(held) else f"missing {item.holds_what} {held}"
    with os.scandir(item.path) as entries:
        if next(entries, None) is None:
            return f"{item.what} folder {item.path} is empty"
    return None


class InputFiles:
    """The input files as they are now, each path looked up once: many jobs share an
    input (one job's output folder is read by several others), and thousands of jobs are planned
    at once."""

    def __init__(self) -> None:
        self._signatures: dict[str, list[list]] = {}
        self._problems: dict[Input, str | None] = {}

    def problem(self, item: Input) -> str | None:
        if item not in self._problems:
            self._problems[item] = _problem(item)
        return self._problems[item]

    def signature(self, paths: list[str]) -> list[list]:
        """Path, size and mtime of every file of `paths` (folders walked); missing ones left out."""
        entries = []
        for path in paths:
            if path not in self._signatures:
                self._signatures[path] = self._signature(path)
            entries += self._signatures[path]
        return entries

    @staticmethod
    def _signature(path: str) -> list[list]:
        entries = []
        for file in _walk_files(path) if os.path.isdir(path) else [path]:
            try:
                stat = os.stat(file)
            except FileNotFoundError:
                continue
            entries.append([file, stat.st_size, stat.st_mtime_ns])
        return entries

    def fingerprint(self, job: Job) -> str:
        inputs = self.signature([item.path for item in job.inputs])
        return hashlib.sha256(json.dumps([list(job.argv), inputs, *job.identity]).encode()).hexdigest()

    def blocked_reason(self, job: Job, made: frozenset[str] = frozenset()) -> str | None:
        """Every input that is missing and that no job in `made` (what its needs make) makes."""
        problems = [self.problem(item) for item in job.inputs if os.path.normpath(item.path) not in made]
        return "; ".join(p for p in problems if p) or None


def prepare(jobs: list[Job]) -> list[Job]:
    """The jobs with their fingerprints and, where an input is missing that none of the jobs it
    needs makes, the reason they are blocked."""
    files = InputFiles()
    produces = {job.key: job.produces for job in jobs}
    prepared = []
    for job in jobs:
        made = frozenset(os.path.normpath(p) for need in job.needs for p in produces.get(need, ()))
        prepared.append(replace(job, fingerprint=files.fingerprint(job), blocked_reason=files.blocked_reason(job, made)))
    return prepared


def refresh(job: Job) -> Job:
    """The job once every job it needs has succeeded: fingerprinted from the files they made, and
    blocked if an input is still missing. Reads the disk: run it off the event loop."""
    files = InputFiles()
    return replace(job, fingerprint=files.fingerprint(job), blocked_reason=files.blocked_reason(job))
