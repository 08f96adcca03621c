"""Device discovery and the slot pool: which GPU (or CPU) each job may use.

A slot is one seat on one device; a device has `jobs_per_gpu` seats. The pool hands out a free
seat and takes it back, so no device ever runs more jobs than it has seats.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass


class SlotError(Exception):
    """The --gpus setting cannot be satisfied."""


@dataclass(frozen=True)
class Device:
    visible_id: str  # the value for CUDA_VISIBLE_DEVICES ('' = no GPU)
    uuid: str | None = None


@dataclass(frozen=True)
class Slot:
    name: str  # e.g. 'gpu0.1' (device 0, seat 1) or 'cpu2'
    device: Device


def query_nvidia_smi() -> list[Device]:
    """GPUs listed by nvidia-smi (index and UUID), or none when it is absent or fails."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,uuid", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    devices = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[0].isdigit():
            devices.append(Device(parts[0], parts[1]))
    return devices


def parse_gpus(spec: str, environ: dict[str, str] | None = None) -> list[Device]:
    """--gpus auto|none|LIST -> devices. auto: CUDA_VISIBLE_DEVICES, else nvidia-smi, else none."""
    environ = os.environ if environ is None else environ
    spec = spec.strip()
    if spec == "none":
        return []
    if spec == "auto":
        visible = environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None:
            tokens = [t.strip() for t in visible.split(",") if t.strip()]
            # CUDA stops at the first invalid entry, such as -1: what follows it is hidden too.
            valid = []
            for token in tokens:
                if not _valid_token(token):
                    break
                valid.append(token)
            return _with_uuids(valid)
        return query_nvidia_smi()
    tokens = [t.strip() for t in spec.split(",")]
    for token in tokens:
        if not _valid_token(token):
            raise SlotError(f"--gpus: {token!r} is not a GPU index or UUID; "
                            "use auto, none, or a list such as 0,1 or GPU-<uuid>")
    if len(set(tokens)) != len(tokens):
        raise SlotError(f"--gpus lists a device twice: {spec}")
    return _with_uuids(tokens)


def _valid_token(token: str) -> bool:
    return bool(re.fullmatch(r"\d+|(GPU|MIG)-[0-9A-Za-z/_.-]+", token))


def _with_uuids(tokens: list[str]) -> list[Device]:
    """Attach the UUID of each index when nvidia-smi knows it (for the ledger)."""
    known = {d.visible_id: d.uuid for d in query_nvidia_smi()} if any(t.isdigit() for t in tokens) else {}
    return [Device(t, t if not t.isdigit() else known.get(t)) for t in tokens]


def build_slots(devices: list[Device], jobs_per_gpu: int, max_parallel: int | None) -> list[Slot]:
    """Seats for every device, or CPU seats when there is no GPU; max_parallel caps the total."""
    if devices:
        slots = [Slot(f"gpu{d.visible_id}.{seat}" if len(d.visible_id) < 8 else f"{d.visible_id[:12]}.{seat}", d)
                 for seat in range(jobs_per_gpu) for d in devices]
        return slots[:max_parallel] if max_parallel else slots
    return [Slot(f"cpu{i}", Device("")) for i in range(max_parallel or 1)]


class SlotPool:
    """Free seats; a job takes one and gives it back when its attempt ends."""

    def __init__(self, slots: list[Slot]) -> None:
        self.slots = list(slots)
        self._free = list(slots)  # seat 0 of every device first: spread jobs over devices

    def has_free(self) -> bool:
        return bool(self._free)

    def take(self) -> Slot:
        return self._free.pop(0)

    def give_back(self, slot: Slot) -> None:
        # Keep the original order so the least-loaded devices are chosen first.
        self._free.append(slot)
        self._free.sort(key=self.slots.index)
