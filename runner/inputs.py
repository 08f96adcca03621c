"""What the engine learns about the files a job reads (its `inputs`): whether each is there (a
missing one blocks the job, unless a job it needs makes it), and the job's fingerprint.

A fingerprint is the SHA-256 of the job's `basis`: its argv with the study's root and its working
folder written as tokens (runner.places), the path under the study's root, size and content hash
(SHA-256) of every input file (folders walked), and its `identity` (the script it runs, ...), as
Nextflow hashes a task's inputs. So a study that moves keeps its fingerprints, and a file copied
without its modification time is still the same file. Content hashes are cached by path, size,
modification and change time and inode (`ContentHashes`, kept in the ledger): a file is read once
per version. A job is fingerprinted when it is planned, and again once its needs have succeeded,
from the files they made: that is done here, off the event loop.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass, field, replace

from runner import places
from runner.jobs import Input, Job

BASIS_VERSION = "v2"


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


@dataclass
class ContentHashes:
    """SHA-256 of files by path (as the ledger records it), valid while the file's size, mtime,
    ctime and inode are those seen when it was hashed: a rewrite changes ctime even when it keeps
    size and mtime (which a coarse clock or a copy can), so a stale hash is never used."""

    known: dict[str, tuple[int, int, int, int, str]] = field(default_factory=dict)
    new: dict[str, tuple[int, int, int, int, str]] = field(default_factory=dict)  # to keep in the ledger
    _lock: threading.Lock = field(default_factory=threading.Lock)  # refreshes run in worker threads

    def digest(self, file: str, key: str, stat: os.stat_result) -> str:
        seen = (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
        with self._lock:
            cached = self.new.get(key) or self.known.get(key)
        if cached is not None and cached[:4] == seen:
            return cached[4]
        content = hashlib.sha256()
        with open(file, "rb") as f:
            while chunk := f.read(1 << 20):
                content.update(chunk)
        with self._lock:
            self.new[key] = (*seen, content.hexdigest())
        return content.hexdigest()

    def take_new(self) -> dict[str, tuple[int, int, int, int, str]]:
        """The hashes learned since the last call, for the ledger to keep; they stay known here."""
        with self._lock:
            taken, self.new = self.new, {}
            self.known.update(taken)
        return taken


class InputFiles:
    """The input files as they are now, each path looked up once: many jobs share an
    input (one job's output folder is read by several others), and thousands of jobs are planned
    at once. `root`: the study's root (absolute, normalised)."""

    def __init__(self, root: str, hashes: ContentHashes | None = None) -> None:
        self.root = root
        self.hashes = hashes if hashes is not None else ContentHashes()
        self._signatures: dict[str, list[list]] = {}
        self._stats: dict[str, list[list]] = {}
        self._problems: dict[Input, str | None] = {}

    def problem(self, item: Input) -> str | None:
        if item not in self._problems:
            self._problems[item] = _problem(item)
        return self._problems[item]

    def signature(self, paths: list[str]) -> list[list]:
        """Path (relative to the root when under it), size and content hash of every file of
        `paths` (folders walked); missing ones left out."""
        entries = []
        for path in paths:
            if path not in self._signatures:
                self._signatures[path] = self._signature(path)
            entries += self._signatures[path]
        return entries

    def _signature(self, path: str) -> list[list]:
        entries = []
        for file in _walk_files(path) if os.path.isdir(path) else [path]:
            try:
                stat = os.stat(file)
                key = places.record(file, self.root)
                entries.append([key, stat.st_size, self.hashes.digest(file, key, stat)])
            except FileNotFoundError:
                continue
        return entries

    def basis(self, job: Job) -> str:
        """What the fingerprint hashes, as canonical JSON text (kept with each attempt, so a
        rerun can say what changed)."""
        root, workdir = self.root, os.path.normpath(os.path.abspath(job.cwd))
        argv = [places.portable(a, root, workdir) for a in job.argv]
        inputs = self.signature([item.path for item in job.inputs])
        return json.dumps([BASIS_VERSION, argv, inputs, *job.identity])

    def legacy_fingerprint(self, job: Job) -> str:
        """The fingerprint of runners before the basis (absolute paths, sizes and mtimes): a
        success recorded by one still stands when this matches (then it is stamped anew)."""
        stats = []
        for path in (item.path for item in job.inputs):
            if path not in self._stats:
                self._stats[path] = [[f, s.st_size, s.st_mtime_ns] for f in
                                     (_walk_files(path) if os.path.isdir(path) else [path])
                                     if (s := _stat(f)) is not None]
            stats += self._stats[path]
        return hashlib.sha256(json.dumps([list(job.argv), stats, *job.identity]).encode()).hexdigest()

    def blocked_reason(self, job: Job, made: frozenset[str] = frozenset()) -> str | None:
        """Every input that is missing and that no job in `made` (what its needs make) makes."""
        problems = [self.problem(item) for item in job.inputs if os.path.normpath(item.path) not in made]
        return "; ".join(p for p in problems if p) or None

    def prepared(self, job: Job, made: frozenset[str] = frozenset()) -> Job:
        basis = self.basis(job)
        return replace(job, basis=basis, fingerprint=fingerprint_of(basis),
                       blocked_reason=self.blocked_reason(job, made))


def _stat(file: str) -> os.stat_result | None:
    try:
        return os.stat(file)
    except FileNotFoundError:
        return None


def fingerprint_of(basis: str) -> str:
    return hashlib.sha256(basis.encode()).hexdigest()


def prepare(jobs: list[Job], files: InputFiles) -> list[Job]:
    """The jobs with their fingerprints and, where an input is missing that none of the jobs it
    needs makes, the reason they are blocked."""
    produces = {job.key: job.produces for job in jobs}
    prepared = []
    for job in jobs:
        made = frozenset(os.path.normpath(p) for need in job.needs for p in produces.get(need, ()))
        prepared.append(files.prepared(job, made))
    return prepared


def refresh(job: Job, root: str, hashes: ContentHashes) -> Job:
    """The job once every job it needs has succeeded: fingerprinted from the files they made, and
    blocked if an input is still missing. Reads the disk: run it off the event loop."""
    return InputFiles(root, hashes).prepared(job)
