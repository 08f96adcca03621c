"""A stand-in for scripts/compare_models.py that misbehaves on request.

It accepts exactly the flags of the real script (STUDY.md section 5) and rejects any other with
exit 2. What it does is chosen by FAKE_COMPARE_BEHAVIOUR, a JSON object mapping a condition
("dose_1000/dense/train", or "*" for all) to a behaviour:
  sleep: seconds       exit: code            signal: "SIGKILL"|"SIGSEGV"|...
  hang: true           no_metrics: true      nan_model: "Baseline"
  spam_bytes: n        long_line: n          grandchild: seconds (a child that outlives us)
  ignore_term: true    fail_times: n (fail the first n attempts, then succeed)
  oom_above_chunk: n   exit 3 (out of GPU memory) unless both chunk sizes are given and <= n
  nan_cell: true       PtyChi's ms_ssim phase is written as 'nan'
  ms_ssim: {model: [amplitude, phase]}   other MS-SSIM values than 0.8, 0.7
  escape: seconds      a grandchild in its own session (it leaves the process group)
  close_stdout: true   close stdout early, then go on (stderr, metrics)
  kill_runner: true    SIGKILL the runner (our parent) after writing the metrics, then exit 0
  floor: [amplitude, phase]  also write floor_metrics.csv with FlatFloor's MS-SSIM (as the real script)
Each call appends one JSON line to FAKE_COMPARE_RECORD (if set) when it is done: condition,
devices, interval, argv, cwd; and one line to FAKE_COMPARE_LAUNCHES (if set) as soon as it starts:
condition, pid, RUNNER_ATTEMPT_TOKEN.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def parse(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--pinn_dir", required=True)
    p.add_argument("--baseline_dir", required=True)
    p.add_argument("--test_data", required=True)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--ms-ssim-sigma", type=float, default=1.0)
    p.add_argument("--tike_recon_path")
    p.add_argument("--register-ptychi-only", action="store_true")
    p.add_argument("--skip-registration", action="store_true")
    p.add_argument("--n-test-groups", type=int)
    p.add_argument("--n-test-subsample", type=int)
    p.add_argument("--test-subsample-seed", type=int)
    p.add_argument("--stitch-crop-size", type=int, default=20)
    p.add_argument("--phase-align-method", choices=["plane", "mean"], default="plane")
    p.add_argument("--frc-sigma", type=float, default=0.0)
    p.add_argument("--save-npz", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--save-npz-aligned", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--pinn-chunk-size", type=int)
    p.add_argument("--baseline-chunk-size", type=int)
    p.add_argument("--pinn-predict-batch-size", type=int, default=32)
    p.add_argument("--baseline-predict-batch-size", type=int, default=32)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--console-level")
    return p.parse_args(argv)


def behaviour_for(condition):
    table = json.loads(os.environ.get("FAKE_COMPARE_BEHAVIOUR", "{}"))
    found = dict(table.get("*", {}))
    found.update(table.get(condition, {}))
    return found


def write_metrics(out: Path, nan_model=None, nan_cell=False, ms_ssim=None):
    rows = ["model,metric,amplitude,phase,value"]
    for model in ("PtychoPINN", "Baseline", "PtyChi"):
        for metric, amp, ph in (("mae", 0.1, 0.2), ("ms_ssim", 0.8, 0.7), ("psnr", 30.0, 25.0)):
            if metric == "ms_ssim" and model in (ms_ssim or {}):
                amp, ph = ms_ssim[model]
            cells = ("", "") if model == nan_model else (amp, ph)
            if nan_cell and model == "PtyChi" and metric == "ms_ssim":
                cells = (amp, "nan")
            rows.append(f"{model},{metric},{cells[0]},{cells[1]},")
        rows.append(f"{model},computation_time_s,,,1.5")
    (out / "comparison_metrics.csv").write_text("\n".join(rows) + "\n")


def main():
    runner = os.getppid()  # the runner that launched us; once it is gone, our parent is a reaper
    args = parse(sys.argv[1:])
    out = Path(args.output_dir)
    start = max(i for i, part in enumerate(out.parts) if part.startswith("dose_"))
    condition = "/".join(out.parts[start:])  # the job's key: dose_D/{view}[/replicate]/{split}
    todo = behaviour_for(condition)
    started = time.time()
    launches = os.environ.get("FAKE_COMPARE_LAUNCHES")
    if launches:
        with open(launches, "a") as f:
            f.write(json.dumps({"condition": condition, "pid": os.getpid(),
                                "token": os.environ.get("RUNNER_ATTEMPT_TOKEN")}) + "\n")
    out.mkdir(parents=True, exist_ok=True)
    counter = out / ".fake_attempts"
    attempt = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(attempt))
    print(f"fake compare {condition} attempt {attempt} pid {os.getpid()}", flush=True)
    print("W0000 cuda warning noise on stderr", file=sys.stderr, flush=True)

    if todo.get("ignore_term"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if todo.get("grandchild"):
        grandchild = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({todo['grandchild']})"])
        (out / "grandchild.pid").write_text(str(grandchild.pid))
    if todo.get("escape"):
        escaped = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({todo['escape']})"],
                                   start_new_session=True)
        (out / "escaped.pid").write_text(str(escaped.pid))
    if todo.get("close_stdout"):
        print("closing stdout now", flush=True)
        os.close(1)
        print("stdout is closed", file=sys.stderr, flush=True)
    if todo.get("spam_bytes"):
        chunk = "x" * 1023 + "\n"
        for _ in range(todo["spam_bytes"] // 1024):
            sys.stdout.write(chunk)
        sys.stdout.flush()
    if todo.get("long_line"):
        sys.stdout.write("y" * todo["long_line"])
        sys.stdout.flush()
    time.sleep(todo.get("sleep", 0))
    if todo.get("hang"):
        while True:
            time.sleep(1)

    record = os.environ.get("FAKE_COMPARE_RECORD")
    if record:
        line = json.dumps({"condition": condition, "cvd": os.environ.get("CUDA_VISIBLE_DEVICES"),
                           "order": os.environ.get("CUDA_DEVICE_ORDER"), "start": started,
                           "threads": os.environ.get("OMP_NUM_THREADS"),
                           "end": time.time(), "pid": os.getpid(), "argv": sys.argv[1:],
                           "cwd": os.getcwd(), "attempt": attempt})
        with open(record, "a") as f:
            f.write(line + "\n")
    if todo.get("signal"):
        os.kill(os.getpid(), getattr(signal, todo["signal"]))
    if attempt <= todo.get("fail_times", 0):
        print("simulated failure", file=sys.stderr)
        return 1
    if todo.get("exit"):
        return todo["exit"]
    limit = todo.get("oom_above_chunk")
    if limit is not None:
        chunks = (args.pinn_chunk_size, args.baseline_chunk_size)
        if None in chunks or max(chunks) > limit:
            print("RuntimeError: CUDA out of memory; lower --pinn-chunk-size and --baseline-chunk-size",
                  file=sys.stderr)
            return 3
    if todo.get("floor") and not todo.get("no_metrics"):
        amp, ph = todo["floor"]
        (out / "floor_metrics.csv").write_text(f"model,metric,amplitude,phase,value\nFlatFloor,ms_ssim,{amp},{ph},\n")
    if not todo.get("no_metrics"):
        write_metrics(out, todo.get("nan_model"), todo.get("nan_cell", False), todo.get("ms_ssim"))
    # Only the runner itself: when a crash trial killed it first, we were handed to a subreaper
    # (the test process, if an in-process executor made it one), which must live on.
    if todo.get("kill_runner") and os.getppid() == runner:
        os.kill(runner, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
