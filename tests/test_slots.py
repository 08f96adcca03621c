"""Device discovery (--gpus) and the slot pool."""

import os
import stat

import pytest

from runner.slots import Device, SlotError, SlotPool, build_slots, parse_gpus


@pytest.fixture
def fake_nvidia_smi(tmp_path, monkeypatch):
    """An nvidia-smi on PATH that lists two GPUs."""
    script = tmp_path / "bin" / "nvidia-smi"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\necho '0, GPU-aaaa-1111'\necho '1, GPU-bbbb-2222'\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")
    return script


def test_auto_prefers_cuda_visible_devices(fake_nvidia_smi):
    devices = parse_gpus("auto", {"CUDA_VISIBLE_DEVICES": "1"})
    assert devices == [Device("1", "GPU-bbbb-2222")]


def test_auto_with_empty_or_invalid_visible_devices_means_no_gpu(fake_nvidia_smi):
    assert parse_gpus("auto", {"CUDA_VISIBLE_DEVICES": ""}) == []
    assert parse_gpus("auto", {"CUDA_VISIBLE_DEVICES": "-1"}) == []
    assert parse_gpus("auto", {"CUDA_VISIBLE_DEVICES": "0,-1,1"}) == [Device("0", "GPU-aaaa-1111")]


def test_auto_falls_back_to_nvidia_smi(fake_nvidia_smi):
    assert parse_gpus("auto", {}) == [Device("0", "GPU-aaaa-1111"), Device("1", "GPU-bbbb-2222")]


def test_auto_without_nvidia_smi_means_cpu(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert parse_gpus("auto", {}) == []


def test_explicit_list_of_indices_and_uuids(fake_nvidia_smi):
    assert parse_gpus("0,GPU-ffff") == [Device("0", "GPU-aaaa-1111"), Device("GPU-ffff", "GPU-ffff")]
    assert parse_gpus("none") == []


@pytest.mark.parametrize("spec", ["gpu0", "0,,1", "all", "0,0", "-1"])
def test_unknown_gpu_tokens_are_refused(spec):
    with pytest.raises(SlotError):
        parse_gpus(spec)


def test_jobs_per_gpu_gives_k_seats_per_device_spread_first():
    slots = build_slots([Device("0"), Device("1")], jobs_per_gpu=2, max_parallel=None)
    assert [s.name for s in slots] == ["gpu0.0", "gpu1.0", "gpu0.1", "gpu1.1"]
    pool = SlotPool(slots)
    first, second = pool.take(), pool.take()
    assert {first.device.visible_id, second.device.visible_id} == {"0", "1"}


def test_cpu_slots_follow_max_parallel_and_hide_gpus():
    slots = build_slots([], jobs_per_gpu=4, max_parallel=3)
    assert [s.name for s in slots] == ["cpu0", "cpu1", "cpu2"]
    assert {s.device.visible_id for s in slots} == {""}


def test_pool_never_hands_out_a_seat_twice():
    pool = SlotPool(build_slots([Device("0")], jobs_per_gpu=1, max_parallel=None))
    seat = pool.take()
    assert not pool.has_free()
    pool.give_back(seat)
    assert pool.take() == seat
