"""True spine measurements of a phantom subject, from its shape model (never from rendered masks).

The measurement definitions (``measurement.definitions``) are applied to the implicit shapes
that ``painting`` rasterises, evaluated exactly in the mid-sagittal plane (u = 0), with each
bone's exact frame: its centre and tilt give the body centre and the axes along which the
endplate lines are fitted to the exact (concave) surfaces. The plane coordinates are world
``(y, z)`` (posterior, superior).
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from nnunetv2_symtc import labels as L
from nnunetv2_symtc.measurement.definitions import (ENDPLATE_FRACTION, DiscGeometry, SpineMeasurements,
                                                    VertebraGeometry, measure_levels)
from nnunetv2_symtc.measurement.lines import MaskRegion, central_positions, fit_line, surface_points
from nnunetv2_symtc.phantom import painting as P
from nnunetv2_symtc.phantom.anatomy import POSTERIOR_WALL, Bone, SpineAnatomy, midline_x

DISC_DEPTH_MARGIN = 1.02
"""``painting._paint_disc``'s disc reaches this factor beyond the mean semi-depth of its two bodies."""
DISC_POSTERIOR_MARGIN_MM = 0.5
"""... and this far (mm) behind their flattened posterior wall."""
ENDPLATE_STEP_MM = 0.1
"""Spacing (mm) of the exact surface points an endplate line is fitted to."""
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


def _endplate(region, centre, long_axis, short_axis, low: float, high: float, side: int) -> np.ndarray:
    """The endplate line's direction by ``measurement.masks``'s definition, on the exact surface:
    a line fitted over the central ``ENDPLATE_FRACTION`` of ``[low, high]`` along ``long_axis``."""
    positions = central_positions(low, high, ENDPLATE_FRACTION, ENDPLATE_STEP_MM)
    points, _ = surface_points(region, centre, long_axis, short_axis, positions, side)
    return fit_line(points)[1]


def _body_endplate(bone: Bone, side: int) -> np.ndarray:
    """Superior (``side=1``) or inferior endplate line of a body, in its own frame over its full
    anteroposterior extent at the endplates (``-depth/2`` to the flattened posterior wall)."""
    b = bone.depth / 2
    return _endplate(body_region(bone), np.asarray(bone.centre_yz), bone.axis("t"), bone.axis("v"),
                     -b, POSTERIOR_WALL * b, side)


def _s1_endplate(lowest: Bone, s1: Bone) -> np.ndarray:
    """S1's superior endplate line as the masks find it: along the lumbosacral disc's axes, over
    the disc's anteroposterior extent, from lines starting at the level of S1's centre."""
    _, centre = disc_region(lowest, s1)
    angle = (lowest.angle + s1.angle) / 2
    long_axis, short_axis = np.array([np.cos(angle), -np.sin(angle)]), np.array([np.sin(angle), np.cos(angle)])
    b = (lowest.depth + s1.depth) / 4 * DISC_DEPTH_MARGIN
    start = centre - ((centre - np.asarray(s1.centre_yz)) @ short_axis) * short_axis
    return _endplate(body_region(s1), start, long_axis, short_axis, -b, b * POSTERIOR_WALL + DISC_POSTERIOR_MARGIN_MM, 1)


def true_measurements(anatomy: SpineAnatomy, case: str = "") -> SpineMeasurements:
    """The true values of every mobile vertebra and disc of ``anatomy`` (volumes excepted: they
    are left empty, the truth covers lengths and angles) and its lumbar lordosis."""
    vertebrae = []
    for bone in anatomy.vertebrae:
        vertebrae.append(VertebraGeometry(bone.vertebra_id, body=body_region(bone), centre=np.asarray(bone.centre_yz),
                                          superior_endplate=_body_endplate(bone, 1),
                                          inferior_endplate=_body_endplate(bone, -1),
                                          canal=canal_region(anatomy, bone.centre_yz)))
    s1 = anatomy.bone(L.SACRUM_ID)
    sacrum = VertebraGeometry(L.SACRUM_ID, body=body_region(s1), centre=np.asarray(s1.centre_yz),
                              superior_endplate=_s1_endplate(anatomy.vertebrae[-1], s1))
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
