"""The study's three kinds of job, each made from its condition: what it runs, what it reads and
makes, and what proves it worked.

    E  <train_cmd> --train_data_file T --test_data_file V --output_dir phase_e/dose_D/{view}/gs2
                   --gridsize 2 --nphotons D <train_args>         (PtychoPINN's training flags)
       the baseline: Phase C's patched_{train,test}.npz into phase_e/dose_D/baseline/gs1, gridsize 1
    F  <recon_cmd> --input-npz phase_d/dose_D/{view}/{view}_{split}.npz
                   --output-dir phase_f/dose_D/{view}/{split} <recon_args>
    G  <compare_cmd> --pinn_dir ... --baseline_dir ... --test_data ... --output_dir analysis/dose_D/{view}/{split}
                     --ms-ssim-sigma 1.0 --tike_recon_path ... --register-ptychi-only <compare_args>

A training succeeds when its model folder holds a fresh, whole checkpoint (model.pt and
model.json, or --checkpoint-name); a reconstruction when its NPZ is fresh and holds the arrays
Phase G reads; a comparison when its metrics table is fresh and scores every arm. The logs of
trainings and reconstructions go under the artifact root, never into the folders Phase G reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.jobs import FailureClass, HalveFlags, Input, Job, Kind, MetricsCheck, Numbers, OutputsCheck
from runner.ptycho import layout as files
from runner.ptycho.arms import EXPECTED_MODELS, PINN, TRAINED_ARMS
from runner.ptycho.layout import BASELINE, Layout
from runner.ptycho.replicates import Replicate
from runner.ptycho.settings import StudySettings, SuccessRule

TRAIN, RECONSTRUCT, COMPARE = "E", "F", "G"
KINDS = (Kind(TRAIN, "Phase E: training", 3600.0),
         Kind(RECONSTRUCT, "Phase F: Pty-Chi reconstruction", 600.0),
         Kind(COMPARE, "Phase G: comparison", 60.0))  # default seconds: only their ratios matter

# The numbers a training's model.json (its provenance) and a reconstruction's NPZ report.
TRAINING_NUMBERS = tuple((name, name) for name in (
    "final_loss", "final_nll_excess", "held_out_loss", "held_out_nll_excess", "steps", "planned_steps",
    "train_seconds", "n_train"))
RECONSTRUCTION_NUMBERS = (("computation_time_s", "computation_time_s"), ("n_iterations", "n_iterations"),
                          ("cost_history", "final_cost"))
RECONSTRUCTION_KEYS = ("reconstructed_object", "reconstructed_probe")  # what Phase G reads
# compare_models exits 3 when the GPU ran out of memory; it is then relaunched with both chunk
# sizes halved (256 when unset) until both reach 1.
EXIT_CLASSES = {3: FailureClass.CUDA_OOM}
# train_model saves its checkpoint and exits 128 + the signal: SIGUSR1 is SLURM's warning before the
# time limit (sbatch --signal), a SIGTERM the runner did not send is a preemption (or a shutdown).
TRAINING_EXIT_CLASSES = {138: FailureClass.TIMEOUT, 143: FailureClass.PREEMPTED}
SMALLER_CHUNKS = HalveFlags(FailureClass.CUDA_OOM, ("--pinn-chunk-size", "--baseline-chunk-size"), start=256, floor=1)


@dataclass(frozen=True)
class Hashes:
    """The hash of the script each phase's command runs (editing it reruns the phase's jobs)."""

    train: str = ""
    reconstruct: str = ""
    compare: str = ""


PLAIN = Replicate(None, None, True)  # a one-seed study's training, its arguments as given


def training(settings: StudySettings, dose: int, model: str, hashes: Hashes, replicate: Replicate = PLAIN) -> Job:
    """E(dose, model, replicate): the baseline on Phase C's split, or a view's PINN on that view,
    with the replicate's seed and training-set size."""
    where = settings.layout
    if model == BASELINE:
        train, test, gridsize = where.patched(dose, "train"), where.patched(dose, "test"), "1"
    else:
        train = where.view_file_or_expected(dose, model, "train")
        test = where.view_file_or_expected(dose, model, "test")
        gridsize = "2"
    out = where.model_dir(dose, model, replicate.folder)
    argv = (*settings.train_cmd, "--train_data_file", train, "--test_data_file", test, "--output_dir", out,
            "--gridsize", gridsize, "--nphotons", str(dose), *replicate.training_args(settings.train_args))
    made = tuple(Path(out) / name for name in ((settings.checkpoint_name,) if settings.checkpoint_name
                                                 else files.MODEL_FILES))
    summary = made[-1] if made[-1].suffix == ".json" else None
    numbers = Numbers(summary, TRAINING_NUMBERS, TRAINED_ARMS.get(model, PINN), section="provenance") \
        if summary else None
    resumable = settings.resumable_training
    return Job(key=files.training_key(dose, model, replicate.folder), argv=argv, cwd=settings.workdir,
               output_dir=where.training_logs(dose, model, replicate.folder), kind=TRAIN,
               labels={"phase": TRAIN, "dose": dose, "model": model, **replicate.labels},
               inputs=(Input(train, "training data"), Input(test, "test data")), produces=(out,),
               check=OutputsCheck(made, numbers=numbers), identity=(hashes.train,),
               exit_classes=TRAINING_EXIT_CLASSES if resumable else {},
               progress=Path(out) / files.TRAINING_PROGRESS if resumable else None)


def reconstruction(settings: StudySettings, dose: int, view: str, split: str, metadata: dict[str, Any],
                   hashes: Hashes) -> Job:
    """F(dose, view, split): Pty-Chi on the view's file of that split."""
    where = settings.layout
    data = where.view_file_or_expected(dose, view, split)
    out = Path(where.reconstruction(dose, view, split))
    argv = (*settings.recon_cmd, "--input-npz", data, "--output-dir", str(out.parent), *settings.recon_args)
    return Job(key=files.reconstruction_key(dose, view, split), argv=argv, cwd=settings.workdir,
               output_dir=where.reconstruction_logs(dose, view, split), kind=RECONSTRUCT,
               labels={"phase": RECONSTRUCT, "dose": dose, "view": view, "split": split, **metadata},
               inputs=(Input(data, "Phase D view"),), produces=(str(out),),
               check=OutputsCheck((out,), RECONSTRUCTION_KEYS, Numbers(out, RECONSTRUCTION_NUMBERS, "PtyChi")),
               identity=(hashes.reconstruct,))


def comparison(settings: StudySettings, dose: int, view: str, split: str, test_data: str, reconstruction: str,
               metadata: dict[str, Any], hashes: Hashes, replicate: Replicate = PLAIN) -> Job:
    """G(dose, view, split, replicate): the comparison of the view's PINN and the dose's baseline
    of that seed and training-set size, and the reconstruction, on `test_data`."""
    where = settings.layout
    pinn_dir = where.model_dir(dose, view, replicate.folder)
    baseline_dir = where.model_dir(dose, BASELINE, replicate.folder)
    output_dir = where.comparison_dir(dose, view, split, replicate.folder)
    argv = (*settings.compare_cmd,
            "--pinn_dir", pinn_dir, "--baseline_dir", baseline_dir,
            "--test_data", test_data, "--output_dir", output_dir,
            "--ms-ssim-sigma", "1.0", "--tike_recon_path", reconstruction,
            "--register-ptychi-only", *settings.compare_args)
    checkpoint = settings.checkpoint_name
    inputs = (Input(pinn_dir, "PINN model", folder=True, holds=checkpoint, holds_what="PINN checkpoint"),
              Input(baseline_dir, "baseline model", folder=True, holds=checkpoint, holds_what="baseline checkpoint"),
              Input(test_data, "test data"), Input(reconstruction, "reconstruction"))
    output = Path(output_dir)
    metrics = settings.success is SuccessRule.METRICS
    return Job(key=files.comparison_key(dose, view, split, replicate.folder), argv=argv, cwd=settings.workdir,
               output_dir=output, kind=COMPARE,
               labels={"phase": COMPARE, "dose": dose, "view": view, "split": split, **replicate.labels, **metadata},
               inputs=inputs,
               check=MetricsCheck(output / files.METRICS_FILE, EXPECTED_MODELS, (output / files.FLOOR_FILE,))
               if metrics else None,
               # A success by a laxer rule is not a metrics success.
               identity=(hashes.compare,) + (() if metrics else (settings.success.value,)),
               exit_classes=EXIT_CLASSES, adapt=SMALLER_CHUNKS)


def comparison_data(where: Layout, dose: int, view: str, split: str, source: str) -> str:
    """The comparison's test data: Phase C's split, or (source phase_d) the view's file."""
    if source == "phase_d":
        return where.view_file_or_expected(dose, view, split)
    return where.patched(dose, split)
