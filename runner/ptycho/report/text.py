"""The report as text: the headline table, the deltas in sentences, the trainings and
reconstructions in a few lines, and the study table as CSV."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

from runner.files import write_atomic
from runner.ptycho.report.format import (HEADLINE_TITLE, PAIRED_NOTE, PAIRED_SEEDS_NOTE, count, delta_cell,
                                         headline, model_order, paired_cell, replicate_label, seconds, seeds, short,
                                         with_interval)


def phase_text(summary: dict) -> str:
    """A few lines on the trainings and reconstructions; empty when the ledger has none."""
    def training(r: dict) -> str:
        return (f"{r['loss']} {short(r['final_loss'])}  held-out {short(r['held_out_loss'])}  "
                f"{count(r['steps'])} steps  {seconds(r['wall_time_s'])} s  {r['device']}")

    def reconstruction(r: dict) -> str:
        return (f"final cost {short(r['final_cost'])}  {count(r['n_iterations'])} iterations  "
                f"{seconds(r['computation_time_s'])} s (wall {seconds(r['wall_time_s'])} s)  {r['device']}")
    lines = []
    for name, title, noun, numbers in (("training", "Phase E", "trainings", training),
                                       ("reconstructions", "Phase F", "reconstructions", reconstruction)):
        rows = summary[name]
        if not rows:
            continue
        states = Counter(r["state"] for r in rows)
        lines.append(f"{title}: {len(rows)} {noun}, {states.pop('succeeded', 0)} succeeded"
                     + "".join(f", {n} {state}" for state, n in sorted(states.items())))
        width = max(len(r["key"]) for r in rows)
        for r in rows:
            tail = numbers(r) if r["state"] == "succeeded" else \
                f"{r['state']} ({r['failure_class']}) {r['log_path'] or r['detail'] or ''}".rstrip()
            lines.append(f"  {r['key']:<{width}}  {tail}")
            if r.get("attempt_steps"):
                lines.append(f"  {'':<{width}}  steps by attempt: {', '.join(r['attempt_steps'])}")
    return "\n".join(lines)


def paired_text(summary: dict) -> list[str]:
    """Per condition and other arm, the difference over seeds with its interval and its call."""
    lines = [PAIRED_SEEDS_NOTE]
    for row in summary["study_deltas"]:
        if row["metric"] in ("ms_ssim", "mae"):
            lines.append(f"{replicate_label(row)} PtychoPINN - {row['versus']} {row['metric']}: "
                         f"phase {paired_cell(row, 'phase')}; amplitude {paired_cell(row, 'amplitude')}")
    return lines


def deltas_text(summary: dict) -> str:
    """The deltas in a few sentences a reader can paste into a paper draft: per condition over the
    seeds, with their intervals; then pooled over conditions, as PtychoPINN's files hold them."""
    lines = [*paired_text(summary), "", "Pooled over conditions (and seeds), without intervals: "
             "descriptive, not a test. " + PAIRED_NOTE]
    for name, metrics in summary["deltas"].items():
        for scope, entry in metrics["ms_ssim"].items():
            mae = metrics["mae"][scope]
            lines.append(f"{name} [{scope}]: MS-SSIM amplitude {delta_cell(entry, 'amplitude')}, "
                         f"phase {delta_cell(entry, 'phase')}; MAE amplitude {delta_cell(mae, 'amplitude')}, "
                         f"phase {delta_cell(mae, 'phase')} ({entry['n_phase']} conditions)")
    return "\n".join(lines) + "\n"


def headline_text(summary: dict) -> str:
    models = sorted({m for job in summary["jobs"] for m in job["metrics"]}, key=model_order)
    split, rows = headline(summary)
    sized = any(size is not None for _, _, size, _ in rows)
    lines = [HEADLINE_TITLE.format(part="phase", split=split) + ":",
             f"{'dose':>8}  {'view':>6}  " + (f"{'n_train':>7}  " if sized else "") + f"{'seeds':>5}  "
             + "  ".join(f"{m:>14}" for m in models)]
    for dose, view, size, cells in rows:
        lines.append(f"{dose:>8}  {view:>6}  " + (f"{size or 'all':>7}  " if sized else "") + f"{seeds(cells):>5}  "
                     + "  ".join(f"{with_interval(cells.get(m), 'phase'):>14}" for m in models))
    return "\n".join(lines)


def write_table(summary: dict, path: Path) -> None:
    """One row per comparison, model and metric; the replicate's seed and training-set size last."""
    rows = [["dose", "view", "split", "model", "metric", "amplitude", "phase", "attempt", "seed", "train_size"]]
    for job in summary["jobs"]:
        for model in sorted(job["metrics"], key=model_order):
            for metric, cell in sorted(job["metrics"][model].items()):
                rows.append([job["dose"], job["view"], job["split"], model, metric,
                             _cell(cell["amplitude"]), _cell(cell["phase"]), job["attempt"],
                             _cell(job["seed"]), _cell(job["train_size"])])
    write_atomic(path, _csv_text(rows))


SUMMARY_COLUMNS = ("dose", "view", "split", "train_size", "model", "metric", "n", "amplitude_mean",
                   "amplitude_ci_low", "amplitude_ci_high", "phase_mean", "phase_ci_low", "phase_ci_high", "n_train")


def write_summary_table(summary: dict, path: Path) -> None:
    """The study_summary view's rows (mean and 95 % interval over the seeds), with n_train."""
    rows = [list(SUMMARY_COLUMNS)] + [[r[c] if isinstance(r[c], str) else _cell(r[c]) for c in SUMMARY_COLUMNS]
                                      for r in summary["study_summary"]]
    write_atomic(path, _csv_text(rows))


def _cell(value: float | None) -> str:
    return "" if value is None else repr(value)


def _csv_text(rows: list[list]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


