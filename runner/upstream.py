"""Phases E and F of the study as jobs: one training per (dose, model), one Pty-Chi
reconstruction per (dose, view, split), writing where Phase G reads.

    E  <train_cmd> --train_data_file T --test_data_file V --output_dir phase_e/dose_D/{view}/gs2
                   --gridsize 2 --nphotons D <train_args>         (PtychoPINN's training flags)
       the baseline: Phase C's patched_{train,test}.npz into phase_e/dose_D/baseline/gs1, gridsize 1
    F  <recon_cmd> --input-npz phase_d/dose_D/{view}/{view}_{split}.npz
                   --output-dir phase_f/dose_D/{view}/{split} <recon_args>

A training succeeds when its model folder holds a fresh, whole checkpoint (model.pt and
model.json, or --checkpoint-name); a reconstruction when its NPZ is fresh and holds the arrays
Phase G reads. Their logs go under the artifact root (phase_e/..., phase_f/...), never into the
folders Phase G reads, whose files are the comparisons' inputs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from runner.commands import fingerprint, flag_value
from runner.config import Settings
from runner.jobs import Job, OutputsCheck

BASELINE = "baseline"  # the model of a training job that is not a view's PINN
MODEL_FILES = ("model.pt", "model.json")  # what scripts/train_model.py writes, summary last
RECONSTRUCTION_FILE = "ptychi_reconstruction.npz"
RECONSTRUCTION_KEYS = ("reconstructed_object", "reconstructed_probe")  # what Phase G reads
ARMS = {BASELINE: "Baseline"}  # a training's metrics are its arm's (a view's PINN: PtychoPINN)
MANIFEST = "reconstruction_manifest.json"


def model_dir(settings: Settings, dose: int, model: str) -> str:
    return f"{settings.phase_e_root}/dose_{dose}/{model}/" + ("gs1" if model == BASELINE else "gs2")


def reconstruction_npz(settings: Settings, dose: int, view: str, split: str) -> str:
    return f"{settings.phase_f_root}/dose_{dose}/{view}/{split}/{RECONSTRUCTION_FILE}"


def existing_view_npz(settings: Settings, dose: int, view: str, split: str) -> str | None:
    """The condition's Phase D view file: {view}_{split}.npz, or {split}.npz as some Phase D
    versions name it; None when there is neither."""
    if settings.phase_d_root is None:
        return None
    folder = f"{settings.phase_d_root}/dose_{dose}/{view}"
    for candidate in (f"{folder}/{view}_{split}.npz", f"{folder}/{split}.npz"):
        if os.path.isfile(candidate):
            return candidate
    return None


def view_npz(settings: Settings, dose: int, view: str, split: str) -> str:
    """The condition's Phase D view file, or the path it should have (named in a blocked reason)."""
    return existing_view_npz(settings, dose, view, split) \
        or f"{settings.phase_d_root or '<no --phase-d-root>'}/dose_{dose}/{view}/{view}_{split}.npz"


def _missing(paths: list[tuple[str, str]], produced: frozenset[str]) -> str | None:
    """'missing <what> <path>' for each input neither on disk nor made by a job of this run."""
    problems = [f"missing {what} {path}" for what, path in paths
                if path not in produced and not os.path.isfile(path)]
    return "; ".join(problems) or None


def training_job(settings: Settings, dose: int, model: str, known, produced: frozenset[str] = frozenset(),
                 script_hash: str = "") -> Job:
    """E(dose, model): the baseline on Phase C's split, or a view's PINN on that view."""
    if model == BASELINE:
        folder = f"{settings.phase_c_root}/dose_{dose}"
        train, test, gridsize = f"{folder}/patched_train.npz", f"{folder}/patched_test.npz", "1"
    else:
        train, test, gridsize = view_npz(settings, dose, model, "train"), view_npz(settings, dose, model, "test"), "2"
    out = model_dir(settings, dose, model)
    argv = (*settings.train_cmd, "--train_data_file", train, "--test_data_file", test, "--output_dir", out,
            "--gridsize", gridsize, "--nphotons", str(dose), *settings.train_args)
    names = (settings.checkpoint_name,) if settings.checkpoint_name else MODEL_FILES
    files = tuple(Path(out) / name for name in names)
    summary = files[-1] if files[-1].suffix == ".json" else None
    check = OutputsCheck(files, model=ARMS.get(model, "PtychoPINN"), summary=summary)
    return Job(key=f"E/dose_{dose}/{model}", argv=argv, cwd=settings.workdir,
               output_dir=settings.artifact_root / "phase_e" / f"dose_{dose}" / model, check=check,
               fingerprint=fingerprint(argv, known.signature([train, test]), script_hash),
               condition={"dose": dose, "view": model, "split": None},
               blocked_reason=_missing([("training data", train), ("test data", test)], produced), phase="E")


def reconstruction_job(settings: Settings, dose: int, view: str, split: str, known, metadata: dict[str, Any],
                       produced: frozenset[str] = frozenset(), script_hash: str = "") -> Job:
    """F(dose, view, split): Pty-Chi on the view's file of that split."""
    data = view_npz(settings, dose, view, split)
    out = Path(reconstruction_npz(settings, dose, view, split))
    argv = (*settings.recon_cmd, "--input-npz", data, "--output-dir", str(out.parent), *settings.recon_args)
    return Job(key=f"F/dose_{dose}/{view}/{split}", argv=argv, cwd=settings.workdir,
               output_dir=settings.artifact_root / "phase_f" / f"dose_{dose}" / view / split,
               check=OutputsCheck((out,), RECONSTRUCTION_KEYS, model="PtyChi", summary=out),
               fingerprint=fingerprint(argv, known.signature([data]), script_hash),
               condition={"dose": dose, "view": view, "split": split}, metadata=metadata,
               blocked_reason=_missing([("Phase D view", data)], produced), phase="F")


def produces(settings: Settings, phase: str, condition: dict[str, Any]) -> str | None:
    """What a job of phase E or F makes that other jobs read: a model folder, a reconstruction."""
    if phase == "E":
        return model_dir(settings, condition["dose"], condition["view"])
    if phase == "F":
        return reconstruction_npz(settings, condition["dose"], condition["view"], condition["split"])
    return None


def write_reconstruction_manifest(settings: Settings, jobs: list[Job], results: list[dict],
                                  numbers: dict[str, dict[str, float]]) -> Path | None:
    """phase_f/reconstruction_manifest.json as Phase F writes it: one entry per reconstruction of
    this plan (entries of conditions outside it are kept), with its outcome, time, final cost
    and Phase D metadata. `results`: run_results rows; `numbers`: per key, its standing metrics."""
    planned = {job.key: job for job in jobs if job.phase == "F"}
    if not planned:
        return None
    path = settings.phase_f_root / MANIFEST
    try:
        earlier = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        earlier = {}
    entries = {}
    for entry in earlier.get("execution_results", []) if isinstance(earlier, dict) else []:
        if isinstance(entry, dict) and {"dose", "view", "split"} <= entry.keys():
            entries[(entry["dose"], entry["view"], entry["split"])] = entry
    algorithm = None
    for result in results:
        job = planned.get(result["key"])
        if job is None:
            continue
        found = numbers.get(job.key, {})
        succeeded = result["state"] == "succeeded"
        algorithm = algorithm or flag_value(job.argv, "--algorithm") or "LSQML"
        condition = (job.condition["dose"], job.condition["view"], job.condition["split"])
        entry = {"dose": condition[0], "view": condition[1], "split": condition[2],
                 "output_dir": os.path.relpath(job.check.files[0].parent, settings.phase_f_root),
                 "status": "success" if succeeded else result["state"],
                 "returncode": 0 if succeeded else result["exit_code"],
                 "algorithm": flag_value(job.argv, "--algorithm") or "LSQML",
                 "n_positions": job.metadata.get("n_accepted"),
                 "computation_time_s": found.get("computation_time_s"), "final_cost": found.get("final_cost"),
                 **job.metadata}
        if not succeeded:
            entry["error"] = result["failure_detail"] or result["blocked_reason"] or result["state"]
        entries[condition] = entry
    manifest = {**(earlier if isinstance(earlier, dict) else {}), "algorithm": algorithm,
                "output_dirs_relative_to": "phase_f",
                "execution_results": [entries[k] for k in sorted(entries, key=lambda c: (float(c[0]), str(c[1]), str(c[2])))]}
    from runner.manifest import write_atomic

    write_atomic(path, json.dumps(manifest, indent=2) + "\n")
    return path
