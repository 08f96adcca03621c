"""Shared pieces of the benchmarks: a study tree generator that needs only the standard library,
and a way to run a command and learn its wall time, CPU time and peak memory.

The generated tree has every input the planner checks, in the real layout; only the Phase D view
files carry content (a real NPZ holding the `_metadata` JSON string the runner reads). The other
files are a few bytes: the benchmarks launch `true` or a fake compare script, never the real one.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VIEWS, SPLITS = ("dense", "sparse"), ("train", "test")


def runner_env(**more: str) -> dict[str, str]:
    """The environment of a runner under test: this checkout's code, no GPU pinning inherited."""
    env = dict(os.environ)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(more)
    return env


def runner_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "runner", *args]


def _npy_string(text: str) -> bytes:
    """A .npy file holding one unicode string, as numpy writes np.array(text)."""
    width = max(1, len(text))
    header = f"{{'descr': '<U{width}', 'fortran_order': False, 'shape': (), }}"
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return (b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1")
            + text.ljust(width, "\0").encode("utf-32-le"))


def make_tree(root: Path, doses: list[int]) -> Path:
    """A study with one job per (dose, view, split): 4 * len(doses) jobs."""
    for dose in doses:
        c = root / f"phase_c/dose_{dose}"
        c.mkdir(parents=True, exist_ok=True)
        for split in SPLITS:
            (c / f"patched_{split}.npz").write_bytes(b"test data")
        for folder in ("baseline/gs1", "dense/gs2", "sparse/gs2"):
            model = root / f"phase_e/dose_{dose}/{folder}"
            model.mkdir(parents=True, exist_ok=True)
            (model / "model.pt").write_bytes(b"weights")
        for view in VIEWS:
            d = root / f"phase_d/dose_{dose}/{view}"
            d.mkdir(parents=True, exist_ok=True)
            for split in SPLITS:
                meta = {"overlap_view": view, "selection_strategy": "direct" if view == "dense" else "greedy",
                        "acceptance_rate": 0.75, "spacing_threshold": 38.4, "n_accepted": 3, "n_rejected": 1}
                with zipfile.ZipFile(d / f"{view}_{split}.npz", "w") as npz:
                    npz.writestr("diffraction.npy", b"\x93NUMPY")
                    npz.writestr("_metadata.npy", _npy_string(json.dumps(meta)))
                f = root / f"phase_f/dose_{dose}/{view}/{split}"
                f.mkdir(parents=True, exist_ok=True)
                (f / "ptychi_reconstruction.npz").write_bytes(b"reconstruction")
    return root


@dataclass(frozen=True)
class Measured:
    wall_s: float
    cpu_s: float  # user + system of the command and every child it waited for
    max_rss_mb: float  # the largest resident set among them (the runner, for the runner)
    returncode: int
    stdout: str


def measure(argv: list[str], env: dict | None = None, cwd: Path | None = None,
            stdout_to: Path | None = None) -> Measured:
    """Run `argv` to completion; wait4 gives its own resource usage, not the benchmark's."""
    out = open(stdout_to, "w") if stdout_to else subprocess.PIPE
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.PIPE, text=True)
    text = "" if stdout_to else process.stdout.read()
    err = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if stdout_to:
        out.close()
    if process.returncode != 0:
        sys.stderr.write(err[-2000:])
    return Measured(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, process.returncode, text)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cores} cores, {cpu_model()}, Python {sys.version.split()[0]}"


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
