"""Command line: `python -m runner run|status|report`. Parses arguments, calls the command (a run
is wired in `app`), prints, and turns user errors into one `runner: error: ...` line and an exit code.

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


class UsageError(Exception):
    pass


def user_errors() -> tuple[type[Exception], ...]:
    """The exceptions that carry a message for the user (evaluated only when one is raised)."""
    from runner.config import ConfigError
    from runner.executors.slurm import ClusterUnavailable
    from runner.ledger import LedgerError
    from runner.lock import LockError
    from runner.slots import SlotError
    from runner.graph import GraphError
    from runner.study import PlanError
    return UsageError, ConfigError, PlanError, GraphError, LedgerError, LockError, SlotError, ClusterUnavailable


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
    pick.add_argument("--phases", help="the study's phases to run as one graph of jobs: E (training), F "
                                       "(Pty-Chi reconstruction), G (comparison, the default), e.g. E,F,G")
    pick.add_argument("--dry-run", action="store_true",
                      help="write the plan and print the jobs in launch order with what each needs; launch nothing")
    pick.add_argument("--order", choices=("longest-first", "plan"),
                      help="launch order: longest-first (default; by the durations of earlier "
                           "successes, never-run jobs first) or the study's plan order")
    cmd = run.add_argument_group("the commands")
    cmd.add_argument("--compare-cmd", help="command prefix, split like a shell would "
                                           "(default: python -m scripts.compare_models)")
    cmd.add_argument("--workdir", help="working directory of each job (default: current folder)")
    cmd.add_argument("--compare-arg", action="append", help="extra argument for every job (repeatable)")
    cmd.add_argument("--train-cmd", help="Phase E command prefix (default: python scripts/train_model.py); "
                                         "PtychoPINN's training flags follow it")
    cmd.add_argument("--train-arg", action="append", help="extra argument for every training (repeatable)")
    cmd.add_argument("--recon-cmd", help="Phase F command prefix (default: python scripts/reconstruct_ptychi.py)")
    cmd.add_argument("--recon-arg", action="append", help="extra argument for every reconstruction (repeatable)")
    cmd.add_argument("--test-data", action="append",
                     help="phase_c or phase_d, or VIEW=SOURCE: where each view's test NPZ comes from")
    cmd.add_argument("--checkpoint-name", help="model file that must exist in each model folder")
    cmd.add_argument("--success", choices=("metrics", "exit-code"),
                     help="what proves an attempt succeeded: exit 0 and a complete "
                          "comparison_metrics.csv (metrics, the default) or exit 0 alone (exit-code)")
    res = run.add_argument_group("resources")
    res.add_argument("--gpus", help="auto (default), none, or a list of indices / GPU UUIDs")
    res.add_argument("--jobs-per-gpu", help="concurrent jobs per GPU (default 1): one number, or per phase "
                                            "such as E=1,F=2,G=4 (a training then takes a whole GPU)")
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


def command_run(args: argparse.Namespace) -> int:
    import shlex

    from runner import app

    # Everything this run creates (ledger, logs, manifests, the folders holding them, and, through
    # the inherited umask, the commands' outputs) is readable by the user only.
    os.umask(0o077)
    settings = settings_from_args(args)
    if settings.dry_run:
        jobs, written = app.dry_run(settings)
        graph = any(job.needs for job in jobs) or set(settings.phases) != {"G"}
        for number, job in enumerate(jobs, 1):
            state = f"  # blocked: {job.blocked_reason}" if job.blocked_reason else ""
            if graph:  # which job, of which phase, waiting for which
                needs = f"after {', '.join(job.needs)}" if job.needs else "needs nothing"
                print(f"{number:3d}. [{job.phase}] {job.key}  ({needs}){state}\n     {shlex.join(job.argv)}")
            else:
                print(f"{number:3d}. {shlex.join(job.argv)}{state}")
        print(f"dry run: {len(jobs)} jobs planned in launch order, nothing launched; plan in "
              + " and ".join(map(str, written)))
        return 0
    summary = app.run(settings, warn=lambda line: print(f"runner: warning: {line}", file=sys.stderr))
    states = summary.states
    stopped = summary.stop_signal
    print(f"run {summary.run_id} {'stopped by signal ' + str(stopped) if stopped else 'finished'}: "
          + ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states)))
          + (f"; manifest {summary.manifest}" if summary.manifest else "")
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
    from runner.app import ensure_writable

    ledger = ledger_from_args(args)
    out = Path(args.out).expanduser().resolve() if args.out else ledger.parent / "report"
    ensure_writable(out)
    try:
        summary, files = report.write_report(ledger, out, args.condition)
    except report.NothingToReport as exc:
        print(f"runner: error: {exc}", file=sys.stderr)
        return 1
    for problem in (files.plot_problem, files.downstream_problem, files.training_problem):
        if problem:
            print(f"runner: warning: {problem}", file=sys.stderr)
    print(report.headline_text(summary))
    print(f"{summary['n_reported']} of {summary['n_jobs']} conditions reported, "
          f"{summary['n_failed_or_interrupted']} failed, {summary['n_blocked']} blocked, {summary['n_not_run']} not run")
    for problem in summary["problems"]:
        print(f"  {problem['key']}: {problem['state']} ({problem['failure_class']}) "
              f"{problem['log_path'] or problem['detail'] or ''}")
    print(f"report: {files.html}")
    print(f"also: {files.summary}, {files.table}, {files.deltas}, {len(files.plots)} plots in {out / 'plots'}")
    phases = report.phase_text(summary)
    if phases:  # only ledgers with trainings or reconstructions
        print(phases)
        print(f"trainings and reconstructions: {files.phase_summary}")
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
