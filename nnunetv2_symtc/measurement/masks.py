"""Spine measurements from two-phase outputs: a semantic (``seg-spine``) and an instance
(``seg-vert``) mask in SPINEPS values, as PIR arrays with spacing (``measure_masks``) or as images
in any orientation (``measure_images``, reoriented through SimpleITK).

Each vertebra is measured in the sagittal slice through its body's centroid, each disc in the
slice through the disc's centroid. The body is the semantic vertebral body (49, 50) under the
vertebra's instance id, plus the endplate voxels (62, 52, 53) nearest to it.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from nnunetv2_symtc import labels as L
from nnunetv2_symtc.errors import InputError
from nnunetv2_symtc.inference.inputs import SPINEPS_VALUES
from nnunetv2_symtc.io import Geometry, reorient
from nnunetv2_symtc.measurement.definitions import (ENDPLATE_FRACTION, DiscGeometry, SpineMeasurements,
                                                    VertebraGeometry, measure_levels)
from nnunetv2_symtc.measurement.lines import MaskRegion, central_positions, fit_line, principal_frame, surface_points

MIN_ENDPLATE_LABEL_FRACTION = 0.25
"""A surface counts as an endplate when at least this share of its points carry an endplate
label (a pixel-thick endplate band is missed in some columns on coarse grids)."""
MIN_SURFACE_POINTS = 4
"""Fewest surface columns an endplate line is fitted to."""
GRID_TOLERANCE = 1e-3
"""Relative tolerance when comparing two masks' spacing, origin and direction."""


def _endplate(region: MaskRegion, points: np.ndarray, frame, labels: Optional[np.ndarray], side: int,
              name: str) -> Tuple[Optional[np.ndarray], str]:
    """Direction (pointing posterior) of the superior (``side=1``) or inferior (``-1``) endplate
    line of a body, or None and the reason (cut by the field of view, no endplate label, too few
    points): the straight line fitted to the body's sub-pixel surface (``lines.surface_points``)
    at one point per pixel over the central ``definitions.ENDPLATE_FRACTION`` of the body's extent
    along its long axis. ``points``: the body's pixel centres; ``labels``: the semantic slice
    (None: do not check endplate labels)."""
    centre, long_axis, short_axis = frame
    t = (points - centre) @ long_axis
    step = min(region.spacing)
    positions = central_positions(t.min(), t.max(), ENDPLATE_FRACTION, step)
    where = "superior" if side > 0 else "inferior"
    surface, cut = surface_points(region, centre, long_axis, short_axis, positions, side)
    if cut:
        return None, f"{name}: the {where} endplate is cut by the field of view"
    if len(surface) < MIN_SURFACE_POINTS:
        return None, f"{name}: too few pixels for a {where} endplate line"
    if labels is not None:
        inner = region.index(surface - side * step / 2 * short_axis[None, :])
        rows, columns = (np.clip(np.round(i).astype(int), 0, n - 1) for i, n in zip(inner, labels.shape))
        if np.isin(labels[rows, columns], L.ENDPLATE_VALUES).mean() < MIN_ENDPLATE_LABEL_FRACTION:
            return None, f"{name}: no {where} endplate label (62/52/53) in the semantic mask"
    return fit_line(surface)[1], ""


def _body_ids(semantic: np.ndarray, instance: np.ndarray, spacing_zyx) -> np.ndarray:
    """Vertebra id of every vertebral body voxel (endplates included; the sacrum: all of it), 0 elsewhere."""
    vertebra = np.isin(instance, L.VERTEBRA_INSTANCE_IDS)
    ids = np.where(np.isin(semantic, L.BODY_VALUES) & vertebra, instance, 0).astype(np.int32)
    ids[(semantic == L.SACRUM) & (instance == L.SACRUM_ID)] = L.SACRUM_ID
    endplates = np.isin(semantic, L.ENDPLATE_VALUES)
    if endplates.any() and ids.any():
        _, nearest = ndimage.distance_transform_edt(ids == 0, sampling=spacing_zyx, return_indices=True)
        ids[endplates] = ids[tuple(n[endplates] for n in nearest)]
    return ids


def _centroid_slice(mask3d: np.ndarray) -> int:
    """Sagittal slice (left-right array axis 0) through the centroid of a non-empty ``mask3d``."""
    return int(round(float(np.argwhere(mask3d)[:, 0].mean())))


def measure_masks(semantic: np.ndarray, instance: np.ndarray, spacing_zyx, case: str = "") -> SpineMeasurements:
    """Measure every level of a PIR semantic and instance mask pair (arrays (z, y, x) = (left-right,
    superior-inferior, anterior-posterior), SPINEPS values, ``spacing_zyx`` in mm).

    ``ValueError`` when the two arrays differ in shape. Missing structures give rows with empty
    values and reasons (``definitions.SpineMeasurements``).
    """
    if semantic.shape != instance.shape:
        raise ValueError(f"{case}: semantic mask {semantic.shape} and instance mask {instance.shape} differ in shape")
    spacing = tuple(float(s) for s in spacing_zyx)
    voxel_mm3 = float(np.prod(spacing))
    present = set(int(v) for v in np.unique(instance))
    mobile = [v for v in L.VERTEBRA_INSTANCE_IDS if v in present]
    if not mobile:
        return SpineMeasurements(case, [], None, "no vertebra", reason="no vertebra (ids 1-25, 28) in the instance mask")
    body_ids = _body_ids(semantic, instance, spacing)
    canal = np.isin(semantic, (L.SPINAL_CANAL, L.SPINAL_CORD))

    def region(mask2d: np.ndarray) -> MaskRegion:
        return MaskRegion(mask2d, spacing[1], spacing[2])

    vertebrae: List[VertebraGeometry] = []
    for vid in mobile:
        name = L.VERTEBRA_NAMES[vid]
        body = body_ids == vid
        g = VertebraGeometry(vid)
        if not body.any():
            g.reasons["body"] = f"{name}: no vertebral body (49/50) under this vertebra in the semantic mask"
            g.reasons["superior_endplate"] = g.reasons["inferior_endplate"] = g.reasons["body"]
            vertebrae.append(g)
            continue
        k = _centroid_slice(body)
        rows, cols = np.nonzero(body[k])
        r = region(body[k])
        points = r.points(rows, cols)
        frame = principal_frame(points)
        g.body, g.centre, g.canal, g.volume_mm3 = r, frame[0], region(canal[k]), float(body.sum()) * voxel_mm3
        for side, key in ((1, "superior_endplate"), (-1, "inferior_endplate")):
            direction, why = _endplate(r, points, frame, semantic[k], side, name)
            setattr(g, key, direction)
            if why:
                g.reasons[key] = why
        vertebrae.append(g)

    sacrum_body = body_ids == L.SACRUM_ID
    lowest = mobile[-1]
    sacrum: Optional[VertebraGeometry] = None
    if sacrum_body.any():
        sacrum = VertebraGeometry(L.SACRUM_ID)
        lumbosacral = instance == L.SPINEPS_DISC_OFFSET + lowest
        if not lumbosacral.any():
            sacrum.reasons["superior_endplate"] = (f"S1: no {L.VERTEBRA_NAMES[lowest]}/S1 disc to locate the "
                                                   f"superior endplate")
        else:
            k = _centroid_slice(lumbosacral)
            disc_rows, disc_cols = np.nonzero(lumbosacral[k])
            r = region(lumbosacral[k])
            centre, long_axis, short_axis = principal_frame(r.points(disc_rows, disc_cols))
            # The sacrum's top surface under the disc, from lines that start 2 mm below the disc's lowest point.
            disc_points = r.points(disc_rows, disc_cols)
            below = centre + (((disc_points - centre) @ short_axis).min() - 2.0) * short_axis
            direction, why = _endplate(region(sacrum_body[k]), disc_points, (below, long_axis, short_axis), None, 1, "S1")
            sacrum.superior_endplate = direction
            if why:
                sacrum.reasons["superior_endplate"] = why

    discs: Dict[int, DiscGeometry] = {}
    below_ids = mobile[1:] + [L.SACRUM_ID if sacrum is not None else None]
    for vid, below in zip(mobile, below_ids):
        name = L.VERTEBRA_NAMES[vid]
        disc = instance == L.SPINEPS_DISC_OFFSET + vid
        d = DiscGeometry(vid)
        if below is None:
            d.reasons["lower"] = f"{name}: no vertebra below it in the instance mask"
        if not disc.any():
            d.reasons["disc"] = f"{name}: no disc below it ({L.SPINEPS_DISC_OFFSET + vid}) in the instance mask"
            discs[vid] = d
            continue
        k = _centroid_slice(disc)
        rows, cols = np.nonzero(disc[k])
        d.region = region(disc[k])
        d.centre = d.region.points(rows, cols).mean(axis=0)
        d.upper_body = region(body_ids[k] == vid)
        d.lower_body = region(body_ids[k] == below) if below is not None else None
        d.canal = region(canal[k])
        d.volume_mm3 = float(disc.sum()) * voxel_mm3
        discs[vid] = d
    return measure_levels(case, vertebrae, discs, sacrum)


def _same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    return (a.GetSize() == b.GetSize()
            and np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=GRID_TOLERANCE)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=GRID_TOLERANCE * max(a.GetSpacing()))
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=GRID_TOLERANCE))


def measure_images(semantic: sitk.Image, instance: sitk.Image, case: str = "") -> SpineMeasurements:
    """``measure_masks`` on images in any orientation: both are reoriented to PIR (permuting and
    flipping axes; an oblique grid is measured on its nearest axis-aligned orientation).
    ``InputError`` when the two images are not on one grid or hold values that are not SPINEPS's."""
    if not _same_grid(semantic, instance):
        raise InputError(f"{case}: the semantic mask (size {semantic.GetSize()}, spacing {semantic.GetSpacing()}) "
                         f"and the instance mask (size {instance.GetSize()}, spacing {instance.GetSpacing()}) "
                         f"are not on the same grid")
    semantic_pir, instance_pir = reorient(semantic), reorient(instance)
    spacing = Geometry.from_sitk(semantic_pir).spacing_zyx
    semantic_array, instance_array = sitk.GetArrayFromImage(semantic_pir), sitk.GetArrayFromImage(instance_pir)
    unknown = sorted(int(v) for v in np.unique(semantic_array) if int(v) not in SPINEPS_VALUES)
    if unknown:
        raise InputError(f"{case}: values {unknown} of the semantic mask are not SPINEPS semantic labels")
    unknown = sorted(int(v) for v in np.unique(instance_array) if not L.is_spineps_instance_value(int(v)))
    if unknown:
        raise InputError(f"{case}: values {unknown} of the instance mask are not SPINEPS instance values")
    return measure_masks(semantic_array, instance_array, spacing, case)
