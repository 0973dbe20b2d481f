"""Reading and writing images with their geometry, and orientation helpers.

Two axis orders meet here and are kept apart by name:

- *array order* ``(z, y, x)``: numpy arrays from SimpleITK, ``spacing_zyx``;
- *ITK order* ``(x, y, z)``: ``GetSpacing()``, ``GetOrigin()``, the direction matrix, orientation
  codes such as ``"PIR"``.

Orientation codes name, per ITK axis x, y, z, the anatomical direction in which the voxel index
*increases* (SimpleITK's ``DICOMOrient`` convention, the same as nibabel's axcodes): ``"PIR"``
means x runs to posterior, y to inferior, z to right. World coordinates are LPS (ITK).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Tuple, Union

import numpy as np
import SimpleITK as sitk

from nnunetv2_symtc.errors import InputFileError

PathLike = Union[str, Path]

CANONICAL_ORIENTATION = "PIR"
"""Orientation of every dataset we write (SPINEPS's): array axes (z, y, x) run R, I, P, so array
axis 0 is left–right (the sagittal slice axis), axis 1 superior–inferior, axis 2 anterior–posterior."""

_AXIS_OF_CODE = {"L": "left_right", "R": "left_right", "A": "anterior_posterior",
                 "P": "anterior_posterior", "S": "superior_inferior", "I": "superior_inferior"}


@dataclass(frozen=True)
class Geometry:
    """Voxel grid of an image: spacing in mm (array order), origin in mm (LPS, ITK order) and the
    ITK direction matrix (9 values, row-major; column j is the world direction of ITK axis j)."""

    spacing_zyx: Tuple[float, ...]
    origin_xyz: Tuple[float, ...]
    direction: Tuple[float, ...]

    @classmethod
    def from_sitk(cls, image: sitk.Image) -> "Geometry":
        return cls(tuple(float(s) for s in reversed(image.GetSpacing())),
                   tuple(float(o) for o in image.GetOrigin()),
                   tuple(float(d) for d in image.GetDirection()))

    @property
    def spacing_xyz(self) -> Tuple[float, ...]:
        return tuple(reversed(self.spacing_zyx))

    def apply_to(self, image: sitk.Image) -> sitk.Image:
        """Set this geometry on ``image`` (in place) and return it."""
        image.SetSpacing(self.spacing_xyz)
        image.SetOrigin(self.origin_xyz)
        image.SetDirection(self.direction)
        return image

    @property
    def orientation(self) -> str:
        """Orientation code in ITK axis order, e.g. ``"PIR"``."""
        return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(self.direction)

    def anatomical_axes(self) -> Dict[str, int]:
        """Array-order axis index of ``superior_inferior``, ``left_right`` and ``anterior_posterior``."""
        codes_zyx = self.orientation[::-1]
        return {_AXIS_OF_CODE[c]: axis for axis, c in enumerate(codes_zyx)}

    def superior_sign(self) -> int:
        """+1 if the voxel index on the superior–inferior axis grows towards superior, else -1."""
        codes_zyx = self.orientation[::-1]
        return 1 if codes_zyx[self.anatomical_axes()["superior_inferior"]] == "S" else -1

    def index_to_world(self, index_zyx) -> np.ndarray:
        """Continuous array index(es) ``(..., 3)`` in (z, y, x) -> LPS world mm ``(..., 3)`` in (x, y, z)."""
        index_xyz = np.asarray(index_zyx, dtype=np.float64)[..., ::-1]
        matrix = np.asarray(self.direction).reshape(3, 3) * np.asarray(self.spacing_xyz)[None, :]
        return index_xyz @ matrix.T + np.asarray(self.origin_xyz)

    def world_to_index(self, world_xyz) -> np.ndarray:
        """LPS world mm ``(..., 3)`` -> continuous array index ``(..., 3)`` in (z, y, x)."""
        matrix = np.asarray(self.direction).reshape(3, 3) * np.asarray(self.spacing_xyz)[None, :]
        index_xyz = (np.asarray(world_xyz, dtype=np.float64) - np.asarray(self.origin_xyz)) @ np.linalg.inv(matrix).T
        return index_xyz[..., ::-1]


def to_sitk(array_zyx: np.ndarray, geometry: Geometry) -> sitk.Image:
    """Array in (z, y, x) plus geometry -> SimpleITK image."""
    return geometry.apply_to(sitk.GetImageFromArray(np.ascontiguousarray(array_zyx)))


def read_image(path: PathLike) -> Tuple[np.ndarray, Geometry]:
    """Read any SimpleITK format -> (array in (z, y, x), geometry). Errors name the file."""
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise InputFileError(f"{path}: cannot be read as an image ({str(e).strip().splitlines()[-1]})") from None
    return sitk.GetArrayFromImage(image), Geometry.from_sitk(image)


def write_image(path: PathLike, array_zyx: np.ndarray, geometry: Geometry, compress: bool = True) -> None:
    """Write an array in (z, y, x) with its geometry; the format follows the file ending."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(to_sitk(array_zyx, geometry), str(path), compress)


def reorient(image: sitk.Image, orientation: str = CANONICAL_ORIENTATION) -> sitk.Image:
    """Permute and flip the voxel grid to ``orientation`` (ITK order); world positions are unchanged."""
    if sorted(_AXIS_OF_CODE[c] for c in orientation) != sorted(set(_AXIS_OF_CODE.values())):
        raise ValueError(f"{orientation!r} is not an orientation code such as 'PIR' or 'LPS'")
    return sitk.DICOMOrient(image, orientation)


def is_sagittal(geometry: Geometry) -> bool:
    """True when the thickest-spaced axis is left–right (sagittal slices) or spacing is isotropic."""
    spacing = np.asarray(geometry.spacing_zyx)
    if np.allclose(spacing, spacing.max(), rtol=0.05):
        return True
    return int(np.argmax(spacing)) == geometry.anatomical_axes()["left_right"]

