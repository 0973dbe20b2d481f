"""Which anatomical direction each axis of a training patch is.

Three axis orders meet between a dataset and the patches a trainer sees:

- *raw array axes*: the (z, y, x) arrays nnU-Net's reader returns for ``imagesTr``;
- *transposed axes*: preprocessing reorders every case so that raw axis ``transpose_forward[i]``
  becomes axis ``i`` (``plans['transpose_forward']``, coarsest spacing first);
- *patch axes*: 3D patches keep the transposed order; 2D configurations cut slices along
  transposed axis 0, so 2D patch axis ``j`` is transposed axis ``j + 1``.

``raw_anatomical_axes`` finds the raw axes of a dataset (from our converter's ``symtc_axes``, or
from the direction cosines nnU-Net stored for a preprocessed case, or from the header of the
first raw training image); ``PatchAxes.resolve`` carries them through the transpose and the 2D
slicing.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

LEFT_RIGHT = "left_right"
SUPERIOR_INFERIOR = "superior_inferior"
ANTERIOR_POSTERIOR = "anterior_posterior"
ANATOMICAL_AXES = (LEFT_RIGHT, SUPERIOR_INFERIOR, ANTERIOR_POSTERIOR)

AXES_KEY = "symtc_axes"
"""dataset.json key written by our converters: anatomical axis name -> raw array axis."""

MIN_AXIS_COSINE = 0.8
"""An image axis counts as one anatomical direction only if the cosine between them is at least
this (about 37 degrees); a more oblique grid has no trustworthy axis names."""

_WORLD_AXIS_NAMES = (LEFT_RIGHT, ANTERIOR_POSTERIOR, SUPERIOR_INFERIOR)  # LPS world x, y, z
_SIMPLEITK_COMPATIBLE_READERS = (None, "SimpleITKIO", "NibabelIO")
"""nnU-Net readers whose arrays are those SimpleITK reads from the file (NibabelIO transposes to match)."""


def recorded_axes(dataset_json: dict) -> Optional[Dict[str, int]]:
    """Our converter's raw-axis record (``symtc_axes``), or ``None`` when the dataset has none."""
    axes = dataset_json.get(AXES_KEY)
    if axes is None:
        return None
    if set(axes) != set(ANATOMICAL_AXES) or sorted(axes.values()) != [0, 1, 2]:
        raise ValueError(f"dataset.json {AXES_KEY} is malformed: {axes}")
    return {name: int(axes[name]) for name in ANATOMICAL_AXES}


def axes_from_direction(direction: Sequence[float]) -> Optional[Dict[str, int]]:
    """Raw array axes (z, y, x order) from an ITK direction matrix (9 values, row-major, LPS; column
    ``j`` is ITK axis ``j`` = array axis ``2 - j``). ``None`` if the image is not 3D or an axis is
    more oblique than ``MIN_AXIS_COSINE`` allows."""
    if len(direction) != 9:
        return None
    columns = np.abs(np.asarray(direction, dtype=float).reshape(3, 3))
    world_of_itk_axis = columns.argmax(axis=0)
    if len(set(world_of_itk_axis)) != 3 or columns.max(axis=0).min() < MIN_AXIS_COSINE:
        return None
    return {_WORLD_AXIS_NAMES[w]: 2 - itk_axis for itk_axis, w in enumerate(world_of_itk_axis)}


@dataclass(frozen=True)
class RawAxes:
    """Raw array axes of a dataset (``None`` when they cannot be determined) and where they came from."""

    axes: Optional[Dict[str, int]]
    source: str


def _first_file(folder: Path, suffix: str) -> Optional[Path]:
    files = sorted(folder.glob(f"*{suffix}")) if folder.is_dir() else []
    return files[0] if files else None


def _axes_from_case_properties(preprocessed_folder: Path) -> RawAxes:
    case = _first_file(preprocessed_folder, ".pkl")
    if case is None:
        return RawAxes(None, f"no preprocessed case (.pkl) in {preprocessed_folder}")
    with open(case, "rb") as f:
        properties = pickle.load(f)
    direction = properties.get("sitk_stuff", {}).get("direction")
    if direction is None:
        return RawAxes(None, f"{case} holds no sitk_stuff direction (not read with SimpleITK)")
    axes = axes_from_direction(direction)
    reason = "" if axes is not None else f" (not a 3D grid within {MIN_AXIS_COSINE} of anatomical axes)"
    return RawAxes(axes, f"direction cosines in {case}{reason}")


def _axes_from_raw_image(raw_dataset_folder: Optional[Path], dataset_json: dict) -> RawAxes:
    if raw_dataset_folder is None:
        return RawAxes(None, "nnUNet_raw is not set")
    reader = dataset_json.get("overwrite_image_reader_writer")
    if reader not in _SIMPLEITK_COMPATIBLE_READERS:
        return RawAxes(None, f"dataset.json reads images with {reader}, whose arrays need not match the file header")
    image = _first_file(raw_dataset_folder / "imagesTr", dataset_json.get("file_ending", ".nii.gz"))
    if image is None:
        return RawAxes(None, f"no training image in {raw_dataset_folder / 'imagesTr'}")
    header = sitk.ImageFileReader()
    header.SetFileName(str(image))
    try:
        header.ReadImageInformation()
    except RuntimeError as e:
        return RawAxes(None, f"{image}: header unreadable ({str(e).strip().splitlines()[-1]})")
    axes = axes_from_direction(header.GetDirection())
    reason = "" if axes is not None else f" (not a 3D grid within {MIN_AXIS_COSINE} of anatomical axes)"
    return RawAxes(axes, f"direction cosines of {image}{reason}")


def raw_anatomical_axes(dataset_json: dict, preprocessed_folder: Path,
                        raw_dataset_folder: Optional[Path] = None) -> RawAxes:
    """The dataset's raw array axes, from the first source that has them: ``symtc_axes`` in
    ``dataset_json``; the direction nnU-Net stored for the first case in ``preprocessed_folder``
    (``sitk_stuff``); the header of the first image in ``raw_dataset_folder/imagesTr``.

    A ``symtc_axes`` record that contradicts the stored direction raises ``ValueError``: one of
    the two describes other arrays than those nnU-Net trains on.
    """
    recorded = recorded_axes(dataset_json)
    from_case = _axes_from_case_properties(Path(preprocessed_folder))
    if recorded is not None:
        if from_case.axes is not None and from_case.axes != recorded:
            raise ValueError(f"dataset.json {AXES_KEY} {recorded} contradicts the {from_case.source}, which "
                             f"gives {from_case.axes}; fix dataset.json or the images")
        return RawAxes(recorded, f"dataset.json {AXES_KEY}")
    if from_case.axes is not None:
        return from_case
    from_image = _axes_from_raw_image(raw_dataset_folder, dataset_json)
    if from_image.axes is not None:
        return from_image
    return RawAxes(None, f"{from_case.source}; {from_image.source}")


def raw_dataset_folder(dataset_name: str) -> Optional[Path]:
    """``$nnUNet_raw/<dataset_name>`` (read at call time, as nnU-Net does), or ``None`` if unset."""
    root = os.environ.get("nnUNet_raw")
    return Path(root) / dataset_name if root else None


@dataclass(frozen=True)
class PatchAxes:
    """Anatomical meaning of the axes of the patches a trainer sees.

    ``names[i]`` is the anatomical axis along patch axis ``i`` (3 names in 3D, 2 in 2D);
    ``slice_axis`` is the anatomical axis 2D slices are cut along (``None`` in 3D).
    """

    names: Tuple[str, ...]
    slice_axis: Optional[str]

    @classmethod
    def resolve(cls, raw_axes: Dict[str, int], transpose_forward: Sequence[int], patch_dim: int) -> "PatchAxes":
        """Map raw array axes through ``transpose_forward`` and, for ``patch_dim`` 2, nnU-Net's
        slicing along transposed axis 0."""
        if sorted(transpose_forward) != [0, 1, 2]:
            raise ValueError(f"transpose_forward must be a permutation of (0, 1, 2), got {list(transpose_forward)}")
        if patch_dim not in (2, 3):
            raise ValueError(f"patches are 2D or 3D, got {patch_dim} dimensions")
        name_of_raw = {axis: name for name, axis in raw_axes.items()}
        transposed = tuple(name_of_raw[raw] for raw in transpose_forward)
        if patch_dim == 3:
            return cls(transposed, None)
        return cls(transposed[1:], transposed[0])

    def axis(self, name: str) -> Optional[int]:
        """Patch axis of anatomical axis ``name``, ``None`` if it is the 2D slice axis."""
        return self.names.index(name) if name in self.names else None

    @property
    def plane(self) -> str:
        """Name of the 2D slice plane (``sagittal``, ``axial``, ``coronal``), or ``3D``."""
        return {None: "3D", LEFT_RIGHT: "sagittal", SUPERIOR_INFERIOR: "axial",
                ANTERIOR_POSTERIOR: "coronal"}[self.slice_axis]
