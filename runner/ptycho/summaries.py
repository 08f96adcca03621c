"""The Phase G files PtychoPINN's own downstream tools read unchanged from the artifact root.

Its post-Phase-G chain (summariser, delta highlights, metrics report and digest, MS-SSIM grid,
highlights checker, artifact verifier) reads the artifact root, which it calls `<hub>/analysis`.
Besides `comparison_manifest.json` (manifests.py) it reads:
  metrics_summary.json                  counts, per-job metric lists, aggregate means, Phase C compliance
  metrics_delta_summary.json            PtychoPINN's aggregate mean minus each other arm's
  metrics_delta_highlights.txt          the same deltas, four fixed-format lines
  metrics_delta_highlights_preview.txt  the phase deltas only
All of it comes from the ledger (the metrics of each condition's success, loaded from its
comparison_metrics.csv) and the Phase C NPZs' `_metadata`, read without numpy.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from runner.files import write_atomic
from runner.npzmeta import NpzEntryError, read_npz_string
from runner.ptycho import layout as files
from runner.ptycho.arms import FLOOR_MODEL, OTHER_ARMS, PINN
from runner.ptycho.hubfiles import metrics_summary_md, shown
from runner.ptycho.layout import SPLITS, Layout
from runner.ptycho.report.format import mean, model_order

CANONICAL_TOOL = "transpose_rename_convert"  # the Phase C canonicalisation PtychoPINN requires
# Highlight lines in PtychoPINN's order: (metric, label, decimals) x other arm.
HIGHLIGHTS = (("ms_ssim", "MS-SSIM", 3), ("mae", "MAE", 6))
LABEL_WIDTH = 35


# --- metrics_summary.json ------------------------------------------------------------------------

def metric_lists(rows: list[dict]) -> dict[str, list[dict]]:
    """Per condition key, its metric rows as PtychoPINN lists them: `{model, metric, amplitude,
    phase}`, or `{model, metric, value}` for a scalar row. An empty or NaN cell is null."""
    found: dict[str, list[dict]] = {}
    for row in rows:
        if row["value"] is not None and row["amplitude"] is None and row["phase"] is None:
            entry = {"model": row["model"], "metric": row["metric"], "value": row["value"]}
        else:
            entry = {"model": row["model"], "metric": row["metric"], "amplitude": row["amplitude"],
                     "phase": row["phase"]}
        found.setdefault(row["key"], []).append(entry)
    for entries in found.values():
        entries.sort(key=lambda e: (model_order(e["model"]), e["metric"]))
    return found


def aggregate_metrics(jobs: list[dict]) -> dict:
    """Per model: `ms_ssim` mean and best (max) of amplitude and phase, `mae` means only: plain
    means over the listed jobs, empty cells skipped."""
    values: dict = {}
    for job in jobs:
        for entry in job["metrics"]:
            if entry["metric"] in ("ms_ssim", "mae") and "value" not in entry:
                cell = values.setdefault(entry["model"], {}).setdefault(entry["metric"], {p: [] for p in ("amplitude", "phase")})
                for part in ("amplitude", "phase"):
                    if entry[part] is not None:
                        cell[part].append(entry[part])
    result: dict = {}
    for model in sorted(values, key=model_order):
        for metric, parts in sorted(values[model].items(), reverse=True):  # ms_ssim, then mae
            entry = {}
            for part in ("amplitude", "phase"):
                entry[f"mean_{part}"] = mean(parts[part])
                if metric == "ms_ssim":
                    entry[f"best_{part}"] = max(parts[part]) if parts[part] else None
            result.setdefault(model, {})[metric] = entry
    return result


def npz_compliance(path: Path, hub: Path) -> dict:
    """What the Phase C NPZ's `_metadata` holds, as PtychoPINN's summariser reports it."""
    entry = {"npz_path": shown(path, hub), "has_metadata": False, "has_canonical_transform": False,
             "compliant": False}
    try:
        text = read_npz_string(path, "_metadata")
    except FileNotFoundError:
        return {**entry, "error": "File not found"}
    except (OSError, NpzEntryError) as exc:
        return {**entry, "error": f"_metadata cannot be read ({exc})"}
    if text is None:
        return entry
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError:
        return {**entry, "error": "_metadata is not JSON"}
    if not isinstance(metadata, dict):
        return {**entry, "error": "_metadata is not a JSON object"}
    steps = metadata.get("data_transformations")
    tools = [s.get("tool") for s in steps if isinstance(s, dict)] if isinstance(steps, list) else []
    canonical = CANONICAL_TOOL in tools
    return {**entry, "has_metadata": True, "has_canonical_transform": canonical, "compliant": canonical,
            "data_transformations": tools}


def phase_c_compliance(where: Layout, doses: list[int]) -> dict:
    """`dose_<D>` -> split -> compliance of `phase_c/dose_D/patched_{split}.npz`."""
    return {f"dose_{dose}": {split: npz_compliance(Path(where.patched(dose, split)), where.hub) for split in SPLITS}
            for dose in sorted(set(doses))}


def _problem(condition: dict) -> dict:
    return {"dose": condition["dose"], "view": condition["view"], "split": condition["split"],
            "state": condition["state"],
            "failure_class": "blocked" if condition["state"] == "blocked" else condition["failure_class"],
            "detail": condition["detail"], "log_path": condition["stderr_log"]}


def latest_plan(snapshot: dict) -> list[dict]:
    """The conditions planned by the latest `runner run`: what its comparison_manifest.json lists."""
    if not snapshot["runs"]:
        return []
    latest = max(r["run_id"] for r in snapshot["runs"])
    return [c for c in snapshot["conditions"] if c["last_run_id"] == latest]


def metrics_summary(snapshot: dict, where: Layout) -> dict:
    """PtychoPINN's metrics summary of the latest run's conditions: the succeeded ones are
    summarised, every other one is counted in n_failed (and listed in `not_succeeded`)."""
    conditions = latest_plan(snapshot)
    # What the comparison CSVs hold, as PtychoPINN's aggregator reads them: not the floor, which
    # comes from its sibling file.
    lists = metric_lists([row for row in snapshot["metrics"] if row["model"] != FLOOR_MODEL])
    jobs = [{"dose": c["dose"], "view": c["view"], "split": c["split"], "metrics": lists.get(c["key"], []),
             "seed": c["seed"], "train_size": c["train_size"]}
            for c in conditions if c["state"] == "succeeded"]
    return {"n_jobs": len(conditions), "n_success": len(jobs), "n_failed": len(conditions) - len(jobs),
            "jobs": jobs, "aggregate_metrics": aggregate_metrics(jobs),
            "phase_c_metadata_compliance": phase_c_compliance(where, [c["dose"] for c in conditions]),
            "not_succeeded": [_problem(c) for c in conditions if c["state"] != "succeeded"],
            "generated_at": utc_stamp(), "source": "runner ledger",
            "intervals": {"note": INTERVALS_NOTE, "study_summary": snapshot["summary"]}}


INTERVALS_NOTE = ("Over the replicate seeds, per dose, view, split and training-set size (null: the whole "
                  "split): n, the mean and its 95 % Student-t interval (mean +- t * sd / sqrt(n); null bounds "
                  "when n < 2); the ledger's study_summary and study_deltas views. An arm without a training "
                  "seed (PtyChi, FlatFloor) counts once.")


# --- the deltas ----------------------------------------------------------------------------------

def utc_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _difference(aggregates: dict, other: str, metric: str, part: str) -> float | None:
    pinn = aggregates.get(PINN, {}).get(metric, {}).get(f"mean_{part}")
    theirs = aggregates.get(other, {}).get(metric, {}).get(f"mean_{part}")
    return None if pinn is None or theirs is None else pinn - theirs


def delta_summary(aggregates: dict, source_metrics: str, paired: list[dict] | None = None) -> dict:
    """PtychoPINN's aggregate mean minus each other arm's (a difference of means); null when
    either mean is missing. Then, an extra field, the paired differences over the seeds with their
    intervals (MS-SSIM and MAE)."""
    return {"generated_at": utc_stamp(), "source_metrics": source_metrics,
            "deltas": {f"vs_{other}": {metric: {part: _difference(aggregates, other, metric, part)
                                                 for part in ("amplitude", "phase")}
                                       for metric, _, _ in HIGHLIGHTS}
                       for other in OTHER_ARMS},
            "intervals": {"note": INTERVALS_NOTE,
                          "study_deltas": [r for r in paired or [] if r["metric"] in ("ms_ssim", "mae")]}}


def _signed(value: float | None, decimals: int) -> str:
    return "N/A" if value is None else f"{value:+.{decimals}f}"


def highlights(deltas: dict) -> tuple[str, str]:
    """The four highlight lines (MS-SSIM vs Baseline, vs PtyChi, MAE vs Baseline, vs PtyChi) and
    the phase-only preview."""
    full, preview = [], []
    for metric, name, decimals in HIGHLIGHTS:
        for other in OTHER_ARMS:
            label = f"{name} Δ (PtychoPINN - {other})"
            cell = deltas["deltas"][f"vs_{other}"][metric]
            full.append(f"{label:<{LABEL_WIDTH}}: amplitude {_signed(cell['amplitude'], decimals)}  "
                        f"phase {_signed(cell['phase'], decimals)}")
            preview.append(f"{label}: {_signed(cell['phase'], decimals)}")
    return "\n".join(full) + "\n", "\n".join(preview) + "\n"


# --- writing -------------------------------------------------------------------------------------

def write_files(where: Layout, snapshot: dict) -> list[Path]:
    """metrics_summary.json and its Markdown (PtychoPINN's summariser writes both),
    metrics_delta_summary.json and both highlight files."""
    summary = metrics_summary(snapshot, where)
    paths = [where.artifact(name) for name in (files.METRICS_SUMMARY, files.METRICS_SUMMARY_MD, files.DELTA_SUMMARY,
                                               files.HIGHLIGHTS, files.HIGHLIGHTS_PREVIEW)]
    deltas = delta_summary(summary["aggregate_metrics"], shown(paths[0], where.hub), snapshot["paired"])
    text, preview = highlights(deltas)
    for path, content in zip(paths, (json.dumps(summary, indent=2) + "\n", metrics_summary_md(summary),
                                     json.dumps(deltas, indent=2) + "\n", text, preview)):
        write_atomic(path, content)
    return paths


def report_summary(summary: dict, snapshot: dict, where: Layout) -> dict:
    """The report's metrics_summary.json: PtychoPINN's fields first, with their meaning (`metrics`
    a list; n_success counts the conditions whose latest attempt succeeded, n_failed every other
    one), then the report's own fields (`metrics_by_model`, `aggregate`, `deltas`, ...)."""
    lists = metric_lists(snapshot["metrics"])
    jobs = [{"dose": job["dose"], "view": job["view"], "split": job["split"],
             "metrics": lists.get(job["key"], []),
             **{k: v for k, v in job.items() if k not in ("dose", "view", "split", "metrics")},
             "metrics_by_model": job["metrics"]}
            for job in summary["jobs"]]
    first = {"n_jobs": summary["n_jobs"], "n_success": summary["n_success"], "n_failed": summary["n_failed"],
             "jobs": jobs, "aggregate_metrics": aggregate_metrics(jobs),
             "phase_c_metadata_compliance": phase_c_compliance(where, [c["dose"] for c in snapshot["conditions"]])}
    return {**first, **{k: v for k, v in summary.items() if k not in first}}
