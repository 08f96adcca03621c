"""The ptychographic forward model of the simulation and the PINN loss.

Pty-Chi (Phase F) has its own; a test checks that it predicts the same counts.

Convention: a diffraction pattern is |fftshift(FFT_ortho(probe * object_patch))|^2 in photon
counts, DC at the centre. The orthonormal FFT keeps Parseval exact (the pattern's total equals the
exit wave's energy), so the probe alone carries the dose: it is scaled once so that the mean
expected total per pattern equals the dose.
"""

from __future__ import annotations

import numpy as np
import torch

CHUNK = 512  # patterns per simulation chunk


def far_field(exit_wave: torch.Tensor) -> torch.Tensor:
    """Detector-plane field of an exit wave (..., N, N), DC at the centre."""
    return torch.fft.fftshift(torch.fft.fft2(exit_wave, norm="ortho"), dim=(-2, -1))


def back_propagate(field: torch.Tensor) -> torch.Tensor:
    """Inverse of `far_field`."""
    return torch.fft.ifft2(torch.fft.ifftshift(field, dim=(-2, -1)), norm="ortho")


def patch_index(top: torch.Tensor, left: torch.Tensor, patch_size: int,
                width: int) -> torch.Tensor:
    """Flat indices (n, N, N) into a row-major image of `width` columns for patches at (top, left)."""
    offsets = torch.arange(patch_size, device=top.device)
    rows = top[:, None, None] + offsets[None, :, None]
    cols = left[:, None, None] + offsets[None, None, :]
    return rows * width + cols


def extract_patches(image: torch.Tensor, top: torch.Tensor, left: torch.Tensor,
                    patch_size: int) -> torch.Tensor:
    """The N x N patches of a 2-D image whose top-left corners are (top, left)."""
    index = patch_index(top, left, patch_size, image.shape[-1])
    return image.reshape(-1)[index]


def expected_counts(probe: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
    """Mean photon counts of each pattern for object patches (n, N, N) under `probe`."""
    return far_field(probe * patches).abs() ** 2


def _chunks(patches: np.ndarray, size: int = CHUNK) -> list[np.ndarray]:
    return [patches[i:i + size] for i in range(0, patches.shape[0], size)]


def dose_scaled_probe(probe: np.ndarray, patches: np.ndarray, dose: float) -> np.ndarray:
    """`probe` scaled so that the expected counts of the patterns sum to `dose` on average.

    One scale for the whole scan, not one per pattern: a per-pattern normalisation would give every
    pattern its own probe strength, which no single-probe model (Pty-Chi or PINN) could explain.
    By Parseval the mean total is the mean exit-wave energy.
    """
    intensity = (np.abs(probe) ** 2).astype(np.float64)
    totals = np.concatenate([np.sum(intensity * np.abs(chunk) ** 2, axis=(-2, -1))
                             for chunk in _chunks(patches)])
    return (probe * np.sqrt(dose / totals.mean())).astype(np.complex64)


def simulate_amplitudes(probe: np.ndarray, patches: np.ndarray,
                        rng: np.random.Generator) -> np.ndarray:
    """Measured amplitudes sqrt(Poisson(counts)) of every pattern, float32 (n, N, N).

    Chunked so that the full preset (10,000 patterns of 128 x 128) never holds more than one
    chunk's complex intermediates at a time.
    """
    out = np.empty(patches.shape, dtype=np.float32)
    start = 0
    for chunk in _chunks(patches):
        with torch.no_grad():
            counts = expected_counts(torch.from_numpy(probe), torch.from_numpy(chunk)).numpy()
        out[start:start + chunk.shape[0]] = np.sqrt(rng.poisson(counts.astype(np.float64)))
        start += chunk.shape[0]
    return out


def poisson_nll(predicted_counts: torch.Tensor, measured_counts: torch.Tensor) -> torch.Tensor:
    """Mean negative Poisson log-likelihood per pixel, without the data-only log(k!) term."""
    return torch.mean(predicted_counts - measured_counts * torch.log(predicted_counts + 1e-6))
