"""Phase E's training: the supervised gridsize-1 baseline and the gridsize-2 physics-informed network.

The baseline learns object patches from ground truth (the PtychoNN recipe the PINN is compared
against). The PINN never sees ground truth: its patches go through the overlap constraint, the
probe and the FFT, and the loss is the Poisson likelihood of the measured counts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from ptychokit.forward import expected_counts, poisson_nll
from ptychokit.grouping import group_offsets, neighbour_groups
from ptychokit.networks import Architecture, PatchNet
from ptychokit.npz_io import PtychoData
from ptychokit.overlap import merge_group_patches
from ptychokit.presets import GRIDSIZE_CHANNELS, GROUPING_SEED, NEIGHBOURS_K, SUBSAMPLING_SEED

GRADIENT_CLIP = 1.0
LossFn = Callable[[PatchNet, tuple[torch.Tensor, ...]], torch.Tensor]


@dataclass(frozen=True)
class TrainingSettings:
    steps: int  # optimizer steps in all; passes over the data follow from the data size
    batch_size: int
    learning_rate: float
    max_patterns: int
    seed: int


@dataclass
class TrainedModel:
    model: PatchNet
    preprocessing: dict[str, Any]  # what inference must do to the diffraction before the network
    log: list[dict[str, float]]  # one row per epoch


def input_scale_for(amplitudes: np.ndarray) -> float:
    """Factor that brings the amplitudes to unit RMS: the network sees every dose on one scale."""
    return float(1.0 / np.sqrt(np.mean(amplitudes.astype(np.float64) ** 2)))


def illumination_weight(probe: torch.Tensor) -> torch.Tensor:
    """|P|^2 / max: where a patch is measured at all; the loss ignores what the probe never lit."""
    weight = probe.abs() ** 2
    return weight / weight.max()


def baseline_loss(model: PatchNet, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    inputs, targets, weight = batch
    error = (model(inputs) - targets).abs() ** 2
    return (error * weight).sum() / (weight.sum() * inputs.shape[0])


def pinn_loss(model: PatchNet, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    inputs, counts, offsets, probe = batch
    patches = merge_group_patches(model(inputs), offsets, probe)
    return poisson_nll(expected_counts(probe, patches), counts)


def training_step(model: PatchNet, optimizer: torch.optim.Optimizer, loss_fn: LossFn,
                  batch: tuple[torch.Tensor, ...]) -> float:
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model, batch)
    loss.backward()
    # The Poisson loss scales with the dose; clipping keeps one bad batch from wrecking the weights.
    torch.nn.utils.clip_grad_norm_(model.parameters(), GRADIENT_CLIP)
    optimizer.step()
    return float(loss.detach())


def _subsample(n: int, limit: int) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(SUBSAMPLING_SEED).choice(n, size=limit, replace=False))


def _fit(model: PatchNet, per_sample: list[torch.Tensor], shared: list[torch.Tensor],
         loss_fn: LossFn, settings: TrainingSettings) -> list[dict[str, float]]:
    """Adam over shuffled mini-batches for a fixed number of steps, cosine-annealed.

    A step budget rather than an epoch count: the views differ tenfold in size, and a fixed
    number of passes would starve the sparse model of updates. `shared` tensors (probe, weights)
    go whole into every batch. One log row per pass over the data.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(settings.steps, 1))
    generator = torch.Generator().manual_seed(settings.seed)
    n, log, start, step = per_sample[0].shape[0], [], time.perf_counter(), 0
    model.train()
    while step < settings.steps:
        losses = []
        for batch in torch.randperm(n, generator=generator).split(settings.batch_size):
            batch = batch.to(per_sample[0].device)
            tensors = tuple(t[batch] for t in per_sample) + tuple(shared)
            losses.append(training_step(model, optimizer, loss_fn, tensors))
            schedule.step()
            step += 1
            if step >= settings.steps:
                break
        log.append({"epoch": len(log) + 1, "step": step, "loss": float(np.mean(losses)),
                    "seconds": time.perf_counter() - start})
    model.eval()
    return log


def train_baseline(data: PtychoData, arch: Architecture, settings: TrainingSettings,
                   device: str) -> TrainedModel:
    """Gridsize 1, supervised on the ground-truth patches `Y`, weighted by the illumination."""
    if data.patches is None:
        raise ValueError("the baseline needs ground-truth patches (Y)")
    torch.manual_seed(settings.seed)
    keep = _subsample(data.diffraction.shape[0], settings.max_patterns)
    scale = input_scale_for(data.diffraction[keep])
    inputs = torch.from_numpy(data.diffraction[keep] * scale)[:, None].to(device)
    targets = torch.from_numpy(data.patches[keep])[:, None].to(device)
    weight = illumination_weight(torch.from_numpy(data.probe).to(device))
    model = PatchNet(arch).to(device)
    model.input_mean.copy_(inputs.mean(dim=(0, 1)))
    log = _fit(model, [inputs, targets], [weight], baseline_loss, settings)
    return TrainedModel(model, {"input_scale": scale, "gridsize": 1}, log)


def pinn_batches(data: PtychoData, scale: float, device: str,
                 indices: np.ndarray | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per-group tensors (scaled inputs, counts, offsets) and the probe, for the PINN loss."""
    groups = neighbour_groups(data.xcoords, data.ycoords, GRIDSIZE_CHANNELS, NEIGHBOURS_K,
                              GROUPING_SEED)
    if indices is not None:
        groups = groups[indices]
    amplitudes = torch.from_numpy(data.diffraction[groups]).to(device)
    offsets = torch.from_numpy(group_offsets(data.xcoords, data.ycoords, groups)).to(device)
    probe = torch.from_numpy(data.probe).to(device)
    return [amplitudes * scale, amplitudes**2, offsets], probe


def train_pinn(data: PtychoData, arch: Architecture, settings: TrainingSettings,
               device: str) -> TrainedModel:
    """Gridsize 2, unsupervised: Poisson likelihood of the counts through the forward model."""
    torch.manual_seed(settings.seed)
    keep = _subsample(data.diffraction.shape[0], settings.max_patterns)
    scale = input_scale_for(data.diffraction[keep])
    per_group, probe = pinn_batches(data, scale, device, keep)
    model = PatchNet(arch).to(device)
    model.input_mean.copy_(per_group[0].mean(dim=(0, 1)))
    log = _fit(model, per_group, [probe], pinn_loss, settings)
    preprocessing = {"input_scale": scale, "gridsize": 2, "channels": GRIDSIZE_CHANNELS,
                     "neighbours": NEIGHBOURS_K, "grouping_seed": GROUPING_SEED,
                     "probe": "probeGuess of the data, used by the overlap merge"}
    return TrainedModel(model, preprocessing, log)
