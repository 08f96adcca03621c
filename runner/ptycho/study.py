"""The ptychography study behind the engine's Study interface (runner.study): PtychoPINN's Phases
E (training), F (Pty-Chi reconstruction) and G (comparison) over doses, overlap views and splits.
Each method hands the engine's request to the module that owns it."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.ledger import LedgerError
from runner.ptycho import hubfiles, manifests, plan, settings, summaries
from runner.ptycho.phases import COMPARE, KINDS, RECONSTRUCT
from runner.ptycho.report import snapshot
from runner.ptycho.settings import StudySettings
from runner.study import Report, RunRecord


class PtychoStudy:
    kinds = KINDS
    kind_noun = "phase"
    views = snapshot.VIEWS

    def add_run_options(self, parser: argparse.ArgumentParser) -> None:
        settings.add_run_options(parser)

    def add_report_options(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--condition", help="condition whose images the montage shows, e.g. dose_1000/dense/test")

    def settings(self, file: dict[str, Any], flags: dict[str, Any], config_file: Path | None,
                 cwd: Path) -> StudySettings:
        return settings.build(file, flags, config_file, cwd)

    def describe(self, given: StudySettings) -> dict:
        return given.layout.to_json()

    def plan(self, given: StudySettings) -> list:
        return plan.plan(given)

    def check(self, given: StudySettings, jobs: list, launching: bool) -> None:
        plan.make_folders(given)
        if launching and COMPARE in given.phases:
            plan.check_commands(given)

    def write_plan(self, given: StudySettings, jobs: list, folder: Path) -> list[Path]:
        comparisons = [job for job in jobs if job.kind == COMPARE]
        return list(manifests.write_plan(given, comparisons, folder)) if comparisons else []

    def after_run(self, given: StudySettings, run: RunRecord, warn: Callable[[str], None]) -> Path | None:
        """comparison_manifest.json and the metrics files PtychoPINN's tools read (the comparisons
        only, as before), and Phase F's reconstruction_manifest.json."""
        by_kind: dict[str, tuple[list, list]] = {}
        for job, result in zip(run.jobs, run.results):
            jobs, results = by_kind.setdefault(job.kind, ([], []))
            jobs.append(job)
            results.append(result)
        named = None

        @functools.cache
        def ledger() -> dict:  # one snapshot serves both files: all of it for the summaries
            return snapshot.read(run.ledger, snapshot.REPORT_PARTS if COMPARE in by_kind else ("phase_results",))
        if COMPARE in by_kind:
            try:
                named = manifests.write_results(given, *by_kind[COMPARE])
                summaries.write_files(given.layout, ledger())
            except (OSError, LedgerError) as exc:
                warn(f"cannot write comparison_manifest.json and the metrics summaries in {given.artifact_root} "
                     f"({getattr(exc, 'strerror', None) or exc}); the ledger has the results")
        if RECONSTRUCT in by_kind:
            try:
                numbers = snapshot.numbers(ledger())
                manifests.write_reconstruction_manifest(given, *by_kind[RECONSTRUCT], numbers)
            except (OSError, LedgerError) as exc:
                warn(f"cannot write Phase F's reconstruction_manifest.json ({getattr(exc, 'strerror', None) or exc}); "
                     "the ledger has the results")
        if given.layout.holds_hub:  # the commands' logs under PtychoPINN's names, then the inventory
            hub = given.layout.hub
            ran = [(job.key, job.kind, job.labels, _path(r["stdout_log"]), _path(r["stderr_log"]))
                   for job, r in zip(run.jobs, run.results) if r["number"] is not None]
            try:
                hubfiles.write_cli_logs(hub, ran)
                hubfiles.write_inventory(hub)
            except OSError as exc:
                warn(f"cannot write the command logs in {hub / 'cli'} or the artifact inventory "
                     f"({exc.strerror or exc}); the ledger has the results")
        return named

    def report(self, ledger: Path, out: Path, options: dict[str, Any]) -> Report:
        from runner.ptycho.report.write import NothingToReport, lines, write_report

        try:
            summary, written = write_report(ledger, out, options.get("condition"))
        except NothingToReport as exc:
            return Report(error=str(exc))
        return Report(lines(summary, written, out), written.problems)


def _path(text: str | None) -> Path | None:
    return Path(text) if text else None
