"""A stand-in for the Phase E and F commands (scripts/train_model.py, scripts/reconstruct_ptychi.py)
that misbehaves on request: the runner's graph is under test, not the science.

Called with the training flags (--train_data_file ... --output_dir ... --gridsize ... --nphotons)
it writes a checkpoint as the real script does (model.pt, a zip archive; model.json with its
provenance; training_log.csv); called with --input-npz and --output-dir it writes
ptychi_reconstruction.npz with the arrays Phase G reads. FAKE_UPSTREAM_BEHAVIOUR maps a job key
("E/dose_1000/dense", "F/dose_1000/dense/train", or "*") to a behaviour:
  sleep: seconds     exit: code     no_output: true (exit 0, write nothing)
  truncated: true    write a model.pt that is not a whole archive
Each call appends one JSON line to FAKE_UPSTREAM_RECORD (if set) when done: key, devices, start,
end, argv; and its key and pid to FAKE_UPSTREAM_LAUNCHES (if set) when it starts.
"""

import argparse
import json
import os
import sys
import time
import zipfile
from pathlib import Path

import numpy as np


def parse(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--train_data_file")
    p.add_argument("--test_data_file")
    p.add_argument("--output_dir")
    p.add_argument("--gridsize", type=int)
    p.add_argument("--nphotons", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--n_subsample", type=int)
    p.add_argument("--input-npz")
    p.add_argument("--output-dir")
    p.add_argument("--algorithm", default="LSQML")
    p.add_argument("--num-epochs", type=int, default=3)
    return p.parse_args(argv)


def key_of(args) -> str:
    """The job's key, from its output folder: .../dose_D/{model}[/replicate]/gsN (E) or
    .../dose_D/{view}/{split} (F)."""
    parts = Path(args.output_dir).parts
    start = max(i for i, part in enumerate(parts) if part.startswith("dose_"))
    return "E/" + "/".join(parts[start:-1]) if args.train_data_file else "F/" + "/".join(parts[start:])


def main() -> int:
    args = parse(sys.argv[1:])
    key = key_of(args)
    table = json.loads(os.environ.get("FAKE_UPSTREAM_BEHAVIOUR", "{}"))
    todo = {**table.get("*", {}), **table.get(key, {})}
    start = time.time()
    if os.environ.get("FAKE_UPSTREAM_LAUNCHES"):
        with open(os.environ["FAKE_UPSTREAM_LAUNCHES"], "a") as f:
            f.write(json.dumps({"key": key, "pid": os.getpid()}) + "\n")
    time.sleep(todo.get("sleep", 0))
    if "exit" in todo:
        print(f"fake: {key} fails on request", file=sys.stderr)
        return todo["exit"]
    if not todo.get("no_output"):
        if args.train_data_file:
            for path in (args.train_data_file, args.test_data_file):
                np.load(path).close()  # the inputs must exist and be NPZ files
            out = Path(args.output_dir)
            out.mkdir(parents=True, exist_ok=True)
            if todo.get("truncated"):
                (out / "model.pt").write_bytes(b"PK\x03\x04 cut short")
            else:
                with zipfile.ZipFile(out / "model.pt", "w") as archive:
                    archive.writestr("archive/data.pkl", b"weights")
            (out / "training_log.csv").write_text("step,loss,seconds\n1,0.5,0.1\n2,0.25,0.2\n")
            (out / "model.json").write_text(json.dumps({"kind": "pinn" if args.gridsize == 2 else "baseline",
                                                        "provenance": {"final_loss": 0.25, "steps": 2,
                                                                       "n_train": args.n_subsample or 100,
                                                                       "train_seconds": 0.2, "device": "cpu",
                                                                       "dose": args.nphotons}}))
        else:
            np.load(args.input_npz).close()
            out = Path(args.output_dir)
            out.mkdir(parents=True, exist_ok=True)
            np.savez(out / "ptychi_reconstruction.npz", reconstructed_object=np.ones((16, 16), np.complex64),
                     reconstructed_probe=np.ones((8, 8), np.complex64), algorithm=np.array(args.algorithm),
                     computation_time_s=np.float64(0.5), n_iterations=np.int64(args.num_epochs),
                     cost_history=np.array([3.0, 2.0, 1.5]))
    if os.environ.get("FAKE_UPSTREAM_RECORD"):
        with open(os.environ["FAKE_UPSTREAM_RECORD"], "a") as f:
            f.write(json.dumps({"key": key, "devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                                "start": start, "end": time.time(), "argv": sys.argv[1:]}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
