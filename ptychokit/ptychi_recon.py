"""Phase F through Pty-Chi (the `ptychi` package): one view's diffraction in, object and probe out.

Pty-Chi is the PyTorch ptychography library PtychoPINN's own Phase F runs. This module owns how our
data meet it; `scripts/reconstruct_ptychi.py` is its command line and `pipeline.phase_f` calls it
for every (dose, view, split). What has to be translated:

- Our NPZs hold amplitudes; Pty-Chi wants intensities (squared), zero frequency at the centre
  (its `fft_shift` default).
- Its far-field FFT is unnormalised, ours orthonormal: the probe goes in divided by N and comes
  out multiplied by N, so |FFT_ortho(probe * patch)|^2 stays in counts.
- Positions: our (x, y) are patch centres in object pixels (a patch covers y - N/2 ... y + N/2 - 1).
  Pty-Chi's patch at position p starts at p - (N - 1)/2 of its buffer, so the buffer is the object
  with PAD pixels on each side and the origin is set explicitly to PAD - 1/2: our positions go in
  unchanged, and PAD is cropped off the result.
- The object starts flat (ones), never from `objectGuess`: in our studies that is the ground truth.

`ptychi` imports `torchvision` at the top of `ptychi/utils.py` for `GaussianBlur`, which only a
helper that makes random test images uses. On a CPU machine the torchvision that pairs with our
torch cannot be installed (README, "Pty-Chi"), so when torchvision is absent a stand-in offering
that one name is put in place for the import and taken away again; the stand-in raises if called.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import sys
import time
import types
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch

from ptychokit.npz_io import PtychoData

log = logging.getLogger(__name__)

PAD = 2  # object pixels around the scanned frame: the sub-pixel patch extractor reads a margin
# Our spelling -> Pty-Chi's options class. PIE and ePIE differ in the step's denominator.
ALGORITHMS = {"LSQML": "LSQMLOptions", "PIE": "PIEOptions", "ePIE": "EPIEOptions", "DM": "DMOptions"}
NOISE_MODELS = ("gaussian", "poisson")
DM_CHUNK_LENGTH = 128  # DM's default of 1 runs its exit-wave update in a Python loop per position


class PtychiUnavailable(RuntimeError):
    """ptychi (or something it imports) cannot be imported; the message says what to install."""


def canonical_algorithm(name: str) -> str:
    """'lsqml', 'EPIE', 'epie' ... -> the key of ALGORITHMS; ValueError for an unknown one."""
    for key in ALGORITHMS:
        if key.lower() == name.lower():
            return key
    raise ValueError(f"unknown algorithm {name!r} (choose {', '.join(ALGORITHMS)})")


@dataclass(frozen=True)
class PtychiSettings:
    algorithm: str = "LSQML"
    num_epochs: int = 100
    batch_size: int = 96
    noise_model: str = "gaussian"  # LSQML only; "poisson" is the better one at low dose
    refine_probe: bool = False  # the study's probeGuess is the true probe
    step_size: float = 0.1  # PIE/ePIE object and probe step (alpha), Pty-Chi's default; 1 overshoots
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "algorithm", canonical_algorithm(self.algorithm))
        if self.noise_model not in NOISE_MODELS:
            raise ValueError(f"unknown noise model {self.noise_model!r} (choose {', '.join(NOISE_MODELS)})")
        if self.num_epochs < 1 or self.batch_size < 1:
            raise ValueError("num_epochs and batch_size must be positive")

    @property
    def label(self) -> str:
        """The NPZ's `algorithm`: names the library and the method (read by compare_models)."""
        extra = f", {self.noise_model} noise" if self.algorithm == "LSQML" else ""
        return f"pty-chi {self.algorithm} ({self.num_epochs} epochs{extra})"


@dataclass
class PtychiResult:
    object: np.ndarray  # (M, M) complex64 in the object frame
    probe: np.ndarray  # (N, N) complex64, in our (orthonormal) scaling
    algorithm: str
    cost_history: list[float] = field(default_factory=list)  # Pty-Chi's loss per epoch
    elapsed_s: float = 0.0


class _BlurStandIn:
    """Stands in for torchvision.transforms.GaussianBlur, which reconstruction never calls."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(
            "torchvision is not installed: ptychokit gave ptychi a stand-in for GaussianBlur, which "
            "only ptychi's random-image helper uses; install torchvision to use that helper")


@contextlib.contextmanager
def _torchvision_stand_in() -> Iterator[None]:
    """torchvision and torchvision.transforms in sys.modules for the length of an import."""
    package = types.ModuleType("torchvision")
    package.__path__ = []  # a package, so the submodule import resolves
    transforms = types.ModuleType("torchvision.transforms")
    transforms.GaussianBlur = _BlurStandIn
    package.transforms = transforms
    package.__ptychokit_stand_in__ = True
    stand_ins = {"torchvision": package, "torchvision.transforms": transforms}
    sys.modules.update(stand_ins)
    try:
        yield
    finally:
        for name, module in stand_ins.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]


def load_ptychi() -> types.ModuleType:
    """`ptychi.api` (with `ptychi.api.task` loaded), with the torchvision stand-in when needed."""
    if "ptychi.api.task" in sys.modules:
        return sys.modules["ptychi.api"]
    stand_in = importlib.util.find_spec("torchvision") is None
    try:
        with _torchvision_stand_in() if stand_in else contextlib.nullcontext():
            api = importlib.import_module("ptychi.api")
            importlib.import_module("ptychi.api.task")
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] == "ptychi":
            raise PtychiUnavailable("ptychi is not installed (`make setup` installs it; see the README)") from exc
        raise PtychiUnavailable(f"ptychi cannot be imported: it needs {exc.name}, which is not installed "
                                "(see the README's Pty-Chi set-up)") from exc
    except ImportError as exc:
        raise PtychiUnavailable(f"ptychi cannot be imported ({exc}); see the README's Pty-Chi set-up") from exc
    except RuntimeError as exc:  # a torchvision built for another torch: "operator torchvision::nms ..."
        raise PtychiUnavailable(f"ptychi cannot be imported ({exc}): the installed torchvision does not "
                                "match this torch; uninstall it (see the README)") from exc
    return api


def _options(api: types.ModuleType, settings: PtychiSettings, n_images: int) -> Any:
    options = getattr(api, ALGORITHMS[settings.algorithm])()
    recon = options.reconstructor_options
    recon.num_epochs = settings.num_epochs
    recon.batch_size = min(settings.batch_size, n_images)
    recon.random_seed = settings.seed
    recon.default_device = api.Devices.GPU if settings.device.startswith("cuda") else api.Devices.CPU
    if settings.algorithm == "LSQML":
        recon.noise_model = getattr(api.NoiseModels, settings.noise_model.upper())
    elif settings.algorithm in ("PIE", "ePIE"):
        options.object_options.alpha = options.probe_options.alpha = settings.step_size
    else:  # DM
        recon.chunk_length = min(DM_CHUNK_LENGTH, n_images)
    options.probe_options.optimizable = settings.refine_probe
    options.probe_position_options.optimizable = False
    options.object_options.determine_position_origin_coords_by = \
        api.ObjectPosOriginCoordsMethods.SPECIFIED
    options.object_options.position_origin_coords = (PAD - 0.5, PAD - 0.5)
    return options


def build_task(data: PtychoData, object_shape: tuple[int, int], settings: PtychiSettings,
               start: np.ndarray | None = None) -> Any:
    """A Pty-Chi task for one view, ready to run; `start` is the initial object (default flat).

    Pty-Chi sets torch's default device while it builds and runs; the caller restores it.
    """
    api = load_ptychi()
    from ptychi.api.task import PtychographyTask

    size = data.patch_size
    height, width = object_shape
    initial = np.ones((1, height + 2 * PAD, width + 2 * PAD), dtype=np.complex64)
    if start is not None:
        initial[0, PAD:PAD + height, PAD:PAD + width] = start
    return PtychographyTask(_options(api, settings, data.diffraction.shape[0]),
                            diffraction_data=np.square(data.diffraction.astype(np.float32)),
                            object_data=initial, probe_data=(data.probe.astype(np.complex64) / size)[None, None],
                            probe_position_x_px=data.xcoords.astype(np.float32),
                            probe_position_y_px=data.ycoords.astype(np.float32))


def reconstruct(data: PtychoData, object_shape: tuple[int, int], settings: PtychiSettings) -> PtychiResult:
    """Object (in the `object_shape` frame) and probe from one view's amplitudes at known positions."""
    height, width = object_shape
    previous_device = torch.get_default_device()
    started = time.perf_counter()
    try:
        task = build_task(data, object_shape, settings)
        task.run()
        obj = task.get_data_to_cpu("object", as_numpy=True)[0, PAD:PAD + height, PAD:PAD + width]
        prb = task.get_data_to_cpu("probe", as_numpy=True)[0, 0] * data.patch_size
        losses = [float(v) for v in task.reconstructor.loss_tracker.table["loss"]]
    finally:
        torch.set_default_device(previous_device)
    elapsed = time.perf_counter() - started
    return PtychiResult(object=np.ascontiguousarray(obj, dtype=np.complex64),
                        probe=np.ascontiguousarray(prb, dtype=np.complex64), algorithm=settings.label,
                        cost_history=losses, elapsed_s=elapsed)
