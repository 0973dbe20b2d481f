"""Cleaning a phase-1 semantic mask and finding vertebral-body centres (REFERENCE §5).

Arrays are in the canonical PIR array order ``(left_right, superior_inferior, anterior_posterior)``:
axis 1 grows towards inferior, so "top to bottom" means increasing axis-1 index. Spacing is in mm,
array order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from nnunetv2_symtc.labels import BODY_VALUES

SUPERIOR_INFERIOR_AXIS = 1
"""Array axis running superior -> inferior in PIR arrays."""

FULL_CONNECTIVITY = ndimage.generate_binary_structure(3, 3)


def bounding_box(mask: np.ndarray, margin: int = 0) -> Optional[Tuple[slice, ...]]:
    """Slices of the smallest box holding ``mask`` (grown by ``margin`` voxels, clipped); ``None`` if empty."""
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        if hits.size == 0:
            return None
        box.append(slice(max(int(hits[0]) - margin, 0), min(int(hits[-1]) + 1 + margin, mask.shape[axis])))
    return tuple(box)


def clean_semantic(semantic: np.ndarray, min_component_voxels: int = 30) -> Tuple[np.ndarray, Dict[str, int]]:
    """SPINEPS's phase-1 clean-up of a semantic label array (any shape, 3D).

    1. per label, connected components (26-connectivity) smaller than ``min_component_voxels`` are removed;
    2. only the largest connected structure of the whole foreground is kept;
    3. holes of the foreground are filled with the label of the nearest labelled voxel.

    Returns the cleaned array (same dtype) and voxel counts of each step (``removed_small``,
    ``removed_outside_largest``, ``filled_holes``).
    """
    cleaned = semantic.copy()
    report = {"removed_small": 0, "removed_outside_largest": 0, "filled_holes": 0}
    box = bounding_box(cleaned > 0)
    if box is None:
        return cleaned, report
    view = cleaned[box]
    for value, sub in enumerate(ndimage.find_objects(view), start=1):
        if sub is None:
            continue
        piece = view[sub]
        components, _ = ndimage.label(piece == value, FULL_CONNECTIVITY)
        sizes = np.bincount(components.ravel())
        small = sizes < min_component_voxels
        small[0] = False
        if small.any():
            drop = small[components]
            report["removed_small"] += int(drop.sum())
            piece[drop] = 0
    components, count = ndimage.label(view > 0, FULL_CONNECTIVITY)
    if count > 1:
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        outside = (components != int(np.argmax(sizes))) & (components > 0)
        report["removed_outside_largest"] = int(outside.sum())
        view[outside] = 0
    foreground = view > 0
    holes = ndimage.binary_fill_holes(foreground) & ~foreground
    hole_box = bounding_box(holes, margin=2)
    if hole_box is not None:
        local_holes, local = holes[hole_box], view[hole_box]
        _, nearest = ndimage.distance_transform_edt(local == 0, return_indices=True)
        local[local_holes] = local[tuple(index[local_holes] for index in nearest)]
        report["filled_holes"] = int(holes.sum())
    return cleaned, report


@dataclass
class BodyCentre:
    """A vertebral-body centre: continuous array index (z, y, x), body volume in voxels, how it was
    found (``"component"``, ``"split"`` from a merged body, or ``"merged"`` duplicates) and whether
    the body touches the superior/inferior edge of the field of view."""

    index_zyx: np.ndarray
    volume_voxels: int
    origin: str = "component"
    touches_edge: bool = False

    def to_json(self) -> dict:
        return {"index_zyx": [round(float(v), 3) for v in self.index_zyx], "volume_voxels": int(self.volume_voxels),
                "origin": self.origin, "touches_edge": bool(self.touches_edge)}


def _split_along_superior_inferior(coords: np.ndarray, parts: int) -> List[np.ndarray]:
    """Split voxel coordinates ``(n, 3)`` into ``parts`` groups of equal volume along the SI axis."""
    order = np.argsort(coords[:, SUPERIOR_INFERIOR_AXIS], kind="stable")
    return [coords[chunk] for chunk in np.array_split(order, parts)]


SPLIT_RATIO = 1.5
"""A body larger than this times its neighbours' mean volume is taken as merged bodies (SPINEPS)."""
MIN_CENTRE_DISTANCE_MM = 7.5
"""Body components whose centres are closer than this are one body (SPINEPS)."""
MIN_COMPONENT_FRACTION = 0.1
"""Body components below this fraction of the median component volume are ignored."""

Body = Tuple[np.ndarray, bool, str]
"""A body before splitting: voxel coordinates ``(n, 3)``, whether it touches the superior/inferior edge, origin."""


def vertebral_body_centres(semantic: np.ndarray, spacing_zyx: Sequence[float],
                           body_values: Sequence[int] = BODY_VALUES, split_ratio: float = SPLIT_RATIO,
                           min_distance_mm: float = MIN_CENTRE_DISTANCE_MM,
                           min_fraction: float = MIN_COMPONENT_FRACTION) -> List[BodyCentre]:
    """Vertebral-body centres of a (cleaned) PIR semantic mask, sorted top to bottom.

    - Bodies are connected components (26-connectivity) of ``body_values``; fragments smaller than
      ``min_fraction`` x the median component volume are ignored.
    - Components whose centres are closer than ``min_distance_mm`` are one body (duplicates).
    - A body whose volume exceeds ``split_ratio`` x the mean volume of its neighbouring bodies (above
      and below; bodies cut by the field of view along superior–inferior are not used as reference)
      is taken as ``round(volume / reference)`` merged bodies and split into that many equal-volume
      slabs along superior–inferior.
    """
    bodies = _find_bodies(semantic, spacing_zyx, body_values, min_distance_mm, min_fraction)
    return _split_merged_bodies(bodies, split_ratio)


def _find_bodies(semantic: np.ndarray, spacing_zyx: Sequence[float], body_values: Sequence[int],
                 min_distance_mm: float, min_fraction: float) -> List[Body]:
    """Body components without fragments, duplicates joined, top to bottom (see ``vertebral_body_centres``)."""
    components, count = ndimage.label(np.isin(semantic, body_values), FULL_CONNECTIVITY)
    if count == 0:
        return []
    sizes = np.bincount(components.ravel())[1:]
    bodies: List[Body] = []
    for label, box in enumerate(ndimage.find_objects(components), start=1):
        if sizes[label - 1] < min_fraction * np.median(sizes):
            continue
        coords = np.argwhere(components[box] == label) + np.array([s.start for s in box])
        si = box[SUPERIOR_INFERIOR_AXIS]
        bodies.append((coords, si.start == 0 or si.stop == semantic.shape[SUPERIOR_INFERIOR_AXIS], "component"))
    return _merge_duplicates(bodies, np.asarray(spacing_zyx, dtype=np.float64), min_distance_mm)


def _split_merged_bodies(bodies: List[Body], split_ratio: float) -> List[BodyCentre]:
    """Centres of ``bodies`` (top to bottom), a body far larger than its neighbours split into equal slabs."""
    volumes = np.array([len(c) for c, _, _ in bodies], dtype=np.float64)
    complete = np.array([not t for _, t, _ in bodies])
    centres: List[BodyCentre] = []
    for i, (coords, touches, origin) in enumerate(bodies):
        neighbours = [j for j in (i - 1, i + 1) if 0 <= j < len(bodies) and complete[j]]
        if neighbours:
            reference = float(volumes[neighbours].mean())
        else:
            others = [j for j in range(len(bodies)) if j != i and complete[j]]
            reference = float(np.median(volumes[others])) if others else None
        parts = int(round(volumes[i] / reference)) if reference and volumes[i] > split_ratio * reference else 1
        if parts > 1:
            for piece in _split_along_superior_inferior(coords, parts):
                centres.append(BodyCentre(piece.mean(axis=0), len(piece), "split", touches))
        else:
            centres.append(BodyCentre(coords.mean(axis=0), len(coords), origin, touches))
    return centres


def _merge_duplicates(bodies: List[Tuple[np.ndarray, bool, str]], spacing: np.ndarray,
                      min_distance_mm: float) -> List[Tuple[np.ndarray, bool, str]]:
    """Join bodies whose centroids are closer than ``min_distance_mm`` (closest pair first); sorted top to bottom."""
    bodies = list(bodies)
    while len(bodies) > 1:
        points = np.stack([c.mean(axis=0) for c, _, _ in bodies]) * spacing
        distances = np.linalg.norm(points[:, None] - points[None], axis=-1)
        np.fill_diagonal(distances, np.inf)
        a, b = np.unravel_index(int(np.argmin(distances)), distances.shape)
        if distances[a, b] >= min_distance_mm:
            break
        joined = (np.concatenate([bodies[a][0], bodies[b][0]]), bodies[a][1] or bodies[b][1], "merged")
        bodies = [body for k, body in enumerate(bodies) if k not in (a, b)] + [joined]
    return sorted(bodies, key=lambda body: body[0][:, SUPERIOR_INFERIOR_AXIS].mean())


MIN_BODY_ML = 0.5
"""Smallest plausible vertebral body (ml): adult cervical bodies are about 2-6 ml, lumbar ones 15-40 ml."""
MIN_LEVEL_HEIGHT_MM = 10.0
"""Smallest plausible height of one level (body + disc, mm): cervical levels are about 15-20 mm."""


def body_candidates(semantic: np.ndarray, spacing_zyx: Sequence[float], min_body_ml: float = MIN_BODY_ML,
                    min_level_height_mm: float = MIN_LEVEL_HEIGHT_MM
                    ) -> Tuple[List[BodyCentre], Dict[str, object], List[str]]:
    """Plausible vertebral-body centres of a cleaned PIR semantic mask, top to bottom, for phase 2.

    As ``vertebral_body_centres``, but implausible candidates (a poor phase 1 multiplies them) are
    rejected before phase 2:

    1. bodies below ``min_body_ml`` are rejected before merged bodies are split (so that specks do
       not serve as the reference volume that cuts a real body into slabs);
    2. at most ``floor(superior-inferior field of view / min_level_height_mm) + 1`` centres are kept
       (no more levels fit, one of them cut at an edge): the largest.

    Returns the centres, a report of the counts and limits, and a warning with the counts when
    candidates were rejected.
    """
    bodies = _find_bodies(semantic, spacing_zyx, BODY_VALUES, MIN_CENTRE_DISTANCE_MM, MIN_COMPONENT_FRACTION)
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    plausible = [b for b in bodies if len(b[0]) * voxel_ml >= min_body_ml]
    centres = _split_merged_bodies(plausible, SPLIT_RATIO)
    extent_mm = float(semantic.shape[SUPERIOR_INFERIOR_AXIS] * spacing_zyx[SUPERIOR_INFERIOR_AXIS])
    capacity = int(extent_mm // min_level_height_mm) + 1
    largest = {id(c) for c in sorted(centres, key=lambda c: c.volume_voxels, reverse=True)[:capacity]}
    kept = [c for c in centres if id(c) in largest]
    report = {"candidates": len(bodies), "below_min_volume": len(bodies) - len(plausible),
              "beyond_capacity": len(centres) - len(kept), "kept": len(kept), "min_body_ml": min_body_ml,
              "capacity": capacity, "field_of_view_mm": round(extent_mm, 1), "min_level_height_mm": min_level_height_mm}
    warnings = []
    if report["below_min_volume"] or report["beyond_capacity"]:
        warnings.append(f"phase 1 gave {len(bodies)} vertebral-body candidates; rejected before phase 2: "
                        f"{report['below_min_volume']} below {min_body_ml} ml and {report['beyond_capacity']} beyond "
                        f"the {capacity} levels a {report['field_of_view_mm']} mm field of view can hold; check the "
                        "phase-1 segmentation")
    return kept, report, warnings
