"""Phase E, one model: read the training NPZ, train the baseline (gridsize 1) or the PINN
(gridsize 2) by the preset's schedule, and save the checkpoint with its training curve. A training
stopped half-way (a signal, a kill) resumes from its saved state when run again (ptychokit.resume).

scripts/train_model.py is the command line; the study pipeline runs it once per model.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Callable

import torch

from ptychokit.checkpoint import log_columns, save_model
from ptychokit.networks import Architecture
from ptychokit.npz_io import READ_ERRORS, PtychoData, read_error_line, read_ptycho_npz
from ptychokit.presets import GRIDSIZE_CHANNELS, Preset
from ptychokit.resume import TrainingSession, fingerprint
from ptychokit.training import (TrainedModel, TrainingSettings, baseline_loss, illumination_weight, nll_excess,
                                pinn_batches, pinn_loss, train_baseline, train_pinn)

log = logging.getLogger(__name__)
EVAL_BATCH = 64


class TrainingInputError(Exception):
    """The training data cannot be used (one line naming the file and the problem)."""


def _read(path: Path, what: str) -> PtychoData:
    try:
        return read_ptycho_npz(path)
    except READ_ERRORS as exc:
        raise TrainingInputError(read_error_line(what, path, exc)) from None


def settings_for(preset: Preset, gridsize: int, seed: int, n_positions: int, n_groups: int | None,
                 steps: int | None, epochs: int | None, n_subsample: int | None = None) -> TrainingSettings:
    """The preset's schedule for one kind of model; --steps, --nepochs, --n_groups and
    --n_subsample override it."""
    pinn = gridsize == 2
    groups = (n_groups or preset.pinn_groups) if pinn else 0
    batch = preset.pinn_batch_size if pinn else preset.batch_size
    if epochs is not None:  # passes over the groups (PINN) or the patterns (baseline)
        items = groups if pinn else min(n_positions, n_subsample or preset.max_train_patterns)
        steps = epochs * math.ceil(items / batch)
    steps = steps or (preset.pinn_steps if pinn else preset.baseline_steps)
    return TrainingSettings(steps=steps, batch_size=batch,
                            learning_rate=preset.pinn_learning_rate if pinn else preset.learning_rate,
                            max_patterns=preset.max_train_patterns, seed=seed, n_groups=groups,
                            warmup_steps=min(preset.warmup_steps, steps // 4),
                            log_every=max(1, min(50, steps // 20)), patience=preset.patience,
                            n_subsample=n_subsample)


def held_out_loss(trained: TrainedModel, data: PtychoData, device: str) -> float:
    """The model's loss on data it never trained on, by its training loss: the NLL excess for the
    PINN (no ground truth needed), the illumination-weighted error for the baseline."""
    model, scale = trained.model, trained.preprocessing["input_scale"]
    if trained.preprocessing["gridsize"] == 1:
        weight = illumination_weight(torch.from_numpy(data.probe).to(device))

        def batch_of(rows: slice) -> tuple[torch.Tensor, ...]:
            return (torch.from_numpy(data.diffraction[rows] * scale)[:, None].to(device),
                    torch.from_numpy(data.patches[rows])[:, None].to(device), weight)

        def score(batch: tuple[torch.Tensor, ...]) -> float:
            return float(baseline_loss(model, batch))
    else:
        (inputs, counts, offsets), probe = pinn_batches(data, scale, device)

        def batch_of(rows: slice) -> tuple[torch.Tensor, ...]:
            return inputs[rows], counts[rows], offsets[rows], probe

        def score(batch: tuple[torch.Tensor, ...]) -> float:
            return nll_excess(pinn_loss(model, batch), batch[1])
    n, total = data.diffraction.shape[0], 0.0
    with torch.no_grad():
        for start in range(0, n, EVAL_BATCH):
            batch = batch_of(slice(start, start + EVAL_BATCH))
            total += score(batch) * batch[0].shape[0]
    return total / n


def train_and_save(train_file: Path, output_dir: Path, gridsize: int, preset: Preset, seed: int,
                   device: str, test_file: Path | None = None, dose: float | None = None,
                   n_groups: int | None = None, neighbours: int = 7, steps: int | None = None,
                   epochs: int | None = None, n_subsample: int | None = None, checkpoint_every: float = 180.0,
                   stop: Callable[[], int | None] = lambda: None) -> TrainedModel:
    """Train one model into `output_dir`, resuming the training state there if it was made with the
    same inputs. It is saved every `checkpoint_every` seconds of training; when `stop` names a
    signal, it is saved and ptychokit.resume.TrainingStopped raised."""
    data = _read(train_file, "training data")
    meta = data.metadata or {}
    if dose is not None and meta.get("dose") not in (None, dose):
        raise TrainingInputError(f"--nphotons {dose:g} but {train_file} says its dose is {meta['dose']}")
    if gridsize == 1 and data.patches is None:
        raise TrainingInputError(f"{train_file} has no ground-truth patches (Y): the baseline needs them")
    if data.patch_size != preset.patch_size:
        raise TrainingInputError(f"{train_file} has {data.patch_size} px patterns, preset {preset.name} "
                                 f"expects {preset.patch_size}")
    test = _read(test_file, "test data") if test_file else None
    if test is not None and gridsize == 1 and test.patches is None:
        raise TrainingInputError(f"test data {test_file} has no ground-truth patches (Y): the baseline's "
                                 "held-out error needs them")
    n = int(data.diffraction.shape[0])
    if n_subsample is not None and n_subsample > n:
        log.info("[E] --n_subsample %d: %s holds %d positions, all of them are used", n_subsample, train_file.name, n)
        n_subsample = n
    settings = settings_for(preset, gridsize, seed, n, n_groups, steps, epochs, n_subsample)
    arch = Architecture(preset.patch_size, 1, preset.net_width, preset.net_latent) if gridsize == 1 else \
        Architecture(preset.patch_size, GRIDSIZE_CHANNELS, preset.net_width, preset.net_latent,
                     dropout=preset.pinn_dropout)
    kind = "baseline" if gridsize == 1 else "pinn"
    log.info("[E] %s gs%d on %s: %d positions%s%s, %d steps of %d, peak learning rate %g, device %s",
             kind, gridsize, train_file.name, n, f" ({n_subsample} of them)" if n_subsample else "",
             f", {settings.n_groups} groups (C={GRIDSIZE_CHANNELS} of K={neighbours} nearest)" if gridsize == 2 else "",
             settings.steps, settings.batch_size, settings.learning_rate, device)
    session = TrainingSession(output_dir, fingerprint(train_file, gridsize, preset.name, settings, arch, neighbours),
                              settings.steps, log_columns(pinn=gridsize == 2), checkpoint_every, stop)
    with session:
        if gridsize == 1:
            trained = train_baseline(data, arch, settings, device, hooks=session)
        else:
            trained = train_pinn(data, arch, settings, device, neighbours=neighbours, hooks=session)
    last = trained.log[-1]
    provenance: dict[str, Any] = {
        "dose": meta.get("dose", dose), "view": meta.get("overlap_view"), "train_data": str(train_file),
        "n_train": trained.preprocessing["training_positions"], "n_available": n, "n_subsample": n_subsample,
        "seed": seed, "preset": preset.name, "device": device,
        "loss": "illumination-weighted squared error to ground-truth patches" if gridsize == 1
        else "Poisson negative log-likelihood of the measured counts",
        "steps": last["step"], "planned_steps": settings.steps, "stopped_early": trained.stopped_early,
        "batch_size": settings.batch_size, "peak_learning_rate": settings.learning_rate,
        "final_loss": last["loss"], "final_nll_excess": last.get("nll_excess"),
        "train_seconds": last["seconds"]}
    if test is not None:
        provenance["test_data"] = str(test_file)
        provenance["held_out_" + ("loss" if gridsize == 1 else "nll_excess")] = held_out_loss(trained, test, device)
    save_model(output_dir, trained.model.cpu(), kind, trained.preprocessing,
               data.probe if gridsize == 2 else None, provenance, trained.log)
    session.finish(last["step"])
    first = trained.log[0]
    curve = "nll_excess" if gridsize == 2 else "loss"
    log.info("[E] %s gs%d: %s %.4g -> %.4g in %d steps, %.1f s%s", kind, gridsize, curve, first[curve],
             last[curve], last["step"], last["seconds"], " (stopped early on a plateau)" if trained.stopped_early else "")
    return trained

