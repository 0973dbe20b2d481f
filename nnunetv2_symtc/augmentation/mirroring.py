"""Which mirror axes and rotations keep spine labels valid.

Converters record in ``dataset.json`` which array axis (nnU-Net spatial order) is which:
``"symtc_axes": {"left_right": 0, "superior_inferior": 1, "anterior_posterior": 2}``.

- Mirroring along superior–inferior swaps levels (L1 <-> L5, the vertebra above <-> below): never.
- Mirroring along left–right swaps paired labels (SPINEPS 43/44, 45/46, 47/48): only when the
  label set has no left/right pair.
- Anterior–posterior mirroring swaps no label, but makes an anatomically impossible spine; it is
  allowed in 3D and not in 2D sagittal slices, where it is the only in-plane mirror left.
- In-plane rotation by up to 180 degrees turns a sagittal slice upside down (a level swap), so
  rotations in a plane containing the superior–inferior axis are limited to ``MAX_SAGITTAL_ROTATION``.
"""
from __future__ import annotations

import math
from typing import Dict, Iterable, Optional, Tuple

from nnunetv2_symtc.labels import LEFT_RIGHT_PAIRS, SPINEPS_SEMANTIC_NAMES

AXES_KEY = "symtc_axes"
MAX_SAGITTAL_ROTATION = 15.0 / 180.0 * math.pi
"""Largest in-plane rotation (radians) for planes containing the superior–inferior axis."""

_PAIRED_NAMES = {SPINEPS_SEMANTIC_NAMES[v] for pair in LEFT_RIGHT_PAIRS for v in pair}


def dataset_axes(dataset_json: dict) -> Optional[Dict[str, int]]:
    """The converter's axis record, or ``None`` for datasets we did not convert."""
    axes = dataset_json.get(AXES_KEY)
    if axes is None:
        return None
    if sorted(axes.values()) != [0, 1, 2] or set(axes) != {"left_right", "superior_inferior", "anterior_posterior"}:
        raise ValueError(f"dataset.json {AXES_KEY} is malformed: {axes}")
    return dict(axes)


def has_left_right_pairs(label_names: Iterable[str]) -> bool:
    """True if any label is one side of a left/right pair (by SPINEPS name, or a ``_left``/``_right`` suffix)."""
    names = set(label_names)
    return bool(names & _PAIRED_NAMES) or any(n.endswith(("_left", "_right")) for n in names)


def safe_mirror_axes(axes: Dict[str, int], patch_dim: int, label_names: Iterable[str],
                     allow_left_right: bool = True) -> Tuple[int, ...]:
    """Mirror axes (in the patch's own axis order) that swap no labels.

    ``patch_dim`` is 3 for 3D patches (axes as recorded) or 2 for 2D patches, which nnU-Net cuts
    along array axis 0: 2D axis ``i`` is 3D axis ``i + 1``.
    """
    if patch_dim == 2:
        if axes["left_right"] != 0:
            raise ValueError("2D training needs sagittal slices (left-right must be array axis 0); "
                             f"this dataset records {axes}")
        return ()
    allowed = [axes["anterior_posterior"]]
    if allow_left_right and not has_left_right_pairs(label_names):
        allowed.append(axes["left_right"])
    return tuple(sorted(allowed))


def rotation_limit(axes: Dict[str, int], patch_dim: int, dummy_2d: bool) -> Optional[float]:
    """Largest safe rotation angle (radians), or ``None`` when nnU-Net's own range is safe.

    Rotations happen in the 2D plane of a 2D patch, in the plane of axes 1 and 2 for nnU-Net's
    dummy-2D augmentation, and about all three axes in 3D; each of these planes contains the
    superior–inferior axis unless it is array axis 0 in the dummy-2D case.
    """
    if patch_dim == 3 and dummy_2d and axes["superior_inferior"] == 0:
        return None
    return MAX_SAGITTAL_ROTATION
