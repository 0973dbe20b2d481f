"""Does the size-adaptive CE help small structures? nnUNetTrainer vs nnUNetTrainerSizeAdaptiveCE.

The baseline is nnUNetTrainer with the same anatomy-safe augmentation as
nnUNetTrainerSizeAdaptiveCE, so that the two differ only in the CE term.

Phantom subjects in SPINEPS format (subregion labels: arcus, spinous/costal/articular processes,
body, endplates, discs, canal, cord; the processes are the small structures) are converted, planned
and preprocessed by nnU-Net; both trainers then train with the same budget, seed and split and
are validated by nnU-Net. The table lists per-structure validation Dice, smallest structure first
(mean voxels per validation case).

    python benchmarks/size_adaptive_vs_default.py --subjects 10 --val 3 --epochs 6 --iterations 25

A report, not a test: at small budgets the difference can go either way.
"""
import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import SimpleITK as sitk
import torch
from heldout import make_trainer, nnUNetTrainerAnatomy, seed_everything

from nnunetv2_symtc.demo import use_nnunet_folders


def prepare_dataset(root: Path, subjects: int, n_val: int, configuration: str, dataset_id: int) -> Path:
    """Phantom -> nnU-Net raw (our SPINEPS converter) -> planned + preprocessed; returns the raw folder."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess

    from nnunetv2_symtc.dataset_conversion.spineps import convert_spineps
    from nnunetv2_symtc.phantom import PhantomConfig, generate_subject, write_spineps

    source = root / "phantom_spineps"
    write_spineps(source, [(f"{i:02d}", generate_subject(i, PhantomConfig.tiny())) for i in range(subjects)])
    raw = Path(convert_spineps(source, dataset_id, "SizeAdaptiveBench", num_processes=1))
    extract_fingerprints([dataset_id], num_processes=1, check_dataset_integrity=True, show_progress_bar=False)
    plan_experiments([dataset_id])
    preprocess([dataset_id], configurations=(configuration,), num_processes=(1,), show_progress_bar=False)
    cases = sorted(p.name[:-len("_0000.nii.gz")] for p in (raw / "imagesTr").glob("*_0000.nii.gz"))
    split = [{"train": cases[:-n_val], "val": cases[-n_val:]}]
    (Path(os.environ["nnUNet_preprocessed"]) / raw.name / "splits_final.json").write_text(json.dumps(split))
    return raw


def train_and_validate(trainer_class: type, raw: Path, configuration: str, seed: int, device: torch.device) -> Dict:
    """Train fold 0 with nnU-Net's own loop and validation; returns the validation summary and the
    training time. A finished run in the work folder is read back instead of trained again."""
    seed_everything(seed)
    trainer = make_trainer(trainer_class, raw, configuration, 0, device)
    summary_file = Path(trainer.output_folder) / "validation" / "summary.json"
    timing_file = Path(trainer.output_folder) / "benchmark_train_seconds.json"
    if not summary_file.is_file():
        start = time.perf_counter()
        trainer.run_training()
        timing_file.write_text(json.dumps(time.perf_counter() - start))
        trainer.perform_actual_validation(False)
    train_seconds = json.loads(timing_file.read_text()) if timing_file.is_file() else float("nan")
    return {"summary": json.loads(summary_file.read_text()), "train_seconds": train_seconds}


def structure_sizes(raw: Path, cases: List[str]) -> Dict[int, float]:
    """Mean voxel count of every label over ``cases`` (absent = 0)."""
    totals: Dict[int, float] = {}
    for case in cases:
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(raw / "labelsTr" / f"{case}.nii.gz")))
        values, counts = np.unique(labels, return_counts=True)
        for value, count in zip(values, counts):
            totals[int(value)] = totals.get(int(value), 0) + count / len(cases)
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=10, help="phantom subjects (default 10)")
    parser.add_argument("--val", type=int, default=3, help="of which validation cases (default 3)")
    parser.add_argument("-c", "--configuration", default="2d", help="nnU-Net configuration (default 2d)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--iterations", type=int, default=25, help="training iterations per epoch")
    parser.add_argument("--val-iterations", type=int, default=5, help="validation iterations per epoch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--workdir", help="keep nnU-Net folders here (default: a temporary folder); runs "
                        "already finished there are reported, not retrained")
    parser.add_argument("--trainers", nargs="+", default=["default", "size-adaptive"],
                        choices=("default", "size-adaptive"),
                        help="train only these (e.g. one per process, in parallel, on one --workdir)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.workdir or tmp)
        use_nnunet_folders(root)
        os.environ.setdefault("nnUNet_def_n_proc", "1")
        os.environ.setdefault("nnUNet_compile", "f")
        raw_folder = root / "nnUNet_raw" / "Dataset950_SizeAdaptiveBench"
        raw = raw_folder if (raw_folder / "dataset.json").is_file() and args.workdir else \
            prepare_dataset(root, args.subjects, args.val, args.configuration, dataset_id=950)
        os.environ["nnUNet_n_proc_DA"] = "0"  # augmentation in the main process: same data order for both

        from nnunetv2_symtc.trainers import budget_variant, nnUNetTrainerSizeAdaptiveCE

        budget = dict(num_epochs=args.epochs, iterations_per_epoch=args.iterations,
                      val_iterations_per_epoch=args.val_iterations)
        suffix = f"bench{args.epochs}x{args.iterations}"
        trainers = {"default": budget_variant(nnUNetTrainerAnatomy, suffix, **budget),
                    "size-adaptive": budget_variant(nnUNetTrainerSizeAdaptiveCE, suffix, **budget)}
        device = torch.device(args.device)
        for key in args.trainers:
            train_and_validate(trainers[key], raw, args.configuration, args.seed, device)
        if set(args.trainers) != set(trainers):
            return
        results = {key: train_and_validate(cls, raw, args.configuration, args.seed, device)
                   for key, cls in trainers.items()}

        names = {int(v): k for k, v in json.loads((raw / "dataset.json").read_text())["labels"].items()}
        val_cases = json.loads((Path(os.environ["nnUNet_preprocessed"]) / raw.name / "splits_final.json")
                               .read_text())[0]["val"]
        sizes = structure_sizes(raw, val_cases)
        labels = sorted((v for v in names if v != 0 and names[v] != "ignore"), key=lambda v: sizes.get(v, 0))
        print(f"\n{args.configuration}, {args.subjects - args.val} train / {args.val} val phantom cases, "
              f"{args.epochs} epochs x {args.iterations} iterations, seed {args.seed}")
        print(f"{'structure':28s} {'voxels/case':>11s} {'Dice default':>13s} {'Dice size-ad.':>14s} {'delta':>7s}")
        dice = {key: [] for key in results}
        for label in labels:
            row = {key: r["summary"]["mean"][str(label)]["Dice"] for key, r in results.items()}
            for key in row:
                dice[key].append(row[key])
            print(f"{names[label]:28s} {sizes.get(label, 0):11.0f} {row['default']:13.3f} "
                  f"{row['size-adaptive']:14.3f} {row['size-adaptive'] - row['default']:+7.3f}")
        third = max(1, len(labels) // 3)
        for title, part in (("mean, smallest third", slice(0, third)), ("mean, all structures", slice(None))):
            means = {key: float(np.nanmean(values[part])) for key, values in dice.items()}
            print(f"{title:28s} {'':11s} {means['default']:13.3f} {means['size-adaptive']:14.3f} "
                  f"{means['size-adaptive'] - means['default']:+7.3f}")
        ratio = results["size-adaptive"]["train_seconds"] / results["default"]["train_seconds"]
        print(f"training time size-adaptive / default: {ratio:.2f}")


if __name__ == "__main__":
    main()
