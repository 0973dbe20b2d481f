"""True spine measurements of a phantom subject, from its shape model (never from rendered masks).

The measurement definitions (``measurement.definitions``) are applied to the implicit shapes
that ``painting`` rasterises, evaluated exactly in the mid-sagittal plane (u = 0), with each
bone's exact frame: its centre and tilt give the body centre and both endplate directions. The
plane coordinates are world ``(y, z)`` (posterior, superior).
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from nnunetv2_symtc import labels as L
from nnunetv2_symtc.measurement.definitions import (DiscGeometry, SpineMeasurements, VertebraGeometry,
                                                    measure_levels)
from nnunetv2_symtc.phantom import painting as P
from nnunetv2_symtc.measurement.lines import MaskRegion
from nnunetv2_symtc.phantom.anatomy import POSTERIOR_WALL, Bone, SpineAnatomy, midline_x

DISC_DEPTH_MARGIN = 1.02
"""``painting._paint_disc``'s disc reaches this factor beyond the mean semi-depth of its two bodies."""
DISC_POSTERIOR_MARGIN_MM = 0.5
"""... and this far (mm) behind their flattened posterior wall."""
CANAL_TRUTH_SPACING_MM = 0.1
"""Pixel size (mm) of the mid-sagittal rasterisation the canal's truth is read from."""
CANAL_TRUTH_REACH_MM = (25.0, 60.0)
"""Half height and half depth (mm) of that rasterised patch around each body or disc centre."""


def _local(bone_centre, angle: float, points: np.ndarray):
    """Local (v, t) of world (y, z) ``points`` (N, 2) in a frame at ``bone_centre`` tilted by ``angle``."""
    dy, dz = points[:, 0] - bone_centre[0], points[:, 1] - bone_centre[1]
    return dy * np.sin(angle) + dz * np.cos(angle), dy * np.cos(angle) - dz * np.sin(angle)


def body_region(bone: Bone):
    """The vertebral body of ``bone`` (endplates included) in the mid-sagittal plane, as a region."""
    def inside(points: np.ndarray) -> np.ndarray:
        v, t = _local(bone.centre_yz, bone.angle, points)
        return P._body_shape(np.zeros_like(v), v, t, bone)[0].astype(np.float64)
    return inside


def disc_region(upper: Bone, lower: Bone):
    """The disc between two bodies as ``painting`` draws it (its front-to-back extent in the
    disc's frame), outside both bodies."""
    centre = (upper.endplate_centre("bottom") + lower.endplate_centre("top")) / 2
    angle = (upper.angle + lower.angle) / 2
    b = (upper.depth + lower.depth) / 4 * DISC_DEPTH_MARGIN
    bodies = (body_region(upper), body_region(lower))

    def inside(points: np.ndarray) -> np.ndarray:
        _, t = _local(centre, angle, points)
        disc = (np.abs(t) <= b) & (t <= b * POSTERIOR_WALL + DISC_POSTERIOR_MARGIN_MM)
        for body in bodies:
            disc &= body(points) < 0.5
        return disc.astype(np.float64)
    return inside, centre


def canal_region(anatomy: SpineAnatomy, centre_yz) -> MaskRegion:
    """The spinal canal (cord included) near ``centre_yz``, where ``painting`` leaves it: the
    model rasterised at ``CANAL_TRUTH_SPACING_MM`` in the mid-sagittal plane at that height
    (bone painted over the canal, such as the base of a spinous process, is not canal)."""
    y, z = (float(c) for c in centre_yz)
    n_si, n_ap = (int(round(2 * r / CANAL_TRUTH_SPACING_MM)) + 1 for r in CANAL_TRUTH_REACH_MM)
    origin = (float(midline_x(anatomy, z)), y - CANAL_TRUTH_REACH_MM[1], z + CANAL_TRUTH_REACH_MM[0])
    geometry = P.pir_geometry((1.0, CANAL_TRUTH_SPACING_MM, CANAL_TRUTH_SPACING_MM), origin)
    spine = P.rasterise(anatomy, geometry, (1, n_si, n_ap), supersample=1).spine[0]
    canal = np.isin(spine, (L.SPINAL_CANAL, L.SPINAL_CORD))
    return _Shifted(MaskRegion(canal, CANAL_TRUTH_SPACING_MM, CANAL_TRUTH_SPACING_MM), origin[1:])


class _Shifted:
    """A region in world (y, z) from a region whose plane origin is the world point ``origin_yz``."""

    def __init__(self, region, origin_yz):
        self.region, self.origin = region, np.asarray(origin_yz, dtype=np.float64)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        return self.region(np.asarray(points) - self.origin)


def true_measurements(anatomy: SpineAnatomy, case: str = "") -> SpineMeasurements:
    """The true values of every mobile vertebra and disc of ``anatomy`` (volumes excepted: they
    are left empty, the truth covers lengths and angles) and its lumbar lordosis."""
    vertebrae = []
    for bone in anatomy.vertebrae:
        direction = bone.axis("t")
        vertebrae.append(VertebraGeometry(bone.vertebra_id, body=body_region(bone), centre=np.asarray(bone.centre_yz),
                                          superior_endplate=direction, inferior_endplate=direction,
                                          canal=canal_region(anatomy, bone.centre_yz)))
    s1 = anatomy.bone(L.SACRUM_ID)
    sacrum = VertebraGeometry(L.SACRUM_ID, body=body_region(s1), centre=np.asarray(s1.centre_yz),
                              superior_endplate=s1.axis("t"))
    discs: Dict[int, DiscGeometry] = {}
    below = list(anatomy.vertebrae[1:]) + [s1]
    for upper, lower in zip(anatomy.vertebrae, below):
        region, centre = disc_region(upper, lower)
        discs[upper.vertebra_id] = DiscGeometry(upper.vertebra_id, region=region, upper_body=body_region(upper),
                                                lower_body=body_region(lower), centre=centre,
                                                canal=canal_region(anatomy, centre))
    measured = measure_levels(case, vertebrae, discs, sacrum)
    for row in measured.levels:
        for name in ("body_volume_mm3", "disc_volume_mm3"):
            row.reasons[name] = "volumes have no true value"
    return measured
