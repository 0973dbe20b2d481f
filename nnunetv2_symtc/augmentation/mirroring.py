"""Which mirror axes and rotations keep spine labels valid, in the axes of the patches a trainer
sees (``nnunetv2_symtc.augmentation.axes.PatchAxes``).

- Mirroring along superior–inferior swaps levels (L1 <-> L5, the vertebra above <-> below): never.
- Mirroring along left–right swaps paired labels (SPINEPS 43/44, 45/46, 47/48): only when the
  label set has no left/right pair (and the trainer allows it).
- Anterior–posterior mirroring swaps no label but draws an anatomically impossible spine: used in
  3D patches, where it is one of several augmentations, not in 2D slices.
- A rotation by up to 180 degrees includes the half-turn, which equals mirroring both axes of its
  plane. A plane whose half-turn swaps labels (any plane containing superior–inferior; the axial
  plane when left–right mirroring is unsafe) limits rotations to ``MAX_ROTATION``. nnU-Net rotates
  in the plane of a 2D patch, in the plane of patch axes 1 and 2 for dummy-2D augmentation, and in
  all three planes in 3D.
- When the anatomical axes are unknown: no mirroring, rotations limited to ``MAX_ROTATION``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Optional, Tuple

from nnunetv2_symtc.augmentation.axes import ANTERIOR_POSTERIOR, LEFT_RIGHT, SUPERIOR_INFERIOR, PatchAxes
from nnunetv2_symtc.labels import LEFT_RIGHT_PAIRS, SPINEPS_SEMANTIC_NAMES

MAX_ROTATION = 15.0 / 180.0 * math.pi
"""Largest rotation (radians) in a plane whose half-turn would swap labels."""

_PAIRED_NAMES = {SPINEPS_SEMANTIC_NAMES[v] for pair in LEFT_RIGHT_PAIRS for v in pair}


def has_left_right_pairs(label_names: Iterable[str]) -> bool:
    """True if any label is one side of a left/right pair: a SPINEPS paired name, or a name with
    the word ``left`` or ``right`` in it (``costal_left``, ``Left Kidney``, ``rightLung``)."""
    names = set(label_names)
    words = {w.lower() for n in names for w in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", n)}
    return bool(names & _PAIRED_NAMES) or bool(words & {"left", "right"})


def rotation_planes(patch_dim: int, dummy_2d: bool) -> Tuple[Tuple[int, int], ...]:
    """The planes (pairs of patch axes) in which nnU-Net's spatial transform rotates."""
    if patch_dim == 2:
        return ((0, 1),)
    return ((1, 2),) if dummy_2d else ((0, 1), (0, 2), (1, 2))


@dataclass(frozen=True)
class AugmentationRules:
    """Label-safe mirror axes (patch axes) and rotation limit (radians; ``None``: nnU-Net's own
    range is safe), with a one-line reason for the log."""

    mirror_axes: Tuple[int, ...]
    max_rotation: Optional[float]
    reason: str


def anatomy_safe_rules(patch: Optional[PatchAxes], patch_dim: int, dummy_2d: bool,
                       left_right_safe: bool) -> AugmentationRules:
    """Rules for patches whose axes are ``patch`` (``None``: unknown anatomy, the safest rules).

    ``left_right_safe``: mirroring left–right swaps no label (no left/right pairs, and the trainer allows it).
    """
    if patch is None:
        return AugmentationRules((), MAX_ROTATION, "anatomical axes unknown: no mirroring, rotation limited")
    mirror = []
    if left_right_safe and patch.axis(LEFT_RIGHT) is not None:
        mirror.append(patch.axis(LEFT_RIGHT))
    if patch.slice_axis is None:
        mirror.append(patch.axis(ANTERIOR_POSTERIOR))
    unsafe_planes = [(a, b) for a, b in rotation_planes(patch_dim, dummy_2d)
                     if SUPERIOR_INFERIOR in (patch.names[a], patch.names[b]) or not left_right_safe]
    limit = MAX_ROTATION if unsafe_planes else None
    planes = ", ".join(f"{patch.names[a]}/{patch.names[b]}" for a, b in unsafe_planes) or "none"
    reason = (f"patch axes {dict(enumerate(patch.names))} ({patch.plane}); never superior-inferior; "
              f"left-right {'swaps no label' if left_right_safe else 'refused'}; "
              f"planes whose half-turn swaps labels: {planes}")
    return AugmentationRules(tuple(sorted(mirror)), limit, reason)
