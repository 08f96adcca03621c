"""Comparison metrics and alignment against references and hand-checkable cases."""

import math

import numpy as np
import pytest
from scipy.ndimage import fourier_shift, gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ptychokit.alignment import register, remove_phase_offset, scale_amplitude, scanned_box
from ptychokit.image_metrics import all_metrics, frc_curve, frc_resolution, ms_ssim, psnr, ssim

rng = np.random.default_rng(7)


def smooth_image(size=96, seed=0):
    image = gaussian_filter(np.random.default_rng(seed).normal(size=(size, size)), 2.0)
    return (image - image.min()) / (image.max() - image.min())


def test_identical_images_are_perfect():
    image = smooth_image()
    metrics = all_metrics(image, image, ms_ssim_sigma=1.0)
    assert metrics["mae"] == 0 and metrics["mse"] == 0 and metrics["psnr"] == math.inf
    assert metrics["ssim"] == pytest.approx(1.0) and metrics["ms_ssim"] == pytest.approx(1.0)
    _, frc = frc_curve(image, image)
    assert np.allclose(frc[1:], 1.0)  # ring 0 is the removed mean
    assert metrics["frc50"] == metrics["frc1over7"] == 0.5


def test_ssim_and_psnr_equal_scikit_image_with_the_targets_data_range():
    target, pred = rng.random((64, 64)), rng.random((64, 64))
    span = target.max() - target.min()
    assert ssim(pred, target) == pytest.approx(structural_similarity(target, pred, data_range=span, win_size=7), abs=1e-6)
    assert psnr(pred, target) == pytest.approx(peak_signal_noise_ratio(target, pred, data_range=span), abs=1e-6)


def test_ms_ssim_falls_as_noise_grows():
    target = smooth_image(128)
    scores = [ms_ssim(target + rng.normal(scale=s, size=target.shape), target, sigma=1.0)
              for s in (0.01, 0.05, 0.2, 0.5)]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.95 and scores[-1] < 0.8


def test_ms_ssim_of_an_image_too_small_is_nan_not_zero():
    tiny = rng.random((20, 20))
    assert math.isnan(ms_ssim(tiny, tiny))


def test_frc_resolution_drops_with_noise():
    target = smooth_image(128)
    noisy = target + rng.normal(scale=0.3, size=target.shape)
    f, frc = frc_curve(noisy, target)
    assert frc_resolution(f, frc, 0.5) < 0.5 and frc_resolution(f, frc, 1 / 7) >= frc_resolution(f, frc, 0.5)


@pytest.mark.parametrize("shift", [(0.3, -1.7), (2.25, 0.6)])
def test_registration_recovers_a_sub_pixel_shift(shift):
    reference = smooth_image(128).astype(np.complex128) * np.exp(1j * smooth_image(128, seed=3))
    moved = np.fft.ifft2(fourier_shift(np.fft.fft2(reference), shift))
    _, found = register(moved, reference)
    assert found == pytest.approx((-shift[0], -shift[1]), abs=0.05)


def test_phase_plane_and_mean_removal():
    rows, cols = np.indices((32, 32))
    plane = 0.02 * rows - 0.05 * cols + 1.3
    assert np.allclose(remove_phase_offset(plane, "plane"), 0, atol=1e-9)
    assert np.mean(remove_phase_offset(plane, "mean")) == pytest.approx(0, abs=1e-12)


def test_amplitude_is_scaled_to_the_targets_mean_and_crop_follows_coverage():
    assert np.mean(scale_amplitude(np.full((4, 4), 2.0), np.full((4, 4), 0.5))) == pytest.approx(0.5)
    coverage = np.zeros((10, 10), int)
    coverage[2:7, 3:9] = 1
    assert scanned_box(coverage) == (slice(2, 7), slice(3, 9))
    coverage[2, 4:6] = 0  # holes on the rim are cropped away
    assert scanned_box(coverage) == (slice(3, 7), slice(3, 9))
