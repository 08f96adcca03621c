"""The network that maps diffraction amplitudes to object patches, for gridsize 1 and 2.

An encoder-decoder with a fully connected bottleneck: diffraction lives in reciprocal space, so
every output pixel depends on every input pixel, which convolutions alone cannot provide. The C
input channels are the C patterns of a group (1 for the baseline, 4 for gridsize 2); the output
is C complex patches, amplitude through a bounded sigmoid and phase through pi * tanh.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Architecture:
    """Everything needed to rebuild a `PatchNet` before loading its weights."""

    patch_size: int  # N
    channels: int  # C: patterns per group (gridsize squared)
    width: int  # channels of the first stage; doubled at each of the three down-samplings
    latent: int  # width of the fully connected bottleneck
    max_amplitude: float = 1.5  # object amplitude is a transmission: bounded, above zero

    def to_dict(self) -> dict:
        return asdict(self)


def _stage(c_in: int, c_out: int) -> nn.Sequential:
    # GroupNorm rather than BatchNorm: identical in training and inference, fine with small batches.
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(4, c_out), nn.SiLU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(4, c_out), nn.SiLU())


class PatchNet(nn.Module):
    """Diffraction amplitudes (B, C, N, N), already scaled, -> object patches (B, C, N, N) complex."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        if arch.patch_size % 8:
            raise ValueError(f"patch size {arch.patch_size} must be a multiple of 8")
        self.arch = arch
        w, c = arch.width, arch.channels
        self.encoder = nn.Sequential(
            _stage(c, w), nn.AvgPool2d(2), _stage(w, 2 * w), nn.AvgPool2d(2),
            _stage(2 * w, 4 * w), nn.AvgPool2d(2))
        self.coarse = arch.patch_size // 8
        features = 4 * w * self.coarse**2
        self.bottleneck = nn.Sequential(nn.Flatten(), nn.Linear(features, arch.latent), nn.SiLU(),
                                        nn.Linear(arch.latent, features), nn.SiLU())
        self.decoder = nn.Sequential(
            nn.Upsample(scale_factor=2), _stage(4 * w, 2 * w), nn.Upsample(scale_factor=2),
            _stage(2 * w, w), nn.Upsample(scale_factor=2), _stage(w, w))
        self.amplitude_head = nn.Conv2d(w, c, 3, padding=1)
        self.phase_head = nn.Conv2d(w, c, 3, padding=1)
        # Start from a plausible transmission (amplitude ~0.7, phase 0) instead of a random one.
        nn.init.zeros_(self.amplitude_head.weight)
        nn.init.constant_(self.amplitude_head.bias, _logit(0.7 / arch.max_amplitude))
        nn.init.zeros_(self.phase_head.weight)
        nn.init.zeros_(self.phase_head.bias)

    def forward(self, diffraction: torch.Tensor) -> torch.Tensor:
        coded = self.encoder(diffraction)
        coded = self.bottleneck(coded).reshape(coded.shape)
        decoded = self.decoder(coded)
        amplitude = self.arch.max_amplitude * torch.sigmoid(self.amplitude_head(decoded))
        phase = math.pi * torch.tanh(self.phase_head(decoded))
        return torch.polar(amplitude, phase)


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))
