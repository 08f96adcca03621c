"""`runner report`: the study's answer, read from the ledger alone.

Every condition's standing success gives its metrics; failed, interrupted, blocked and never-run
conditions are listed with their class and log, and never keep the others out of the report (the
reference blocked every summary when one job failed). The plots are drawn by a separate science
script (matplotlib and numpy stay out of the runner), so a report without them is still a report.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from runner.commands import flag_value
from runner.ledger import QUERIES, LedgerError, read_snapshot
from runner.manifest import write_atomic
from runner.report_format import (COMPONENTS, HEADLINE_TITLE, PAIRED_NOTE, count, delta_cell, fmt, headline, mean,
                                  model_order, seconds, short)
from runner.study import OTHER_ARMS, PINN

# Metrics where a larger value is better; for the others (mae, mse) smaller is better.
HIGHER_IS_BETTER = {"ssim", "ms_ssim", "psnr", "frc50", "frc1over7"}
DELTAS = tuple((PINN, other) for other in OTHER_ARMS)
PLOT_TIMEOUT_S = 300
# The report's sections on trainings and reconstructions: in phase_summary.json, never in
# metrics_summary.json, whose format is PtychoPINN's.
PHASE_SECTIONS = ("training", "reconstructions")


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


def read_ledger(ledger: Path) -> dict:
    """One consistent snapshot of the comparisons, their metrics, the runs, and the trainings and
    reconstructions with their numbers."""
    def read(conn) -> dict:
        return {name: [dict(r) for r in conn.execute(QUERIES[f"report_{name}"])]
                for name in ("conditions", "metrics", "runs", "phase_jobs", "phase_results")}
    return read_snapshot(ledger, read)


def aggregate(jobs: list[dict]) -> dict:
    """Per model and metric: mean and best of amplitude and phase over the reported conditions."""
    values: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for job in jobs:
        for model, metrics in job["metrics"].items():
            for metric, cell in metrics.items():
                for part in COMPONENTS:
                    if cell.get(part) is not None:
                        values[model][metric][part].append(cell[part])
    result: dict = {}
    for model in sorted(values, key=model_order):
        for metric, parts in sorted(values[model].items()):
            best = max if metric in HIGHER_IS_BETTER else min
            entry = {"n": max(len(v) for v in parts.values())}
            for part in COMPONENTS:
                entry[f"mean_{part}"] = mean(parts[part])
                entry[f"best_{part}"] = best(parts[part]) if parts[part] else None
            result.setdefault(model, {})[metric] = entry
    return result


def deltas(jobs: list[dict], metrics=("ms_ssim", "mae")) -> dict:
    """PtychoPINN minus each other arm, paired by condition, overall and per dose; beside it the
    difference of the two arms' means (what PtychoPINN's delta files hold), which differs from
    the paired mean only when a cell of one arm is empty."""
    result: dict = {}
    for pinn, other in DELTAS:
        name = f"{pinn} - {other}"
        result[name] = {}
        for metric in metrics:
            for scope, group in [("all", jobs)] + [(f"dose_{d}", [j for j in jobs if j["dose"] == d])
                                                  for d in sorted({j["dose"] for j in jobs})]:
                entry = {}
                for part in COMPONENTS:
                    pairs = [j["metrics"][pinn][metric][part] - j["metrics"][other][metric][part]
                             for j in group
                             if j["metrics"].get(pinn, {}).get(metric, {}).get(part) is not None
                             and j["metrics"].get(other, {}).get(metric, {}).get(part) is not None]
                    entry[part] = mean(pairs)
                    entry[f"n_{part}"] = len(pairs)
                    entry[f"difference_of_means_{part}"] = _difference_of_means(group, pinn, other, metric, part)
                result[name].setdefault(metric, {})[scope] = entry
    return result


def _difference_of_means(jobs: list[dict], pinn: str, other: str, metric: str, part: str) -> float | None:
    means = [mean([v for j in jobs if (v := j["metrics"].get(model, {}).get(metric, {}).get(part)) is not None])
             for model in (pinn, other)]
    return None if None in means else means[0] - means[1]


def build(snapshot: dict, ledger: Path) -> dict:
    """The metrics summary: the reference fields plus failures, deltas and provenance."""
    by_key: dict = defaultdict(lambda: defaultdict(dict))
    scalars: dict = defaultdict(dict)
    for row in snapshot["metrics"]:
        if row["value"] is not None and row["amplitude"] is None and row["phase"] is None:
            scalars[row["key"]][f"{row['model']}.{row['metric']}"] = row["value"]
        else:
            by_key[row["key"]][row["model"]][row["metric"]] = {"amplitude": row["amplitude"],
                                                               "phase": row["phase"]}
    reported, problems = [], []
    for c in snapshot["conditions"]:
        base = {k: c[k] for k in ("key", "dose", "view", "split", "state")}
        meta = {k: c[k] for k in ("selection_strategy", "acceptance_rate", "spacing_threshold",
                                  "n_accepted", "n_rejected")}
        if c["success_attempt"] is not None:
            reported.append({**base, "attempt": c["success_attempt"], "device": c["success_device"],
                             "duration_s": c["success_duration_s"], "output_dir": c["output_dir"],
                             "metrics": {m: dict(v) for m, v in by_key[c["key"]].items()},
                             "scalars": scalars.get(c["key"], {}), "phase_d": meta})
        if c["state"] != "succeeded":
            problems.append({**base, "attempt": c["latest_attempt"], "failure_class": _failure_class(c),
                             "detail": c["detail"], "log_path": c["stderr_log"],
                             "earlier_success_reported": c["success_attempt"] is not None})
    runs = [{**r, "argv": json.loads(r["argv"]), "slots": json.loads(r["slots"] or "[]")}
            for r in snapshot["runs"]]
    states = [c["state"] for c in snapshot["conditions"]]
    return {
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "ledger": str(ledger),
        "n_jobs": len(states),
        # PtychoPINN's counts: n_success = conditions whose latest attempt succeeded, n_failed = the rest.
        "n_success": states.count("succeeded"),
        "n_failed": len(states) - states.count("succeeded"),
        "n_reported": len(reported),
        "n_failed_or_interrupted": sum(s in ("failed", "interrupted") for s in states),
        "n_blocked": states.count("blocked"),
        "n_not_run": states.count("pending") + states.count("running"),
        "jobs": reported,
        "aggregate": aggregate(reported),
        "deltas": deltas(reported),
        "problems": problems,
        "provenance": {"runs": runs,
                       "devices": sorted({j["device"] or "cpu" for j in reported})},
    }


def _failure_class(job: dict) -> str | None:
    return "blocked" if job["state"] == "blocked" else \
        (job["failure_class"] or ("not run" if job["state"] == "pending" else None))


def _model_dir(job: dict) -> str | None:
    """A training's model folder: the --output_dir of its command, from the folder it ran in."""
    folder = flag_value(json.loads(job["argv"]), "--output_dir")
    return str(Path(job["cwd"] or ".") / folder) if folder else None


def _whole(value: float | None) -> int | None:
    """Steps and iterations, which the ledger holds as reals."""
    return None if value is None else int(value)


def phase_sections(snapshot: dict) -> dict:
    """One row per training and per reconstruction: its state (why and where its log is when it
    has not succeeded) and the numbers its standing success reported."""
    numbers: dict = defaultdict(dict)
    for row in snapshot["phase_results"]:
        numbers[row["key"]][row["metric"]] = row["value"]
    sections: dict = {name: [] for name in PHASE_SECTIONS}
    for job in snapshot["phase_jobs"]:
        found, ok = numbers[job["key"]], job["state"] == "succeeded"
        done = job["success_attempt"] is not None
        row = {"key": job["key"], "dose": job["dose"], "state": job["state"], "attempt": job["latest_attempt"],
               "failure_class": None if ok else _failure_class(job), "detail": None if ok else job["detail"],
               "log_path": None if ok else job["stderr_log"], "success_attempt": job["success_attempt"],
               "wall_time_s": job["success_duration_s"], "device": (job["success_device"] or "cpu") if done else None}
        if job["phase"] == "E":
            # A PINN's loss is its NLL excess when it logged one; a baseline's is its weighted error.
            loss = next((k for k in ("nll_excess", "loss") if f"final_{k}" in found), None)
            held_out = next((found[k] for k in ("held_out_nll_excess", "held_out_loss") if k in found), None)
            sections["training"].append({**row, "model": job["view"], "loss": loss,
                                         "final_loss": found.get(f"final_{loss}"), "held_out_loss": held_out,
                                         "steps": _whole(found.get("steps")), "model_dir": _model_dir(job)})
        else:
            sections["reconstructions"].append({**row, "view": job["view"], "split": job["split"],
                                                "final_cost": found.get("final_cost"),
                                                "n_iterations": _whole(found.get("n_iterations")),
                                                "computation_time_s": found.get("computation_time_s")})
    return sections


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
    import io
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def montage_condition(summary: dict, wanted: str | None) -> dict | None:
    """The condition whose images the montage shows: the one asked for, else the highest dose's
    dense test split, else the last reported condition."""
    jobs = summary["jobs"]
    if wanted:
        match = [j for j in jobs if j["key"] == wanted]
        if not match:
            raise LedgerError(f"--condition {wanted} has no succeeded attempt; choose one of: "
                              + ", ".join(j["key"] for j in jobs))
        return match[0]
    top = max(j["dose"] for j in jobs)
    preferred = [j for j in jobs if j["dose"] == top and (j["view"], j["split"]) == ("dense", "test")]
    return (preferred or jobs)[-1]


def draw_plots(table: Path, condition: dict, out: Path, python: str, checkout: Path) -> tuple[list[Path], str | None]:
    """Run the plotting script; return the PNGs it made, or why there are none."""
    script = checkout / "scripts" / "plot_report.py"
    if not script.is_file():
        return [], f"no plots: {script} is not here (run the report from a checkout)"
    argv = [python, str(script), "--table", str(table), "--out", str(out),
            "--montage-npz", str(Path(condition["output_dir"]) / "reconstructions_aligned.npz"),
            "--montage-title", condition["key"]]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=PLOT_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], f"no plots: the plotting script did not finish ({exc})"
    made = [Path(line) for line in done.stdout.splitlines() if line.endswith(".png")]
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return made, f"plots incomplete: {last}"
    return made, None


def draw_training_curves(training: list[dict], out: Path, python: str,
                         checkout: Path) -> tuple[Path | None, str | None]:
    """Run the training-curve script on the study the trained models are in; return the PNG, or
    why there is none. No succeeded training: nothing to draw, and nothing to say."""
    folders = [Path(t["model_dir"]) for t in training if t["success_attempt"] is not None and t["model_dir"]]
    if not folders:
        return None, None
    script = checkout / "scripts" / "plot_training.py"
    if not script.is_file():
        return None, f"no training curves: {script} is not here (run the report from a checkout)"
    # A model folder is STUDY/phase_e/dose_D/MODEL/gsN.
    study = folders[0].parents[3] if len(folders[0].parents) > 3 else folders[0]
    target = out / "training_curves.png"
    out.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)  # an earlier report's curves must not pass for this one's
    argv = [python, str(script), "--study", str(study), "--out", str(target)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=PLOT_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"no training curves: the plotting script did not finish ({exc})"
    if done.returncode != 0 or not target.is_file():
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return None, f"no training curves: {last}"
    return target, None


def write_report(ledger: Path, out: Path, condition: str | None = None,
                 python: str = sys.executable) -> tuple[dict, Files]:
    from runner import downstream
    from runner.report_html import render_html

    snapshot = read_ledger(ledger)
    summary = build(snapshot, ledger)
    phases = phase_sections(snapshot)
    if not summary["jobs"]:
        raise NothingToReport(f"the ledger {ledger} holds no succeeded comparison yet "
                              f"({summary['n_jobs']} conditions); run `python -m runner run` first")
    out.mkdir(parents=True, exist_ok=True)
    # PtychoPINN's files in the artifact root, refreshed from the ledger.
    artifact_root = downstream.artifact_root_of(snapshot)
    phase_c_root = downstream.phase_c_root_of(artifact_root)
    try:
        downstream.write_files(artifact_root, snapshot, phase_c_root)
        refresh_problem = None
    except OSError as exc:
        refresh_problem = (f"PtychoPINN's metrics files in {artifact_root} were not refreshed "
                           f"({exc.strerror or exc})")
    files_summary, files_deltas = out / "metrics_summary.json", out / "deltas.txt"
    write_atomic(files_summary, json.dumps(downstream.report_summary(summary, snapshot, phase_c_root,
                                                                     artifact_root.parent), indent=2) + "\n")
    summary.update(phases)  # after metrics_summary.json: report_summary copies the summary's fields
    write_atomic(files_deltas, deltas_text(summary))
    table = out / "study_table.csv"
    write_table(summary, table)
    shown = montage_condition(summary, condition)
    checkout = Path(__file__).resolve().parent.parent
    plots, problem = draw_plots(table, shown, out / "plots", python, checkout)
    curves, curves_problem = draw_training_curves(phases["training"], out / "plots", python, checkout)
    phase_file = None
    if any(phases.values()):  # a ledger of comparisons alone gets exactly the files it always got
        phase_file = out / "phase_summary.json"
        write_atomic(phase_file, json.dumps({"generated_at": summary["generated_at"], "ledger": str(ledger),
                                             **phases, "training_curves": curves and str(curves)},
                                            indent=2) + "\n")
    html = out / "report.html"
    write_atomic(html, render_html(summary, plots, problem, shown["key"], curves, curves_problem))
    return summary, Files(files_summary, files_deltas, table, html, plots, problem, refresh_problem,
                          phase_file, curves, curves_problem)
