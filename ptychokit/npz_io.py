"""The NPZ contracts of STUDY.md §4: patched data (Phase C/D) and reconstructions (Phase F).

Everything is written without pickling, so every file opens with numpy's default allow_pickle=False;
the Phase D metadata is a plain unicode string holding JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class PtychoData:
    """One set of scan positions and their diffraction (amplitudes, not intensities)."""

    diffraction: np.ndarray  # (n, N, N) float32, sqrt(counts)
    probe: np.ndarray  # (N, N) complex64, scaled so |FFT_ortho(probe * patch)|^2 is in counts
    xcoords: np.ndarray  # (n,) float64, patch centre column in object pixels
    ycoords: np.ndarray  # (n,) float64, patch centre row in object pixels
    object: np.ndarray | None = None  # (M, M) complex64 ground truth
    patches: np.ndarray | None = None  # (n, N, N) complex64 ground-truth object patches (`Y`)
    scan_index: np.ndarray | None = None  # (n,) int64, index into the full Phase C scan
    metadata: dict[str, Any] | None = None  # `_metadata`: Phase C provenance or Phase D selection

    @property
    def patch_size(self) -> int:
        return int(self.diffraction.shape[-1])

    def subset(self, indices: np.ndarray) -> "PtychoData":
        """The same data restricted to `indices` (the object and probe are shared)."""
        pick = lambda array: None if array is None else array[indices]  # noqa: E731
        return replace(self, diffraction=self.diffraction[indices], xcoords=self.xcoords[indices],
                       ycoords=self.ycoords[indices], patches=pick(self.patches),
                       scan_index=pick(self.scan_index))


def write_ptycho_npz(path: Path, data: PtychoData) -> None:
    """Write the §4 keys; `_metadata` only when the data carries metadata (Phase C or D)."""
    arrays: dict[str, np.ndarray] = {
        "diffraction": data.diffraction.astype(np.float32),
        "probeGuess": data.probe.astype(np.complex64),
        "xcoords": data.xcoords.astype(np.float64),
        "ycoords": data.ycoords.astype(np.float64),
        # The scan has no separate start positions; the twins exist for readers that want them.
        "xcoords_start": data.xcoords.astype(np.float64),
        "ycoords_start": data.ycoords.astype(np.float64),
    }
    if data.object is not None:
        arrays["objectGuess"] = data.object.astype(np.complex64)
    if data.patches is not None:
        arrays["Y"] = data.patches.astype(np.complex64)
    if data.scan_index is not None:
        arrays["scan_index"] = data.scan_index.astype(np.int64)
    if data.metadata is not None:
        arrays["_metadata"] = np.array(json.dumps(data.metadata))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def read_ptycho_npz(path: str | Path) -> PtychoData:
    """Read a Phase C or Phase D NPZ (also the older `diff3d` key for the diffraction)."""
    with np.load(path) as npz:
        keys = set(npz.files)
        diffraction_key = "diffraction" if "diffraction" in keys else "diff3d"
        optional = lambda key: npz[key] if key in keys else None  # noqa: E731
        metadata = json.loads(str(npz["_metadata"])) if "_metadata" in keys else None
        return PtychoData(
            diffraction=npz[diffraction_key].astype(np.float32),
            probe=npz["probeGuess"].astype(np.complex64),
            xcoords=npz["xcoords"].astype(np.float64),
            ycoords=npz["ycoords"].astype(np.float64),
            object=optional("objectGuess"),
            patches=optional("Y"),
            scan_index=optional("scan_index"),
            metadata=metadata,
        )


# What reading a missing, truncated, foreign or incomplete NPZ raises.
READ_ERRORS = (KeyError, ValueError, OSError, EOFError)


def read_error_line(what: str, path: str | Path, exc: BaseException) -> str:
    """One line saying why `what` at `path` could not be read, from the exception reading it raised
    (numpy's KeyError says "'x is not a file in the archive'": only the key is kept)."""
    if isinstance(exc, FileNotFoundError):
        return f"{what} {path} does not exist"
    if isinstance(exc, KeyError):
        key = str(exc.args[0]).split(" is not a file")[0].strip("'\"")
        return f"{what} {path} lacks the key '{key}'"
    return f"{what} {path} cannot be read ({exc})"


def read_view_metadata(path: str | Path) -> dict[str, Any] | None:
    """The Phase D `_metadata` of a view NPZ, or None when the file has none."""
    with np.load(path) as npz:
        return json.loads(str(npz["_metadata"])) if "_metadata" in npz.files else None


@dataclass(frozen=True)
class Reconstruction:
    """A Phase F result: object in the full object frame, the refined probe, how it was made."""

    object: np.ndarray  # (M, M) complex64
    probe: np.ndarray  # (N, N) complex64
    algorithm: str
    elapsed_s: float | None = None
    iterations: int | None = None


def write_reconstruction(path: Path, result: Reconstruction, extra: dict[str, np.ndarray]) -> None:
    arrays = {
        "reconstructed_object": result.object.astype(np.complex64),
        "reconstructed_probe": result.probe.astype(np.complex64),
        "algorithm": np.array(result.algorithm),
        "computation_time_s": np.array(result.elapsed_s if result.elapsed_s is not None else np.nan),
        "n_iterations": np.array(result.iterations if result.iterations is not None else -1),
        **extra,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def read_reconstruction(path: str | Path) -> Reconstruction:
    """Read a Phase F `ptychi_reconstruction.npz` (timing and iterations when present)."""
    with np.load(path) as npz:
        keys = set(npz.files)
        elapsed = float(npz["computation_time_s"]) if "computation_time_s" in keys else None
        iterations = int(npz["n_iterations"]) if "n_iterations" in keys else None
        return Reconstruction(
            object=npz["reconstructed_object"].astype(np.complex64),
            probe=npz["reconstructed_probe"].astype(np.complex64),
            algorithm=str(npz["algorithm"]) if "algorithm" in keys else "unknown",
            elapsed_s=elapsed, iterations=iterations,
        )
