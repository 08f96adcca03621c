"""Saving a training's resumable state, and one training step, at the `full` preset's size on CPU.

    python benchmarks/checkpoint_save.py [--saves 5] [--batch 64] [--max-step-seconds 60]

Builds the full preset's PINN (Architecture(128, 4, 32, 512)) and Adam after one step on random
input (so its moments exist), then times ptychokit.resume's atomic save of the whole training
state (state_of, then torch.save into a temporary file, fsync, rename, fsync of the folder) into a
temporary folder ($TMPDIR: point it at the study's disk): the median of --saves saves, and the
file's size. Then times one PINN training step (forward model and Poisson loss included) on
random data: at --batch if a step at batch 8 predicts it under --max-step-seconds, else at 8,
scaled linearly to --batch. A stopped training finishes its current step and then saves, so the
runner's grace period between SIGTERM and SIGKILL (default 30 s) must cover the two together.
Threads: torch's default, or OMP_NUM_THREADS.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from benchmarks.common import machine, median  # noqa: E402
from ptychokit.device import configure_threads  # noqa: E402
from ptychokit.networks import Architecture, PatchNet  # noqa: E402
from ptychokit.presets import GRIDSIZE_CHANNELS, PRESETS  # noqa: E402
from ptychokit.resume import STATE_FILE, save_state, state_of  # noqa: E402
from ptychokit.training import Fit, pinn_loss, training_step  # noqa: E402

PRESET = PRESETS["full"]


def random_batch(size: int) -> tuple[torch.Tensor, ...]:
    n = PRESET.patch_size
    amplitudes = torch.rand(size, GRIDSIZE_CHANNELS, n, n) * 3
    offsets = torch.randint(-12, 13, (size, GRIDSIZE_CHANNELS, 2))
    offsets[:, 0] = 0  # the anchor
    y, x = torch.meshgrid(torch.arange(n) - n / 2, torch.arange(n) - n / 2, indexing="ij")
    probe = torch.polar(torch.exp(-(x**2 + y**2) / (2 * (n / 6) ** 2)), 0.01 * (x**2 + y**2)).to(torch.complex64)
    return amplitudes, amplitudes**2, offsets, probe * 30


def timed_step(model: PatchNet, optimizer: torch.optim.Optimizer, size: int) -> float:
    batch = random_batch(size)
    started = time.perf_counter()
    training_step(model, optimizer, pinn_loss, batch)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--saves", type=int, default=5)
    parser.add_argument("--batch", type=int, default=PRESET.pinn_batch_size)
    parser.add_argument("--max-step-seconds", type=float, default=60.0)
    args = parser.parse_args()
    threads = configure_threads()
    torch.manual_seed(0)
    arch = Architecture(PRESET.patch_size, GRIDSIZE_CHANNELS, PRESET.net_width, PRESET.net_latent,
                        dropout=PRESET.pinn_dropout)
    model = PatchNet(arch)
    optimizer = torch.optim.Adam(model.parameters(), lr=PRESET.pinn_learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    model.train()
    small = 8
    first = timed_step(model, optimizer, small)  # Adam's state exists from here on
    schedule.step()
    fit = Fit(model, optimizer, schedule, torch.Generator().manual_seed(1), step=1,
              epoch_start=torch.Generator().manual_seed(1).get_state(), epoch_batches=1,
              log=[{"step": 50 * row, "loss": 1.0 / row} for row in range(1, 121)], losses=[1.0] * 49)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"{machine()}, torch {torch.__version__}, {threads} thread(s)")
    print(f"full preset PINN: {arch}, {parameters / 1e6:.1f} M parameters")

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / STATE_FILE
        seconds = []
        for _ in range(args.saves):
            started = time.perf_counter()
            save_state(path, state_of(fit, {"benchmark": True}))
            seconds.append(time.perf_counter() - started)
        size = path.stat().st_size
    print(f"training state: {size / 1e6:.1f} MB, saved atomically in {median(seconds):.2f} s "
          f"(median of {args.saves}; min {min(seconds):.2f}, max {max(seconds):.2f}), in {tempfile.gettempdir()}")

    step_small = min(timed_step(model, optimizer, small) for _ in range(2))
    predicted = step_small * args.batch / small
    if predicted <= args.max_step_seconds:
        step = timed_step(model, optimizer, args.batch)
        print(f"one training step at batch {args.batch}: {step:.2f} s "
              f"(batch {small}: {step_small:.2f} s; the first step, with warm-up: {first:.2f} s)")
    else:
        step = predicted
        print(f"one training step at batch {args.batch}: ~{step:.1f} s, scaled from {step_small:.2f} s at "
              f"batch {small} (over --max-step-seconds to run)")
    print(f"a stop's worst case, the current step and then the save: ~{step + median(seconds):.1f} s")


if __name__ == "__main__":
    main()
