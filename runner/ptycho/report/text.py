"""The report as text: the headline table, the deltas in sentences, the trainings and
reconstructions in a few lines, and the study table as CSV."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

from runner.files import write_atomic
from runner.ptycho.report.format import (HEADLINE_TITLE, PAIRED_NOTE, count, delta_cell, fmt, headline, model_order,
                                         seconds, short)


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
    return "\n".join(lines)


def deltas_text(summary: dict) -> str:
    """The deltas in a few sentences a reader can paste into a paper draft."""
    lines = [PAIRED_NOTE]
    for name, metrics in summary["deltas"].items():
        for scope, entry in metrics["ms_ssim"].items():
            mae = metrics["mae"][scope]
            lines.append(f"{name} [{scope}]: MS-SSIM amplitude {delta_cell(entry, 'amplitude')}, "
                         f"phase {delta_cell(entry, 'phase')}; MAE amplitude {delta_cell(mae, 'amplitude')}, "
                         f"phase {delta_cell(mae, 'phase')} ({entry['n_phase']} conditions)")
    return "\n".join(lines) + "\n"


def headline_text(summary: dict) -> str:
    models = sorted({m for job in summary["jobs"] for m in job["metrics"]}, key=model_order)
    lines = [HEADLINE_TITLE.format(part="phase") + ":",
             f"{'dose':>8}  {'view':>6}  " + "  ".join(f"{m:>10}" for m in models)]
    for dose, view, row in headline(summary):
        lines.append(f"{dose:>8}  {view:>6}  " + "  ".join(f"{fmt(row.get(m)):>10}" for m in models))
    return "\n".join(lines)


def write_table(summary: dict, path: Path) -> None:
    rows = [["dose", "view", "split", "model", "metric", "amplitude", "phase", "attempt"]]
    for job in summary["jobs"]:
        for model in sorted(job["metrics"], key=model_order):
            for metric, cell in sorted(job["metrics"][model].items()):
                rows.append([job["dose"], job["view"], job["split"], model, metric,
                             _cell(cell["amplitude"]), _cell(cell["phase"]), job["attempt"]])
    write_atomic(path, _csv_text(rows))


def _cell(value: float | None) -> str:
    return "" if value is None else repr(value)


def _csv_text(rows: list[list]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


