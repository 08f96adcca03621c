"""The study's answer from a snapshot of the ledger: every condition's standing success gives its
metrics; failed, interrupted, blocked and never-run conditions are listed with their class and
log, and never keep the others out of the report (the reference blocked every summary when one
job failed). Then per model the mean and best, the paired deltas, the trainings and the
reconstructions."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

from runner.commands import flag_value
from runner.ledger import LedgerError
from runner.ptycho.arms import OTHER_ARMS, PINN
from runner.ptycho.layout import Layout
from runner.ptycho.report.format import COMPONENTS, mean, model_order
from runner.ptycho.report.snapshot import numbers as numbers_by_key

# Metrics where a larger value is better; for the others (mae, mse) smaller is better.
HIGHER_IS_BETTER = {"ssim", "ms_ssim", "psnr", "frc50", "frc1over7"}
DELTAS = tuple((PINN, other) for other in OTHER_ARMS)
# The report's sections on trainings and reconstructions: in phase_summary.json, never in
# metrics_summary.json, whose format is PtychoPINN's.
PHASE_SECTIONS = ("training", "reconstructions")


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
        base = {k: c[k] for k in ("key", "dose", "view", "split", "seed", "train_size", "state")}
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
        # Over the replicate seeds, per condition and training-set size: each arm's mean and 95 %
        # interval (the ledger's study_summary view) and the paired differences (study_deltas).
        "study_summary": with_training_sizes(snapshot),
        "study_deltas": snapshot["paired"],
        "problems": problems,
        "provenance": {"runs": runs,
                       "devices": sorted({j["device"] or "cpu" for j in reported})},
    }


def with_training_sizes(snapshot: dict) -> list[dict]:
    """study_summary's rows, each network's with `n_train`: the mean number of patterns its
    trainings of that condition and size trained on (their model.json), None for the other arms."""
    found: dict = defaultdict(list)
    numbers = numbers_by_key(snapshot)
    for job in snapshot["phase_jobs"]:
        if job["phase"] == "E" and "n_train" in numbers.get(job["key"], {}):
            found[(job["dose"], job["view"], job["train_size"])].append(numbers[job["key"]]["n_train"])
    rows = []
    for row in snapshot["summary"]:
        model = {PINN: row["view"], "Baseline": "baseline"}.get(row["model"])
        trained = found.get((row["dose"], model, row["train_size"]))
        rows.append({**row, "n_train": mean(trained) if trained else None})
    return rows


def _failure_class(job: dict) -> str | None:
    return "blocked" if job["state"] == "blocked" else \
        (job["failure_class"] or ("not run" if job["state"] == "pending" else None))


def _model_dir(job: dict, where: Layout | None) -> str | None:
    """A training's model folder: where the study's layout puts it now (the study may have moved
    since it ran), else the --output_dir of its command, from the folder it ran in."""
    if where is not None:
        return where.model_dir(job["dose"], job["view"])
    folder = flag_value(json.loads(job["argv"]), "--output_dir")
    return str(Path(job["cwd"] or ".") / folder) if folder else None


def _whole(value: float | None) -> int | None:
    """Steps and iterations, which the ledger holds as reals."""
    return None if value is None else int(value)


def phase_sections(snapshot: dict) -> dict:
    """One row per training and per reconstruction: its state (why and where its log is when it
    has not succeeded) and the numbers its standing success reported."""
    numbers = numbers_by_key(snapshot)
    steps: dict[str, list[str]] = {}
    for a in snapshot.get("training_steps", ()):
        steps.setdefault(a["key"], []).append(
            f"{a['start_step']}→{a['end_step']} ({a['failure_class'] or a['state']})")
    sections: dict = {name: [] for name in PHASE_SECTIONS}
    for job in snapshot["phase_jobs"]:
        found, ok = numbers.get(job["key"], {}), job["state"] == "succeeded"
        done = job["success_attempt"] is not None
        row = {"key": job["key"], "dose": job["dose"], "seed": job["seed"], "train_size": job["train_size"],
               "state": job["state"], "attempt": job["latest_attempt"],
               "failure_class": None if ok else _failure_class(job), "detail": None if ok else job["detail"],
               "log_path": None if ok else job["stderr_log"], "success_attempt": job["success_attempt"],
               "wall_time_s": job["success_duration_s"], "device": (job["success_device"] or "cpu") if done else None}
        if job["phase"] == "E":
            # A PINN's loss is its NLL excess when it logged one; a baseline's is its weighted error.
            loss = next((k for k in ("nll_excess", "loss") if f"final_{k}" in found), None)
            held_out = next((found[k] for k in ("held_out_nll_excess", "held_out_loss") if k in found), None)
            sections["training"].append({**row, "model": job["view"], "loss": loss,
                                         "final_loss": found.get(f"final_{loss}"), "held_out_loss": held_out,
                                         "steps": _whole(found.get("steps")),
                                         "model_dir": _model_dir(job, snapshot.get("layout")),
                                         # each attempt's steps, for a training that did not run in one go
                                         **({"attempt_steps": steps[job["key"]]}
                                            if len(steps.get(job["key"], ())) > 1 or (job["key"] in steps and not ok)
                                            else {})})
        else:
            sections["reconstructions"].append({**row, "view": job["view"], "split": job["split"],
                                                "final_cost": found.get("final_cost"),
                                                "n_iterations": _whole(found.get("n_iterations")),
                                                "computation_time_s": found.get("computation_time_s")})
    return sections


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


