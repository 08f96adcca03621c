"""Phase F's iterative solver: mini-batch rPIE (regularised ePIE) for object and probe, in PyTorch.

Each batch of positions is projected onto its measured moduli; the exit-wave corrections are
accumulated on the object (and the probe) and divided by the accumulated illumination, with the
rPIE weighting (1 - a) |P|^2 + a max |P|^2 that keeps weakly lit pixels from blowing up. Batches
make the loop cost grow with n / batch instead of n, which is what makes the CPU presets fast.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ptychokit.forward import back_propagate, far_field, patch_index
from ptychokit.scan import patch_corners

ALGORITHM = "rPIE (mini-batch, PyTorch)"


@dataclass(frozen=True)
class SolverSettings:
    iterations: int
    batch_size: int
    rpie_alpha: float = 0.15  # 1 is ePIE's max|P|^2 step; smaller trusts the local illumination more
    probe_update_start: int = 3  # a few object-only passes first, so the probe is not fitted to noise
    seed: int = 0


@dataclass
class SolverResult:
    object: np.ndarray  # (M, M) complex64
    probe: np.ndarray  # (N, N) complex64
    cost_history: list[float] = field(default_factory=list)  # relative modulus misfit per iteration
    elapsed_s: float = 0.0


def _rpie_step(numerator: torch.Tensor, weight: torch.Tensor, alpha: float) -> torch.Tensor:
    return numerator / ((1.0 - alpha) * weight + alpha * weight.max() + 1e-12)


def reconstruct(amplitudes: np.ndarray, probe: np.ndarray, xcoords: np.ndarray,
                ycoords: np.ndarray, object_shape: tuple[int, int], settings: SolverSettings,
                device: str = "cpu") -> SolverResult:
    """Object and probe from measured amplitudes at known positions, starting from `probe`."""
    start = time.perf_counter()
    n, size = amplitudes.shape[0], amplitudes.shape[-1]
    height, width = object_shape
    amp = torch.from_numpy(amplitudes).to(device)
    top, left = (torch.from_numpy(a).to(device) for a in patch_corners(xcoords, ycoords, size))
    index = patch_index(top, left, size, width)
    obj = torch.ones(height * width, dtype=torch.complex64, device=device)
    prb = torch.from_numpy(probe).to(device).clone()
    generator = torch.Generator().manual_seed(settings.seed)
    total_energy = float((amp**2).sum())
    history = []
    for iteration in range(settings.iterations):
        misfit = 0.0
        for batch in torch.randperm(n, generator=generator).to(device).split(settings.batch_size):
            flat = index[batch].reshape(-1)
            patches = obj[flat].reshape(-1, size, size)
            exit_wave = prb * patches
            field_ = far_field(exit_wave)
            modulus = field_.abs()
            misfit += float(((modulus - amp[batch]) ** 2).sum())
            corrected = back_propagate(field_ * (amp[batch] / (modulus + 1e-9)))
            delta = corrected - exit_wave
            numerator = torch.zeros_like(obj).index_add_(0, flat, (prb.conj() * delta).reshape(-1))
            lit = (prb.abs() ** 2).expand_as(delta).reshape(-1)
            weight = torch.zeros(obj.shape, device=device).index_add_(0, flat, lit)
            obj = obj + _rpie_step(numerator, weight, settings.rpie_alpha)
            if iteration >= settings.probe_update_start:
                prb = prb + _rpie_step((patches.conj() * delta).sum(0),
                                       (patches.abs() ** 2).sum(0), settings.rpie_alpha)
        history.append(misfit / total_energy)
    return SolverResult(object=obj.reshape(height, width).cpu().numpy(), probe=prb.cpu().numpy(),
                        cost_history=history, elapsed_s=time.perf_counter() - start)
