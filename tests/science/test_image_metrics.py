"""Comparison metrics and alignment against references and hand-checkable cases."""

import math

import numpy as np
import pytest
from scipy.ndimage import fourier_shift, gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ptychokit.alignment import aligned_phase, register, remove_phase_offset, scale_amplitude, scanned_box
from ptychokit.image_metrics import (RING_WIDTH, all_metrics, frc_curve, frc_resolution, frc_rings, ms_ssim,
                                     psnr, ssim)

rng = np.random.default_rng(7)


def smooth_image(size=96, seed=0):
    image = gaussian_filter(np.random.default_rng(seed).normal(size=(size, size)), 2.0)
    return (image - image.min()) / (image.max() - image.min())


@pytest.mark.parametrize("shape", [(96, 96), (75, 141)])
def test_identical_images_are_perfect(shape):
    image = smooth_image(max(shape))[:shape[0], :shape[1]]
    metrics = all_metrics(image, image, ms_ssim_sigma=1.0)
    assert metrics["mae"] == 0 and metrics["mse"] == 0 and metrics["psnr"] == math.inf
    assert metrics["ssim"] == pytest.approx(1.0) and metrics["ms_ssim"] == pytest.approx(1.0)
    _, frc = frc_curve(image, image)
    assert np.allclose(frc, 1.0)
    assert metrics["frc50"] == metrics["frc1over7"] == 0.5  # Nyquist, whatever the shape


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


def gaussian_field(shape, sigma, seed):
    """White noise smoothed by a Gaussian of `sigma` px: power spectrum exp(-4 pi^2 sigma^2 f^2) per
    pixel. Cut from a larger field, so it is not periodic: its edges jump, as a real image's do."""
    big = gaussian_filter(np.random.default_rng(seed).normal(size=(shape[0] + 80, shape[1] + 80)), sigma)
    return big[40:40 + shape[0], 40:40 + shape[1]]


def predicted_resolution(threshold, field_sigma, blur_sigma, noise_sd):
    """Where FRC(f) = 1/sqrt(1 + N/(T^2 S)) meets `threshold`, for signal S = exp(-4 pi^2 s0^2 f^2),
    transfer T = exp(-2 pi^2 s^2 f^2) and white noise N = noise_sd^2 (all per pixel)."""
    snr = threshold ** 2 / (1 - threshold ** 2)  # T^2 S / N at the crossing
    return math.sqrt(math.log(1 / (snr * noise_sd ** 2)) / (4 * math.pi ** 2 * (field_sigma ** 2 + blur_sigma ** 2)))


# Tolerance of the known answers, in rings (RING_WIDTH/L = 2/240 = 0.0083 cycles/px): the curve is
# sampled once per ring, and the edge taper smears the spectrum by about one 1/L step. Over 24 seeds
# of these very cases (blur 1.5 and 3 px with noise 0.01; noise 0.003 to 0.1 without blur) the
# crossing's bias was at most +0.0012 (0.5) and +0.0016 (1/7) cycles/px and its scatter (sd) at most
# 0.0019 (0.5) and 0.0027 (1/7, with noise 0.01), so bias + 3 sd is within one ring at 0.5 (0.007)
# and within one and a half rings at 1/7 (0.0097).
SHAPE = (240, 420)  # not square: two overlapping 240 x 240 squares
TOLERANCE = {0.5: RING_WIDTH / min(SHAPE), 1 / 7: 1.5 * RING_WIDTH / min(SHAPE)}


@pytest.mark.parametrize("blur", [1.5, 3.0])
def test_a_blurred_noisy_copy_is_resolved_where_its_transfer_function_says(blur):
    target = gaussian_field(SHAPE, 2.0, seed=11)
    noise_sd = 0.01
    copy = gaussian_filter(target, blur) + np.random.default_rng(12).normal(scale=noise_sd, size=SHAPE)
    curve = frc_rings(copy, target)
    for threshold in (0.5, 1 / 7):
        assert curve.resolution(threshold) == pytest.approx(
            predicted_resolution(threshold, 2.0, blur, noise_sd), abs=TOLERANCE[threshold])


def test_a_blurred_copy_without_noise_is_not_penalised():
    """The FRC is normalised ring by ring, so a blur that every frequency survives (no noise, no
    zero of the transfer function within float precision) leaves it at 1: a blur is only seen
    through the noise it lets win. Hence the noisy copy above."""
    target = np.random.default_rng(3).normal(size=(128, 200))  # content up to Nyquist
    curve = frc_rings(gaussian_filter(target, 1.5), target)  # transfer 0.004 at Nyquist
    assert curve.resolution(0.5) == curve.resolution(1 / 7) == 0.5


def test_white_noise_moves_the_resolution_as_predicted():
    target = gaussian_field(SHAPE, 2.0, seed=21)
    found, expected = [], []
    for noise_sd in (0.003, 0.01, 0.03, 0.1):
        noisy = target + np.random.default_rng(22).normal(scale=noise_sd, size=SHAPE)
        found.append(frc_rings(noisy, target).resolution(0.5))
        expected.append(predicted_resolution(0.5, 2.0, 0.0, noise_sd))
    assert found == sorted(found, reverse=True)  # more noise, coarser resolution
    assert found == pytest.approx(expected, abs=TOLERANCE[0.5])
    assert np.diff(found) == pytest.approx(np.diff(expected), abs=TOLERANCE[0.5])


def test_unrelated_images_resolve_nothing():
    target = gaussian_field(SHAPE, 2.0, seed=31)
    for seed in range(32, 36):
        curve = frc_rings(np.random.default_rng(seed).normal(size=SHAPE), target)
        assert curve.resolution(0.5) == curve.resolution(1 / 7) == 0.0


@pytest.mark.parametrize("offset, slope", [(0.8, (0.0, 0.0)), (0.0, (0.004, -0.006)), (-1.3, (-0.01, 0.003))])
def test_an_offset_or_a_plane_added_leaves_the_resolution_alone(offset, slope):
    target = gaussian_field(SHAPE, 2.0, seed=41)
    copy = target + np.random.default_rng(42).normal(scale=0.01, size=SHAPE)
    rows, cols = np.indices(SHAPE)
    tilted = copy + offset + slope[0] * rows + slope[1] * cols
    plain, moved = all_metrics(copy, target, 0.0), all_metrics(tilted, target, 0.0)
    assert plain["frc50"] > 0.1
    assert moved["frc50"] == pytest.approx(plain["frc50"], abs=1e-9)
    assert moved["frc1over7"] == pytest.approx(plain["frc1over7"], abs=1e-9)


def test_a_phase_plane_removed_by_the_comparison_leaves_the_resolution_alone():
    amplitude = 1 + 0.1 * gaussian_field(SHAPE, 2.0, seed=51)
    target = amplitude * np.exp(1j * 0.5 * gaussian_field(SHAPE, 2.0, seed=52) / 0.14)
    noise = np.exp(1j * np.random.default_rng(53).normal(scale=0.05, size=SHAPE))
    rows, cols = np.indices(SHAPE)
    truth = remove_phase_offset(np.angle(target))
    scores = [all_metrics(aligned_phase(target * noise * np.exp(1j * extra), target, "plane"), truth, 0.0)
              for extra in (0.0, 2.0 + 0.004 * rows - 0.002 * cols)]  # no wrap
    assert scores[0]["frc50"] > 0.1
    assert scores[1]["frc50"] == pytest.approx(scores[0]["frc50"], abs=1e-6)


def test_one_dip_in_a_low_ring_does_not_decide_the_resolution():
    """The curve of the issue's PtyChi arm: ring 1 dips to 0.33 and ring 3 to 0.4, the rest stays
    high until it falls for good past ring 20; a later lone ring above the threshold is noise."""
    frequencies = np.arange(40) / 80
    frc = np.concatenate([[1.0, 0.33, 0.84, 0.4, 0.9], np.linspace(0.9, 0.7, 16), np.linspace(0.45, 0.0, 19)])
    noise = np.full(40, 0.02)
    assert frc_resolution(frequencies, frc, 0.5, noise) == pytest.approx(20.8 / 80)
    frc[30:32] = 0.2  # above 1/7, but not 3 noise levels above zero once the noise is 0.1
    assert frc_resolution(frequencies, frc, 1 / 7, np.full(40, 0.1)) == pytest.approx(
        frequencies[22] + (frc[22] - 0.3) / (frc[22] - frc[23]) / 80, abs=1 / 80)
    frc[30:32] = 0.0, 0.6  # one lone ring above 0.5, far above the noise: a spike, not signal
    assert frc_resolution(frequencies, frc, 0.5, noise) == pytest.approx(20.8 / 80)
    frc[32] = 0.6  # two neighbouring rings above: the curve rose again, and the last fall counts
    assert frc_resolution(frequencies, frc, 0.5, noise) == pytest.approx((32 + (0.6 - 0.5) / (0.6 - frc[33])) / 80)
    coarse = np.concatenate([[1.0, 0.9, 0.3], np.zeros(37)])  # only the coarsest ring correlates
    assert frc_resolution(frequencies, coarse, 0.5, noise) == pytest.approx((1 + 0.4 / 0.6) / 80)
    coarse[1] = 0.3  # and not even that: a high ring 0 alone resolves nothing
    assert frc_resolution(frequencies, coarse, 0.5, noise) == 0.0


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
