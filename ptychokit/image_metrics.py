"""Image quality metrics of a reconstruction against the ground truth, on real-valued images
(amplitude or phase): MAE, MSE, PSNR, SSIM, MS-SSIM and Fourier ring correlation.

SSIM and PSNR come from scikit-image, MS-SSIM from pytorch-msssim; FRC is ours. PSNR and SSIM use
the target's own data range (max - min), not 255: amplitudes near 1 and phases in radians would
otherwise all look perfect.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pytorch_msssim import ms_ssim as _ms_ssim
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # the five scales of Wang et al. 2003


def data_range(target: np.ndarray) -> float:
    span = float(np.max(target) - np.min(target))
    return span if span > 0 else 1.0


def mae(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - target)))


def mse(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean((pred - target) ** 2))


def psnr(pred: np.ndarray, target: np.ndarray) -> float:
    if np.array_equal(pred, target):
        return math.inf
    return float(peak_signal_noise_ratio(target, pred, data_range=data_range(target)))


def ssim(pred: np.ndarray, target: np.ndarray) -> float:
    win = min(7, *(s - (1 - s % 2) for s in target.shape))  # largest odd window that fits
    if win < 3:
        return math.nan
    return float(structural_similarity(target, pred, data_range=data_range(target), win_size=win))


def ms_ssim(pred: np.ndarray, target: np.ndarray, sigma: float = 0.0) -> float:
    """MS-SSIM over five scales, both images first smoothed by a Gaussian of `sigma` px.

    The Gaussian window shrinks (11 px down to 3 px) so that small images still survive the four
    2x downsamplings; an image under 33 px on a side has no MS-SSIM (NaN).
    """
    if sigma > 0:
        pred, target = gaussian_filter(pred, sigma), gaussian_filter(target, sigma)
    side = min(target.shape)
    win = 11
    while win >= 3 and side <= (win - 1) * 16:
        win -= 2
    if win < 3:
        return math.nan
    to_tensor = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float64)[None, None]
    low = float(np.min(target))  # shift both so the dynamic range starts at 0, as MS-SSIM expects
    value = _ms_ssim(to_tensor(pred - low), to_tensor(target - low), data_range=data_range(target),
                     win_size=win, weights=list(MS_SSIM_WEIGHTS))
    return float(value)


def frc_curve(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frequency in cycles/pixel, FRC) over rings one frequency bin wide, up to Nyquist."""
    if a.shape != b.shape:
        raise ValueError(f"FRC needs equal shapes, got {a.shape} and {b.shape}")
    fa, fb = np.fft.fft2(a - a.mean()), np.fft.fft2(b - b.mean())
    ky, kx = np.meshgrid(np.fft.fftfreq(a.shape[0]), np.fft.fftfreq(a.shape[1]), indexing="ij")
    step = 1.0 / min(a.shape)
    ring = np.rint(np.hypot(kx, ky) / step).astype(int)
    n_rings = min(a.shape) // 2 + 1
    keep = ring < n_rings
    cross = np.bincount(ring[keep], (fa * np.conj(fb)).real[keep], n_rings)
    power_a = np.bincount(ring[keep], (np.abs(fa) ** 2)[keep], n_rings)
    power_b = np.bincount(ring[keep], (np.abs(fb) ** 2)[keep], n_rings)
    with np.errstate(invalid="ignore", divide="ignore"):
        frc = cross / np.sqrt(power_a * power_b)
    return np.arange(n_rings) * step, frc


def frc_resolution(frequencies: np.ndarray, frc: np.ndarray, threshold: float) -> float:
    """The spatial frequency (cycles/pixel) where the FRC first falls below `threshold`,
    interpolated between rings; Nyquist (0.5) when it never does. Higher is better."""
    for i in range(1, len(frc)):
        if np.isfinite(frc[i]) and frc[i] < threshold:
            f0, f1, c0, c1 = frequencies[i - 1], frequencies[i], frc[i - 1], frc[i]
            if not np.isfinite(c0) or c0 == c1:
                return float(f1)
            return float(f0 + (c0 - threshold) * (f1 - f0) / (c0 - c1))
    return float(frequencies[-1])


def all_metrics(pred: np.ndarray, target: np.ndarray, ms_ssim_sigma: float, frc_sigma: float = 0.0) -> dict[str, float]:
    """Every metric of one real-valued image against its target, by the CSV's metric names."""
    a, b = (gaussian_filter(pred, frc_sigma), gaussian_filter(target, frc_sigma)) if frc_sigma > 0 else (pred, target)
    frequencies, frc = frc_curve(a, b)
    return {"mae": mae(pred, target), "mse": mse(pred, target), "psnr": psnr(pred, target),
            "ssim": ssim(pred, target), "ms_ssim": ms_ssim(pred, target, ms_ssim_sigma),
            "frc50": frc_resolution(frequencies, frc, 0.5),
            "frc1over7": frc_resolution(frequencies, frc, 1 / 7)}
