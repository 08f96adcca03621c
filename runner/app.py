"""One run of a study, wired: plan, open the ledger, recover what a dead runner left, sync the
plan, choose and order the work, schedule it, write the manifest. The CLI parses the arguments,
calls `run` (or `dry_run`) and prints; nothing here parses arguments or picks an exit code.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runner import __version__, downstream, graph, manifest, upstream
from runner.config import Backend, ConfigError, Order, Settings
from runner.executors import Executor
from runner.executors.local import LocalExecutor
from runner.jobs import Job
from runner.ledger import Ledger, LedgerError, expected_durations, probe, read_snapshot
from runner.lock import RunnerLock
from runner.mounts import network_filesystem_warning
from runner.progress import Progress
from runner.resume import reconcile, select
from runner.scheduler import Policy, Scheduler
from runner.slots import Device, Slot, SlotPool, build_slots, parse_gpus, seat_costs
from runner.study import check_compare_command, plan

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True)
class RunSummary:
    run_id: int
    states: list[str]  # of every planned job at the end
    stop_signal: int | None  # the signal that stopped the run, if one did
    manifest: Path | None  # None when it could not be written


def git_commit(folder: Path) -> str | None:
    """HEAD of the checkout holding the compare script, '+dirty' when it has local changes."""
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


def dry_run(settings: Settings) -> tuple[list[Job], list[Path]]:
    """The plan in launch order (by the durations an existing ledger knows), written as the
    reference's dry run does (manifest and numbered summary of the comparisons) and, with
    phases E or F, as job_graph.json."""
    make_phase_roots(settings)
    jobs = plan(settings)
    ensure_writable(settings.artifact_root)
    durations = known_durations(settings.ledger) if settings.order is Order.LONGEST_FIRST else {}
    ordered = graph.launch_order(jobs, durations) if settings.order is Order.LONGEST_FIRST else jobs
    comparisons = [job for job in jobs if job.phase == "G"]
    written = []
    if set(settings.phases) != {"G"}:
        written.append(manifest.write_graph(settings.artifact_root, ordered))
    if comparisons:
        written += manifest.write_plan(settings.artifact_root, comparisons,
                                       downstream.plan_fields(settings, comparisons))
    return ordered, written


def known_durations(ledger: Path) -> dict[str, float]:
    """Per job key, its latest success's duration in an existing ledger (none when it has no
    ledger or one this runner cannot read without upgrading it)."""
    if not ledger.is_file():
        return {}
    try:
        return read_snapshot(ledger, expected_durations)
    except LedgerError:
        return {}


def make_executor(settings: Settings) -> Executor:
    if settings.backend is Backend.SLURM:
        from runner.executors.slurm import SlurmExecutor, SlurmOptions

        return SlurmExecutor(SlurmOptions(
            settings.partition, settings.time, settings.account, settings.cpus_per_task, settings.mem,
            settings.sbatch_args, settings.on_interrupt))
    return LocalExecutor()


def make_slots(settings: Settings, jobs: list[Job]) -> list[Slot]:
    if settings.backend is Backend.SLURM:
        if shutil.which("sbatch") is None:
            raise ConfigError("--backend slurm: sbatch is not on PATH; run on a host that submits to the cluster")
        # Seats cap how many of our jobs are queued or running at once; SLURM picks the GPUs.
        return [Slot(f"slurm{i}", Device("")) for i in range(settings.max_parallel or max(1, len(jobs)))]
    return build_slots(parse_gpus(settings.gpus), settings.jobs_per_gpu, settings.max_parallel)


def make_pool(settings: Settings, slots: list[Slot]) -> SlotPool:
    """GPU seats shared by phase weight (jobs_per_gpu); on the CPU and on SLURM one seat a job."""
    on_gpu = settings.backend is Backend.LOCAL and any(s.device.visible_id for s in slots)
    return SlotPool(slots, seat_costs(settings.jobs_per_gpu, on_gpu), settings.max_parallel if on_gpu else None)


def make_phase_roots(settings: Settings) -> None:
    """The folders the run's trainings and reconstructions write into."""
    for phase, root in (("E", settings.phase_e_root), ("F", settings.phase_f_root)):
        if phase in settings.phases:
            try:
                root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"cannot make the Phase {phase} folder {root} ({exc.strerror})") from None


def run(settings: Settings, warn: Callable[[str], None]) -> RunSummary:
    """Plan, check and lock, then run the study; `warn` hears what the user should know."""
    make_phase_roots(settings)
    jobs = plan(settings)
    ensure_writable(settings.artifact_root)
    check_compare_command(settings)
    slots = make_slots(settings, jobs)
    warning = network_filesystem_warning(settings.ledger)
    if warning:
        warn(warning)
    probe(settings.ledger)  # before the lock file is made beside it
    lock = RunnerLock(settings.ledger)
    lock.acquire()
    try:
        return asyncio.run(_run(settings, jobs, slots, warn))
    finally:
        lock.release()


async def _run(settings: Settings, jobs: list[Job], slots: list[Slot], warn: Callable[[str], None]) -> RunSummary:
    ledger = await Ledger.open(settings.ledger)
    progress = Progress(total=0)
    executor = make_executor(settings)
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
            git_commit(settings.workdir),
            [{"slot": s.name, "device": s.device.visible_id, "gpu_uuid": s.device.uuid} for s in slots])
        rows = await ledger.sync_jobs(jobs, run_id)
        selection = await select(ledger, jobs, rows, settings.force, settings.only_failed,
                                 frozenset(job.key for job, _, _ in reattach))
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
        work = selection.to_run
        if settings.order is Order.LONGEST_FIRST and len(work) > 1:
            ids = {job.key: job_id for job, job_id in work}
            ordered = graph.launch_order([job for job, _ in work], await ledger.expected_durations())
            work = [(job, ids[job.key]) for job in ordered]
        scheduler = Scheduler(ledger, make_pool(settings, slots), run_id,
                              Policy(settings.timeout, settings.grace, settings.retries), executor, progress)
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
        await ledger.end_run(run_id, "interrupted" if stopped else "completed")
        results = await ledger.run_results(run_id)
        manifest_path = await _write_files(settings, jobs, results, ledger, warn)
    finally:
        progress.close()
        await ledger.close()
    return RunSummary(run_id, [r["state"] for r in results], stopped, manifest_path)


async def _write_files(settings: Settings, jobs: list[Job], results: list[dict], ledger: Ledger,
                       warn: Callable[[str], None]) -> Path | None:
    """The files a run leaves beside the ledger: comparison_manifest.json and the files
    PtychoPINN's downstream tools read (comparisons only, as before), Phase F's
    reconstruction_manifest.json, and job_graph.json when the run has phases E or F. A file
    that cannot be written (a full disk) is a warning: the ledger holds every result anyway."""
    comparisons = [job for job in jobs if job.phase == "G"]
    keys = {job.key for job in comparisons}
    manifest_path = None
    try:
        if comparisons:
            manifest_path = downstream.write_run_files(settings, comparisons, [r for r in results if r["key"] in keys])
    except (OSError, LedgerError) as exc:
        warn(f"cannot write comparison_manifest.json and the metrics summaries in {settings.artifact_root} "
             f"({getattr(exc, 'strerror', None) or exc}); the ledger has the results")
    try:
        if set(settings.phases) != {"G"}:
            manifest.write_graph(settings.artifact_root, jobs, results)
            upstream.write_reconstruction_manifest(settings, jobs, results, await ledger.phase_numbers())
    except (OSError, LedgerError) as exc:
        warn(f"cannot write job_graph.json or Phase F's reconstruction_manifest.json "
             f"({getattr(exc, 'strerror', None) or exc}); the ledger has the results")
    return manifest_path
