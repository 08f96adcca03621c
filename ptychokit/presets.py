"""The study presets: every size and schedule knob of one synthetic study, in one frozen value."""

from __future__ import annotations

from dataclasses import dataclass, replace

VIEWS: dict[str, float] = {"dense": 0.7, "sparse": 0.2}  # view -> target overlap (STUDY.md §2)
SPLITS: tuple[str, ...] = ("train", "test")
GRIDSIZE_CHANNELS = 4  # gridsize 2 -> groups of C = 2 x 2 patterns
NEIGHBOURS_K = 7  # candidates a group's members are drawn from (must be >= C)
GROUPING_SEED = 123
SUBSAMPLING_SEED = 456


@dataclass(frozen=True)
class Preset:
    """Sizes of the simulation, the networks and the reconstruction for one named preset."""

    name: str
    patch_size: int  # N: probe and diffraction pattern are N x N
    object_size: int  # M: the object is M x M
    scan_step: float  # grid pitch of the scan in pixels, before jitter
    scan_jitter: float  # uniform jitter, +- pixels, rounded to whole pixels
    doses: tuple[int, ...]
    net_width: int  # channels of the first network stage
    net_latent: int  # width of the fully connected bottleneck
    baseline_steps: int  # optimizer steps of each model
    pinn_steps: int
    batch_size: int  # the baseline's patterns per step
    learning_rate: float  # the baseline's peak learning rate
    pinn_batch_size: int  # the PINN's groups per step: at low dose its gradient is mostly noise
    pinn_learning_rate: float
    pinn_groups: int  # gridsize-2 groups drawn per view for training (oversampling the positions)
    pinn_dropout: float  # on the PINN's code; its oversampled groups regularise it already
    warmup_steps: int  # linear learning-rate ramp at the start of every training
    patience: int  # training-log rows without progress before a training stops early (0: never)
    ptychi_algorithm: str  # Phase F's Pty-Chi method (ptychokit.ptychi_recon.ALGORITHMS)
    ptychi_epochs: int
    ptychi_batch: int
    ptychi_noise_model: str  # LSQML's: gaussian (what PtychoPINN's study sets) or poisson
    max_train_patterns: int  # cap on the patterns a network trains on (keeps CPU presets short)
    # Training seeds per view (the runner's `replicates`): each network is trained and compared once
    # per seed; the baseline takes as many as the view that has most.
    replicates: str = "1"

    def with_doses(self, doses: tuple[int, ...]) -> "Preset":
        return replace(self, doses=doses)


PRESETS: dict[str, Preset] = {
    # For tests and end-to-end runs: seconds on two CPU cores; the networks barely train.
    "tiny": Preset(
        name="tiny", patch_size=32, object_size=112, scan_step=5.0, scan_jitter=1.0,
        doses=(1000, 10000, 100000), net_width=8, net_latent=64, baseline_steps=30,
        pinn_steps=30, batch_size=16, learning_rate=1e-3, max_train_patterns=256,
        pinn_batch_size=16, pinn_learning_rate=1e-3, pinn_groups=256, pinn_dropout=0.0, warmup_steps=5,
        patience=0,
        ptychi_algorithm="LSQML", ptychi_epochs=20, ptychi_batch=16, ptychi_noise_model="poisson",
    ),
    # The README's main job, sized for two CPU cores. The object is large so that each view holds
    # thousands of positions (a network generalises from scanned area, not from more patterns of
    # the same area); the PINN takes large batches because at low dose its gradient is mostly
    # photon noise.
    "demo": Preset(
        name="demo", patch_size=32, object_size=640, scan_step=5.0, scan_jitter=1.0,
        doses=(1000, 10000, 100000), net_width=8, net_latent=256, baseline_steps=1000,
        pinn_steps=600, batch_size=32, learning_rate=1e-3, max_train_patterns=6000,
        pinn_batch_size=64, pinn_learning_rate=3e-3, pinn_groups=16000, pinn_dropout=0.0, warmup_steps=50,
        patience=0,
        ptychi_algorithm="LSQML", ptychi_epochs=30, ptychi_batch=96, ptychi_noise_model="poisson",
        # Three seeds of every network the dense view compares; the sparse view's PINN, the
        # slowest training, once (the demo's 15-minute budget on two cores).
        replicates="dense=3,sparse=1",
    ),
    # The real study's probe (N = 128) on an object large enough for views a network can learn from
    # (STUDY.md §2's 464 x 464 object leaves a few dozen positions per view). For a GPU.
    "full": Preset(
        name="full", patch_size=128, object_size=1920, scan_step=20.0, scan_jitter=1.0,
        doses=(1000, 10000, 100000), net_width=32, net_latent=512, baseline_steps=6000,
        pinn_steps=6000, batch_size=32, learning_rate=1e-3, max_train_patterns=6000,
        pinn_batch_size=64, pinn_learning_rate=2e-3, pinn_groups=20000, pinn_dropout=0.0, warmup_steps=200,
        patience=20,
        # Phase F as the study ran it: LSQML, 100 epochs, PtychoPINN's batch and noise model.
        ptychi_algorithm="LSQML", ptychi_epochs=100, ptychi_batch=96, ptychi_noise_model="gaussian",
        replicates="3",
    ),
}
