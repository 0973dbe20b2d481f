"""Lumbar spine anatomy: random shape parameters (``sample_anatomy``), independent of any voxel
grid; ``painting`` rasterises it.

Coordinates. World coordinates are LPS mm (``x`` to the patient's left, ``y`` posterior, ``z``
superior). The spine lies near the sagittal plane, so most shapes are described in the sagittal
``(y, z)`` plane and extruded along ``x``. Every bone has a *local frame*: ``u`` = left (world x
minus the midline), ``v`` = its own superior axis, ``t`` = its own posterior axis. A frame tilted
by ``angle`` (radians, positive = the superior axis leans posterior) has
``v = dy sin(angle) + dz cos(angle)`` and ``t = dy cos(angle) - dz sin(angle)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from nnunetv2_symtc import labels as L

SPINE_LEVELS: Tuple[int, ...] = (L.T12_ID,) + tuple(range(L.L1_ID, L.L5_ID + 1))
"""SPINEPS ids modelled above the sacrum: T12, L1–L5."""
TRANSITIONAL_VERTEBRAE: Tuple[int, ...] = (L.T13_ID, L.L6_ID)
"""Transitional vertebrae the phantom can add: a T13 (28) between T12 and L1, or an L6 (25,
lumbarisation: six lumbar vertebrae above the sacrum)."""


def spine_levels(transitional_vertebra: Optional[int] = None) -> Tuple[int, ...]:
    """SPINEPS ids of the mobile vertebrae modelled above the sacrum, top to bottom:
    ``SPINE_LEVELS``, with a T13 inserted below T12 or an L6 appended below L5."""
    if transitional_vertebra is None:
        return SPINE_LEVELS
    if transitional_vertebra == L.T13_ID:
        return SPINE_LEVELS[:1] + (L.T13_ID,) + SPINE_LEVELS[1:]
    if transitional_vertebra == L.L6_ID:
        return SPINE_LEVELS + (L.L6_ID,)
    raise ValueError(f"transitional vertebra must be one of {TRANSITIONAL_VERTEBRAE} (T13, L6) or None, "
                     f"got {transitional_vertebra}")

# Mean sizes in mm per level (T12, L1..L5; see ``_size_rows``): body height, AP depth, LR width, canal AP/LR
# semi-axes, pedicle width, transverse process reach from the midline; disc centre heights of
# the disc *below* each level (T12/L1 .. L5/S1) and segmental lordosis at that disc in degrees.
_BODY_HEIGHT = (23.0, 24.5, 25.5, 26.5, 26.5, 26.0)
_BODY_DEPTH = (30.0, 32.0, 33.0, 34.5, 35.5, 35.0)
_BODY_WIDTH = (39.0, 42.0, 44.0, 46.0, 48.0, 50.0)
_CANAL_AP = (8.5, 8.5, 8.3, 8.0, 8.0, 8.2)
_CANAL_LR = (10.0, 10.5, 11.0, 11.5, 12.0, 12.5)
_PEDICLE_WIDTH = (6.5, 7.0, 7.5, 9.0, 10.5, 13.0)
_TRANSVERSE_REACH = (22.0, 32.0, 38.0, 45.0, 40.0, 38.0)
_DISC_HEIGHT = (7.0, 8.5, 9.5, 10.5, 11.0, 10.0)
_SEGMENTAL_LORDOSIS_DEG = (0.0, 6.0, 8.5, 10.5, 13.0, 17.0)
POSTERIOR_WALL = 0.86
"""The body's posterior wall is flattened at this fraction of its anterior semi-depth."""
def _size_rows(levels: Sequence[int]) -> Dict[int, int]:
    """Row of the per-level size tables for each id in ``levels``: thoracic vertebrae (T12, T13)
    use T12's row; lumbar ones count up from L5's row at the lowest (so an L6 is shaped like an L5
    and its L5 like an L4), never above L1's row."""
    lumbar = [v for v in levels if L.L1_ID <= v <= L.L6_ID]
    rows = {v: 0 for v in levels if v not in lumbar}
    rows.update({v: max(len(SPINE_LEVELS) - 1 - k, 1) for k, v in enumerate(reversed(lumbar))})
    return rows


@dataclass(frozen=True)
class Bone:
    """One vertebra or sacral segment: centre (world y, z mm), tilt, sizes (mm) and level data."""

    vertebra_id: int
    centre_yz: Tuple[float, float]
    angle: float
    height: float
    depth: float
    width: float
    canal_ap: float
    canal_lr: float
    pedicle_width: float
    transverse_reach: float
    spinous_length: float
    spinous_height: float
    spinous_angle: float
    sacral_index: int = -1
    """-1 for the mobile vertebrae (T12–L5, T13, L6); 0..4 for the sacral segments S1..S5 (all SPINEPS id 26)."""

    @property
    def posterior_wall_t(self) -> float:
        """Local posterior offset of the (flattened) posterior body wall at the midline (mm)."""
        return POSTERIOR_WALL * self.depth / 2

    @property
    def canal_centre_t(self) -> float:
        """Local posterior offset of the canal axis from the body centre (mm)."""
        return self.posterior_wall_t + 1.0 + self.canal_ap

    def axis(self, towards: str) -> np.ndarray:
        """Unit vector (y, z) of the local superior (``'v'``) or posterior (``'t'``) axis."""
        s, c = np.sin(self.angle), np.cos(self.angle)
        return np.array([s, c]) if towards == "v" else np.array([c, -s])

    def endplate_centre(self, side: str) -> np.ndarray:
        """World (y, z) of the centre of the superior (``'top'``) or inferior endplate surface."""
        sign = 1.0 if side == "top" else -1.0
        return np.asarray(self.centre_yz) + sign * self.height / 2 * self.axis("v")


@dataclass(frozen=True)
class SpineAnatomy:
    """A random lumbar spine and its surroundings, independent of any voxel grid.

    ``bones`` run top to bottom (T12, L1–L5, then the five sacral segments; a transitional T13
    follows T12, an L6 follows L5); ``disc_heights`` are the centre heights (mm) of the discs below
    each mobile vertebra. ``midline_x`` is the world x of the
    mid-sagittal plane at S1; ``scoliosis`` shifts it by that many mm per 150 mm above S1 (see
    ``midline_x()``). ``conus_z`` is the world z of the cord's tip; ``lordosis_deg`` the angle
    between the L1 and S1 superior endplates; ``nucleus_brightness`` scales each disc's nucleus
    signal on T2 (degeneration).
    """

    bones: Tuple[Bone, ...]
    disc_heights: Tuple[float, ...]
    midline_x: float
    scoliosis: float
    conus_z: float
    muscle_depth: float
    fat_depth: float
    aorta_x: float
    texture_seed: int
    lordosis_deg: float
    nucleus_brightness: Tuple[float, ...] = field(default=())

    @property
    def vertebrae(self) -> Tuple[Bone, ...]:
        """The mobile vertebrae (no sacral segments), top to bottom."""
        return tuple(b for b in self.bones if b.sacral_index < 0)

    def bone(self, vertebra_id: int) -> Bone:
        """The bone with this SPINEPS id (26: the S1 segment)."""
        return next(b for b in self.bones if b.vertebra_id == vertebra_id and b.sacral_index <= 0)


@dataclass(frozen=True)
class ShapeVariation:
    """Controlled anatomical variation on top of the random draw (all empty: the plain random spine).

    ``disc_height_factors``: (id of the vertebra above the disc, factor) pairs scaling that disc's
    height (a degenerated disc: e.g. 0.45; its nucleus signal is scaled by the factor too when
    below 1); ``body_height_factors``: (vertebra id, factor) pairs scaling a vertebral body's
    height; ``slips_mm``: (vertebra id, mm) pairs moving that vertebra and everything above it
    anteriorly along the superior endplate of the bone below (spondylolisthesis);
    ``lordosis_scale``: replaces the random scale of every segmental lordosis angle (0.3: flat,
    1.0: the mean, 1.6: deep). Variation never changes the random stream, so a seed draws the same
    spine with and without it, apart from the varied shapes.
    """

    disc_height_factors: Tuple[Tuple[int, float], ...] = ()
    body_height_factors: Tuple[Tuple[int, float], ...] = ()
    slips_mm: Tuple[Tuple[int, float], ...] = ()
    lordosis_scale: Optional[float] = None

    def check(self, levels: Sequence[int]) -> None:
        """``ValueError`` for ids not among ``levels`` (SPINEPS ids above the sacrum) or non-positive factors."""
        for name in ("disc_height_factors", "body_height_factors", "slips_mm"):
            for vertebra_id, value in getattr(self, name):
                if vertebra_id not in levels:
                    raise ValueError(f"{name}: vertebra id {vertebra_id} is not modelled (choose from {tuple(levels)})")
                if name != "slips_mm" and value <= 0:
                    raise ValueError(f"{name}: the factor for vertebra {vertebra_id} must be positive, got {value}")
        if self.lordosis_scale is not None and self.lordosis_scale < 0:
            raise ValueError(f"lordosis_scale must be >= 0, got {self.lordosis_scale}")


def _rotated(bone: Bone, delta: float) -> Bone:
    """``bone`` rotated by ``delta`` radians about the world origin in the sagittal plane."""
    y, z = bone.centre_yz
    c, s = np.cos(delta), np.sin(delta)
    return replace(bone, centre_yz=(float(y * c + z * s), float(-y * s + z * c)), angle=float(bone.angle + delta))


def sample_anatomy(rng: np.random.Generator, pose_deg: float = 6.0,
                   transitional_vertebra: Optional[int] = None,
                   variation: ShapeVariation = ShapeVariation()) -> SpineAnatomy:
    """Draw a random lumbar spine (T12 to S5) with lordosis, size variation and pose; with
    ``transitional_vertebra`` (``TRANSITIONAL_VERTEBRAE``) a T13 or an L6 as well, with
    ``variation`` thin discs, short bodies, slips or a set lordosis (``ShapeVariation``).

    World placement: the S1 superior endplate centre sits near the world origin; the caller
    places the field of view around the anatomy. Without a transitional vertebra the random
    stream is the same as it always was (same seed, same subject).
    """
    levels = spine_levels(transitional_vertebra)
    variation.check(levels)
    disc_factors, body_factors = dict(variation.disc_height_factors), dict(variation.body_height_factors)
    slips = dict(variation.slips_mm)
    rows = _size_rows(levels)
    scale = rng.uniform(0.9, 1.1)
    lordosis_scale = rng.uniform(0.8, 1.15)
    if variation.lordosis_scale is not None:
        lordosis_scale = variation.lordosis_scale
    sacral_slope = np.deg2rad(40.0)  # provisional: the balance rotation below sets the final slope
    tilt = np.deg2rad(rng.uniform(-pose_deg, pose_deg) - 8.0)  # L1 slightly anterior of S1 (supine)

    # Stack upward from the S1 superior endplate, rotating at each disc by the segmental lordosis.
    top_of_below = np.array([0.0, 0.0])
    angle_below = -sacral_slope
    bones_up: List[Bone] = []
    discs_up: List[float] = []
    lordosis = 0.0
    for vertebra_id in reversed(levels):
        level = rows[vertebra_id]
        jitter = rng.uniform(0.96, 1.04, size=6)
        seg = np.deg2rad(_SEGMENTAL_LORDOSIS_DEG[level] * lordosis_scale * rng.uniform(0.85, 1.15))
        if L.L1_ID <= vertebra_id <= L.L6_ID:  # lordosis: L1 to S1
            lordosis += seg
        angle = angle_below + seg
        disc_h = _DISC_HEIGHT[level] * scale * jitter[0] * disc_factors.get(vertebra_id, 1.0)
        disc_axis_angle = (angle + angle_below) / 2
        bottom = top_of_below + disc_h * np.array([np.sin(disc_axis_angle), np.cos(disc_axis_angle)])
        # Anterior slip along the superior endplate of the bone below (its local -t axis).
        bottom = bottom - slips.get(vertebra_id, 0.0) * np.array([np.cos(angle_below), -np.sin(angle_below)])
        height = _BODY_HEIGHT[level] * scale * jitter[1] * body_factors.get(vertebra_id, 1.0)
        centre = bottom + height / 2 * np.array([np.sin(angle), np.cos(angle)])
        bones_up.append(Bone(
            vertebra_id=vertebra_id, centre_yz=(float(centre[0]), float(centre[1])), angle=float(angle),
            height=height, depth=_BODY_DEPTH[level] * scale * jitter[2], width=_BODY_WIDTH[level] * scale * jitter[3],
            canal_ap=_CANAL_AP[level] * rng.uniform(0.9, 1.1), canal_lr=_CANAL_LR[level] * rng.uniform(0.92, 1.08),
            pedicle_width=_PEDICLE_WIDTH[level] * scale * jitter[4],
            transverse_reach=_TRANSVERSE_REACH[level] * scale * jitter[5],
            spinous_length=rng.uniform(22.0, 30.0) * scale * (0.8 if level == 0 else 1.0),
            spinous_height=rng.uniform(16.0, 21.0) * scale * (0.75 if level == 0 else 1.0),
            spinous_angle=np.deg2rad(rng.uniform(10.0, 25.0) + (20.0 if level == 0 else 0.0))))
        discs_up.append(disc_h)
        top_of_below = centre + height / 2 * np.array([np.sin(angle), np.cos(angle)])
        angle_below = angle

    # Sacral segments S1..S5 downward from the S1 superior endplate, curving anteriorly.
    sacrum: List[Bone] = []
    top = np.array([0.0, 0.0])
    angle = -sacral_slope
    sizes = ((28.0, 37.0, 50.0), (22.0, 29.0, 40.0), (18.0, 23.0, 31.0), (14.0, 18.0, 23.0), (11.0, 13.0, 16.0))
    for k, (h, d, w) in enumerate(sizes):
        h, d, w = h * scale, d * scale, w * scale
        centre = top - h / 2 * np.array([np.sin(angle), np.cos(angle)])
        sacrum.append(Bone(
            vertebra_id=L.SACRUM_ID, centre_yz=(float(centre[0]), float(centre[1])), angle=float(angle),
            height=h + 2.0, depth=d, width=w, canal_ap=max(7.0 - 1.4 * k, 2.5), canal_lr=max(11.0 - 2.0 * k, 4.0),
            pedicle_width=max(10.0 - 2.0 * k, 3.0), transverse_reach=0.0,
            spinous_length=max(9.0 - 2.0 * k, 3.0), spinous_height=h * 0.5, spinous_angle=np.deg2rad(10.0),
            sacral_index=k))
        bottom = centre - h / 2 * np.array([np.sin(angle), np.cos(angle)])
        angle = angle + np.deg2rad(rng.uniform(5.0, 9.0))
        top = bottom

    # Rotate the whole spine about the S1 endplate so the S1-L1 chord is near vertical (sagittal
    # balance), then apply the random pose tilt.
    l1_centre = next(b for b in bones_up if b.vertebra_id == L.L1_ID).centre_yz
    delta = tilt - np.arctan2(l1_centre[0], l1_centre[1])
    vertebrae = tuple(_rotated(b, delta) for b in reversed(bones_up))
    sacrum = [_rotated(b, delta) for b in sacrum]
    l1, l2 = (next(b for b in vertebrae if b.vertebra_id == v) for v in (L.L1_ID, L.L1_ID + 1))
    conus_z = float(rng.uniform(l2.centre_yz[1] + 0.1 * l2.height, l1.centre_yz[1] + 0.2 * l1.height))
    return SpineAnatomy(
        bones=vertebrae + tuple(sacrum), disc_heights=tuple(reversed(discs_up)),
        midline_x=float(rng.uniform(-3.0, 3.0)), scoliosis=float(rng.uniform(-2.0, 2.0)), conus_z=conus_z,
        muscle_depth=float(rng.uniform(8.0, 18.0)), fat_depth=float(rng.uniform(12.0, 40.0)),
        aorta_x=float(rng.uniform(10.0, 20.0)), texture_seed=int(rng.integers(2 ** 31)),
        lordosis_deg=float(np.rad2deg(lordosis)),
        nucleus_brightness=tuple(float(b) * min(disc_factors.get(v, 1.0), 1.0)
                                 for b, v in zip(rng.uniform(0.7, 1.0, size=len(levels)), levels)))


def midline_x(anatomy: SpineAnatomy, z: np.ndarray) -> np.ndarray:
    """World x of the mid-sagittal plane at heights ``z`` (mild scoliosis above S1)."""
    return anatomy.midline_x + anatomy.scoliosis * np.clip(np.asarray(z) / 150.0, 0.0, 1.5)
