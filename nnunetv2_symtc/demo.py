"""``symtc demo``: the whole pipeline on the built-in phantom, on one command.

1. generate phantom subjects (training and held-out test);
2. convert them: SPINEPS format -> semantic (phase-1) dataset, phase-2 cutout dataset; SPIDER
   format -> ``levels`` dataset (instance-as-class, SymTC style);
3. plan and preprocess with nnU-Net;
4. train with small budgets: ``SymTCTrainer_small`` and ``nnUNetTrainerSizeAdaptiveCE`` in 2D on
   the levels dataset; phase 1 (``nnUNetTrainerSizeAdaptiveCE``) and phase 2
   (``SpinepsInstanceTrainer``) in 3D;
5. predict two-phase on the held-out scans;
6. ensemble the two 2D models on the held-out levels images;
7. evaluate everything;
8. print a results table and write ``summary.json``.

Everything (nnU-Net folders included) goes below the output folder, so the demo never touches a
user's own nnU-Net datasets. Trainers run in this process with the budget set on the instance:
result folders carry the real trainer names, so the models load like any other.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from nnunetv2_symtc.devices import resolve_device
from nnunetv2_symtc.phantom import PhantomConfig

SEMANTIC_ID, LEVELS_ID, INSTANCE_ID = 971, 972, 973
SEMANTIC_TRAINER = "nnUNetTrainerSizeAdaptiveCE"
LEVEL_TRAINERS = ("SymTCTrainer_small", "nnUNetTrainerSizeAdaptiveCE")
INSTANCE_TRAINER = "SpinepsInstanceTrainer"
PLANS = "nnUNetPlans"
SPIDER_LEVELS_IN_VIEW = 6
"""The phantom shows T12 (SPIDER level 6) to L5 (level 1): the levels dataset gets 6 vertebra and disc classes."""


@dataclass(frozen=True)
class DemoBudget:
    """Data size and training budget of one demo run.

    ``training`` maps each model's role (``symtc_2d``, ``size_adaptive_2d``, ``phase1``, ``phase2``)
    to (epochs, training iterations per epoch); validation runs a fifth as many iterations.
    """

    name: str
    train_subjects: int
    test_subjects: int
    phantom: PhantomConfig
    cutout_size_mm_zyx: Tuple[float, float, float]
    cutout_spacing_zyx: Tuple[float, float, float]
    training: Dict[str, Tuple[int, int]]
    symtc_trainer: str = "SymTCTrainer_small"


_ROLES = ("symtc_2d", "size_adaptive_2d", "phase1", "phase2")
BUDGETS: Dict[str, DemoBudget] = {
    # A wiring check in a few minutes; the models are not expected to learn anything.
    "tiny": DemoBudget("tiny", 5, 1, PhantomConfig.tiny(), (60.0, 120.0, 120.0), (4.0, 3.0, 3.0),
                       dict.fromkeys(_ROLES, (1, 2))),
    # The default on a CPU, < 15 min on 2 cores. Iterations were sized from measured CPU costs per
    # iteration (SymTC_small 2D ~2.2 s, U-Net 2D ~0.6 s, 3D semantic ~3.5 s, phase 2 ~1 s).
    "cpu": DemoBudget("cpu", 10, 2, PhantomConfig.tiny(spacing_zyx=(4.0, 2.0, 2.0)), (60.0, 120.0, 120.0),
                      (4.0, 2.0, 2.0),
                      {"symtc_2d": (3, 25), "size_adaptive_2d": (6, 25), "phase1": (5, 10), "phase2": (5, 20)}),
    # Realistic resolution and budgets for a GPU, with the paper-width SymTC.
    "full": DemoBudget("full", 40, 8, PhantomConfig(), (105.6, 228.0, 186.0), (3.3, 1.0, 1.0),
                       dict.fromkeys(_ROLES, (100, 250)), symtc_trainer="SymTCTrainer_paper"),
}


class StageLog:
    """Numbered stage headings with wall times; ``timings`` collects seconds per stage."""

    def __init__(self, total: int):
        self.total, self.number, self.timings = total, 0, {}

    @contextmanager
    def stage(self, title: str):
        self.number += 1
        print(f"\n=== [{self.number}/{self.total}] {title} ===", flush=True)
        start = time.perf_counter()
        yield
        self.timings[title] = round(time.perf_counter() - start, 1)
        print(f"--- {title}: {self.timings[title]:.1f} s", flush=True)


def use_nnunet_folders(root: Path) -> None:
    """Create ``root/nnUNet_raw``, ``nnUNet_preprocessed`` and ``nnUNet_results`` and export them for
    this process and its children (nnU-Net reads the variables at call time)."""
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (root / name).mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(root / name)


def _default_process_counts() -> None:
    """Process counts default to the machine's cores (nnU-Net's own defaults, 8 and 12,
    oversubscribe small machines and slow them down)."""
    cores = str(max(1, os.cpu_count() or 1))
    os.environ.setdefault("nnUNet_def_n_proc", cores)
    os.environ.setdefault("nnUNet_n_proc_DA", cores)


def _write_phantoms(root: Path, budget: DemoBudget, seed: int) -> Dict[str, List[str]]:
    """Training and test subjects in SPINEPS (``spineps_train``/``spineps_test``) and SPIDER format
    (``spider``; test subjects form the official ``validation`` subset)."""
    from tqdm import tqdm

    from nnunetv2_symtc.phantom import generate_subject, write_spider, write_spineps

    count = budget.train_subjects + budget.test_subjects
    subjects = [generate_subject(seed + i, budget.phantom) for i in tqdm(range(count), desc="phantom subjects")]
    train_ids, test_ids = list(range(budget.train_subjects)), list(range(budget.train_subjects, count))
    write_spineps(root / "spineps_train", [(f"{i:03d}", subjects[i]) for i in train_ids])
    write_spineps(root / "spineps_test", [(f"{i:03d}", subjects[i]) for i in test_ids])
    write_spider(root / "spider", [(i + 1, subjects[i]) for i in train_ids + test_ids], sequences=("t2",),
                 validation_pids=[i + 1 for i in test_ids])
    return {"train": [f"{i:03d}" for i in train_ids], "test": [f"{i:03d}" for i in test_ids]}


def _split_test_scans(spineps_test: Path, images: Path, reference: Path) -> None:
    """Test images go to ``images/``; their masks to ``reference/`` under the names the two-phase
    prediction will write, so the evaluation pairs them by name."""
    from nnunetv2_symtc.instance.pipeline import SUFFIXES

    images.mkdir(parents=True, exist_ok=True)
    for sub in ("semantic", "instance"):
        (reference / sub).mkdir(parents=True, exist_ok=True)
    for image in sorted(spineps_test.rglob("*_T2w.nii.gz")):
        case = image.name[:-len(".nii.gz")]
        shutil.copy(image, images / image.name)
        subject = image.name[:-len("_T2w.nii.gz")]
        shutil.copy(image.with_name(f"{subject}_seg-spine_msk.nii.gz"), reference / "semantic" / f"{case}{SUFFIXES['semantic']}")
        shutil.copy(image.with_name(f"{subject}_seg-vert_msk.nii.gz"), reference / "instance" / f"{case}{SUFFIXES['instance']}")


def _plan_and_preprocess(dataset_id: int, configuration: str) -> None:
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess

    processes = max(1, min(4, os.cpu_count() or 1))
    # The converters already validated every case (nnU-Net's integrity check is in their tests).
    extract_fingerprints([dataset_id], num_processes=processes, check_dataset_integrity=False, show_progress_bar=False)
    plan_experiments([dataset_id])
    preprocess([dataset_id], configurations=(configuration,), num_processes=(processes,), show_progress_bar=False)


def _train(dataset_id: int, configuration: str, trainer_name: str, epochs: int, iterations: int, device: str) -> Path:
    """Train on every case (nnU-Net fold ``all``) for ``epochs`` x ``iterations``; returns the model
    folder. The training log is nnU-Net's own (``training_log_*.txt`` in the fold folder)."""
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args

    trainer = get_trainer_from_args(str(dataset_id), configuration, "all", trainer_name, PLANS,
                                    device=torch.device(device))
    trainer.num_epochs = epochs
    trainer.num_iterations_per_epoch = iterations
    trainer.num_val_iterations_per_epoch = max(1, iterations // 5)
    trainer.run_training()
    return Path(trainer.output_folder).parent


def headline(summary: dict, kind: str) -> Dict[str, float]:
    """Mean Dice over vertebra and over disc structures of one evaluation summary, HD95, and PQ if present.

    ``kind`` says how structures group: ``semantic`` (SPINEPS subregions 41-49 and the sacrum are
    vertebra, 100 is disc), ``instance`` (values below 100 vertebrae, 100+X discs) or ``levels``
    (nnU-Net classes named ``vertebra_k`` / ``disc_k``).
    """
    from nnunetv2_symtc.labels import DISC, SACRUM, SPINEPS_DISC_OFFSET, SPINEPS_ENDPLATE_OFFSET, VERTEBRA_SUBREGIONS

    def group(key: str) -> Optional[str]:
        if kind == "levels":
            name = summary["structure_names"].get(key, key)
            return "vertebrae" if name.startswith("vertebra_") else "discs" if name.startswith("disc_") else None
        value = int(key)
        if kind == "semantic":
            return "vertebrae" if value in VERTEBRA_SUBREGIONS + (SACRUM,) else "discs" if value == DISC else None
        return "vertebrae" if value < SPINEPS_DISC_OFFSET else "discs" if value < SPINEPS_ENDPLATE_OFFSET else None

    dice: Dict[str, List[float]] = {"vertebrae": [], "discs": []}
    for key, metrics in summary["mean"].items():
        g = group(key)
        if g and metrics["Dice"] == metrics["Dice"]:  # NaN: absent from reference and prediction
            dice[g].append(metrics["Dice"])
    row = {f"Dice {g}": (sum(v) / len(v) if v else float("nan")) for g, v in dice.items()}
    row["HD95 mm"] = summary["foreground_mean"]["HD95"]
    if "instances_mean" in summary:
        row["PQ"] = summary["instances_mean"]["pq"]
    return row


def _collect(folder: Path, suffix: str, target: Path) -> Path:
    """Link the files of ``folder`` ending in ``suffix`` into ``target`` (evaluation pairs whole folders)."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(folder.glob(f"*{suffix}")):
        (target / path.name).symlink_to(path)
    return target


def run_demo(output: Path, budget_name: str = "auto", device: str = "auto", seed: int = 0) -> dict:
    """Run the whole demo into ``output``; returns the summary also written to ``output/summary.json``."""
    from nnunetv2_symtc.dataset_conversion.spider import convert_spider
    from nnunetv2_symtc.dataset_conversion.spineps import convert_spineps
    from nnunetv2_symtc.evaluation.ensemble import run_ensemble
    from nnunetv2_symtc.evaluation.report import EvaluationOptions, LabelSetup, evaluate_folders, nnunet_label_setup
    from nnunetv2_symtc.instance.cutouts import CutoutSpec
    from nnunetv2_symtc.dataset_conversion.phase2_cutouts import build_instance_dataset
    from nnunetv2_symtc.instance.pipeline import SUFFIXES, PredictionSettings, TwoPhasePredictor, predict_folder

    device = resolve_device(device)
    if budget_name == "auto":
        budget_name = "full" if device == "cuda" else "cpu"
    if budget_name not in BUDGETS:
        raise ValueError(f"unknown budget {budget_name!r}; choose from {sorted(BUDGETS)} or 'auto'")
    budget = BUDGETS[budget_name]
    level_trainers = (budget.symtc_trainer, LEVEL_TRAINERS[1])
    output = Path(output).resolve()
    if output.exists() and any(output.iterdir()):
        raise OSError(f"{output}: output folder exists and is not empty; choose another -o or remove it")
    use_nnunet_folders(output / "nnunet")
    _default_process_counts()
    print(f"symtc demo: budget {budget.name!r} on {device}; everything goes to {output}")
    log = StageLog(total=8)
    models: Dict[str, Path] = {}
    results: Dict[str, dict] = {}

    with log.stage("Generate phantom subjects"):
        subjects = _write_phantoms(output / "sources", budget, seed)
        _split_test_scans(output / "sources" / "spineps_test", output / "test_images", output / "reference")

    with log.stage("Convert to nnU-Net datasets"):
        semantic_ds = convert_spineps(output / "sources" / "spineps_train", SEMANTIC_ID, "DemoSemantic")
        levels_ds = convert_spider(output / "sources" / "spider", LEVELS_ID, "DemoLevels", labels="levels",
                                   max_level=SPIDER_LEVELS_IN_VIEW)
        cutout = CutoutSpec(budget.cutout_size_mm_zyx, budget.cutout_spacing_zyx)
        build_instance_dataset(output / "sources" / "spineps_train", INSTANCE_ID, "DemoInstances",
                               scheme="spineps", cutout=cutout)
        print(f"semantic: {semantic_ds.name}, levels: {levels_ds.name}, phase 2: cutouts of {cutout.shape} voxels")

    with log.stage("Plan and preprocess (nnU-Net)"):
        for dataset_id, configuration in ((SEMANTIC_ID, "3d_fullres"), (LEVELS_ID, "2d"), (INSTANCE_ID, "3d_fullres")):
            _plan_and_preprocess(dataset_id, configuration)

    with log.stage("Train"):
        jobs = [(f"levels 2d {level_trainers[0]}", LEVELS_ID, "2d", level_trainers[0], "symtc_2d"),
                (f"levels 2d {level_trainers[1]}", LEVELS_ID, "2d", level_trainers[1], "size_adaptive_2d"),
                ("phase 1 semantic 3d", SEMANTIC_ID, "3d_fullres", SEMANTIC_TRAINER, "phase1"),
                ("phase 2 instance 3d", INSTANCE_ID, "3d_fullres", INSTANCE_TRAINER, "phase2")]
        for title, dataset_id, configuration, trainer, role in jobs:
            epochs, iterations = budget.training[role]
            start = time.perf_counter()
            print(f"\n-- training {title} ({epochs} epochs x {iterations} iterations)", flush=True)
            models[title] = _train(dataset_id, configuration, trainer, epochs, iterations, device)
            print(f"-- {title}: {time.perf_counter() - start:.0f} s -> {models[title]}", flush=True)

    settings = PredictionSettings(folds=("all",), device=device)
    with log.stage("Two-phase prediction on held-out scans"):
        predictor = TwoPhasePredictor([models["phase 1 semantic 3d"]], models["phase 2 instance 3d"], settings)
        predict_folder(predictor, output / "test_images", output / "two_phase")

    with log.stage("Ensemble the 2D level models"):
        level_models = [models[f"levels 2d {t}"] for t in level_trainers]
        ensemble = run_ensemble(level_models, levels_ds / "imagesTs", output / "levels", folds=("all",), device=device)
        level_predictions = {t: ensemble["members"] / m.name for t, m in zip(level_trainers, level_models)}
        level_predictions["ensemble"] = ensemble["ensemble"]

    with log.stage("Evaluate"):
        spineps = EvaluationOptions(labels=LabelSetup(scheme="spineps"))
        for kind, options in (("semantic", spineps), ("instance", replace(spineps, instances=True))):
            predictions = _collect(output / "two_phase", SUFFIXES[kind], output / "evaluation" / f"{kind}_predictions")
            results[f"two-phase {kind}"] = (kind, evaluate_folders(
                output / "reference" / kind, predictions, output / "evaluation" / f"two_phase_{kind}", options))
        levels_options = EvaluationOptions(labels=nnunet_label_setup(str(LEVELS_ID)))
        for name, predictions in level_predictions.items():
            results[f"levels 2d {name}"] = ("levels", evaluate_folders(
                levels_ds / "labelsTs", predictions, output / "evaluation" / f"levels_{name}", levels_options))

    with log.stage("Results"):
        rows = {name: headline(summary, kind) for name, (kind, summary) in results.items()}
        print(format_headline(rows))
        plots = output / "plots"
        plots.mkdir()
        for title, model in models.items():
            shutil.copy(model / "fold_all" / "progress.png", plots / f"training_{title.replace(' ', '_')}.png")
        summary = {"budget": budget.name, "device": device, "subjects": subjects, "stage_seconds": log.timings,
                   "models": {k: str(v) for k, v in models.items()}, "headline": rows,
                   "evaluations": {name: str(output / "evaluation") for name in results}}
        with open(output / "summary.json", "w") as f:
            json.dump(summary, f, indent=2)
        print(f"\nper-structure tables: {output / 'evaluation'}/*/summary.json and *.csv; masks, centroids and "
              f"snapshots: {output / 'two_phase'}; training curves: {plots}; this table: {output / 'summary.json'}")
    return summary


def format_headline(rows: Dict[str, Dict[str, float]]) -> str:
    """The demo's results table: one row per evaluated model, the headline metrics as columns."""
    columns = sorted({c for row in rows.values() for c in row}, key=["Dice vertebrae", "Dice discs", "HD95 mm", "PQ"].index)
    header = "model (held-out phantom scans)"
    width = max([len(header)] + [len(n) for n in rows])
    lines = [f"{header:<{width}}  " + "  ".join(f"{c:>14}" for c in columns)]
    for name, row in rows.items():
        lines.append(f"{name:<{width}}  " + "  ".join(f"{row.get(c, float('nan')):>14.3f}" for c in columns))
    return "\n".join(lines)
