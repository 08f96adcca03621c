"""The forward model on cases that can be checked by hand."""

from __future__ import annotations

import numpy as np
import torch

from ptychokit.forward import (dose_scaled_probe, expected_counts, extract_patches, far_field,
                               simulate_amplitudes)


def _random_complex(rng: np.random.Generator, *shape: int) -> torch.Tensor:
    return torch.from_numpy((rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64))


def test_far_field_preserves_energy(rng):
    wave = _random_complex(rng, 3, 16, 16)
    energy_in = (wave.abs() ** 2).sum(dim=(-2, -1))
    energy_out = (far_field(wave).abs() ** 2).sum(dim=(-2, -1))
    torch.testing.assert_close(energy_out, energy_in, rtol=1e-5, atol=1e-4)


def test_shifted_object_gives_the_same_diffraction_magnitudes(rng):
    flat_probe = torch.ones(16, 16, dtype=torch.complex64)
    patch = _random_complex(rng, 16, 16)
    shifted = torch.roll(patch, shifts=(3, -5), dims=(0, 1))
    torch.testing.assert_close(expected_counts(flat_probe, shifted),
                               expected_counts(flat_probe, patch), rtol=1e-4, atol=1e-4)


def test_a_plane_wave_puts_every_photon_in_the_central_pixel():
    counts = expected_counts(torch.ones(8, 8, dtype=torch.complex64), torch.ones(8, 8, dtype=torch.complex64))
    assert float(counts[4, 4]) == 64.0  # DC at the centre after fftshift, N^2 by Parseval
    assert float(counts.sum()) == 64.0


def test_extract_patches_matches_array_slicing(rng):
    image = _random_complex(rng, 20, 24)
    top, left = torch.tensor([0, 5, 12]), torch.tensor([3, 0, 16])
    patches = extract_patches(image, top, left, 8)
    for k in range(3):
        assert torch.equal(patches[k], image[top[k]:top[k] + 8, left[k]:left[k] + 8])


def test_mean_counts_equal_the_dose_within_poisson_error(rng):
    n, dose = 400, 1000.0
    probe = np.ones((16, 16), dtype=np.complex64)
    patches = (0.5 + 0.5 * rng.random((n, 16, 16))).astype(np.complex64)
    amplitudes = simulate_amplitudes(dose_scaled_probe(probe, patches, dose), patches, rng)
    totals = (amplitudes.astype(np.float64) ** 2).sum(axis=(-2, -1))
    assert amplitudes.dtype == np.float32
    assert np.allclose(amplitudes**2, np.rint(amplitudes**2), atol=1e-3)  # sqrt of whole counts
    assert abs(totals.mean() - dose) < 4 * np.sqrt(dose / n)
