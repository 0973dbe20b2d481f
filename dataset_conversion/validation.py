"""Checks every converter runs on each case, and the problem records they produce.

A check returns a list of ``Problem`` (empty when the input is fine) instead of raising, so a
converter can report every problem of every case before deciding what to do: skip the bad cases
(default) or stop at the first problem (``strict``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Sequence, Tuple

import numpy as np

from nnunetv2_symtc.errors import InputError
from nnunetv2_symtc.io import Geometry, PathLike, read_image

SPACING_RTOL = 1e-3
"""Relative spacing tolerance under which an image and its mask count as one grid."""
ORIGIN_TOL_VOXELS = 1e-2
"""Origin tolerance, in voxels of the image's smallest spacing."""
DIRECTION_ATOL = 1e-4
MAX_LISTED = 50
"""Problems listed in an error message or on the console (all of them go to ``dataset.json``)."""


@dataclass(frozen=True)
class Problem:
    """One problem with the input: the file it concerns and what is wrong with it."""

    file: str
    message: str
    case: str = ""

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


class ConversionError(InputError):
    """Raised when a conversion cannot proceed; ``problems`` lists every problem found so far."""

    def __init__(self, problems: Sequence[Problem], summary: str = ""):
        self.problems = list(problems)
        lines = [summary] if summary else []
        lines += [str(p) for p in self.problems[:MAX_LISTED]]
        if len(self.problems) > MAX_LISTED:
            lines.append(f"... and {len(self.problems) - MAX_LISTED} more problem(s)")
        super().__init__("\n".join(lines))


class ProblemFound(Exception):
    """Internal: a case check failed (carries the problems so the case can be skipped)."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


def read_checked(path: PathLike, case: str = "") -> Tuple[np.ndarray, Geometry]:
    """``read_image`` of a 3D scalar volume; an unreadable file or another dimensionality becomes a
    ``ProblemFound`` naming the file."""
    try:
        array, geometry = read_image(path)
    except OSError as e:
        message = str(e)
        prefix = f"{path}: "
        raise ProblemFound([Problem(str(path), message[len(prefix):] if message.startswith(prefix) else message,
                                    case)]) from None
    if array.ndim != 3:
        raise ProblemFound([Problem(str(path), f"expected a 3D scalar volume, got array shape {array.shape} "
                                               f"({len(geometry.spacing_zyx)}D, {array.ndim} array axes)", case)])
    return array, geometry


def image_problems(path: PathLike, image: np.ndarray, case: str = "") -> List[Problem]:
    """NaN or infinite voxels in an intensity image."""
    if np.issubdtype(image.dtype, np.floating):
        bad = ~np.isfinite(image)
        if bad.any():
            return [Problem(str(path), f"{int(bad.sum())} NaN/infinite voxels", case)]
    return []


def label_problems(path: PathLike, mask: np.ndarray, is_valid: Callable[[int], bool], convention: str,
                   case: str = "") -> List[Problem]:
    """Non-integer values, values ``is_valid`` rejects (listed), and an all-background mask."""
    if np.issubdtype(mask.dtype, np.floating):
        if not np.isfinite(mask).all():
            return [Problem(str(path), "mask has NaN/infinite voxels", case)]
        if not np.array_equal(mask, np.round(mask)):
            return [Problem(str(path), "mask has non-integer values", case)]
    values = [int(v) for v in np.unique(mask)]
    unknown = [v for v in values if not is_valid(v)]
    if unknown:
        return [Problem(str(path), f"label values {unknown} are not valid {convention} labels", case)]
    if values == [0]:
        return [Problem(str(path), "mask is empty (only background)", case)]
    return []


def grid_problems(image_path: PathLike, image_shape: Sequence[int], image_geometry: Geometry,
                  other_path: PathLike, other_shape: Sequence[int], other_geometry: Geometry,
                  case: str = "") -> List[Problem]:
    """Differences between two voxel grids (shape, spacing, origin, direction), if any."""
    differences = []
    if tuple(image_shape) != tuple(other_shape):
        differences.append(f"shape {tuple(other_shape)} vs {tuple(image_shape)}")
    else:
        spacing, other_spacing = np.asarray(image_geometry.spacing_zyx), np.asarray(other_geometry.spacing_zyx)
        if not np.allclose(spacing, other_spacing, rtol=SPACING_RTOL, atol=0):
            differences.append(f"spacing {other_geometry.spacing_zyx} vs {image_geometry.spacing_zyx}")
        origin_tol = ORIGIN_TOL_VOXELS * float(spacing.min())
        if not np.allclose(image_geometry.origin_xyz, other_geometry.origin_xyz, rtol=0, atol=origin_tol):
            differences.append(f"origin {other_geometry.origin_xyz} vs {image_geometry.origin_xyz}")
        if not np.allclose(image_geometry.direction, other_geometry.direction, rtol=0, atol=DIRECTION_ATOL):
            differences.append(f"direction {other_geometry.direction} vs {image_geometry.direction}")
    if differences:
        return [Problem(str(other_path), f"not on the grid of {image_path}: " + ", ".join(differences), case)]
    return []


def pairing_problems(images: Mapping[str, PathLike], masks: Mapping[str, PathLike],
                     mask_kind: str = "mask") -> List[Problem]:
    """Images without a mask and masks without an image, keyed by case."""
    problems = [Problem(str(images[k]), f"image without {mask_kind}", k) for k in sorted(set(images) - set(masks))]
    problems += [Problem(str(masks[k]), f"{mask_kind} without image", k) for k in sorted(set(masks) - set(images))]
    return problems


def raise_if_any(problems: Iterable[Problem]) -> None:
    """Raise ``ProblemFound`` when ``problems`` is not empty."""
    problems = list(problems)
    if problems:
        raise ProblemFound(problems)


def group_by_case(problems: Iterable[Problem]) -> Dict[str, List[str]]:
    """``{case: [problem text, ...]}``, sorted, for the conversion record."""
    grouped: Dict[str, List[str]] = {}
    for p in problems:
        grouped.setdefault(p.case or Path(p.file).name, []).append(str(p))
    return {k: grouped[k] for k in sorted(grouped)}
