"""Image quality metrics of a reconstruction against the ground truth, on real-valued images
(amplitude or phase): MAE, MSE, PSNR, SSIM, MS-SSIM and Fourier ring correlation.

SSIM and PSNR come from scikit-image, MS-SSIM from pytorch-msssim; FRC is ours. PSNR and SSIM use
the target's own data range (max - min), not 255: amplitudes near 1 and phases in radians would
otherwise all look perfect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter, gaussian_filter1d
from scipy.signal.windows import tukey
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
    import torch  # here, so that the FRC alone (scripts/plot_report.py) does not load torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    to_tensor = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float64)[None, None]
    low = float(np.min(target))  # shift both so the dynamic range starts at 0, as MS-SSIM expects
    value = _ms_ssim(to_tensor(pred - low), to_tensor(target - low), data_range=data_range(target),
                     win_size=win, weights=list(MS_SSIM_WEIGHTS))
    return float(value)


# Fourier ring correlation against the ground truth (docs/compare_models.md, "FRC"). The image is
# covered by squares of side L = min(shape), each square has its least-squares plane removed and
# its edges tapered, and the rings are RING_WIDTH frequency steps (RING_WIDTH / L) wide.
RING_WIDTH = 2
TAPER = 0.5  # Tukey window: a half-cosine taper over the outer quarter of the width at each edge
LOWEST_SEARCHED = 2  # rings 0 and 1 (|k| < 3 steps) hold what the removed plane and offset leave,
#                      smeared by the taper: the curve is searched for its fall from ring 2 on
SIGMAS = 3.0  # a ring counts as above a threshold only if also SIGMAS noise levels above zero


@dataclass(frozen=True)
class FRC:
    """One FRC curve: ring centres in cycles/pixel, the correlation, and the number of independent
    Fourier samples in each ring (over every square)."""

    frequencies: np.ndarray
    frc: np.ndarray
    samples: np.ndarray

    def noise_level(self) -> np.ndarray:
        """One standard deviation of the FRC of unrelated images, per ring (1/sqrt(samples))."""
        with np.errstate(divide="ignore"):
            return 1.0 / np.sqrt(self.samples)

    def resolution(self, threshold: float) -> float:
        return frc_resolution(self.frequencies, self.frc, threshold, self.noise_level())


def _squares(shape: tuple[int, int]) -> list[tuple[slice, slice]]:
    """The fewest L x L squares (L = the short side) that cover the image, evenly spaced along the
    long side (they overlap where the long side is not a multiple of L)."""
    side, long = min(shape), max(shape)
    count = -(-long // side)
    starts = [round(i * (long - side) / (count - 1)) for i in range(count)] if count > 1 else [0]
    if shape[0] <= shape[1]:
        return [(slice(0, side), slice(s, s + side)) for s in starts]
    return [(slice(s, s + side), slice(0, side)) for s in starts]


def remove_plane(image: np.ndarray) -> np.ndarray:
    """The image minus its least-squares plane (which holds its mean)."""
    rows, cols = np.indices(image.shape)
    design = np.column_stack([rows.ravel(), cols.ravel(), np.ones(image.size)])
    coeffs, *_ = np.linalg.lstsq(design, image.ravel(), rcond=None)
    return image - (design @ coeffs).reshape(image.shape)


def frc_rings(a: np.ndarray, b: np.ndarray, smooth: float = 0.0) -> FRC:
    """The FRC of `a` against `b` up to Nyquist, by the definition above; `smooth` > 0 smooths the
    curve by a Gaussian of that many rings (PtychoPINN's frc_sigma)."""
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"FRC needs two images of equal shape, got {a.shape} and {b.shape}")
    side = min(a.shape)
    window = tukey(side, TAPER, sym=False)
    window = np.outer(window, window)
    step = np.fft.fftfreq(side) * side  # frequency in steps of 1/side
    ring = np.floor(np.hypot(step[:, None], step[None, :]) / RING_WIDTH + 0.5).astype(int)
    n_rings = (side // 2) // RING_WIDTH + 1
    keep = ring < n_rings
    ring = ring[keep]
    cross, power_a, power_b = np.zeros(n_rings), np.zeros(n_rings), np.zeros(n_rings)
    for box in _squares(a.shape):
        fa = np.fft.fft2(remove_plane(a[box]) * window)[keep]
        fb = np.fft.fft2(remove_plane(b[box]) * window)[keep]
        cross += np.bincount(ring, (fa * np.conj(fb)).real, n_rings)
        power_a += np.bincount(ring, np.abs(fa) ** 2, n_rings)
        power_b += np.bincount(ring, np.abs(fb) ** 2, n_rings)
    # The taper correlates neighbouring Fourier samples: independent ones are fewer by its
    # equivalent noise bandwidth in bins (1.22 per axis for this window, 1.49 for the square).
    bandwidth = window.size * np.sum(window ** 2) / np.sum(window) ** 2
    samples = np.bincount(ring, minlength=n_rings) * len(_squares(a.shape)) / bandwidth
    with np.errstate(invalid="ignore", divide="ignore"):
        frc = cross / np.sqrt(power_a * power_b)
    if smooth > 0:
        finite = np.isfinite(frc)
        frc = np.where(finite, gaussian_filter1d(np.where(finite, frc, 0.0), smooth, mode="nearest"), np.nan)
    return FRC(np.arange(n_rings) * RING_WIDTH / side, frc, samples.astype(float))


def frc_curve(a: np.ndarray, b: np.ndarray, smooth: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(ring centres in cycles/pixel, FRC) of `a` against `b`: see frc_rings."""
    curve = frc_rings(a, b, smooth)
    return curve.frequencies, curve.frc


def frc_resolution(frequencies: np.ndarray, frc: np.ndarray, threshold: float,
                   noise: np.ndarray | None = None) -> float:
    """The spatial frequency (cycles/pixel) where the FRC falls below `threshold` for good.

    A ring is above when its FRC is at least the threshold and, given the per-ring `noise` level,
    at least SIGMAS of it above zero. The resolution lies past the last ring from LOWEST_SEARCHED
    up that is above together with a neighbour (a lone ring above is noise, a lone ring below is
    a dip), interpolated linearly to the next ring; a fall in the lower rings does not count.
    When no such ring is above, the curve fell between ring LOWEST_SEARCHED - 1 and the next if
    that ring is above, else nothing is resolved (0.0). 0.5 (Nyquist) when the last ring is above;
    NaN when the image is too small to have a searched ring. Higher is better."""
    if len(frc) <= LOWEST_SEARCHED:
        return math.nan
    frc = np.asarray(frc, dtype=float)
    limit = np.full(len(frc), float(threshold))
    if noise is not None:
        limit = np.maximum(limit, SIGMAS * np.asarray(noise, dtype=float))
    above = np.isfinite(frc) & (frc >= limit)
    runs = above & (np.roll(above, 1) | np.roll(above, -1))
    runs[0] = above[0] and above[1]
    runs[-1] = above[-1] and above[-2]
    searched = [i for i in range(LOWEST_SEARCHED, len(frc)) if runs[i]]
    if searched:
        i = searched[-1]
    elif above[LOWEST_SEARCHED - 1]:
        i = LOWEST_SEARCHED - 1
    else:
        return 0.0
    if i == len(frc) - 1:
        return 0.5
    f0, f1, c0, c1 = frequencies[i], frequencies[i + 1], frc[i], frc[i + 1]
    if not np.isfinite(c1) or c1 >= threshold:  # below the noise guard or a lone ring: half a ring on
        return float(f0 + (f1 - f0) / 2)
    return float(f0 + (c0 - threshold) * (f1 - f0) / (c0 - c1))


def all_metrics(pred: np.ndarray, target: np.ndarray, ms_ssim_sigma: float, frc_sigma: float = 0.0) -> dict[str, float]:
    """Every metric of one real-valued image against its target, by the CSV's metric names;
    `frc_sigma` smooths the FRC curve over that many rings."""
    curve = frc_rings(pred, target, frc_sigma)
    return {"mae": mae(pred, target), "mse": mse(pred, target), "psnr": psnr(pred, target),
            "ssim": ssim(pred, target), "ms_ssim": ms_ssim(pred, target, ms_ssim_sigma),
            "frc50": curve.resolution(0.5), "frc1over7": curve.resolution(1 / 7)}
