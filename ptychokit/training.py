"""Phase E's training: the supervised gridsize-1 baseline and the gridsize-2 physics-informed network.

The baseline learns object patches from ground truth (the PtychoNN recipe the PINN is compared
against). The PINN never sees ground truth: its patches go through the overlap constraint, the
probe and the FFT, and the loss is the Poisson likelihood of the measured counts.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np
import torch

from ptychokit.forward import expected_counts, poisson_nll
from ptychokit.grouping import group_offsets, neighbour_groups, partner_min_distance, training_groups
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
    learning_rate: float  # the peak, reached after the warm-up and annealed to 0 by a cosine
    max_patterns: int
    seed: int
    n_groups: int = 0  # PINN: gridsize-2 groups drawn for training (0: one per position)
    warmup_steps: int = 0  # linear ramp of the learning rate: Adam's first steps are its largest
    log_every: int = 50  # steps per row of the training log
    patience: int = 0  # log rows without a 0.2 % better loss before stopping early (0: never)
    n_subsample: int | None = None  # train on this many positions (PtychoPINN's --n_subsample), not max_patterns


@dataclass
class TrainedModel:
    model: PatchNet
    preprocessing: dict[str, Any]  # what inference must do to the diffraction before the network
    log: list[dict[str, float]]  # one row per `log_every` steps
    stopped_early: bool = False


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


def nll_excess(loss: torch.Tensor, counts: torch.Tensor) -> float:
    """The Poisson NLL above that of the measured counts themselves (the best any model of these
    counts could do), per pixel. It needs no ground truth, and unlike the raw NLL, which follows
    each batch's photon total, it only moves when the fit does."""
    return float(loss) - float(poisson_nll(counts, counts))


def training_step(model: PatchNet, optimizer: torch.optim.Optimizer, loss_fn: LossFn,
                  batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """One optimizer step; the batch's loss before it, detached."""
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model, batch)
    loss.backward()
    # The Poisson loss scales with the dose; clipping keeps one bad batch from wrecking the weights.
    torch.nn.utils.clip_grad_norm_(model.parameters(), GRADIENT_CLIP)
    optimizer.step()
    return loss.detach()


def training_positions(n: int, settings: TrainingSettings) -> np.ndarray:
    """The positions a model trains on, sorted. With n_subsample, the first of one fixed
    permutation: a smaller training set is part of every larger one, so a curve of score against
    size measures the size, not which patterns were drawn. Else the preset's cap."""
    rng = np.random.default_rng(SUBSAMPLING_SEED)
    if settings.n_subsample is not None:
        return np.sort(rng.permutation(n)[:settings.n_subsample])
    if n <= settings.max_patterns:
        return np.arange(n)
    return np.sort(rng.choice(n, size=settings.max_patterns, replace=False))


def learning_rate_factor(step: int, settings: TrainingSettings) -> float:
    """Linear warm-up, then a cosine from the peak to 0 at the last planned step."""
    warm = min(1.0, (step + 1) / settings.warmup_steps) if settings.warmup_steps else 1.0
    return warm * 0.5 * (1.0 + math.cos(math.pi * min(step, settings.steps) / max(settings.steps, 1)))


BatchFn = Callable[[torch.Tensor], tuple[torch.Tensor, ...]]
PLATEAU_GAIN = 0.002  # a log row must beat the best so far by this share to count as progress


@dataclass
class Fit:
    """A training between two steps: what it updates and where it stands. All a stopped training
    needs to carry on to bitwise the same weights (ptychokit.resume saves and restores it)."""

    model: PatchNet
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    shuffler: torch.Generator  # draws each epoch's order of the items
    step: int = 0
    epoch_start: torch.Tensor | None = None  # the shuffler's state when the current epoch began
    epoch_batches: int = 0  # batches of the current epoch done
    log: list[dict[str, float]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # of the steps since the last log row
    excesses: list[float] = field(default_factory=list)
    best: float = math.inf  # early stopping: the best log row so far, and rows since it
    stale: int = 0
    clock: float = field(default_factory=time.perf_counter)  # when the training began (its seconds)

    def seconds(self) -> float:
        return time.perf_counter() - self.clock


class FitHooks(Protocol):
    """What a training does besides training (ptychokit.resume.TrainingSession: files, signals)."""

    def start(self, fit: Fit) -> None:
        """Before the first step; may restore a saved training into `fit`."""

    def logged(self, row: dict[str, float]) -> None:
        """A new row of the training log."""

    def stepped(self, fit: Fit) -> None:
        """After a step that did not end the training; may save it, or raise to stop it."""


def _fit(model: PatchNet, n: int, make_batch: BatchFn, loss_fn: LossFn, settings: TrainingSettings,
         excess: Callable[[torch.Tensor, tuple[torch.Tensor, ...]], float] | None = None,
         hooks: FitHooks | None = None) -> tuple[list[dict[str, float]], bool]:
    """Adam over shuffled mini-batches of the n items for a fixed number of steps, warmed up and
    cosine-annealed; the log and whether it stopped early on a plateau.

    A step budget rather than an epoch count: the views differ tenfold in size, and a fixed
    number of passes would starve the sparse model of updates. `make_batch` turns item indices
    into the loss's tensors; `excess`, given the loss and the batch, gives the NLL excess logged
    beside the loss.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: learning_rate_factor(step, settings))
    fit = Fit(model, optimizer, schedule, torch.Generator().manual_seed(settings.seed))
    if hooks is not None:
        hooks.start(fit)
    model.train()
    while True:
        if fit.epoch_batches:  # resumed inside an epoch: its order again, less the batches done
            fit.shuffler.set_state(fit.epoch_start)
        else:
            fit.epoch_start = fit.shuffler.get_state()
        batches = torch.randperm(n, generator=fit.shuffler).split(settings.batch_size)
        for indices in batches[fit.epoch_batches:]:
            batch = make_batch(indices)
            rate = optimizer.param_groups[0]["lr"]
            loss = training_step(model, optimizer, loss_fn, batch)
            schedule.step()
            fit.step += 1
            fit.epoch_batches += 1
            fit.losses.append(float(loss))
            if excess is not None:
                fit.excesses.append(excess(loss, batch))
            early = False
            if fit.step % settings.log_every == 0 or fit.step >= settings.steps:
                row = _log_row(fit, rate, settings.batch_size, n)
                if hooks is not None:
                    hooks.logged(row)
                early = bool(settings.patience) and fit.stale >= settings.patience
            if early or fit.step >= settings.steps:
                model.eval()
                return fit.log, early
            if hooks is not None:
                hooks.stepped(fit)
        fit.epoch_batches = 0


def _log_row(fit: Fit, rate: float, batch_size: int, n: int) -> dict[str, float]:
    """Close the current row of the log: the mean loss (and NLL excess) of its steps; and count it
    for early stopping."""
    row = {"step": fit.step, "epoch": round(fit.step * batch_size / n, 3), "loss": float(np.mean(fit.losses)),
           "learning_rate": rate, "seconds": round(fit.seconds(), 3)}
    if fit.excesses:
        row["nll_excess"] = float(np.mean(fit.excesses))
    fit.log.append(row)
    fit.losses, fit.excesses = [], []
    tracked = row.get("nll_excess", row["loss"])
    if not math.isfinite(fit.best) or tracked < fit.best - PLATEAU_GAIN * abs(fit.best):
        fit.best, fit.stale = tracked, 0
    else:
        fit.stale += 1
    return row


def train_baseline(data: PtychoData, arch: Architecture, settings: TrainingSettings,
                   device: str, hooks: FitHooks | None = None) -> TrainedModel:
    """Gridsize 1, supervised on the ground-truth patches `Y`, weighted by the illumination."""
    if data.patches is None:
        raise ValueError("the baseline needs ground-truth patches (Y)")
    torch.manual_seed(settings.seed)
    keep = training_positions(data.diffraction.shape[0], settings)
    scale = input_scale_for(data.diffraction[keep])
    inputs = torch.from_numpy(data.diffraction[keep] * scale)[:, None].to(device)
    targets = torch.from_numpy(data.patches[keep])[:, None].to(device)
    weight = illumination_weight(torch.from_numpy(data.probe).to(device))
    model = PatchNet(arch).to(device)
    model.input_mean.copy_(inputs.mean(dim=(0, 1)))
    log, early = _fit(model, inputs.shape[0], lambda i: (inputs[i.to(device)], targets[i.to(device)], weight),
                      baseline_loss, settings, hooks=hooks)
    return TrainedModel(model, {"input_scale": scale, "gridsize": 1, "training_positions": int(keep.size)}, log,
                        early)


def pinn_batches(data: PtychoData, scale: float, device: str,
                 indices: np.ndarray | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per-group tensors (scaled inputs, counts, offsets) and the probe, for the PINN loss, with
    the inference rule's groups (one anchored at each position)."""
    groups = neighbour_groups(data.xcoords, data.ycoords, GRIDSIZE_CHANNELS, NEIGHBOURS_K,
                              GROUPING_SEED)
    if indices is not None:
        groups = groups[indices]
    amplitudes = torch.from_numpy(data.diffraction[groups]).to(device)
    offsets = torch.from_numpy(group_offsets(data.xcoords, data.ycoords, groups)).to(device)
    probe = torch.from_numpy(data.probe).to(device)
    return [amplitudes * scale, amplitudes**2, offsets], probe


def train_pinn(data: PtychoData, arch: Architecture, settings: TrainingSettings,
               device: str, neighbours: int = NEIGHBOURS_K, hooks: FitHooks | None = None) -> TrainedModel:
    """Gridsize 2, unsupervised: Poisson likelihood of the counts through the forward model, over
    `n_groups` groups drawn PtychoPINN's way (C of a position's K nearest, oversampled)."""
    torch.manual_seed(settings.seed)
    keep = training_positions(data.diffraction.shape[0], settings)
    xs, ys = data.xcoords[keep], data.ycoords[keep]
    groups = training_groups(xs, ys, settings.n_groups or keep.size, GRIDSIZE_CHANNELS, neighbours,
                             GROUPING_SEED)
    scale = input_scale_for(data.diffraction[keep])
    # The patterns once; each batch gathers its groups' members (oversampled groups would
    # otherwise copy every pattern several times).
    patterns = torch.from_numpy(data.diffraction[keep]).to(device)
    members = torch.from_numpy(groups).to(device)
    offsets = torch.from_numpy(group_offsets(xs, ys, groups)).to(device)
    probe = torch.from_numpy(data.probe).to(device)

    def make_batch(indices: torch.Tensor) -> tuple[torch.Tensor, ...]:
        indices = indices.to(device)
        amplitudes = patterns[members[indices]]
        return amplitudes * scale, amplitudes**2, offsets[indices], probe

    model = PatchNet(arch).to(device)
    model.input_mean.copy_(patterns.mean(dim=0) * scale)
    log, early = _fit(model, groups.shape[0], make_batch, pinn_loss, settings,
                      excess=lambda loss, batch: nll_excess(loss, batch[1]), hooks=hooks)
    preprocessing = {"input_scale": scale, "gridsize": 2, "channels": GRIDSIZE_CHANNELS,
                     "neighbours": neighbours, "grouping_seed": GROUPING_SEED,
                     "training_groups": int(groups.shape[0]), "training_positions": int(keep.size),
                     "partner_min_distance": partner_min_distance(xs, ys, groups),
                     "probe": "probeGuess of the data, used by the overlap merge"}
    return TrainedModel(model, preprocessing, log, early)
