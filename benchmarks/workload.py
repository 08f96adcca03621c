"""The workload itself: seconds per compare_models comparison on the demo study, CPU (and GPU).

    python benchmarks/workload.py [--study DIR] [--conditions 2] [--full]

--study points at a generated demo study (read only: outputs go to a temporary folder); without
it the demo preset is generated first (scripts/make_synthetic_study.py, about 2 minutes on 2
cores). The first N conditions of the plan run one after the other, each alone on the machine,
with the exact command line the runner would launch; the figure is the median wall time.
With a GPU, the demo comparisons also run on it, and --full generates the `full` preset (on the
GPU) and compares one of its conditions on GPU and on CPU. Without a GPU those are skipped, and
the script says so.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import REPO, machine, median  # noqa: E402
from runner.app import planned  # noqa: E402
from runner.config import load  # noqa: E402
from runner.ptycho import STUDY  # noqa: E402


def gpu_available() -> bool:
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                           capture_output=True, text=True, cwd=REPO)
    return probe.stdout.strip() == "True"


def generate(out: Path, preset: str, device: str) -> None:
    started = time.perf_counter()
    subprocess.run([sys.executable, "scripts/make_synthetic_study.py", "--out", str(out), "--preset", preset,
                    "--device", device], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    print(f"generated the {preset} preset in {time.perf_counter() - started:.0f} s", flush=True)


def compare(study: Path, artifacts: Path, conditions: int, device: str) -> list[float]:
    """Wall seconds of each of the first `conditions` comparisons of the plan on `device`."""
    _, settings = load({"study_root": str(study), "artifact_root": str(artifacts)}, STUDY, Path.cwd())
    jobs = [j for j in planned(STUDY, settings) if not j.blocked_reason][:conditions]
    cores = len(os.sched_getaffinity(0))
    # As the runner launches a job alone on the machine: every core, and no GPU for a CPU job.
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="0" if device == "cuda" else "", PYTHONUNBUFFERED="1",
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", str(cores)))
    walls = []
    for job in jobs:
        job.output_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with open(job.output_dir / f"{device}.log", "w") as log:
            result = subprocess.run(job.argv, cwd=job.cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        walls.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise SystemExit(f"{job.key} on {device} exited {result.returncode}; log {job.output_dir}/{device}.log")
        print(f"  {job.key:24s} {device}: {walls[-1]:6.1f} s", flush=True)
    return walls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, help="a generated demo study (read only)")
    parser.add_argument("--conditions", type=int, default=2)
    parser.add_argument("--full", action="store_true", help="on a GPU machine, also the full preset, GPU vs CPU")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="runner-workload-"))
    try:
        study = args.study.resolve() if args.study else work / "demo_study"
        if not args.study:
            generate(study, "demo", "cpu")
        gpu = gpu_available()
        print(f"demo preset, {args.conditions} comparisons, one at a time, {machine()}")
        cpu = compare(study, work / "cpu", args.conditions, "cpu")
        lines = [f"  demo, CPU   {median(cpu):6.1f} s per comparison"]
        if gpu:
            cuda = compare(study, work / "cuda", args.conditions, "cuda")
            lines.append(f"  demo, GPU   {median(cuda):6.1f} s per comparison")
            if args.full:
                full = work / "full_study"
                generate(full, "full", "cuda")
                full_gpu = compare(full, work / "full-cuda", 1, "cuda")
                full_cpu = compare(full, work / "full-cpu", 1, "cpu")
                lines.append(f"  full, GPU   {median(full_gpu):6.1f} s per comparison")
                lines.append(f"  full, CPU   {median(full_cpu):6.1f} s per comparison "
                             f"({median(full_cpu) / median(full_gpu):.1f}x the GPU)")
        else:
            lines.append("  no GPU on this machine (torch.cuda.is_available() is False): the GPU figures "
                         "and the full preset's GPU-vs-CPU comparison were skipped")
        print("\n" + "\n".join(lines))
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
