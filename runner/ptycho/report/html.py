"""The report as one self-contained HTML page: tables, plots embedded as data URIs, failures and
provenance. It loads nothing from the network, so it opens offline and survives being mailed."""

from __future__ import annotations

import base64
import os
from html import escape
from pathlib import Path

from runner.ptycho.report.format import (COMPONENTS, HEADLINE_TITLE, PAIRED_NOTE, PAIRED_SEEDS_NOTE, count,
                                        delta_cell, fmt, headline, model_order, paired_cell, replicate_label,
                                        seconds, seeds, short, with_interval)

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; padding: 0 1.5em; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th { background: #f0f0f0; } td.text { text-align: left; }
.bad { color: #a00; } .note { color: #666; } img { max-width: 100%; border: 1px solid #eee; }
"""


def _table(header: list[str], rows: list[list], text_columns: int = 0) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td class=\"text\">{escape(str(c))}</td>" if i < text_columns
                         else f"<td>{escape(str(c))}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<p><img alt="{escape(alt)}" src="data:image/png;base64,{data}"></p>'


def _models(summary: dict) -> list[str]:
    return sorted({m for job in summary["jobs"] for m in job["metrics"]}, key=model_order)


def _headline(summary: dict) -> str:
    models = _models(summary)
    parts = []
    for part in COMPONENTS[::-1]:  # phase first: the study's headline
        split, found = headline(summary, part)
        sized = any(size is not None for _, _, size, _ in found)
        rows = [[dose, view, *([size or "all"] if sized else []), seeds(cells)]
                + [with_interval(cells.get(m), part) for m in models] for dose, view, size, cells in found]
        parts.append(f"<h3>{escape(HEADLINE_TITLE.format(part=part, split=split))}</h3>"
                     + _table(["dose", "view", *(["n_train"] if sized else []), "seeds"] + models, rows,
                              text_columns=2))
    return "".join(parts)


def _paired(summary: dict) -> str:
    rows = [[replicate_label(r), r["versus"], r["metric"], paired_cell(r, "phase"), paired_cell(r, "amplitude")]
            for r in summary["study_deltas"] if r["metric"] in ("ms_ssim", "mae")]
    return f"<p>{escape(PAIRED_SEEDS_NOTE)}</p>" + _table(
        ["condition", "PtychoPINN minus", "metric", "phase", "amplitude"], rows, text_columns=3)


def _deltas(summary: dict) -> str:
    rows = []
    for name, metrics in summary["deltas"].items():
        for scope, ms_ssim in metrics["ms_ssim"].items():
            mae = metrics["mae"][scope]
            rows.append([name, scope, delta_cell(ms_ssim, "amplitude"), delta_cell(ms_ssim, "phase"),
                         delta_cell(mae, "amplitude"), delta_cell(mae, "phase"), ms_ssim["n_phase"]])
    return (f"<p>Pooled over conditions (and seeds), without intervals: descriptive, not a test. "
            f"{escape(PAIRED_NOTE)}</p>"
            + _table(["difference", "conditions", "MS-SSIM amplitude", "MS-SSIM phase", "MAE amplitude",
                      "MAE phase", "n"], rows, text_columns=2))


def _aggregate(summary: dict) -> str:
    rows = []
    for model, metrics in summary["aggregate"].items():
        for metric in ("ms_ssim", "mae"):
            if metric in metrics:
                e = metrics[metric]
                rows.append([model, metric, fmt(e["mean_amplitude"]), fmt(e["mean_phase"]),
                             fmt(e["best_amplitude"]), fmt(e["best_phase"]), e["n"]])
    return _table(["model", "metric", "mean amplitude", "mean phase", "best amplitude", "best phase",
                   "conditions"], rows, text_columns=2)


def _conditions(summary: dict) -> str:
    models = _models(summary)
    rows = []
    for job in summary["jobs"]:
        cells = [fmt(job["metrics"].get(m, {}).get("ms_ssim", {}).get("phase")) for m in models]
        meta = job["phase_d"]
        rate = "" if meta["acceptance_rate"] is None else f"{meta['acceptance_rate']:.3f}"
        rows.append([job["key"], job["attempt"], job["device"] or "cpu", *cells,
                     meta["selection_strategy"] or "", rate])
    return _table(["condition", "attempt", "device", *[f"{m} MS-SSIM phase" for m in models],
                   "selection", "acceptance"], rows, text_columns=1)


def _state_cells(row: dict) -> list:
    return [row["key"], row["state"], row["failure_class"] or "", row["detail"] or "", row["log_path"] or "",
            row["device"] or ""]


STATE_HEADER = ["state", "class", "detail", "log", "device"]


def _training(summary: dict, curves: Path | None, problem: str | None) -> str:
    """Phase E: each training's state and losses, and the loss curves; nothing without trainings."""
    rows = [_state_cells(r) + [r["loss"] or "", short(r["final_loss"]), short(r["held_out_loss"]), count(r["steps"]),
                               seconds(r["wall_time_s"]), ", ".join(r.get("attempt_steps", ()))]
            for r in summary.get("training", [])]
    if not rows:
        return ""
    note = f'<p class="bad">{escape(problem)}</p>' if problem else ""
    return ("<h2>Phase E: training</h2>"
            + _table(["training", *STATE_HEADER, "loss", "final", "held-out", "steps", "wall time (s)",
                      "steps by attempt"],
                     rows, text_columns=7)
            + note + (_image(curves, "training curves") if curves else ""))


def _reconstructions(summary: dict) -> str:
    """Phase F: each reconstruction's state, final cost and time; nothing without reconstructions."""
    rows = [_state_cells(r) + [short(r["final_cost"]), count(r["n_iterations"]), seconds(r["computation_time_s"]),
                               seconds(r["wall_time_s"])] for r in summary.get("reconstructions", [])]
    if not rows:
        return ""
    return ("<h2>Phase F: Pty-Chi reconstruction</h2>"
            + _table(["reconstruction", *STATE_HEADER, "final cost", "iterations", "Pty-Chi time (s)",
                      "wall time (s)"], rows, text_columns=6))


def _problems(summary: dict) -> str:
    if not summary["problems"]:
        return "<p>Every condition succeeded.</p>"
    rows = [[p["key"], p["state"], p["failure_class"] or "", p["detail"] or "", p["log_path"] or "",
             "yes" if p["earlier_success_reported"] else "no"] for p in summary["problems"]]
    return _table(["condition", "state", "class", "detail", "log", "earlier success reported"],
                  rows, text_columns=6)


def _provenance(summary: dict) -> str:
    rows = []
    for run in summary["provenance"]["runs"]:
        devices = ", ".join(sorted({s["device"] or "cpu" for s in run["slots"]})) or "-"
        rows.append([run["run_id"], run["started_at"], run["ended_at"] or "", run["outcome"] or "running",
                     f"{run['user']}@{run['host']}", run["git_commit"] or "", run["runner_version"], devices])
    return _table(["run", "started (UTC)", "ended", "outcome", "where", "commit", "runner", "devices"],
                  rows, text_columns=8)


def _shown_path(path: str) -> str:
    """Relative to the current folder when under it: shorter, and safe to share."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def render_html(summary: dict, plots: list[Path], plot_problem: str | None,
                montage_key: str, training_curves: Path | None = None,
                training_problem: str | None = None) -> str:
    counts = (f"{summary['n_jobs']} conditions: {summary['n_reported']} reported, "
              f"{summary['n_failed_or_interrupted']} failed, {summary['n_blocked']} blocked, "
              f"{summary['n_not_run']} not run")
    figures = "".join(_image(p, p.stem) for p in plots if not p.stem.startswith("montage"))
    montage = "".join(_image(p, p.stem) for p in plots if p.stem.startswith("montage"))
    problem = f'<p class="bad">{escape(plot_problem)}</p>' if plot_problem else ""
    phases = _training(summary, training_curves, training_problem) + _reconstructions(summary)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Study report</title><style>{STYLE}</style></head>
<body>
<h1>Study report: PtychoPINN, Baseline and PtyChi across dose and overlap</h1>
<p class="note">Generated {escape(summary['generated_at'])} from the ledger {escape(_shown_path(summary['ledger']))}.
{escape(counts)}.</p>
<h2>Headline</h2>{_headline(summary)}
<h2>Differences over seeds</h2>{_paired(summary)}
<h2>Differences pooled over conditions</h2>{_deltas(summary)}
<h2>Mean and best over conditions</h2>{_aggregate(summary)}
<h2>Metrics against dose</h2>{problem}{figures}
<h2>Images: {escape(montage_key)}</h2>{montage}
<h2>Conditions</h2>{_conditions(summary)}{phases}
<h2>Failed, blocked and not run</h2>{_problems(summary)}
<h2>Provenance</h2>{_provenance(summary)}
</body></html>
"""
