"""The engine's vocabulary as plain data: a job (what to run, what it reads, what proves it
worked), its attempts and their outcomes, the states and the failure classes.

A study builds Jobs; nothing here knows what a study is about. A job carries no behaviour: how to
retry it with another command, how to check its outputs, which files it reads are all data the
engine acts on.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path


class JobState(str, enum.Enum):
    """Where a job stands in the ledger."""

    PENDING = "pending"  # planned, waiting for its needs or a free slot
    RUNNING = "running"  # an attempt is running now
    SUCCEEDED = "succeeded"  # the latest attempt exited 0 and its outputs passed the check
    FAILED = "failed"  # the latest attempt failed (see its failure class)
    BLOCKED = "blocked"  # an input is missing, or a job it needs cannot succeed: never launched
    INTERRUPTED = "interrupted"  # the runner stopped (signal or crash) while an attempt ran


class AttemptState(str, enum.Enum):
    """One launch of a job's command. States only move forward: running -> one of the others."""

    RUNNING = "running"  # row written before the process is spawned
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # stopped by the runner or found orphaned after a crash
    SUPERSEDED = "superseded"  # a success replaced by a newer success (forced or changed inputs)


class FailureClass(str, enum.Enum):
    """Why an attempt did not succeed. Whether it is retried is decided in runner.retry."""

    EXIT_CODE = "exit_code"  # non-zero exit status
    SIGNAL = "signal"  # killed by a signal the runner did not send
    TIMEOUT = "timeout"  # ran past --timeout and was killed
    NO_METRICS = "no_metrics"  # exit 0 but its outputs are missing, stale or incomplete
    LAUNCH_ERROR = "launch_error"  # the command could not be started (missing interpreter, ...)
    INTERRUPTED = "interrupted"  # the runner was stopped or died while the attempt ran
    BLOCKED = "blocked"  # an input of the job is missing
    CUDA_OOM = "cuda_oom"  # out of GPU memory (the command said so by its exit code)
    DISK_FULL = "disk_full"  # its logs or outputs could not be written: no space, or ulimit -f
    # Endings only a cluster scheduler (SLURM) reports:
    NODE_FAIL = "node_fail"  # the node failed (NODE_FAIL) or never booted (BOOT_FAIL)
    PREEMPTED = "preempted"  # a higher-priority job took the resources
    OUT_OF_MEMORY = "out_of_memory"  # the cluster killed it for using more than --mem
    CANCELLED = "cancelled"  # cancelled outside the runner (scancel by hand, an administrator)
    SLURM_UNKNOWN = "slurm_unknown"  # SLURM no longer knows the job and has no accounting record


@dataclass(frozen=True)
class Kind:
    """A kind of job of a study: its jobs share a GPU as `jobs_per_gpu` says for the kind, are
    shown together by `status`, and are expected to take `default_seconds` until the ledger knows."""

    name: str  # e.g. 'E'; a job's `kind`
    title: str  # the heading `status` gives the kind's jobs
    default_seconds: float = 60.0


@dataclass(frozen=True)
class Input:
    """A file or folder a job reads. It must exist when the job starts, unless a job it needs makes
    it (names it in `produces`); its files' paths, sizes and modification times are part of the
    job's fingerprint, so a changed input reruns the job."""

    path: str
    what: str  # how a blocked reason names it, e.g. 'test data' ('missing test data /x.npz')
    folder: bool = False  # a folder: every file under it is an input, and it must not be empty
    holds: str | None = None  # a file name the folder must hold ...
    holds_what: str = "file"  # ... and how a blocked reason names that file


@dataclass(frozen=True)
class MetricsCheck:
    """What a succeeded attempt must leave behind: a tidy metrics table (CSV with the columns
    model, metric, amplitude, phase, value) written by this attempt, with a numeric value for
    each of `required_models`."""

    path: Path
    required_models: tuple[str, ...]
    # Tables of the same format whose rows join the metrics when this attempt wrote them;
    # optional: their absence never fails a success.
    siblings: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Numbers:
    """Numbers of a result file that are stored as the attempt's metrics (model, metric, value):
    keys of a JSON object (the file's top level, or its object `section` when it has one), or
    arrays of an NPZ (a scalar, or the last element of a 1-D array)."""

    path: Path
    names: tuple[tuple[str, str], ...]  # (key in the file, metric name in the ledger)
    model: str = ""  # the metrics' model column
    section: str | None = None


@dataclass(frozen=True)
class OutputsCheck:
    """What a succeeded attempt of a job that makes files must leave behind: every file written by
    this attempt and whole. A JSON file must parse, a zip archive (a torch checkpoint, an NPZ)
    must have its central directory, an NPZ must hold `npz_keys`."""

    files: tuple[Path, ...]
    npz_keys: tuple[str, ...] = ()
    numbers: Numbers | None = None

    # The freshness bookkeeping (results.PriorFile) records the first file and the others.
    @property
    def path(self) -> Path:
        return self.files[0]

    @property
    def siblings(self) -> tuple[Path, ...]:
        return self.files[1:]


@dataclass(frozen=True)
class HalveFlags:
    """How to adapt a command that failed with class `on`: the same command with each of `flags`
    halved (added with the value `start` when absent), until every one is at `floor`. Such
    relaunches do not count against --retries: they end when the command cannot be adapted."""

    on: FailureClass
    flags: tuple[str, ...]
    start: int
    floor: int = 1


@dataclass(frozen=True)
class Job:
    """One unit of work: everything the engine needs to run it, to judge the result and to know
    when it must run again."""

    key: str  # unique and human-readable
    argv: tuple[str, ...]
    cwd: Path
    output_dir: Path  # the job's own folder: its logs go in output_dir/logs
    kind: str = ""  # one of the study's Kinds
    labels: dict[str, object] = field(default_factory=dict)  # the job's condition, in the study's words
    inputs: tuple[Input, ...] = ()
    produces: tuple[str, ...] = ()  # paths it makes that other jobs name as inputs
    needs: tuple[str, ...] = ()  # keys of the jobs that must succeed before it starts
    check: MetricsCheck | OutputsCheck | None = None  # None: exit 0 alone proves success
    # What besides the argv and the inputs makes its result what it is (the hash of the script it
    # runs, a laxer success rule): part of the fingerprint.
    identity: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    exit_classes: dict[int, FailureClass] = field(default_factory=dict)  # e.g. {3: CUDA_OOM}
    adapt: HalveFlags | None = None
    # A command that saves its work as it goes (a training) keeps this JSON file of the steps saved
    # (runner.saved_steps): an attempt stopped by a time limit or a preemption after saving more
    # is continued without counting against --retries. None: the job keeps no such file.
    progress: Path | None = None
    # Filled by the engine from the inputs (runner.inputs), never by the study:
    basis: str = ""  # what the fingerprint hashes: portable argv, inputs' contents, identity (JSON)
    fingerprint: str = ""  # hash of the basis; a changed one reruns a success
    blocked_reason: str | None = None  # set when an input is missing


@dataclass(frozen=True)
class PlannedRow:
    """What the ledger holds of a planned job."""

    job_id: int
    state: JobState
    success_fingerprint: str | None  # the fingerprint of its standing success (None: none)
    success_basis: str | None = None  # ... and its basis (None: none, or recorded before bases were)
    failure_class: str | None = None  # its latest attempt's, when that failed
    attempts: int = 0


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, as judged by results.judge."""

    succeeded: bool
    metrics: tuple = ()  # MetricRow of a success, stored with it in one transaction
    exit_code: int | None = None
    signal: int | None = None
    failure_class: FailureClass | None = None
    detail: str | None = None

    @property
    def states(self) -> tuple[AttemptState, JobState]:
        """The states the attempt and its job end in."""
        if self.succeeded:
            return AttemptState.SUCCEEDED, JobState.SUCCEEDED
        if self.failure_class is FailureClass.INTERRUPTED:
            return AttemptState.INTERRUPTED, JobState.INTERRUPTED
        return AttemptState.FAILED, JobState.FAILED


@dataclass(frozen=True)
class AttemptStart:
    """What is known of an attempt before its row is written: the row is committed before the
    command is launched."""

    job_id: int
    job_key: str
    run_id: int
    argv: tuple[str, ...]
    fingerprint: str
    slot: str
    device: str | None  # what the executor records for the slot's device
    gpu_uuid: str | None
    token: str
    backend: str
    metrics_before: str | None = None
    basis: str = ""  # what its fingerprint hashed


@dataclass(frozen=True)
class Attempt:
    """One launch of a job's command, as its ledger row says: what the scheduler follows, the
    executors identify and reconciliation recovers."""

    attempt_id: int
    job_id: int
    job_key: str
    number: int  # 1, 2, ... per job
    token: str  # RUNNER_ATTEMPT_TOKEN: every process of the attempt carries it
    argv: tuple[str, ...]
    stdout_log: Path
    stderr_log: Path
    started_at: str  # UTC, ISO-8601
    backend: str  # 'local' or 'slurm'
    metrics_before: str | None = None  # the checked file before the launch (results.PriorFile)
    # What identifies it once launched: its process (local) or its SLURM job.
    pid: int | None = None
    pgid: int | None = None
    process_start: str | None = None
    slurm_job_id: str | None = None
