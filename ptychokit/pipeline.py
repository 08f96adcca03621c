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

from ptychokit.npz_io import read_ptycho_npz, read_view_metadata, write_ptycho_npz
from ptychokit.presets import SPLITS, VIEWS, Preset
from ptychokit.ptychi_recon import PtychiSettings
from ptychokit.simulation import make_scene, measure
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


TRAIN_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "train_model.py"


def training_jobs(root: Path, preset: Preset, seed: int, device: str) -> list[tuple[str, list[str]]]:
    """(label, argv) of every Phase E training, the PINNs first (they take longest): the baseline
    of each dose on Phase C's train split, one PINN per dose and view on that view."""
    jobs = []
    for dose in preset.doses:
        for view in VIEWS:
            folder = root / "phase_d" / f"dose_{dose}" / view
            jobs.append((f"dose {dose} {view} gs2", [
                "--train_data_file", str(folder / f"{view}_train.npz"),
                "--test_data_file", str(folder / f"{view}_test.npz"),
                "--output_dir", str(root / "phase_e" / f"dose_{dose}" / view / "gs2"), "--gridsize", "2"]))
    for dose in preset.doses:
        folder = root / "phase_c" / f"dose_{dose}"
        jobs.append((f"dose {dose} baseline gs1", [
            "--train_data_file", str(folder / "patched_train.npz"),
            "--test_data_file", str(folder / "patched_test.npz"),
            "--output_dir", str(root / "phase_e" / f"dose_{dose}" / "baseline" / "gs1"), "--gridsize", "1"]))
    common = [*training_options(preset, seed), "--device", device]
    return [(label, [sys.executable, str(TRAIN_SCRIPT), *argv, *common]) for label, argv in jobs]


def training_options(preset: Preset, seed: int) -> list[str]:
    """What scripts/train_model.py needs beside PtychoPINN's flags to train as this study does."""
    return ["--preset", preset.name, "--seed", str(seed), "--quiet"]


def phase_e(root: Path, preset: Preset, seed: int, device: str) -> None:
    """Train every model, each by scripts/train_model.py in its own process: on the CPU one
    thread each, as many at once as there are cores."""
    jobs = training_jobs(root, preset, seed, device)
    workers, threads = _parallel_runs(device, len(jobs))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    log.info("[E] %d trainings, %d at a time with %d thread(s) each", len(jobs), workers, threads)

    def run(job: tuple[str, list[str]]) -> str | None:
        label, argv = job
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            last = _last_line(done.stderr)
            log.info("[E] %s: FAILED (exit %d): %s", label, done.returncode, last)
            return f"{label} ({last})"
        folder = Path(argv[argv.index("--output_dir") + 1])
        prov = json.loads((folder / "model.json").read_text(encoding="utf-8"))["provenance"]
        curve = "final_nll_excess" if prov.get("final_nll_excess") is not None else "final_loss"
        log.info("[E] %s: %d positions, %s %.4g after %d steps, %.1f s", label, prov["n_train"],
                 curve[len("final_"):], prov[curve], prov["steps"], prov["train_seconds"])
        return None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        failed = [problem for problem in pool.map(run, jobs) if problem]
    if failed:
        raise PhaseFailed(f"Phase E: {len(failed)} of {len(jobs)} trainings failed: " + "; ".join(failed))


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
            "--output-dir", str(output_dir), *reconstruction_options(settings), "--device", settings.device]


def reconstruction_options(settings: PtychiSettings) -> list[str]:
    """The solver's settings as scripts/reconstruct_ptychi.py's flags."""
    return ["--algorithm", settings.algorithm, "--num-epochs", str(settings.num_epochs),
            "--batch-size", str(settings.batch_size), "--noise-model", settings.noise_model,
            "--no-refine-probe", "--seed", str(settings.seed), "--quiet"]


RUNNER_CONFIG = "runner.toml"


def write_runner_config(root: Path, preset: Preset, seed: int) -> Path:
    """runner.toml: how `python -m runner run --config` trains, reconstructs and compares this
    study as one graph of jobs, with the preset's schedule and solver (the device is the slot's)."""
    def listed(values: list[str]) -> str:
        return "[" + ", ".join(json.dumps(v) for v in values) + "]"
    text = (f"# Phases E, F and G of this study (preset {preset.name}, seed {seed}) as one graph of jobs:\n"
            f"#   python -m runner run --config {RUNNER_CONFIG}\n"
            "# Paths are relative to this file. Flags given on the command line win.\n"
            'study_root = "."\n'
            'phases = ["E", "F", "G"]\n'
            f"train_args = {listed(training_options(preset, seed))}\n"
            f"recon_args = {listed(reconstruction_options(_ptychi_settings(preset, seed, 'auto')))}\n"
            "# On a GPU a training takes the whole device, two reconstructions or four comparisons share one.\n"
            "jobs_per_gpu = { E = 1, F = 2, G = 4 }\n")
    path = root / RUNNER_CONFIG
    path.write_text(text, encoding="utf-8")
    return path


def _last_line(stderr: str) -> str:
    """What a failed script said last: its one-line error."""
    return (stderr.strip().splitlines() or ["no message"])[-1]


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
            last = _last_line(done.stderr)
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


PHASES = ("C", "D", "E", "F")


def run_study(root: Path, preset: Preset, seed: int, device: str,
              phases: tuple[str, ...] = PHASES) -> dict[str, float]:
    """The chosen phases into `root`, in order; returns the seconds each took. study.json keeps
    the seconds of phases an earlier call ran."""
    steps = {"C": lambda: phase_c(root, preset, seed), "D": lambda: phase_d(root, preset),
             "E": lambda: phase_e(root, preset, seed, device), "F": lambda: phase_f(root, preset, seed, device)}
    record = root / "study.json"
    earlier = json.loads(record.read_text(encoding="utf-8")).get("phase_seconds", {}) if record.is_file() else {}
    timings: dict[str, float] = {}
    for name in (p for p in PHASES if p in phases):
        start = time.perf_counter()
        steps[name]()
        timings[name] = round(time.perf_counter() - start, 2)
        log.info("phase %s done in %.1f s", name, timings[name])
        _write_json(record, {"preset": asdict(preset), "seed": seed, "device": device,
                             "torch": torch.__version__, "phase_seconds": {**earlier, **timings}})
    write_runner_config(root, preset, seed)  # last: its presence says the data is complete
    return timings
