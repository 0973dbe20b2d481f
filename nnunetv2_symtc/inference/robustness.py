"""Robustness sweeps after SymTC's shift test: perturb test images, predict, evaluate, plot.

Perturbations (each applied to the image; the reference moves with the image for shifts):

- **shift**: translate by ``d`` mm towards superior, inferior, anterior or posterior. The axes and
  their signs come from the image geometry (``Geometry.anatomical_axes`` and the orientation
  code), so "superior" is superior whatever the orientation. Linear interpolation for the image,
  nearest neighbour for the labels, zeros where the content left the field of view.
- **intensity**: multiply intensities by a factor (nnU-Net's z-score normalisation should make MR
  models invariant: a flat curve is the expected result).
- **noise**: add Gaussian noise with standard deviation ``level`` x the image's standard deviation
  (seeded per case, so sweeps are reproducible).

A predictor is any function ``(image (channels, z, y, x) float32, geometry) -> label map (z, y, x)``;
``nnunet_predictor`` wraps a trained model folder. Scores and the written table/plot come from
``evaluation.robustness`` (mean Dice and HD95 over structures, ``metrics.case_metrics``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np
from scipy.ndimage import shift as nd_shift

from nnunetv2_symtc.errors import InputError, InputFileError
from nnunetv2_symtc.evaluation.robustness import foreground_summary, plot_robustness, summarize, write_rows
from nnunetv2_symtc.io import Geometry

Predictor = Callable[[np.ndarray, Geometry], np.ndarray]
DIRECTIONS = ("superior", "inferior", "anterior", "posterior")
_AXIS_OF_DIRECTION = {"superior": "superior_inferior", "inferior": "superior_inferior",
                      "anterior": "anterior_posterior", "posterior": "anterior_posterior"}


@dataclass
class Case:
    """One test case: image ``(channels, z, y, x)``, reference labels ``(z, y, x)``, geometry."""

    case_id: str
    image: np.ndarray
    reference: np.ndarray
    geometry: Geometry


def shift_voxels(geometry: Geometry, direction: str, shift_mm: float) -> np.ndarray:
    """Array-order voxel offset ``(z, y, x)`` that moves content ``shift_mm`` towards ``direction``."""
    if direction not in _AXIS_OF_DIRECTION:
        raise ValueError(f"unknown direction {direction!r}; choose from {DIRECTIONS}")
    axis = geometry.anatomical_axes()[_AXIS_OF_DIRECTION[direction]]
    code = geometry.orientation[::-1][axis]  # letter the index grows towards, array order
    sign = 1.0 if code == direction[0].upper() else -1.0
    offset = np.zeros(3)
    offset[axis] = sign * shift_mm / geometry.spacing_zyx[axis]
    return offset


def shift_case(image: np.ndarray, reference: np.ndarray, geometry: Geometry, direction: str,
               shift_mm: float):
    """Shift image ``(channels, z, y, x)`` and labels ``(z, y, x)`` by ``shift_mm`` towards ``direction``."""
    offset = shift_voxels(geometry, direction, shift_mm)
    if not offset.any():
        return image, reference
    shifted = np.stack([nd_shift(c.astype(np.float32), offset, order=1, mode="constant", cval=0.0) for c in image])
    labels = nd_shift(reference, offset, order=0, mode="constant", cval=0)
    return shifted, labels


def add_noise(image: np.ndarray, level: float, seed: int) -> np.ndarray:
    """Gaussian noise with std ``level`` x the per-channel image std."""
    rng = np.random.default_rng(seed)
    stds = image.reshape(image.shape[0], -1).std(1)
    return (image + rng.normal(size=image.shape) * (level * stds)[:, None, None, None]).astype(np.float32)


def robustness_sweep(cases: Sequence[Case], predict: Predictor, shifts_mm: Sequence[float] = (),
                     directions: Sequence[str] = DIRECTIONS, intensity_scales: Sequence[float] = (),
                     noise_levels: Sequence[float] = (), progress: bool = True) -> List[dict]:
    """Predict every perturbed case; rows of {perturbation, direction, amount, unit, case, Dice, HD95, missed}.

    Amount 0 of every kind is the unperturbed image (predicted once per case and reused).
    """
    from tqdm import tqdm

    plan = [("shift", d, float(s), "mm") for d in directions for s in shifts_mm]
    plan += [("intensity", "scale", float(f), "factor") for f in intensity_scales]
    plan += [("noise", "gaussian", float(n), "x image std") for n in noise_levels]
    rows = []
    with tqdm(total=len(cases) * len(plan), desc="robustness", unit="prediction", disable=not progress) as bar:
        for index, case in enumerate(cases):
            baseline = None
            for kind, direction, amount, unit in plan:
                image, reference = case.image, case.reference
                if kind == "shift":
                    image, reference = shift_case(image, reference, case.geometry, direction, amount)
                elif kind == "intensity":
                    image = (image * amount).astype(np.float32)
                else:
                    image = add_noise(image, amount, seed=index) if amount else image
                unperturbed = (kind != "intensity" and amount == 0) or (kind == "intensity" and amount == 1)
                if unperturbed and baseline is not None:
                    scores = baseline
                else:
                    prediction = np.asarray(predict(image, case.geometry))
                    if prediction.shape != reference.shape:
                        raise ValueError(f"predictor returned shape {prediction.shape} for {case.case_id}, "
                                         f"expected {reference.shape}")
                    scores = foreground_summary(reference, prediction, case.geometry.spacing_zyx)
                    if unperturbed:
                        baseline = scores
                rows.append({"perturbation": kind, "direction": direction, "amount": amount, "unit": unit,
                             "case": case.case_id, **scores})
                bar.update()
    return rows


def load_cases(images_folder, labels_folder, file_ending: str = ".nii.gz",
               max_cases: Optional[int] = None) -> List[Case]:
    """Cases in nnU-Net raw layout: ``images/<case>_0000<ending>`` (+ further channels) and
    ``labels/<case><ending>``. Raises ``OSError`` naming a missing label file."""
    from nnunetv2_symtc.io import read_image

    images_folder, labels_folder = Path(images_folder), Path(labels_folder)
    first_channels = sorted(images_folder.glob(f"*_0000{file_ending}"))
    if not first_channels:
        raise InputFileError(f"{images_folder}: no images named <case>_0000{file_ending}")
    cases = []
    for first in first_channels[:max_cases]:
        case_id = first.name[: -len(f"_0000{file_ending}")]
        label_file = labels_folder / f"{case_id}{file_ending}"
        if not label_file.is_file():
            raise InputFileError(f"{label_file}: reference for {first} not found")
        channels = sorted(images_folder.glob(f"{case_id}_[0-9][0-9][0-9][0-9]{file_ending}"))
        arrays = [read_image(c) for c in channels]
        reference, geometry = read_image(label_file)
        image = np.stack([a for a, _ in arrays]).astype(np.float32)
        if image.shape[1:] != reference.shape:
            raise InputError(f"{label_file}: shape {reference.shape} differs from its image {image.shape[1:]}")
        cases.append(Case(case_id, image, reference, geometry))
    return cases


def nnunet_predictor(model_folder, folds=None, checkpoint: str = "checkpoint_final.pth", device: str = "cpu",
                     disable_tta: bool = False) -> Predictor:
    """A ``Predictor`` running a trained nnU-Net model folder (any of our or nnU-Net's trainers)."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(use_mirroring=not disable_tta, device=torch.device(device), verbose=False,
                                allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model_folder), tuple(folds) if folds is not None else None,
                                                   checkpoint_name=checkpoint)

    def predict(image: np.ndarray, geometry: Geometry) -> np.ndarray:
        return predictor.predict_single_npy_array(image, {"spacing": list(geometry.spacing_zyx)})

    return predict


def run_robustness(cases: Sequence[Case], predict: Predictor, output_folder, max_shift_mm: float = 20.0,
                   steps: int = 5, directions: Sequence[str] = DIRECTIONS,
                   intensity_scales: Sequence[float] = (0.5, 1.0, 2.0),
                   noise_levels: Sequence[float] = (0.0, 0.1, 0.3), progress: bool = True) -> List[dict]:
    """Sweep shifts ``0..max_shift_mm`` in ``steps`` steps per direction plus intensity and noise;
    writes ``robustness_cases.csv``, ``robustness.csv`` and ``robustness.png``; returns the summary."""
    shifts = np.linspace(0.0, max_shift_mm, steps + 1) if max_shift_mm > 0 and steps > 0 else []
    rows = robustness_sweep(cases, predict, shifts, directions, intensity_scales, noise_levels, progress)
    output_folder = Path(output_folder)
    summary = summarize(rows)
    write_rows(rows, output_folder / "robustness_cases.csv")
    write_rows(summary, output_folder / "robustness.csv")
    plot_robustness(summary, output_folder / "robustness.png")
    return summary
