"""Every rule of the Phase G artifact root that PtychoPINN's downstream tools rely on, checked from
the files alone: the aggregates and deltas are recomputed here from the comparison_metrics.csv
files the manifest's successful entries point at, as their summariser reads them."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

JOB_FIELDS = {"dose", "view", "split", "phase_c_npz", "pinn_checkpoint", "baseline_checkpoint",
              "phase_f_manifest", "ms_ssim_sigma", "skip_registration", "register_ptychi_only"}
HIGHLIGHT_ORDER = [("ms_ssim", "MS-SSIM", 3, "Baseline"), ("ms_ssim", "MS-SSIM", 3, "PtyChi"),
                   ("mae", "MAE", 6, "Baseline"), ("mae", "MAE", 6, "PtyChi")]


def number(text: str | None) -> float | None:
    """A CSV cell as a number; empty and NaN cells are missing."""
    text = (text or "").strip()
    if not text:
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def recompute_aggregates(root: Path, successes: list[dict]) -> dict:
    """Per model: ms_ssim mean and max, mae mean, of amplitude and phase, over the successes' CSVs."""
    values: dict = {}
    for entry in successes:
        for row in read_csv(root / f"dose_{entry['dose']}" / entry["view"] / entry["split"] / "comparison_metrics.csv"):
            if row["metric"] in ("ms_ssim", "mae"):
                for part in ("amplitude", "phase"):
                    value = number(row[part])
                    if value is not None:
                        values.setdefault(row["model"], {}).setdefault(row["metric"], {}).setdefault(part, []).append(value)
    result: dict = {}
    for model, metrics in values.items():
        for metric, parts in metrics.items():
            entry = {}
            for part in ("amplitude", "phase"):
                found = parts.get(part, [])
                entry[f"mean_{part}"] = sum(found) / len(found) if found else None
                if metric == "ms_ssim":
                    entry[f"best_{part}"] = max(found) if found else None
            result.setdefault(model, {})[metric] = entry
    return result


def close(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) <= 1e-12)


def signed(value: float | None, decimals: int) -> str:
    return "N/A" if value is None else f"{value:+.{decimals}f}"


def check_artifact_root(root: Path) -> dict:
    """Assert every rule; return the parsed files for further checks."""
    manifest = json.loads((root / "comparison_manifest.json").read_text())
    results = manifest["execution_results"]
    successes = [r for r in results if r["returncode"] == 0]
    assert manifest["n_jobs"] == len(results) == len(manifest["jobs"])
    assert manifest["n_success"] == len(successes)
    assert manifest["n_failed"] == len(results) - len(successes)
    assert manifest["n_executed"] == sum(r["executed"] for r in results)
    for r in results:
        assert isinstance(r["returncode"], int) and not isinstance(r["returncode"], bool)
        assert (r["returncode"] == 0) == (r["state"] == "succeeded"), r
        if r["returncode"] != 0:
            assert isinstance(r["error"], str) and r["error"], r
    for job, r in zip(manifest["jobs"], results):
        assert JOB_FIELDS <= set(job) and (job["dose"], job["view"], job["split"]) == (r["dose"], r["view"], r["split"])
        assert job["ms_ssim_sigma"] == 1.0 and job["skip_registration"] is False and job["register_ptychi_only"] is True
    assert set(manifest["filters"]) == {"dose", "view", "split"}

    summary = json.loads((root / "metrics_summary.json").read_text())
    assert (summary["n_jobs"], summary["n_success"], summary["n_failed"]) == \
        (manifest["n_jobs"], manifest["n_success"], manifest["n_failed"])
    assert [(j["dose"], j["view"], j["split"]) for j in summary["jobs"]] == \
        [(r["dose"], r["view"], r["split"]) for r in successes]
    for job in summary["jobs"]:
        assert isinstance(job["metrics"], list)
        listed = {(m["model"], m["metric"]): m for m in job["metrics"]}
        rows = read_csv(root / f"dose_{job['dose']}" / job["view"] / job["split"] / "comparison_metrics.csv")
        assert len(listed) == len(rows)
        for row in rows:
            entry = listed[(row["model"], row["metric"])]
            if number(row["amplitude"]) is None and number(row["phase"]) is None and number(row["value"]) is not None:
                assert set(entry) == {"model", "metric", "value"} and close(entry["value"], number(row["value"]))
            else:
                assert set(entry) == {"model", "metric", "amplitude", "phase"}
                assert close(entry["amplitude"], number(row["amplitude"])) and close(entry["phase"], number(row["phase"]))
    expected = recompute_aggregates(root, successes)
    aggregates = summary["aggregate_metrics"]
    assert set(aggregates) == set(expected)
    for model, metrics in expected.items():
        for metric, entry in metrics.items():
            assert set(aggregates[model][metric]) == set(entry)
            assert all(close(aggregates[model][metric][k], v) for k, v in entry.items()), (model, metric)
    doses = sorted({r["dose"] for r in results})
    assert set(summary["phase_c_metadata_compliance"]) == {f"dose_{d}" for d in doses}
    for per_split in summary["phase_c_metadata_compliance"].values():
        assert set(per_split) == {"train", "test"}
        for entry in per_split.values():
            assert {"npz_path", "has_metadata", "has_canonical_transform", "compliant"} <= set(entry)
            assert entry["compliant"] == (entry["has_metadata"] and entry["has_canonical_transform"])

    deltas = json.loads((root / "metrics_delta_summary.json").read_text())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", deltas["generated_at"])
    assert deltas["source_metrics"] == f"{root.name}/metrics_summary.json"
    means = {(model, metric, part): entry[f"mean_{part}"] for model, metrics in expected.items()
             for metric, entry in metrics.items() for part in ("amplitude", "phase")}
    lines, preview = [], []
    for metric, name, decimals, other in HIGHLIGHT_ORDER:
        cell = deltas["deltas"][f"vs_{other}"][metric]
        for part in ("amplitude", "phase"):
            pinn, theirs = means.get(("PtychoPINN", metric, part)), means.get((other, metric, part))
            assert close(cell[part], None if pinn is None or theirs is None else pinn - theirs), (other, metric, part)
        label = f"{name} Δ (PtychoPINN - {other})"
        lines.append(label.ljust(35) + f": amplitude {signed(cell['amplitude'], decimals)}  phase {signed(cell['phase'], decimals)}")
        preview.append(f"{label}: {signed(cell['phase'], decimals)}")
    assert (root / "metrics_delta_highlights.txt").read_text().splitlines() == lines
    preview_text = (root / "metrics_delta_highlights_preview.txt").read_text()
    assert preview_text.splitlines() == preview and "amplitude" not in preview_text
    return {"manifest": manifest, "summary": summary, "deltas": deltas}
