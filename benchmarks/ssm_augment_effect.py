"""Does SSM augmentation help? nnU-Net 2D with vs without ``symtc ssm-augment`` at the same budget.

Phantom patients in SSMSpine format (512x512 mid-sagittal slices, ~20 % of patients held out as
Test) are converted by the SSMSpine converter. The same raw dataset is expanded with
``ssm_augment_dataset`` (``--shapes`` warps per training case and fold). Both datasets are
planned and preprocessed by nnU-Net; ``nnUNetTrainer`` trains fold 0 of each with the same number
of epochs x iterations (so the same number of gradient steps), seed and device, and predicts the
untouched held-out Test patients. The table gives foreground Dice on those patients.

    python benchmarks/ssm_augment_effect.py --patients 13 --augs 1 --shapes 4 --epochs 10 --iterations 50 -device cuda

A report, not a test: with tiny budgets the difference can go either way.
"""
import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Dict

import numpy as np
import SimpleITK as sitk
import torch

from nnunetv2_symtc.demo import use_nnunet_folders

SOURCE_ID, AUGMENTED_ID = 952, 953


def prepare(root: Path, patients: int, augs: int, shapes: int, seed: int) -> Dict[str, Path]:
    """Phantom -> raw dataset -> SSM-expanded copy; both planned and preprocessed (2d)."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess

    from nnunetv2_symtc.augmentation.ssm import SSMAugmentConfig, ssm_augment_dataset
    from nnunetv2_symtc.dataset_conversion.ssmspine import convert_ssmspine
    from nnunetv2_symtc.phantom import write_ssmspine

    source = write_ssmspine(root / "phantom_ssmspine", patients, augs=augs, seed=seed)
    raw = Path(convert_ssmspine(source, SOURCE_ID, "SSMBench"))
    start = time.perf_counter()
    augmented = ssm_augment_dataset(SOURCE_ID, AUGMENTED_ID, SSMAugmentConfig(shapes=shapes, seed=seed,
                                                                                num_processes=os.cpu_count() or 1))
    print(f"ssm-augment: {time.perf_counter() - start:.0f} s")
    for dataset_id in (SOURCE_ID, AUGMENTED_ID):
        extract_fingerprints([dataset_id], num_processes=1, check_dataset_integrity=True, show_progress_bar=False)
        plan_experiments([dataset_id])
        preprocess([dataset_id], configurations=("2d",), num_processes=(1,), show_progress_bar=False)
    return {"without SSM": raw, "with SSM": Path(augmented)}


def train_and_test(trainer_class: type, raw: Path, seed: int, device: torch.device) -> Dict:
    """Train fold 0 with nnU-Net's loop, predict ``imagesTs``; returns per-class Dice and counts."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    preprocessed = Path(os.environ["nnUNet_preprocessed"]) / raw.name
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
    plans["continue_training"] = False  # nnU-Net's trainer expects the flag run_training puts there
    dataset_json = json.loads((preprocessed / "dataset.json").read_text())
    split = json.loads((preprocessed / "splits_final.json").read_text())[0]
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    trainer = trainer_class(plans, "2d", 0, dataset_json, device)
    start = time.perf_counter()
    trainer.run_training()
    seconds = time.perf_counter() - start
    trainer.set_deep_supervision_enabled(False)  # the predictor expects a single output
    predictor = nnUNetPredictor(use_mirroring=False, device=device, allow_tqdm=False)
    predictor.manual_initialization(trainer.network, trainer.plans_manager, trainer.configuration_manager,
                                    [trainer.network.state_dict()], dataset_json, trainer.__class__.__name__,
                                    trainer.inference_allowed_mirroring_axes)
    output = Path(trainer.output_folder) / "test_predictions"
    predictor.predict_from_files(str(raw / "imagesTs"), str(output), save_probabilities=False, overwrite=True,
                                 num_processes_preprocessing=1, num_processes_segmentation_export=1)
    classes = [v for k, v in dataset_json["labels"].items() if v != 0 and k != "ignore"]
    dice = {c: [] for c in classes}
    for reference_file in sorted((raw / "labelsTs").iterdir()):
        reference = sitk.GetArrayFromImage(sitk.ReadImage(str(reference_file)))
        prediction = sitk.GetArrayFromImage(sitk.ReadImage(str(output / reference_file.name)))
        for c in classes:
            ref, pred = reference == c, prediction == c
            if ref.any() or pred.any():
                dice[c].append(2 * np.logical_and(ref, pred).sum() / (ref.sum() + pred.sum()))
    return {"dice": {c: float(np.mean(v)) for c, v in dice.items()}, "train_cases": len(split["train"]),
            "seconds": seconds, "names": {v: k for k, v in dataset_json["labels"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=13, help="phantom patients; ~20%% become Test (default 13)")
    parser.add_argument("--augs", type=int, default=1, help="slices (shapes) per patient (default 1)")
    parser.add_argument("--shapes", type=int, default=4, help="SSM warps per training case and fold (default 4)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=50, help="training iterations per epoch")
    parser.add_argument("--val-iterations", type=int, default=5, help="validation iterations per epoch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--workdir", help="keep nnU-Net folders here (default: a temporary folder)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.workdir or tmp)
        use_nnunet_folders(root)
        os.environ.setdefault("nnUNet_def_n_proc", "1")
        os.environ.setdefault("nnUNet_compile", "f")
        existing = [next((root / "nnUNet_preprocessed").glob(f"Dataset{i}_*"), None) for i in (SOURCE_ID, AUGMENTED_ID)]
        if args.workdir and all(e is not None and (e / "nnUNetPlans.json").is_file() for e in existing):
            print(f"reusing the prepared datasets in {root}")
            datasets = {"without SSM": root / "nnUNet_raw" / existing[0].name,
                        "with SSM": root / "nnUNet_raw" / existing[1].name}
        else:
            datasets = prepare(root, args.patients, args.augs, args.shapes, args.seed)
        os.environ["nnUNet_n_proc_DA"] = "0"

        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

        from nnunetv2_symtc.trainers import budget_variant

        trainer_class = budget_variant(nnUNetTrainer, f"ssmbench{args.epochs}x{args.iterations}",
                                       num_epochs=args.epochs, iterations_per_epoch=args.iterations,
                                       val_iterations_per_epoch=args.val_iterations)
        device = torch.device(args.device)
        results = {key: train_and_test(trainer_class, raw, args.seed, device) for key, raw in datasets.items()}

        names = results["without SSM"]["names"]
        test_cases = len(list((datasets["without SSM"] / "labelsTs").iterdir()))
        print(f"\n2d, fold 0, {args.epochs} epochs x {args.iterations} iterations, seed {args.seed}, "
              f"{test_cases} held-out test slices; training cases: "
              + ", ".join(f"{k} {r['train_cases']}" for k, r in results.items()))
        print(f"{'structure':14s} {'without SSM':>12s} {'with SSM':>10s} {'delta':>7s}")
        for c in results["without SSM"]["dice"]:
            a, b = results["without SSM"]["dice"][c], results["with SSM"]["dice"][c]
            print(f"{names[c]:14s} {a:12.3f} {b:10.3f} {b - a:+7.3f}")
        for title, select in (("vertebrae", lambda n: "/" not in n), ("discs", lambda n: "/" in n),
                              ("all", lambda n: True)):
            means = [np.mean([d for c, d in r["dice"].items() if select(names[c])]) for r in results.values()]
            print(f"{'mean ' + title:14s} {means[0]:12.3f} {means[1]:10.3f} {means[1] - means[0]:+7.3f}")
        print("training seconds: " + ", ".join(f"{k} {r['seconds']:.0f}" for k, r in results.items()))


if __name__ == "__main__":
    main()
