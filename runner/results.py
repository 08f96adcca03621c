"""Judge an attempt: the one place where facts (an exit status, a signal, the state a cluster
ended a job in, the runner's own stop, the output check, disk space) become an Outcome with a
failure class. Executors and the scheduler report facts; `judge` decides.

Exit 0 is not success until the job's outputs pass its check (jobs.MetricsCheck, OutputsCheck).
Commands exit 0 with no metrics file, with empty (NaN) cells for a model whose evaluation
raised, or with a stale file from an earlier run; none of these is a success.

Whether the file is new is decided without any clock: the file's identity (inode, size, mtime,
ctime, all from its own filesystem) is taken just before the launch and compared with the
identity after the exit. File timestamps tick coarsely (4 ms on ext4, 1-2 s on network and FAT
filesystems) while the runner's clock is precise, so comparing the two called fresh files stale.
"""

from __future__ import annotations

import csv
import enum
import json
import math
import os
import resource
import signal
import zipfile
from dataclasses import dataclass
from pathlib import Path

from runner.executors import Ended
from runner.jobs import FailureClass, Job, MetricsCheck, Outcome, OutputsCheck
from runner.npzmeta import NpzEntryError, npz_keys, read_npz_number

REQUIRED_COLUMNS = ("model", "metric", "amplitude", "phase", "value")
MAX_METRICS_BYTES = 64 << 20
LOW_SPACE_BYTES = 1 << 20  # a filesystem with less free space than this counts as full
# The coarsest file timestamps in common use (FAT's 2 s). Used only for attempts launched by a runner
# that recorded no identity of the metrics file (before ledger schema 6).
LEGACY_TICK_NS = 2_000_000_000

FileId = tuple[int, int, int, int]  # inode, size, mtime_ns, ctime_ns: all from the file's filesystem


def file_id(path: Path) -> FileId | None:
    """The identity of the file at `path` now, or None when there is none. The file is opened, not
    only stat-ed: on NFS an open revalidates attributes a client may have cached."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError:  # e.g. unreadable: its metadata still identifies it
        try:
            return _id(os.stat(path))
        except FileNotFoundError:
            return None
    try:
        return _id(os.fstat(fd))
    finally:
        os.close(fd)


def _id(stat: os.stat_result) -> FileId:
    # No st_dev: a runner resumed on another host of a cluster sees another device number for
    # the same network file.
    return stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


@dataclass(frozen=True)
class PriorFile:
    """The metrics file as it was just before an attempt launched: the attempt's output is fresh
    only if the file after the exit is not this one."""

    file_id: FileId | None  # None: there was no file
    legacy_started_ns: int | None = None  # for attempts whose runner recorded no identity
    # The check's sibling files before the launch, in order; None: not recorded, so never trusted.
    sibling_ids: tuple[FileId | None, ...] | None = None

    @classmethod
    def now(cls, path: Path, siblings: tuple[Path, ...] = ()) -> "PriorFile":
        return cls(file_id(path), sibling_ids=tuple(file_id(s) for s in siblings))

    def to_ledger(self) -> str:
        if not self.sibling_ids:  # the format of ledger schema 6, kept when there is no sibling
            return json.dumps(self.file_id)
        return json.dumps({"file": self.file_id, "siblings": list(self.sibling_ids)})

    @classmethod
    def from_ledger(cls, text: str | None, started_ns: int) -> "PriorFile":
        if text is None:  # launched by an older runner: only its start time is known
            return cls(None, legacy_started_ns=started_ns)
        found = json.loads(text)
        if isinstance(found, dict):
            return cls(_tuple(found.get("file")),
                       sibling_ids=tuple(_tuple(s) for s in found.get("siblings", ())))
        return cls(_tuple(found), sibling_ids=())

    def stale(self, current: FileId) -> bool:
        if self.legacy_started_ns is not None:
            # A clock and a file time compared, so only with a margin of the coarsest tick:
            # a file written more than 2 s before the launch was left by an earlier run.
            return current[2] < self.legacy_started_ns - LEGACY_TICK_NS
        return current == self.file_id


def _tuple(found: list[int] | None) -> FileId | None:
    return tuple(found) if found is not None else None


@dataclass(frozen=True)
class MetricRow:
    model: str
    metric: str
    amplitude: float | None
    phase: float | None
    value: float | None


def _number(text: str | None) -> float | None:
    """A finite float, or None for an empty, NaN or unreadable cell (NaN is never 0.0)."""
    try:
        number = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def read_metrics(check: MetricsCheck, prior: PriorFile) -> tuple[list[MetricRow], str | None]:
    """The metric rows of a finished attempt, and what disqualifies them (None when they prove
    success). `prior`: the file as it was before the attempt launched."""
    path = check.path
    try:
        f = open(path, newline="", encoding="utf-8")
    except FileNotFoundError:
        return [], f"exit 0 but no {path.name} in {path.parent}"
    except OSError as exc:
        return [], f"{path.name} cannot be read: {exc}"
    with f:  # identity and content from the one open file: a rename in between cannot mix them
        stat = os.fstat(f.fileno())
        if prior.stale(_id(stat)):
            return [], f"exit 0 but {path.name} was not written by this attempt (left by an earlier run)"
        if stat.st_size > MAX_METRICS_BYTES:
            return [], f"{path.name} is {stat.st_size} bytes, too large to be a metrics table"
        rows, problem = _table(f, path.name)
        if problem:
            return [], problem
    seen = set()
    for row in rows:
        if (row.model, row.metric) in seen:
            return rows, f"{path.name} has two rows for {row.model} {row.metric}"
        seen.add((row.model, row.metric))
    numeric = {r.model for r in rows if r.amplitude is not None or r.phase is not None}
    missing = [m for m in check.required_models if m not in numeric]
    if missing:
        return rows, f"{path.name} has no numeric metric for {', '.join(missing)}"
    for index, sibling in enumerate(check.siblings):
        known = prior.sibling_ids
        if known is None or index >= len(known):
            continue  # its state before the launch is unknown: an earlier run's rows are no evidence
        rows += [r for r in _fresh_sibling_rows(sibling, known[index]) if (r.model, r.metric) not in seen]
        seen.update((r.model, r.metric) for r in rows)
    return rows, None


def _table(f, name: str) -> tuple[list[MetricRow], str | None]:
    """The rows of an open metrics CSV, or what is wrong with it."""
    try:
        reader = csv.DictReader(f)
        missing_columns = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or ())]
        if missing_columns:
            return [], f"{name} lacks columns {', '.join(missing_columns)}"
        return [MetricRow(r["model"] or "", r["metric"] or "", _number(r["amplitude"]),
                          _number(r["phase"]), _number(r["value"])) for r in reader], None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return [], f"{name} cannot be read: {exc}"


def _fresh_sibling_rows(path: Path, before: FileId | None) -> list[MetricRow]:
    """A sibling's rows if this attempt wrote the file; none if it is absent, unchanged, or bad
    (a sibling adds rows beside a success, it never decides one)."""
    try:
        f = open(path, newline="", encoding="utf-8")
    except OSError:
        return []
    with f:
        stat = os.fstat(f.fileno())
        if _id(stat) == before or stat.st_size > MAX_METRICS_BYTES:
            return []
        rows, problem = _table(f, path.name)
    return [] if problem else rows


ZIP_SUFFIXES = (".pt", ".zip", ".npz")


def read_outputs(check: OutputsCheck, prior: PriorFile) -> tuple[list[MetricRow], str | None]:
    """The metric rows of a finished attempt that makes files, and what disqualifies it (None when
    every file is there, written by this attempt and whole)."""
    before = [prior.file_id, *(prior.sibling_ids or [None] * len(check.siblings))]
    for index, path in enumerate(check.files):
        current = file_id(path)
        if current is None:
            return [], f"exit 0 but no {path.name} in {path.parent}"
        fresh = not prior.stale(current) if index == 0 else \
            (prior.sibling_ids is not None and current != before[index])
        if not fresh:
            return [], f"exit 0 but {path} was not written by this attempt (left by an earlier run)"
        problem = _whole(path, check.npz_keys if path.suffix == ".npz" else ())
        if problem:
            return [], problem
    return _summary_rows(check), None


def _whole(path: Path, keys: tuple[str, ...]) -> str | None:
    """What shows the file was cut short or is not what it claims to be, or None."""
    try:
        if path.suffix == ".json":
            if path.stat().st_size > MAX_METRICS_BYTES:
                return f"{path.name} is too large to be a summary"
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix in ZIP_SUFFIXES:
            if path.suffix == ".npz":
                missing = [k for k in keys if k not in npz_keys(path)]
                if missing:
                    return f"{path.name} lacks {', '.join(missing)}"
            elif not zipfile.is_zipfile(path):
                return f"{path.name} is not a whole archive (cut short?)"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, NpzEntryError) as exc:
        return f"{path.name} cannot be read: {exc}"
    return None


def _summary_rows(check: OutputsCheck) -> list[MetricRow]:
    """The numbers the check names (`check.numbers`) as metric rows (model, metric, value); a file
    that cannot be read adds nothing (the files themselves decided the success)."""
    wanted = check.numbers
    if wanted is None:
        return []
    found: dict[str, float] = {}
    try:
        if wanted.path.suffix == ".json":
            data = json.loads(wanted.path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and wanted.section:
                data = data.get(wanted.section, data)
            data = data if isinstance(data, dict) else {}
            for key, name in wanted.names:
                value = data.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    found[name] = float(value)
        elif wanted.path.suffix == ".npz":
            for key, name in wanted.names:
                value = read_npz_number(wanted.path, key)
                if value is not None and math.isfinite(value):
                    found[name] = value
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, NpzEntryError):
        return []
    return [MetricRow(wanted.model, name, None, None, value) for name, value in sorted(found.items())]


def split_status(returncode: int) -> tuple[int | None, int | None]:
    """(exit code, signal) of an exit status; a negative status means killed by that signal."""
    return (None, -returncode) if returncode < 0 else (returncode, None)


def no_space(logs: tuple[Path, ...], folders: tuple[Path, ...]) -> str | None:
    """Why the attempt could not write its logs or outputs (a full filesystem, a log at the
    file-size limit), or None. Asked only of a failed attempt, to name the real cause."""
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]  # the children inherit the runner's
    for log in logs:
        try:
            size = log.stat().st_size
        except OSError:
            continue
        if limit != resource.RLIM_INFINITY and size >= limit:
            return f"{log} reached the file-size limit of {limit} bytes (ulimit -f)"
    for folder in folders:
        try:
            fs = os.statvfs(folder)
        except OSError:
            continue
        free = fs.f_bavail * fs.f_frsize
        if free < LOW_SPACE_BYTES:
            return f"the filesystem of {folder} is full ({free} bytes free)"
    return None


# Terminal states a cluster (SLURM) decides on its own, and the failure class each one is.
CLUSTER_ENDINGS = {
    "TIMEOUT": (FailureClass.TIMEOUT, "SLURM stopped it at its time limit (--time)"),
    "DEADLINE": (FailureClass.TIMEOUT, "SLURM stopped it at its deadline"),
    "CANCELLED": (FailureClass.CANCELLED, "cancelled outside the runner (scancel)"),
    "NODE_FAIL": (FailureClass.NODE_FAIL, "its node failed"),
    "BOOT_FAIL": (FailureClass.NODE_FAIL, "its node failed to boot"),
    "PREEMPTED": (FailureClass.PREEMPTED, "preempted by another job"),
    "OUT_OF_MEMORY": (FailureClass.OUT_OF_MEMORY, "killed by SLURM for using more than its memory"),
    "UNKNOWN": (FailureClass.SLURM_UNKNOWN, "SLURM no longer knows the job"),
}


class Ending(str, enum.Enum):
    """What became of an attempt's command, as whoever watched it saw it."""

    EXITED = "exited"  # it ended by itself, or its cluster ended it (Ended.cluster_state)
    TIMED_OUT = "timed_out"  # the runner stopped it at --timeout
    STOPPED = "stopped"  # the runner itself was stopped (a signal) and took it down
    NOT_LAUNCHED = "not_launched"  # it could not be started
    ORPHANED = "orphaned"  # a runner died while it ran; what was left of it is gone now


@dataclass(frozen=True)
class Facts:
    ending: Ending
    ended: Ended | None = None  # the executor's facts: exit status, cluster state
    detail: str | None = None  # in words, from whoever saw it
    no_space: bool = False  # the launch failed for lack of space (ENOSPC, EDQUOT)


def judge(facts: Facts, job: Job | None = None, prior: PriorFile | None = None,
          logs: tuple[Path, Path] = ()) -> Outcome:
    """The Outcome of an attempt. `job`, `prior` and `logs` are needed for a command that exited:
    its exit codes' meanings, the metrics file as it was before the launch, its log files."""
    status = facts.ended.status if facts.ended else None
    code, sig = split_status(status) if status is not None else (None, None)
    if facts.ending is Ending.NOT_LAUNCHED:
        failure = FailureClass.DISK_FULL if facts.no_space else FailureClass.LAUNCH_ERROR
        return Outcome(False, failure_class=failure, detail=facts.detail)
    if facts.ending in (Ending.STOPPED, Ending.ORPHANED):
        return Outcome(False, exit_code=code, signal=sig, failure_class=FailureClass.INTERRUPTED,
                       detail=facts.detail)
    if facts.ending is Ending.TIMED_OUT:
        return Outcome(False, exit_code=code, signal=sig, failure_class=FailureClass.TIMEOUT,
                       detail=facts.detail)
    state = facts.ended.cluster_state if facts.ended else None
    if state is not None:  # the cluster ended it for its own reason
        failure, meaning = CLUSTER_ENDINGS.get(state, (FailureClass.EXIT_CODE, None))
        said = facts.ended.detail if facts.ended.detail not in (None, "None") else None
        detail = f"SLURM {state}" + (f": {meaning}" if meaning else "") + (f" ({said})" if said else "")
        return Outcome(False, exit_code=code, signal=sig, failure_class=failure, detail=detail)
    if status != 0:
        failure = FailureClass.SIGNAL if sig else job.exit_classes.get(code, FailureClass.EXIT_CODE)
        detail = f"killed by signal {sig}" if sig else f"exit code {code}"
    elif job.check is None:  # --success exit-code
        return Outcome(True, exit_code=0)
    else:
        read = read_outputs if isinstance(job.check, OutputsCheck) else read_metrics
        rows, problem = read(job.check, prior or PriorFile(None))
        if not problem:
            return Outcome(True, metrics=tuple(rows), exit_code=0)
        failure, detail = FailureClass.NO_METRICS, problem
    if failure in (FailureClass.EXIT_CODE, FailureClass.SIGNAL, FailureClass.NO_METRICS):
        # A command that could not write its logs or outputs fails for that reason.
        space = no_space(logs, (logs[0].parent, job.output_dir)) if logs else None
        if space or sig == signal.SIGXFSZ:  # SIGXFSZ: it wrote past the file-size limit
            failure = FailureClass.DISK_FULL
            detail = f"{space or 'file-size limit exceeded (SIGXFSZ)'}; {detail}"
    return Outcome(False, exit_code=code, signal=sig, failure_class=failure, detail=detail)
