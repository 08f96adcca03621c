"""The vocabulary shared by planner, scheduler and ledger: jobs, attempts, states, failure classes.

Nothing here knows about ptychography: a Job is a key, a command, an environment and the outputs
that prove it worked. Only `study.py` builds them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


class JobState(str, enum.Enum):
    """Where a job (one condition of the study) stands in the ledger."""

    PENDING = "pending"  # planned, waiting for a free slot
    RUNNING = "running"  # an attempt is running now
    SUCCEEDED = "succeeded"  # the latest attempt exited 0 and its outputs parsed
    FAILED = "failed"  # the latest attempt failed (see its failure class)
    BLOCKED = "blocked"  # an input is missing; never launched until the input appears
    INTERRUPTED = "interrupted"  # the runner stopped (signal or crash) while an attempt ran


class AttemptState(str, enum.Enum):
    """One launch of a job's command. States only move forward: running -> one of the others."""

    RUNNING = "running"  # row written before the process is spawned
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # stopped by the runner or found orphaned after a crash
    SUPERSEDED = "superseded"  # a success replaced by a newer success (forced or changed inputs)


class FailureClass(str, enum.Enum):
    """Why an attempt did not succeed. Retry policy is decided here, in one place."""

    EXIT_CODE = "exit_code"  # non-zero exit status
    SIGNAL = "signal"  # killed by a signal the runner did not send
    TIMEOUT = "timeout"  # ran past --timeout and was killed
    NO_METRICS = "no_metrics"  # exit 0 but the metrics file is missing, stale or incomplete
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

    @property
    def retryable(self) -> bool:
        # A full disk stays full for the rest of the run; the next `run` relaunches the job.
        # A job someone cancelled by hand is not relaunched behind their back.
        return self not in (FailureClass.BLOCKED, FailureClass.LAUNCH_ERROR, FailureClass.DISK_FULL,
                            FailureClass.CANCELLED)


@dataclass(frozen=True)
class MetricsCheck:
    """What a succeeded attempt must leave behind: a tidy CSV with a numeric value per model."""

    path: Path
    required_models: tuple[str, ...]
    # Files of the same format whose rows join the metrics when this attempt wrote them (the
    # comparison's trivial floor); optional, since the reference script writes none.
    siblings: tuple[Path, ...] = ()


@dataclass(frozen=True)
class OutputsCheck:
    """What a succeeded attempt of a job that makes files (a training, a reconstruction) must leave
    behind: every file written by this attempt and whole. A JSON file must parse, a zip archive
    (a torch checkpoint, an NPZ, wts.h5.zip) must have its central directory, an NPZ must hold
    `npz_keys`. `summary` names the file whose numbers are stored as the attempt's metrics."""

    files: tuple[Path, ...]
    npz_keys: tuple[str, ...] = ()
    model: str = ""  # the metrics' model column, e.g. PtychoPINN or Baseline
    summary: Path | None = None

    # The freshness bookkeeping (results.PriorFile) records the first file and the others.
    @property
    def path(self) -> Path:
        return self.files[0]

    @property
    def siblings(self) -> tuple[Path, ...]:
        return self.files[1:]


@dataclass(frozen=True)
class Job:
    """One unit of work: everything the scheduler needs to run it and to judge the result."""

    key: str  # unique, human-readable, e.g. "dose_1000/dense/train"
    argv: tuple[str, ...]
    cwd: Path
    output_dir: Path  # logs go in output_dir/logs
    check: MetricsCheck | OutputsCheck | None  # None: exit 0 alone proves success
    fingerprint: str = ""  # hash of argv + inputs; a changed fingerprint reruns a succeeded job
    env: tuple[tuple[str, str], ...] = ()
    condition: dict[str, object] = field(default_factory=dict)  # columns for the ledger
    metadata: dict[str, object] = field(default_factory=dict)  # Phase D metadata (nullable)
    blocked_reason: str | None = None  # set when an input is missing
    exit_classes: dict[int, FailureClass] = field(default_factory=dict)  # e.g. {3: CUDA_OOM}
    # Given the argv of a failed attempt and its failure class, the argv to try next (e.g. with
    # smaller batches after running out of memory), or None. Such retries do not count against
    # --retries: they end when the command cannot be adapted further.
    adapt_argv: Callable[[tuple[str, ...], "FailureClass"], tuple[str, ...] | None] | None = None
    phase: str = "G"  # the study phase: E training, F reconstruction, G comparison
    needs: tuple[str, ...] = ()  # keys of the jobs whose outputs this one reads
    # The job planned again from the files on disk once its needs have succeeded (its inputs
    # did not exist, or were older, when the run began); None: nothing to refresh.
    replan: Callable[[], "Job"] | None = None


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, as judged by the scheduler and results check."""

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
    metrics_before: str | None = None  # the metrics file before the launch (results.PriorFile)
    # What identifies it once launched: its process (local) or its SLURM job.
    pid: int | None = None
    pgid: int | None = None
    process_start: str | None = None
    slurm_job_id: str | None = None
