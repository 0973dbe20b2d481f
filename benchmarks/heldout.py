"""Shared pieces of the training benchmarks: trainer set-up from a preprocessed dataset, and Dice
of a trainer's current weights on a raw dataset's held-out ``imagesTs``/``labelsTs``. The CE
baseline ``nnUNetTrainerAnatomy`` is a registered trainer (``nnunetv2_symtc.trainers.baseline``),
re-exported here for the benchmark scripts.

Imported by ``ssm_augment_effect.py``, ``size_adaptive_vs_default.py`` and ``convergence.py``
(run as scripts, so this folder is on ``sys.path``).
"""
import json
import os
import random
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunetv2_symtc.trainers.baseline import nnUNetTrainerAnatomy  # noqa: F401  (the CE baseline, registered)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (nnU-Net's sampling and augmentation draw from them)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_trainer(trainer_class: type, raw: Path, configuration: str, fold, device: torch.device,
                 plans_name: str = "nnUNetPlans") -> nnUNetTrainer:
    """A ``trainer_class`` instance for the preprocessed copy of raw dataset folder ``raw``."""
    preprocessed = Path(os.environ["nnUNet_preprocessed"]) / raw.name
    plans = json.loads((preprocessed / f"{plans_name}.json").read_text())
    plans["continue_training"] = False  # nnU-Net's trainer expects the flag run_training puts there
    dataset_json = json.loads((preprocessed / "dataset.json").read_text())
    return trainer_class(plans, configuration, fold, dataset_json, device)


def foreground_classes(dataset_json: dict) -> List[int]:
    """nnU-Net classes other than background and ignore."""
    return [int(v) for k, v in dataset_json["labels"].items() if int(v) != 0 and k != "ignore"]


def held_out_cases(raw: Path) -> List[Tuple[List[str], str]]:
    """(image channel files, reference label file) of every case in ``raw/imagesTs``; ``OSError`` if none."""
    ending = json.loads((raw / "dataset.json").read_text())["file_ending"]
    references = sorted((raw / "labelsTs").glob(f"*{ending}"))
    if not references:
        raise OSError(f"{raw / 'labelsTs'}: no held-out reference labels")
    cases = []
    for reference in references:
        case = reference.name[:-len(ending)]
        images = sorted(str(p) for p in (raw / "imagesTs").glob(f"{case}_[0-9][0-9][0-9][0-9]{ending}"))
        if not images:
            raise OSError(f"{raw / 'imagesTs'}: no image for held-out case {case}")
        cases.append((images, str(reference)))
    return cases


def dice_per_class(reference: np.ndarray, prediction: np.ndarray, classes: List[int]) -> Dict[int, float]:
    """Dice of every class present in either map (absent from both: left out)."""
    out = {}
    for c in classes:
        ref, pred = reference == c, prediction == c
        total = int(ref.sum() + pred.sum())
        if total:
            out[c] = 2.0 * float(np.logical_and(ref, pred).sum()) / total
    return out


def held_out_dice(trainer: nnUNetTrainer, raw: Path,
                  unions: Optional[Mapping[str, Sequence[int]]] = None) -> Dict[Union[int, str], float]:
    """Mean Dice per class over ``raw``'s held-out cases, predicted with the trainer's current
    weights through nnU-Net's predictor (its preprocessing, sliding window and export to the
    original geometry; no mirroring); with ``unions`` also the Dice of each named union of classes
    (predicted where the union's summed probability exceeds 0.5: blind to confusions inside it).
    Restores the trainer's deep supervision and train mode."""
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    network = trainer.network
    trainer.set_deep_supervision_enabled(False)  # the predictor expects a single output
    try:
        predictor = nnUNetPredictor(use_mirroring=False, device=trainer.device, allow_tqdm=False, verbose=False)
        predictor.manual_initialization(network, trainer.plans_manager, trainer.configuration_manager,
                                        [network.state_dict()], trainer.dataset_json, type(trainer).__name__,
                                        trainer.inference_allowed_mirroring_axes)
        classes = foreground_classes(trainer.dataset_json)
        scores: Dict[Union[int, str], List[float]] = {}
        io = SimpleITKIO()
        for images, reference_file in held_out_cases(raw):
            data, properties = io.read_images(images)
            result = predictor.predict_single_npy_array(data, properties, None, None, bool(unions))
            prediction, probabilities = result if unions else (result, None)  # probabilities: unions only
            reference = sitk.GetArrayFromImage(sitk.ReadImage(reference_file)).reshape(prediction.shape)
            found = dict(dice_per_class(reference, prediction, classes))
            for name, members in (unions or {}).items():
                predicted = probabilities[members].sum(0).reshape(prediction.shape) > 0.5
                union = dice_per_class(np.isin(reference, members), predicted, [True])
                if union:  # absent from both: left out, as for classes
                    found[name] = union[True]
            for key, value in found.items():
                scores.setdefault(key, []).append(value)
    finally:
        trainer.set_deep_supervision_enabled(trainer.enable_deep_supervision)
        network.train()
    return {key: float(np.mean(v)) for key, v in scores.items()}
