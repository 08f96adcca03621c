"""One run of a study, wired: the study plans, the engine prepares the jobs (fingerprints, missing
inputs), opens the ledger, recovers what a dead runner left, syncs the plan, chooses and orders
the work, schedules it; after the run the study writes its files. The CLI parses the arguments,
calls `run` (or `dry_run`) and prints; nothing here parses arguments or picks an exit code.
"""

from __future__ import annotations

import asyncio
import functools
import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from runner import __version__, files, graph, inputs, ledger as ledgers
from runner.config import Backend, ConfigError, Order, Settings
from runner.executors import Executor
from runner.executors.local import LocalExecutor
from runner.jobs import Job
from runner.ledger import Ledger, LedgerError, probe, read_snapshot, run_results
from runner.lock import RunnerLock
from runner.mounts import network_filesystem_warning
from runner.progress import Progress
from runner.resume import Choice, choose, reconcile, select
from runner.scheduler import Policy, Scheduler
from runner.slots import Device, Slot, SlotPool, build_slots, parse_gpus, seat_costs
from runner.study import RunRecord, Study, StudySettings

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True)
class RunSummary:
    run_id: int
    states: list[str]  # of every planned job at the end
    stop_signal: int | None  # the signal that stopped the run, if one did
    named_file: Path | None  # the study's file to name to the user (None when none was written)


@dataclass(frozen=True)
class DryRun:
    choices: list[Choice]  # every job in launch order: what a run would do with it, and why
    written: list[Path]
    graph: bool  # the plan has several kinds of job, or needs


@dataclass(frozen=True)
class Known:
    """What an existing ledger knows, read without changing it (a dry run, the plan's hashes)."""

    rows: dict = field(default_factory=dict)  # job key -> PlannedRow
    durations: dict[str, float] = field(default_factory=dict)
    hashes: dict = field(default_factory=dict)  # inputs.ContentHashes.known


def git_commit(folder: Path) -> str | None:
    """HEAD of the checkout the commands run from, '+dirty' when it has local changes."""
    try:
        head = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30).stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def invocation() -> list[str]:
    """How this runner was started, as a command a user could paste."""
    if sys.argv[0].endswith("__main__.py"):
        return [sys.executable, "-m", "runner", *sys.argv[1:]]
    return list(sys.argv)


def ensure_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe_file = folder / f".runner-write-test-{os.getpid()}"
        probe_file.touch()
        probe_file.unlink()
    except OSError as exc:
        raise ConfigError(f"artifact root {folder} cannot be written ({exc.strerror}); "
                          "choose another --artifact-root") from None


def planned(study: Study, settings: StudySettings, files: inputs.InputFiles | None = None) -> list[Job]:
    """The study's jobs, every one after all it needs, fingerprinted (with `files`: the study's
    root and the content hashes known), the ones whose inputs are missing blocked (GraphError for
    a cycle)."""
    files = files or inputs.InputFiles(study_root(settings))
    return inputs.prepare(graph.topological(study.plan(settings)), files)


def study_root(settings: StudySettings) -> str:
    return os.path.normpath(os.path.abspath(settings.root))


def default_seconds(study: Study) -> dict[str, float]:
    return {kind.name: kind.default_seconds for kind in study.kinds}


def dry_run(settings: Settings, study: Study, study_settings: StudySettings) -> DryRun:
    """What a run would do with each job and why, in launch order (by the durations the ledger
    knows), from the ledger as it is: nothing is recorded or launched. The plan is written to its
    own folder (files.DRY_RUN), never over the files that describe standing results."""
    known = known_ledger(settings.ledger, study.views)
    planning = inputs.InputFiles(study_root(study_settings), inputs.ContentHashes(known.hashes))
    jobs = planned(study, study_settings, planning)
    study.check(study_settings, jobs, launching=False)
    ensure_writable(study_settings.artifact_root)
    choices = choose(jobs, known.rows, settings.force, settings.only_failed, legacy=planning.legacy_fingerprint)
    if settings.order is Order.LONGEST_FIRST:
        rank = {job.key: n for n, job in enumerate(graph.launch_order(jobs, known.durations, default_seconds(study)))}
        choices.sort(key=lambda choice: rank[choice.job.key])
    ordered = [choice.job for choice in choices]
    folder = study_settings.artifact_root / files.DRY_RUN
    is_graph = files.is_graph(jobs)
    written = [files.write_job_graph(folder, ordered, choices=choices)] if is_graph else []
    written += study.write_plan(study_settings, ordered, folder)
    return DryRun(choices, written, is_graph)


def known_ledger(path: Path, views: dict[str, str]) -> Known:
    """What the ledger at `path` knows, read without changing it: a ledger of an older schema is
    read from an upgraded copy. Nothing when there is no ledger, or one that cannot be read."""
    if not path.is_file() or path.stat().st_size == 0:
        return Known()

    def read(db) -> Known:
        return Known(ledgers.known_jobs(db), ledgers.expected_durations(db), ledgers.known_hashes(db))
    try:
        return read_snapshot(path, read)
    except LedgerError:
        pass
    import sqlite3
    import tempfile
    from urllib.parse import quote

    try:  # an older schema: upgrade a copy in memory's place (a temporary file), read that
        with tempfile.TemporaryDirectory() as folder:
            copy = Path(folder) / "ledger.db"
            source, target = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True), sqlite3.connect(copy)
            with target:
                source.backup(target)
            source.close()
            target.close()
            ledgers.prepare(copy, views)
            return read_snapshot(copy, read)
    except (LedgerError, sqlite3.Error, OSError):
        return Known()


def make_executor(settings: Settings, root: str) -> Executor:
    """`root`: the study's root on this host (the nodes may mount it at settings.node_root)."""
    if settings.backend is Backend.SLURM:
        from runner.executors.slurm import SlurmExecutor, SlurmOptions

        return SlurmExecutor(SlurmOptions(
            settings.partition, settings.time, settings.account, settings.cpus_per_task, settings.mem,
            settings.sbatch_args, settings.on_interrupt, signal_before=settings.signal_before,
            node_paths=(root, str(settings.node_root)) if settings.node_root else None))
    return LocalExecutor()


def make_slots(settings: Settings, jobs: list[Job]) -> list[Slot]:
    if settings.backend is Backend.SLURM:
        if shutil.which("sbatch") is None:
            raise ConfigError("--backend slurm: sbatch is not on PATH; run on a host that submits to the cluster")
        # Seats cap how many of our jobs are queued or running at once; SLURM picks the GPUs.
        return [Slot(f"slurm{i}", Device("")) for i in range(settings.max_parallel or max(1, len(jobs)))]
    return build_slots(parse_gpus(settings.gpus), settings.jobs_per_gpu, settings.max_parallel)


def make_pool(settings: Settings, slots: list[Slot]) -> SlotPool:
    """GPU seats shared by kind (jobs_per_gpu); on the CPU and on SLURM one seat a job."""
    on_gpu = settings.backend is Backend.LOCAL and any(s.device.visible_id for s in slots)
    return SlotPool(slots, seat_costs(settings.jobs_per_gpu, on_gpu), settings.max_parallel if on_gpu else None)


def run(settings: Settings, study: Study, study_settings: StudySettings, warn: Callable[[str], None]) -> RunSummary:
    """Plan, check and lock, then run the study and let it write its files; `warn` hears what the
    user should know."""
    known = known_ledger(settings.ledger, study.views)
    planning = inputs.InputFiles(study_root(study_settings), inputs.ContentHashes(known.hashes))
    jobs = planned(study, study_settings, planning)
    ensure_writable(study_settings.artifact_root)
    study.check(study_settings, jobs, launching=True)
    slots = make_slots(settings, jobs)
    warning = network_filesystem_warning(settings.ledger)
    if warning:
        warn(warning)
    probe(settings.ledger)  # before the lock file is made beside it
    lock = RunnerLock(settings.ledger)
    lock.acquire()
    try:
        run_id, stopped = asyncio.run(_run(settings, study, study_settings, jobs, slots, planning))
        # The study's files, from the ledger, once the writer is closed: no study work runs on
        # the event loop.
        results = read_snapshot(settings.ledger, lambda db: run_results(db, run_id, planning.root))
        named = _after_run(study, study_settings, RunRecord(settings.ledger, run_id, jobs, results), warn)
    finally:
        lock.release()
    return RunSummary(run_id, [r["state"] for r in results], stopped, named)


def _after_run(study: Study, study_settings: StudySettings, record: RunRecord, warn: Callable[[str], None]) -> Path | None:
    """job_graph.json when the plan is a graph, then the study's own files. A file that cannot be
    written (a full disk) is a warning: the ledger holds every result anyway."""
    if files.is_graph(record.jobs):
        try:
            files.write_job_graph(study_settings.artifact_root, record.jobs, record.results)
        except OSError as exc:
            warn(f"cannot write {files.JOB_GRAPH} in {study_settings.artifact_root} ({exc.strerror or exc}); "
                 "the ledger has the results")
    return study.after_run(study_settings, record, warn)


async def _run(settings: Settings, study: Study, study_settings: StudySettings, jobs: list[Job],
               slots: list[Slot], planning: inputs.InputFiles) -> tuple[int, int | None]:
    """The run itself, on the ledger's writer; its id and the signal that stopped it, if one did.
    `planning`: what fingerprinted the jobs (the study's root, the content hashes)."""
    ledger = await Ledger.open(settings.ledger, study.views, Path(planning.root))
    progress = Progress(total=0)
    executor = make_executor(settings, planning.root)
    # A dead runner's local children are recovered here whatever the backend of this run.
    executors = {"local": LocalExecutor(), executor.name: executor}
    try:
        notes, following = await reconcile(ledger, settings.grace, executors)
        for note in notes:
            progress.message(f"resume  {note}")
        by_key = {job.key: job for job in jobs}
        reattach = [(by_key[a.job_key], a, handle) for a, handle in following if a.job_key in by_key]
        for attempt, _ in following:
            if attempt.job_key not in by_key:
                progress.message(f"resume  {attempt.job_key}: SLURM job {attempt.slurm_job_id} is not in "
                                 "this run's plan; left to a later run")
        run_id = await ledger.begin_run(
            socket.gethostname(), getpass.getuser(), os.getpid(), invocation(), __version__,
            git_commit(study_settings.workdir),
            [{"slot": s.name, "device": s.device.visible_id, "gpu_uuid": s.device.uuid} for s in slots],
            study.describe(study_settings))
        rows = await ledger.sync_jobs(jobs, run_id, study.kinds)
        selection = await select(ledger, jobs, rows, settings.force, settings.only_failed,
                                 frozenset(job.key for job, _, _ in reattach), planning.legacy_fingerprint)
        await ledger.remember_hashes(planning.hashes.take_new())
        progress.total = len(selection.to_run) + len(reattach)
        devices = sorted({s.device.visible_id or "cpu" for s in slots})
        progress.message(f"run {run_id}: {len(jobs)} jobs planned, {len(selection.to_run)} to run, "
                         f"{len(selection.skipped)} already done, {len(selection.blocked)} blocked"
                         + (f", {len(reattach)} still running on SLURM" if reattach else "")
                         + (f"; up to {len(slots)} SLURM jobs at once" if settings.backend is Backend.SLURM
                            else f"; {len(slots)} slots on {', '.join(devices)}")
                         + f"; ledger {settings.ledger}")
        for job in selection.blocked:
            progress.message(f"blocked {job.key}: {job.blocked_reason}")
        work = [(item.job, item.job_id) for item in selection.to_run]
        if settings.order is Order.LONGEST_FIRST and len(work) > 1:
            ids = {job.key: job_id for job, job_id in work}
            ordered = graph.launch_order([job for job, _ in work], await ledger.expected_durations(),
                                         default_seconds(study))
            work = [(job, ids[job.key]) for job in ordered]
        scheduler = Scheduler(ledger, make_pool(settings, slots), run_id,
                              Policy(settings.timeout, settings.grace, settings.retries), executor, progress,
                              refresh=functools.partial(inputs.refresh, root=planning.root, hashes=planning.hashes))
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, scheduler.request_stop, sig)
        ticker = asyncio.create_task(progress.tick())
        try:
            await scheduler.run(work, reattach)
        finally:
            ticker.cancel()
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)
        stopped = scheduler.stop_signal
        await ledger.remember_hashes(planning.hashes.take_new())  # what the refreshes hashed
        await ledger.end_run(run_id, "interrupted" if stopped else "completed")
    finally:
        progress.close()
        await ledger.close()
    return run_id, stopped
