"""Command line: `python -m runner run|status|report`. Parses arguments, wires the pieces together,
turns user errors into one `runner: error: ...` line and an exit code.

Exit codes of `run`: 0 every planned job has succeeded (now or in an earlier run); 1 some job
failed, was interrupted or is blocked; 2 bad input, nothing launched; 128+N stopped by signal N.

Each command imports what it needs when it runs: `status` must start in a few tens of
milliseconds and never loads asyncio or the planner.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from pathlib import Path

from runner import __version__

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from runner.config import Settings
    from runner.jobs import Job


class UsageError(Exception):
    pass


def user_errors() -> tuple[type[Exception], ...]:
    """The exceptions that carry a message for the user (evaluated only when one is raised)."""
    from runner.config import ConfigError
    from runner.executors.slurm import ClusterUnavailable
    from runner.ledger import LedgerError
    from runner.lock import LockError
    from runner.slots import SlotError
    from runner.study import PlanError
    return UsageError, ConfigError, PlanError, LedgerError, LockError, SlotError, ClusterUnavailable


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other user error
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="runner", description="Run the comparison jobs of a ptychography study "
                    "on GPU slots, with a SQLite ledger you can resume from and query.")
    parser.add_argument("--version", action="version", version=f"runner {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    run = commands.add_parser("run", help="run every comparison job of the study")
    where = run.add_argument_group("study folders")
    where.add_argument("--config", help="TOML file with the same keys as the flags (flags win)")
    where.add_argument("--study-root", help="folder holding phase_c .. phase_f (sets the roots below)")
    for phase in "cdef":
        where.add_argument(f"--phase-{phase}-root", help=f"Phase {phase.upper()} output folder")
    where.add_argument("--artifact-root", help="where comparison outputs, logs and the ledger go")
    where.add_argument("--ledger", help="ledger file (default <artifact-root>/ledger.db)")
    pick = run.add_argument_group("which jobs")
    pick.add_argument("--dose", action="append", help="only this dose (repeatable)")
    pick.add_argument("--view", action="append", help="dense or sparse (repeatable)")
    pick.add_argument("--split", action="append", help="train or test (repeatable)")
    pick.add_argument("--force", action="store_true", help="rerun jobs that already succeeded")
    pick.add_argument("--only-failed", action="store_true", help="rerun only failed or interrupted jobs")
    pick.add_argument("--dry-run", action="store_true", help="write the plan and print commands; launch nothing")
    pick.add_argument("--order", choices=("longest-first", "plan"),
                      help="launch order: longest-first (default; by the durations of earlier "
                           "successes, never-run jobs first) or the study's plan order")
    cmd = run.add_argument_group("the compare command")
    cmd.add_argument("--compare-cmd", help="command prefix, split like a shell would "
                                           "(default: python -m scripts.compare_models)")
    cmd.add_argument("--workdir", help="working directory of each job (default: current folder)")
    cmd.add_argument("--compare-arg", action="append", help="extra argument for every job (repeatable)")
    cmd.add_argument("--test-data", action="append",
                     help="phase_c or phase_d, or VIEW=SOURCE: where each view's test NPZ comes from")
    cmd.add_argument("--checkpoint-name", help="model file that must exist in each model folder")
    cmd.add_argument("--success", choices=("metrics", "exit-code"),
                     help="what proves an attempt succeeded: exit 0 and a complete "
                          "comparison_metrics.csv (metrics, the default) or exit 0 alone (exit-code)")
    res = run.add_argument_group("resources")
    res.add_argument("--gpus", help="auto (default), none, or a list of indices / GPU UUIDs")
    res.add_argument("--jobs-per-gpu", type=int, help="concurrent jobs per GPU (default 1)")
    res.add_argument("--max-parallel", type=int, help="concurrent jobs without GPUs (default 1); a cap with GPUs")
    res.add_argument("--timeout", type=float, help="seconds per attempt before its group is killed")
    res.add_argument("--grace", type=float, help="seconds between SIGTERM and SIGKILL (default 10)")
    res.add_argument("--retries", type=int, help="relaunches of a failed job per run (default 0)")
    cluster = run.add_argument_group("SLURM (with --backend slurm)")
    cluster.add_argument("--backend", help="local (default): child processes here; slurm: one sbatch job per attempt")
    cluster.add_argument("--partition", help="sbatch --partition")
    cluster.add_argument("--time", help="sbatch --time, SLURM's limit per attempt (e.g. 30, 1:00:00)")
    cluster.add_argument("--account", help="sbatch --account")
    cluster.add_argument("--cpus-per-task", type=int, help="sbatch --cpus-per-task (also OMP_NUM_THREADS)")
    cluster.add_argument("--mem", help="sbatch --mem (e.g. 16G)")
    cluster.add_argument("--sbatch-arg", action="append",
                         help="extra sbatch option (repeatable; write --sbatch-arg=--qos=high)")
    cluster.add_argument("--on-interrupt", help="on Ctrl-C/SIGTERM: cancel (default) the SLURM jobs, or leave them "
                                                "running for the next run to re-attach")

    stat = commands.add_parser("status", help="show where a study stands (also while it runs)")
    stat.add_argument("--ledger", help="ledger file")
    stat.add_argument("--artifact-root", help="folder holding ledger.db")
    stat.add_argument("--json", action="store_true", help="machine-readable output")
    stat.add_argument("--watch", nargs="?", type=float, const=2.0, metavar="SEC",
                      help="refresh every SEC seconds (default 2) until Ctrl-C")

    rep = commands.add_parser("report", help="write the study report (JSON, CSV, plots, HTML) from the ledger")
    rep.add_argument("--ledger", help="ledger file")
    rep.add_argument("--artifact-root", help="folder holding ledger.db")
    rep.add_argument("--out", help="report folder (default: report/ beside the ledger)")
    rep.add_argument("--condition", help="condition whose images the montage shows, e.g. dose_1000/dense/test")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    from runner.config import build_settings

    cli = {key: value for key, value in vars(args).items() if key != "command"}
    cli["compare_args"] = cli.pop("compare_arg")
    cli["sbatch_args"] = cli.pop("sbatch_arg")
    return build_settings(cli)


def git_commit(folder: Path) -> str | None:
    """HEAD of the checkout holding the compare script, '+dirty' when it has local changes."""
    import subprocess

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
        probe = folder / f".runner-write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        from runner.config import ConfigError
        raise ConfigError(f"artifact root {folder} cannot be written ({exc.strerror}); "
                          "choose another --artifact-root") from None


def command_run(args: argparse.Namespace) -> int:
    import asyncio
    import shlex
    import shutil

    from runner import manifest
    from runner.config import ConfigError
    from runner.ledger import probe
    from runner.lock import RunnerLock
    from runner.mounts import network_filesystem_warning
    from runner.slots import Device, Slot, build_slots, parse_gpus
    from runner.study import check_compare_command, plan

    # Everything this run creates (ledger, logs, manifests, the folders holding them, and, through
    # the inherited umask, the commands' outputs) is readable by the user only.
    os.umask(0o077)
    settings = settings_from_args(args)
    jobs = plan(settings)
    ensure_writable(settings.artifact_root)
    if settings.dry_run:
        manifest_path, summary_path = manifest.write_plan(settings.artifact_root, jobs)
        for number, job in enumerate(jobs, 1):
            state = f"  # blocked: {job.blocked_reason}" if job.blocked_reason else ""
            print(f"{number:3d}. {shlex.join(job.argv)}{state}")
        print(f"dry run: {len(jobs)} jobs planned, nothing launched; plan in {manifest_path} and {summary_path}")
        return 0
    check_compare_command(settings)
    if settings.backend == "slurm":
        if shutil.which("sbatch") is None:
            raise ConfigError("--backend slurm: sbatch is not on PATH; run on a host that submits to the cluster")
        # Seats cap how many of our jobs are queued or running at once; SLURM picks the GPUs.
        slots = [Slot(f"slurm{i}", Device("")) for i in range(settings.max_parallel or max(1, len(jobs)))]
    else:
        slots = build_slots(parse_gpus(settings.gpus), settings.jobs_per_gpu, settings.max_parallel)
    warning = network_filesystem_warning(settings.ledger)
    if warning:
        print(f"runner: warning: {warning}", file=sys.stderr)
    probe(settings.ledger)  # before the lock file is made beside it
    lock = RunnerLock(settings.ledger)
    lock.acquire()
    try:
        return asyncio.run(drive(settings, jobs, slots))
    finally:
        lock.release()


def make_executor(settings: Settings):
    if settings.backend == "slurm":
        from runner.executors.slurm import SlurmExecutor, SlurmOptions

        return SlurmExecutor(SlurmOptions(
            settings.partition, settings.time, settings.account, settings.cpus_per_task, settings.mem,
            settings.sbatch_args, settings.on_interrupt))
    from runner.executors.local import LocalExecutor

    return LocalExecutor()


async def drive(settings: Settings, jobs: list[Job], slots) -> int:
    import asyncio
    import getpass
    import signal
    import socket

    from runner import manifest
    from runner.ledger import Ledger
    from runner.progress import Progress
    from runner.resume import reconcile, select
    from runner.scheduler import Policy, Scheduler, longest_first
    from runner.slots import SlotPool

    ledger = await Ledger.open(settings.ledger)
    progress = Progress(total=0)
    executor = make_executor(settings)
    try:
        notes, still_running = await reconcile(ledger, settings.grace, executor)
        for note in notes:
            progress.message(f"resume  {note}")
        by_key = {job.key: job for job in jobs}
        reattach = [(by_key[a.job_key], a) for a in still_running if a.job_key in by_key]
        for attempt in still_running:
            if attempt.job_key not in by_key:
                progress.message(f"resume  {attempt.job_key}: SLURM job {attempt.slurm_job_id} is not in "
                                 "this run's plan; left to a later run")
        run_id = await ledger.begin_run(
            socket.gethostname(), getpass.getuser(), os.getpid(), invocation(), __version__,
            git_commit(settings.workdir),
            [{"slot": s.name, "device": s.device.visible_id, "gpu_uuid": s.device.uuid} for s in slots])
        rows = await ledger.sync_jobs(jobs, run_id)
        selection = await select(ledger, jobs, rows, settings.force, settings.only_failed,
                                 frozenset(job.key for job, _ in reattach))
        progress.total = len(selection.to_run) + len(reattach)
        devices = sorted({s.device.visible_id or "cpu" for s in slots})
        progress.message(f"run {run_id}: {len(jobs)} jobs planned, {len(selection.to_run)} to run, "
                         f"{len(selection.skipped)} already done, {len(selection.blocked)} blocked"
                         + (f", {len(reattach)} still running on SLURM" if reattach else "")
                         + (f"; up to {len(slots)} SLURM jobs at once" if settings.backend == "slurm"
                            else f"; {len(slots)} slots on {', '.join(devices)}")
                         + f"; ledger {settings.ledger}")
        for job in selection.blocked:
            progress.message(f"blocked {job.key}: {job.blocked_reason}")
        work = selection.to_run
        if settings.order == "longest-first" and len(work) > 1:
            work = longest_first(work, await ledger.expected_durations())
        scheduler = Scheduler(ledger, SlotPool(slots), run_id,
                              Policy(settings.timeout, settings.grace, settings.retries), progress,
                              executor)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, scheduler.request_stop, sig)
        ticker = asyncio.create_task(progress.tick())
        try:
            await scheduler.run(work, reattach)
        finally:
            ticker.cancel()
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        stopped = scheduler.stop_signal
        await ledger.end_run(run_id, "interrupted" if stopped else "completed")
        results = await ledger.run_results(run_id)
        try:
            manifest_path = manifest.write_results(settings.artifact_root, results)
        except OSError as exc:  # e.g. a full disk: the ledger holds every result anyway
            manifest_path = None
            print(f"runner: warning: cannot write comparison_manifest.json in {settings.artifact_root} "
                  f"({exc.strerror}); the ledger has the results", file=sys.stderr)
    finally:
        progress.close()
        await ledger.close()
    states = [r["state"] for r in results]
    print(f"run {run_id} {'stopped by signal ' + str(stopped) if stopped else 'finished'}: "
          + ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states)))
          + (f"; manifest {manifest_path}" if manifest_path else "")
          + f"; see `python -m runner status --ledger {settings.ledger}`")
    if stopped:
        return 128 + stopped
    return 0 if all(state == "succeeded" for state in states) else 1


def ledger_from_args(args: argparse.Namespace) -> Path:
    if args.ledger:
        return Path(args.ledger).expanduser().resolve()
    if args.artifact_root:
        return Path(args.artifact_root).expanduser().resolve() / "ledger.db"
    return Path("ledger.db").resolve()


def command_report(args: argparse.Namespace) -> int:
    from runner import report

    ledger = ledger_from_args(args)
    out = Path(args.out).expanduser().resolve() if args.out else ledger.parent / "report"
    ensure_writable(out)
    try:
        summary, files = report.write_report(ledger, out, args.condition)
    except report.NothingToReport as exc:
        print(f"runner: error: {exc}", file=sys.stderr)
        return 1
    if files.plot_problem:
        print(f"runner: warning: {files.plot_problem}", file=sys.stderr)
    print(report.headline_text(summary))
    print(f"{summary['n_success']} of {summary['n_jobs']} conditions reported, {summary['n_failed']} failed, "
          f"{summary['n_blocked']} blocked, {summary['n_not_run']} not run")
    for problem in summary["problems"]:
        print(f"  {problem['key']}: {problem['state']} ({problem['failure_class']}) "
              f"{problem['log_path'] or problem['detail'] or ''}")
    print(f"report: {files.html}")
    print(f"also: {files.summary}, {files.table}, {files.deltas}, {len(files.plots)} plots in {out / 'plots'}")
    return 0


def command_status(args: argparse.Namespace) -> int:
    from runner import status

    ledger = ledger_from_args(args)

    def show(ledger: Path) -> str:
        return status.as_json(ledger) if args.json else status.text(ledger)
    if args.watch is None:
        print(show(ledger))
        return 0
    if args.watch <= 0:
        raise UsageError("--watch needs a positive number of seconds")
    try:
        while True:
            text = show(ledger)
            if sys.stdout.isatty():
                sys.stdout.write("\x1b[H\x1b[2J")
            print(text, flush=True)
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "run":
            return command_run(args)
        if args.command == "report":
            return command_report(args)
        return command_status(args)
    except user_errors() as exc:
        print(f"runner: error: {exc}", file=sys.stderr)
        return 2
    except sqlite3.Error as exc:  # e.g. the ledger's disk filled up during a run
        print(f"runner: error: writing the ledger failed ({exc}); running attempts were stopped, "
              "the next `run` resumes", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("runner: interrupted", file=sys.stderr)
        return 130
