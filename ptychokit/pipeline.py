"""The study, phase by phase: writes the STUDY.md §3 folders under one output root.

Phase C simulates, D selects the overlap views, E trains the models, F reconstructs with Pty-Chi.
Every phase reads what the one before wrote, so the files on disk are the only hand-over, as they
are for the real study.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ptychokit.checkpoint import save_model
from ptychokit.networks import Architecture
from ptychokit.npz_io import read_ptycho_npz, read_view_metadata, write_ptycho_npz
from ptychokit.presets import GRIDSIZE_CHANNELS, SPLITS, VIEWS, Preset
from ptychokit.ptychi_recon import PtychiSettings
from ptychokit.simulation import make_scene, measure
from ptychokit.training import TrainedModel, TrainingSettings, train_baseline, train_pinn
from ptychokit.views import select_view

log = logging.getLogger(__name__)
METADATA_FIELDS = ("selection_strategy", "acceptance_rate", "spacing_threshold", "n_accepted", "n_rejected")


def phase_c(root: Path, preset: Preset, seed: int) -> None:
    """Simulate the scene once and measure it at every dose: phase_c/dose_D/patched_{split}.npz,
    with `_metadata` (dose, seed, preset and the `data_transformations` that made it)."""
    scene = make_scene(preset, seed)
    log.info("[C] object %dx%d, probe %dx%d, %d scan positions", *scene.object.shape,
             *scene.probe.shape, scene.xcoords.size)
    for dose in preset.doses:
        for split, data in measure(scene, dose, seed).items():
            data = replace(data, metadata={**(data.metadata or {}), "preset": preset.name})
            write_ptycho_npz(root / "phase_c" / f"dose_{dose}" / f"patched_{split}.npz", data)
            mean_counts = float((data.diffraction.astype("float64") ** 2).sum((1, 2)).mean())
            log.info("[C] dose %d %s: %d patterns, mean counts %.0f", dose, split,
                     data.diffraction.shape[0], mean_counts)


def phase_d(root: Path, preset: Preset) -> None:
    """Select each view of each split: phase_d/dose_D/{view}/{view}_{split}.npz with _metadata."""
    for dose in preset.doses:
        for view, overlap in VIEWS.items():
            for split in SPLITS:
                data = read_ptycho_npz(root / "phase_c" / f"dose_{dose}" / f"patched_{split}.npz")
                chosen = select_view(data.xcoords, data.ycoords, view, overlap, preset.patch_size)
                meta = {**chosen.metadata, "dose": dose, "split": split}
                subset = replace(data.subset(chosen.indices), metadata=meta)
                write_ptycho_npz(root / "phase_d" / f"dose_{dose}" / view / f"{view}_{split}.npz",
                                 subset)
                log.info("[D] dose %d %s %s: kept %d of %d (%s, spacing >= %.1f px)", dose, view,
                         split, meta["n_accepted"], meta["n_positions"], meta["selection_strategy"],
                         meta["spacing_threshold"])


def _training(preset: Preset, steps: int, seed: int) -> TrainingSettings:
    return TrainingSettings(steps=steps, batch_size=preset.batch_size,
                            learning_rate=preset.learning_rate,
                            max_patterns=preset.max_train_patterns, seed=seed)


def phase_e(root: Path, preset: Preset, seed: int, device: str) -> None:
    """Train the baseline of every dose and the PINN of every dose and view: phase_e checkpoints."""
    n = preset.patch_size
    for dose in preset.doses:
        train_path = root / "phase_c" / f"dose_{dose}" / "patched_train.npz"
        data = read_ptycho_npz(train_path)
        arch = Architecture(n, 1, preset.net_width, preset.net_latent)
        trained = train_baseline(data, arch, _training(preset, preset.baseline_steps, seed), device)
        _save(root / "phase_e" / f"dose_{dose}" / "baseline" / "gs1", trained, "baseline", None,
              {"dose": dose, "view": None, "train_data": str(train_path.relative_to(root)),
               "n_train": int(data.diffraction.shape[0]), "seed": seed, "preset": preset.name,
               "loss": "illumination-weighted squared error to ground-truth patches"})
        log.info("[E] dose %d baseline gs1: loss %.4g -> %.4g in %.1f s", dose,
                 trained.log[0]["loss"], trained.log[-1]["loss"], trained.log[-1]["seconds"])
        for view in VIEWS:
            view_path = root / "phase_d" / f"dose_{dose}" / view / f"{view}_train.npz"
            data = read_ptycho_npz(view_path)
            arch = Architecture(n, GRIDSIZE_CHANNELS, preset.net_width, preset.net_latent)
            trained = train_pinn(data, arch, _training(preset, preset.pinn_steps, seed), device)
            _save(root / "phase_e" / f"dose_{dose}" / view / "gs2", trained, "pinn", data.probe,
                  {"dose": dose, "view": view, "train_data": str(view_path.relative_to(root)),
                   "n_train": int(data.diffraction.shape[0]), "seed": seed, "preset": preset.name,
                   "loss": "Poisson negative log-likelihood of the measured counts"})
            log.info("[E] dose %d %s gs2: loss %.4g -> %.4g in %.1f s", dose, view,
                     trained.log[0]["loss"], trained.log[-1]["loss"], trained.log[-1]["seconds"])


def _save(folder: Path, trained: TrainedModel, kind: str, probe: np.ndarray | None,
          provenance: dict[str, Any]) -> None:
    provenance = {**provenance, "steps": trained.log[-1]["step"], "final_loss": trained.log[-1]["loss"],
                  "train_seconds": trained.log[-1]["seconds"]}
    save_model(folder, trained.model.cpu(), kind, trained.preprocessing, probe, provenance,
               trained.log)


RECONSTRUCT_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "reconstruct_ptychi.py"


class PhaseFailed(RuntimeError):
    """A phase could not do all its work (its message names what failed)."""


def _ptychi_settings(preset: Preset, seed: int, device: str) -> PtychiSettings:
    return PtychiSettings(algorithm=preset.ptychi_algorithm, num_epochs=preset.ptychi_epochs,
                          batch_size=preset.ptychi_batch, noise_model=preset.ptychi_noise_model,
                          seed=seed, device=device)


def _reconstruct_command(view_npz: Path, output_dir: Path, settings: PtychiSettings) -> list[str]:
    """scripts/reconstruct_ptychi.py's argv for one view (PtychoPINN's Phase F command line)."""
    return [sys.executable, str(RECONSTRUCT_SCRIPT), "--input-npz", str(view_npz),
            "--output-dir", str(output_dir), "--algorithm", settings.algorithm,
            "--num-epochs", str(settings.num_epochs), "--batch-size", str(settings.batch_size),
            "--noise-model", settings.noise_model, "--no-refine-probe", "--seed", str(settings.seed),
            "--device", settings.device, "--quiet"]


def _parallel_runs(device: str, jobs: int) -> tuple[int, int]:
    """(reconstructions at once, torch threads each): on the CPU one thread per job, one job per
    core (Pty-Chi's small batches gain little from a second thread); on a GPU one at a time."""
    if device != "cpu":
        return 1, torch.get_num_threads()
    return max(1, min(jobs, torch.get_num_threads())), 1


def phase_f(root: Path, preset: Preset, seed: int, device: str) -> None:
    """Reconstruct every (dose, view, split) with Pty-Chi, each by scripts/reconstruct_ptychi.py in
    its own process, and write the manifests."""
    settings = _ptychi_settings(preset, seed, device)
    conditions = [(dose, view, split) for dose in preset.doses for view in VIEWS for split in SPLITS]
    workers, threads = _parallel_runs(device, len(conditions))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    log.info("[F] %s, %d reconstructions, %d at a time with %d thread(s) each", settings.label,
             len(conditions), workers, threads)

    def run(condition: tuple[int, str, str]) -> dict[str, Any]:
        dose, view, split = condition
        view_npz = root / "phase_d" / f"dose_{dose}" / view / f"{view}_{split}.npz"
        relative = Path(f"dose_{dose}") / view / split
        done = subprocess.run(_reconstruct_command(view_npz, root / "phase_f" / relative, settings),
                              env=env, capture_output=True, text=True)
        legacy = {"dose": dose, "view": view, "split": split, "output_dir": str(relative)}
        _write_json(root / "phase_f" / f"dose_{dose}_{view}_{split}" / "manifest.json", legacy)
        meta = read_view_metadata(view_npz) or {}
        entry = {**legacy, "status": "success" if done.returncode == 0 else "failed",
                 "returncode": done.returncode, "algorithm": settings.label,
                 "n_positions": meta.get("n_accepted"), "computation_time_s": None, "final_cost": None,
                 **{name: meta.get(name) for name in METADATA_FIELDS}}
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            log.info("[F] dose %d %s %s: FAILED (exit %d): %s", dose, view, split, done.returncode, last)
            return {**entry, "error": last}
        with np.load(root / "phase_f" / relative / "ptychi_reconstruction.npz") as npz:
            entry.update(n_positions=int(npz["xcoords"].size),
                         computation_time_s=float(npz["computation_time_s"]),
                         final_cost=float(npz["cost_history"][-1]))
        log.info("[F] dose %d %s %s: %d patterns, loss %.4g, %.1f s", dose, view, split,
                 entry["n_positions"], entry["final_cost"], entry["computation_time_s"])
        return entry

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(run, conditions))
    _write_json(root / "phase_f" / "reconstruction_manifest.json",
                {"algorithm": settings.label, "solver": asdict(settings), "preset": preset.name,
                 "output_dirs_relative_to": "phase_f", "execution_results": results})
    failed = [f"dose {r['dose']} {r['view']} {r['split']} ({r['error']})" for r in results if "error" in r]
    if failed:
        raise PhaseFailed(f"Phase F: {len(failed)} of {len(results)} reconstructions failed: "
                          + "; ".join(failed))


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def run_study(root: Path, preset: Preset, seed: int, device: str) -> dict[str, float]:
    """All four phases into `root`; returns the seconds each phase took (also in study.json)."""
    timings: dict[str, float] = {}
    for name, phase in (("C", lambda: phase_c(root, preset, seed)), ("D", lambda: phase_d(root, preset)),
                        ("E", lambda: phase_e(root, preset, seed, device)),
                        ("F", lambda: phase_f(root, preset, seed, device))):
        start = time.perf_counter()
        phase()
        timings[name] = round(time.perf_counter() - start, 2)
        log.info("phase %s done in %.1f s", name, timings[name])
    _write_json(root / "study.json", {"preset": asdict(preset), "seed": seed, "device": device,
                                      "torch": torch.__version__, "phase_seconds": timings})
    return timings
