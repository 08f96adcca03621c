"""The study's data and how to run the rest of it, as PtychoPINN's hub (STUDY.md §3, §9):
HUB/data/phase_c .. phase_f, HUB/analysis (the runner's), HUB/cli (the commands' logs).

Phase C simulates, D selects the overlap views, each logging to HUB/cli under the name
PtychoPINN's orchestrator gives the same step; `runner.toml` says how the runner trains the
models (E), reconstructs with Pty-Chi (F) and compares (G) them, with the preset's schedule and
solver. Every phase reads what the one before wrote, so the files on disk are the only hand-over,
as they are for the real study.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from ptychokit.npz_io import read_ptycho_npz, write_ptycho_npz
from ptychokit.presets import SPLITS, VIEWS, Preset
from ptychokit.ptychi_recon import PtychiSettings
from ptychokit.simulation import make_scene, measure
from ptychokit.views import select_view

log = logging.getLogger(__name__)

DATA = "data"  # the hub's folder of phase_c .. phase_f
CLI = "cli"  # the hub's folder of command logs


@contextlib.contextmanager
def logged_to(path: Path):
    """This module's log lines also go to `path` (a HUB/cli log) while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()


def phase_c(root: Path, preset: Preset, seed: int) -> None:
    """Simulate the scene once and measure it at every dose: phase_c/dose_D/patched_{split}.npz
    under `root` (the hub's data folder), with `_metadata` (dose, seed, preset and the
    `data_transformations` that made it)."""
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


def phase_d(root: Path, preset: Preset, view: str) -> None:
    """Select the view of each split: phase_d/dose_D/{view}/{view}_{split}.npz with _metadata."""
    for dose in preset.doses:
        for split in SPLITS:
            data = read_ptycho_npz(root / "phase_c" / f"dose_{dose}" / f"patched_{split}.npz")
            chosen = select_view(data.xcoords, data.ycoords, view, VIEWS[view], preset.patch_size)
            meta = {**chosen.metadata, "dose": dose, "split": split}
            subset = replace(data.subset(chosen.indices), metadata=meta)
            write_ptycho_npz(root / "phase_d" / f"dose_{dose}" / view / f"{view}_{split}.npz", subset)
            log.info("[D] dose %d %s %s: kept %d of %d (%s, spacing >= %.1f px)", dose, view,
                     split, meta["n_accepted"], meta["n_positions"], meta["selection_strategy"],
                     meta["spacing_threshold"])


def training_options(preset: Preset, seed: int) -> list[str]:
    """What scripts/train_model.py needs beside PtychoPINN's flags to train as this study does."""
    return ["--preset", preset.name, "--seed", str(seed), "--quiet"]


def _ptychi_settings(preset: Preset, seed: int, device: str) -> PtychiSettings:
    return PtychiSettings(algorithm=preset.ptychi_algorithm, num_epochs=preset.ptychi_epochs,
                          batch_size=preset.ptychi_batch, noise_model=preset.ptychi_noise_model,
                          seed=seed, device=device)


def reconstruction_options(settings: PtychiSettings) -> list[str]:
    """The solver's settings as scripts/reconstruct_ptychi.py's flags."""
    return ["--algorithm", settings.algorithm, "--num-epochs", str(settings.num_epochs),
            "--batch-size", str(settings.batch_size), "--noise-model", settings.noise_model,
            "--no-refine-probe", "--seed", str(settings.seed), "--quiet"]


RUNNER_CONFIG = "runner.toml"


def write_runner_config(root: Path, preset: Preset, seed: int, replicates: str | None = None,
                        train_sizes: str | None = None) -> Path:
    """runner.toml: how `python -m runner run --config` trains, reconstructs and compares this
    study as one graph of jobs, with the preset's schedule and solver (the device is the slot's),
    its replicate seeds (counted from `seed`) and training-set sizes."""
    def listed(values: list[str]) -> str:
        return "[" + ", ".join(json.dumps(v) for v in values) + "]"
    text = (f"# Phases E, F and G of this study (preset {preset.name}, seed {seed}) as one graph of jobs:\n"
            f"#   python -m runner run --config {RUNNER_CONFIG}\n"
            "# Paths are relative to this file. Flags given on the command line win.\n"
            "\n[study]  # what to run: the folders, the phases and their commands\n"
            'hub = "."  # PtychoPINN\'s hub: data/phase_c .. phase_f, analysis, cli\n'
            'phases = ["E", "F", "G"]\n'
            "# Seeds per view, counted from the --seed below: one training and comparison per seed.\n"
            f"replicates = {json.dumps(replicates or preset.replicates)}\n"
            + (f"train_sizes = {json.dumps(train_sizes)}  # training patterns; all: the whole split\n"
               if train_sizes else "")
            + f"train_args = {listed(training_options(preset, seed))}\n"
            f"recon_args = {listed(reconstruction_options(_ptychi_settings(preset, seed, 'auto')))}\n"
            "\n[run]  # how to run it\n"
            "# On a GPU a training takes the whole device, two reconstructions or four comparisons share one.\n"
            "jobs_per_gpu = { E = 1, F = 2, G = 4 }\n")
    path = root / RUNNER_CONFIG
    path.write_text(text, encoding="utf-8")
    return path


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


DATA_PHASES = ("C", "D")


def run_data(hub: Path, preset: Preset, seed: int, phases: tuple[str, ...] = DATA_PHASES,
             replicates: str | None = None, train_sizes: str | None = None) -> dict[str, float]:
    """The chosen data phases (C, D) into the hub's data folder, in order, each logged to HUB/cli
    as PtychoPINN's orchestrator names it (phase_c_generation.log, phase_d_<view>.log), then
    runner.toml; returns the seconds each took."""
    data = hub / DATA
    steps = {"C": [(hub / CLI / "phase_c_generation.log", lambda: phase_c(data, preset, seed))],
             "D": [(hub / CLI / f"phase_d_{view}.log", lambda view=view: phase_d(data, preset, view))
                   for view in VIEWS]}
    timings: dict[str, float] = {}
    for name in (p for p in DATA_PHASES if p in phases):
        start = time.perf_counter()
        for log_file, step in steps[name]:
            with logged_to(log_file):
                step()
        timings[name] = round(time.perf_counter() - start, 2)
        log.info("phase %s done in %.1f s", name, timings[name])
        record_timings(hub, preset, seed, {name: timings[name]})
    write_runner_config(hub, preset, seed, replicates, train_sizes)  # last: its presence says the data is complete
    return timings


def record_timings(root: Path, preset: Preset, seed: int, timings: dict[str, float]) -> None:
    """study.json: the preset, the seed and the seconds of every phase so far."""
    record = root / "study.json"
    earlier = json.loads(record.read_text(encoding="utf-8")).get("phase_seconds", {}) if record.is_file() else {}
    _write_json(record, {"preset": asdict(preset), "seed": seed, "torch": torch.__version__,
                         "phase_seconds": {**earlier, **timings}})
