"""The network that maps diffraction amplitudes to object patches, for gridsize 1 and 2.

A fully connected encoder and a convolutional decoder, in the manner of AUTOMAP: diffraction lives
in reciprocal space, so every output pixel depends on every input pixel, which a convolutional
encoder only reaches after many layers (and many training steps). The C
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
    dropout: float = 0.2  # on the encoder's code: the dense layer overfits small scans otherwise

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
        # The mean scaled pattern of the training data, removed from every input: the patterns share
        # a bright central disc, and only their differences carry the object. A buffer, so it is
        # saved with the weights and inference cannot forget it.
        self.register_buffer("input_mean", torch.zeros(arch.patch_size, arch.patch_size))
        self.coarse = arch.patch_size // 8
        self.coarse_shape = (4 * w, self.coarse, self.coarse)
        self.encoder = nn.Sequential(
            nn.Flatten(), nn.Linear(c * arch.patch_size**2, arch.latent), nn.SiLU(), nn.Dropout(arch.dropout),
            nn.Linear(arch.latent, 4 * w * self.coarse**2), nn.SiLU())
        self.decoder = nn.Sequential(
            nn.Upsample(scale_factor=2), _stage(4 * w, 2 * w), nn.Upsample(scale_factor=2),
            _stage(2 * w, w), nn.Upsample(scale_factor=2), _stage(w, w))
        self.amplitude_head = nn.Conv2d(w, c, 3, padding=1)
        self.phase_head = nn.Conv2d(w, c, 3, padding=1)
        # Start near a plausible transmission (amplitude ~0.7, phase ~0). The head weights are
        # small, not zero: zero weights would block every gradient into the body at the start.
        for head in (self.amplitude_head, self.phase_head):
            head.weight.data.mul_(0.1)
        nn.init.constant_(self.amplitude_head.bias, _logit(0.7 / arch.max_amplitude))
        nn.init.zeros_(self.phase_head.bias)

    def forward(self, diffraction: torch.Tensor) -> torch.Tensor:
        coded = self.encoder(diffraction - self.input_mean).reshape(-1, *self.coarse_shape)
        decoded = self.decoder(coded)
        amplitude = self.arch.max_amplitude * torch.sigmoid(self.amplitude_head(decoded))
        phase = math.pi * torch.tanh(self.phase_head(decoded))
        return torch.polar(amplitude, phase)


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))
