"""Does SSM augmentation help? nnU-Net 2D with vs without ``symtc ssm-augment`` at the same budget.

Phantom patients in SSMSpine format (512x512 mid-sagittal slices; ``--train-patients`` in Train,
``--test-patients`` held out in Test) are converted by the SSMSpine converter. The same raw
dataset is expanded with ``ssm_augment_dataset`` (``--shapes`` warps per training case and fold).
nnU-Net plans the source dataset once and both datasets are preprocessed with that one plan, so
network, patch, batch size and normalisation are identical. ``--downsample F`` replaces the 2d
configuration by nnU-Net's own plan at F times coarser in-plane spacing (a CPU budget; predictions
are resampled back to 512x512 and scored there). ``nnUNetTrainer`` trains fold 0 of each dataset
with the same epochs x iterations (the same number of gradient steps), device and seeds, and
predicts the untouched held-out Test patients. The table gives Dice on those patients, averaged
over ``--seeds``.

    python benchmarks/ssm_augment_effect.py --shapes 4 --epochs 10 --iterations 50 -device cuda --downsample 1
    python benchmarks/ssm_augment_effect.py --downsample 4 --epochs 8 --iterations 50 --seeds 0 1   # CPU

A report, not a test: with small budgets the difference can go either way.
"""
import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
from heldout import held_out_dice, make_trainer, seed_everything

from nnunetv2_symtc.demo import use_nnunet_folders

SOURCE_ID, AUGMENTED_ID = 952, 953


def plan_2d(dataset_id: int, downsample: int) -> dict:
    """nnU-Net's default plans for ``dataset_id``; with ``downsample`` > 1 the 2d configuration is
    re-planned by the same planner at ``downsample`` x coarser in-plane spacing."""
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner

    planner = ExperimentPlanner(dataset_id)
    plans = planner.plan_experiment()
    if downsample > 1:
        fine = plans["configurations"]["2d"]
        shape = [round(s / downsample) for s in fine["median_image_size_in_voxels"]]
        n_cases = len(planner.dataset)
        coarse = planner.get_plans_for_configuration([s * downsample for s in fine["spacing"]], shape,
                                                     fine["data_identifier"], float(np.prod(shape)) * n_cases, {})
        plans["configurations"]["2d"] = {**coarse, "batch_dice": True}
        planner.save_plans(plans)
    return plans


def prepare(root: Path, train_patients: int, test_patients: int, augs: int, shapes: int, downsample: int,
            seed: int) -> Dict[str, Path]:
    """Phantom -> raw dataset -> SSM-expanded copy; both preprocessed (2d) with the source's plan."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, preprocess

    from nnunetv2_symtc.augmentation.ssm import SSMAugmentConfig, ssm_augment_dataset
    from nnunetv2_symtc.dataset_conversion.ssmspine import convert_ssmspine
    from nnunetv2_symtc.phantom import write_ssmspine

    start = time.perf_counter()
    source = write_ssmspine(root / "phantom_ssmspine", train_patients + test_patients, augs=augs, seed=seed,
                            progress=True, n_test=test_patients)
    raw = Path(convert_ssmspine(source, SOURCE_ID, "SSMBench"))
    print(f"phantom + conversion: {time.perf_counter() - start:.0f} s")
    start = time.perf_counter()
    augmented = Path(ssm_augment_dataset(SOURCE_ID, AUGMENTED_ID, SSMAugmentConfig(
        shapes=shapes, seed=seed, num_processes=os.cpu_count() or 1)))
    print(f"ssm-augment: {time.perf_counter() - start:.0f} s")
    extract_fingerprints([SOURCE_ID, AUGMENTED_ID], num_processes=1, check_dataset_integrity=True,
                         show_progress_bar=False)
    plans = plan_2d(SOURCE_ID, downsample)
    target = Path(os.environ["nnUNet_preprocessed"]) / augmented.name
    (target / "nnUNetPlans.json").write_text(json.dumps({**plans, "dataset_name": augmented.name}, indent=2))
    for name in ("dataset.json", "splits_final.json"):  # what nnU-Net's planner would copy from raw
        (target / name).write_text((augmented / name).read_text())
    preprocess([SOURCE_ID, AUGMENTED_ID], configurations=("2d",), num_processes=(1,), show_progress_bar=False)
    config = plans["configurations"]["2d"]
    print(f"2d plan for both: patch {config['patch_size']}, batch {config['batch_size']}, "
          f"spacing {config['spacing']}")
    return {"without SSM": raw, "with SSM": augmented}


def prepared_datasets(root: Path) -> Optional[Dict[str, Path]]:
    """The raw folders (``without SSM``, ``with SSM``) that ``prepare`` left in ``root`` earlier, or
    ``None`` when they are not all there and preprocessed."""
    existing = [next((root / "nnUNet_preprocessed").glob(f"Dataset{i}_*"), None) for i in (SOURCE_ID, AUGMENTED_ID)]
    if not all(e is not None and (e / "nnUNetPlans_2d").is_dir() for e in existing):
        return None
    print(f"reusing the prepared datasets in {root}")
    return {"without SSM": root / "nnUNet_raw" / existing[0].name, "with SSM": root / "nnUNet_raw" / existing[1].name}


def train_and_test(trainer_class: type, raw: Path, seed: int, device: torch.device) -> Dict:
    """Train fold 0 with nnU-Net's loop, predict ``imagesTs``; returns per-class Dice and counts."""
    seed_everything(seed)
    trainer = make_trainer(trainer_class, raw, "2d", 0, device)
    split = json.loads((Path(trainer.preprocessed_dataset_folder_base) / "splits_final.json").read_text())[0]
    start = time.perf_counter()
    trainer.run_training()
    seconds = time.perf_counter() - start
    return {"dice": held_out_dice(trainer, raw), "train_cases": len(split["train"]),
            "seconds": seconds, "names": {v: k for k, v in trainer.dataset_json["labels"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-patients", type=int, default=10, help="phantom patients in Train (default 10)")
    parser.add_argument("--test-patients", type=int, default=10, help="held-out phantom patients (default 10)")
    parser.add_argument("--augs", type=int, default=1, help="slices (shapes) per patient (default 1)")
    parser.add_argument("--shapes", type=int, default=4, help="SSM warps per training case and fold (default 4)")
    parser.add_argument("--downsample", type=int, default=4,
                        help="plan 2d at this many times coarser in-plane spacing (default 4: 128x128; 1: nnU-Net's plan)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=50, help="training iterations per epoch")
    parser.add_argument("--val-iterations", type=int, default=5, help="validation iterations per epoch")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (the phantom uses the first)")
    parser.add_argument("-device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--workdir", help="keep nnU-Net folders here and reuse prepared datasets (default: a temporary folder)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.workdir or tmp)
        use_nnunet_folders(root)
        os.environ.setdefault("nnUNet_def_n_proc", "1")
        os.environ.setdefault("nnUNet_compile", "f")
        datasets = (prepared_datasets(root) if args.workdir else None) or \
            prepare(root, args.train_patients, args.test_patients, args.augs, args.shapes, args.downsample,
                    args.seeds[0])
        os.environ["nnUNet_n_proc_DA"] = "0"

        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

        from nnunetv2_symtc.trainers import budget_variant

        trainer_class = budget_variant(nnUNetTrainer, f"ssmbench{args.epochs}x{args.iterations}",
                                       num_epochs=args.epochs, iterations_per_epoch=args.iterations,
                                       val_iterations_per_epoch=args.val_iterations)
        device = torch.device(args.device)
        runs = {key: [train_and_test(trainer_class, raw, seed, device) for seed in args.seeds]
                for key, raw in datasets.items()}

        names = runs["without SSM"][0]["names"]
        classes = list(runs["without SSM"][0]["dice"])
        dice = {key: np.array([[r["dice"][c] for c in classes] for r in rs]) for key, rs in runs.items()}  # (seeds, classes)
        test_cases = len(list((datasets["without SSM"] / "labelsTs").iterdir()))
        print(f"\n2d, fold 0, {args.epochs} epochs x {args.iterations} iterations, seeds {args.seeds}, "
              f"{test_cases} held-out test slices; training cases: "
              + ", ".join(f"{k} {rs[0]['train_cases']}" for k, rs in runs.items()))
        print(f"{'structure':14s} {'without SSM':>12s} {'with SSM':>10s} {'delta':>7s}")
        for i, c in enumerate(classes):
            a, b = dice["without SSM"][:, i].mean(), dice["with SSM"][:, i].mean()
            print(f"{names[c]:14s} {a:12.3f} {b:10.3f} {b - a:+7.3f}")
        for title, select in (("vertebrae", lambda n: "/" not in n), ("discs", lambda n: "/" in n),
                              ("all", lambda n: True)):
            columns = [i for i, c in enumerate(classes) if select(names[c])]
            per_seed = {k: d[:, columns].mean(axis=1) for k, d in dice.items()}
            a, b = per_seed["without SSM"], per_seed["with SSM"]
            print(f"{'mean ' + title:14s} {a.mean():12.3f} {b.mean():10.3f} {b.mean() - a.mean():+7.3f}"
                  f"   per seed: " + ", ".join(f"{x:.3f}->{y:.3f}" for x, y in zip(a, b)))
        print("training seconds: " + ", ".join(f"{k} {sum(r['seconds'] for r in rs):.0f}" for k, rs in runs.items()))


if __name__ == "__main__":
    main()
