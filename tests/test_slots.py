"""Device discovery (--gpus) and the slot pool."""

import os
import stat

import pytest

from runner.slots import Device, SlotError, SlotPool, build_slots, parse_gpus, seat_costs


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


def test_phase_weights_give_each_device_lcm_seats_and_a_job_its_share_on_one_device():
    weights = {"E": 1, "F": 2, "G": 4}
    slots = build_slots([Device("0"), Device("1")], weights, max_parallel=None)
    assert len(slots) == 8  # lcm(1, 2, 4) = 4 seats per GPU
    pool = SlotPool(slots, seat_costs(weights, on_gpu=True))
    assert [pool.cost(p) for p in "EFG"] == [4, 2, 1]
    training = pool.take(pool.cost("E"))  # a whole GPU
    reconstructions = [pool.take(pool.cost("F")) for _ in range(2)]  # share the other one
    assert {r.device for r in reconstructions} == {Device("1")} != {training.device}
    assert not pool.has_free(pool.cost("G"))  # both devices are full
    pool.give_back(reconstructions[0])
    assert not pool.has_free(pool.cost("E")) and pool.has_free(pool.cost("F"))
    comparisons = [pool.take(pool.cost("G")) for _ in range(2)]
    assert {c.device for c in comparisons} == {Device("1")} and len({c.name for c in comparisons}) == 2
    assert not pool.has_free(1)


def test_on_the_cpu_every_phase_takes_one_slot_and_max_jobs_caps_the_count():
    weights = {"E": 1, "F": 2, "G": 4}
    assert seat_costs(weights, on_gpu=False) == {"E": 1, "F": 1, "G": 1}
    pool = SlotPool(build_slots([Device("0")], weights, max_parallel=None), seat_costs(weights, True), max_jobs=2)
    pool.take(1), pool.take(1)
    assert not pool.has_free(1)  # seats are left, but two jobs run
