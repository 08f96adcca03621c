"""`runner report` for the study: from the ledger alone, the report's files in `out` (JSON, CSV,
text, plots, one HTML page) and PtychoPINN's metrics files refreshed in the artifact root."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from runner.files import write_atomic
from runner.ptycho import hubfiles, summaries
from runner.ptycho import layout as files
from runner.ptycho.report import snapshot as ledger_snapshot
from runner.ptycho.report.build import build, montage_condition, phase_sections
from runner.ptycho.report.html import render_html
from runner.ptycho.report.plots import draw_plots, draw_training_curves
from runner.ptycho.report.text import deltas_text, headline_text, phase_text, write_summary_table, write_table
from runner.ptycho.settings import CHECKOUT


class NothingToReport(Exception):
    """The ledger holds no succeeded comparison."""


@dataclass(frozen=True)
class Files:
    summary: Path
    deltas: Path
    table: Path
    html: Path
    plots: list[Path]
    plot_problem: str | None
    downstream_problem: str | None = None  # why PtychoPINN's files in the artifact root were not refreshed
    phase_summary: Path | None = None  # the trainings and reconstructions, when the ledger has any
    training_curves: Path | None = None
    training_problem: str | None = None  # why the training curves were not drawn

    @property
    def problems(self) -> list[str]:
        return [p for p in (self.plot_problem, self.downstream_problem, self.training_problem) if p]


def write_report(ledger: Path, out: Path, condition: str | None = None,
                 python: str = sys.executable) -> tuple[dict, Files]:
    snapshot = ledger_snapshot.read(ledger)
    where = snapshot["layout"]
    summary = build(snapshot, ledger)
    phases = phase_sections(snapshot)
    if not summary["jobs"]:
        raise NothingToReport(f"the ledger {ledger} holds no succeeded comparison yet "
                              f"({summary['n_jobs']} conditions); run `python -m runner run` first")
    out.mkdir(parents=True, exist_ok=True)
    # PtychoPINN's files in the artifact root, refreshed from the ledger.
    try:
        summaries.write_files(where, snapshot)
        refresh_problem = None
    except OSError as exc:
        refresh_problem = (f"PtychoPINN's metrics files in {where.artifacts} were not refreshed "
                           f"({exc.strerror or exc})")
    files_summary, files_deltas = out / files.REPORT_SUMMARY, out / files.REPORT_DELTAS
    write_atomic(files_summary, json.dumps(summaries.report_summary(summary, snapshot, where), indent=2) + "\n")
    summary.update(phases)  # after metrics_summary.json: report_summary copies the summary's fields
    write_atomic(files_deltas, deltas_text(summary))
    table, over_seeds = out / files.STUDY_TABLE, out / files.STUDY_SUMMARY
    write_table(summary, table)
    write_summary_table(summary, over_seeds)
    shown = montage_condition(summary, condition)
    montage = Path(where.comparison_dir(shown["dose"], shown["view"], shown["split"])) / files.ALIGNED_FILE
    plots, problem = draw_plots(table, over_seeds, montage, shown["key"], out / files.PLOTS, python, CHECKOUT)
    curves, curves_problem = draw_training_curves(phases["training"], where.phase_e.parent, out / files.PLOTS, python,
                                                  CHECKOUT)
    phase_file = None
    if any(phases.values()):  # a ledger of comparisons alone gets exactly the files it always got
        phase_file = out / files.PHASE_SUMMARY
        write_atomic(phase_file, json.dumps({"generated_at": summary["generated_at"], "ledger": str(ledger),
                                             **phases, "training_curves": curves and str(curves)},
                                            indent=2) + "\n")
    html = out / files.REPORT_PAGE
    write_atomic(html, render_html(summary, plots, problem, shown["key"], curves, curves_problem))
    if where.holds_hub:  # last: it lists the report's files too
        try:
            hubfiles.write_inventory(where.hub)
        except OSError as exc:
            refresh_problem = refresh_problem or f"the artifact inventory was not written ({exc.strerror or exc})"
    return summary, Files(files_summary, files_deltas, table, html, plots, problem, refresh_problem,
                          phase_file, curves, curves_problem)


def lines(summary: dict, written: Files, out: Path) -> list[str]:
    """What `runner report` prints: the headline, the counts, each problem, where the files are."""
    shown = [headline_text(summary),
             f"{summary['n_reported']} of {summary['n_jobs']} conditions reported, "
             f"{summary['n_failed_or_interrupted']} failed, {summary['n_blocked']} blocked, {summary['n_not_run']} not run"]
    for problem in summary["problems"]:
        shown.append(f"  {problem['key']}: {problem['state']} ({problem['failure_class']}) "
                     f"{problem['log_path'] or problem['detail'] or ''}")
    shown.append(f"report: {written.html}")
    shown.append(f"also: {written.summary}, {written.table} (and over the seeds {files.STUDY_SUMMARY}), "
                 f"{written.deltas}, {len(written.plots)} plots in "
                 f"{out / files.PLOTS}")
    phases = phase_text(summary)
    if phases:  # only ledgers with trainings or reconstructions
        shown += [phases, f"trainings and reconstructions: {written.phase_summary}"]
    return shown
