"""One phantom subject: configuration, field of view, and the images and labels on a PIR grid."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, Optional, Tuple

import numpy as np

from nnunetv2_symtc import labels as L
from nnunetv2_symtc.io import Geometry
from nnunetv2_symtc.phantom import anatomy as A
from nnunetv2_symtc.phantom import painting as P
from nnunetv2_symtc.phantom import mri


_SEED_SALT = 20261122
"""Mixed into every generator seed so that phantom streams differ from other uses of the same seed."""
_FIELD_OF_VIEW_SALT = 20261204
"""Seeds the per-subject field-of-view choices (``cut_vertebra_choices``, ``full_sacrum_probability``)
on a stream of their own, so that configurations without them draw exactly what they drew before."""


@dataclass(frozen=True)
class PhantomConfig:
    """How to draw phantom subjects.

    ``spacing_zyx`` (mm, PIR array order: left-right slice thickness, superior-inferior,
    anterior-posterior) is fixed if given, else drawn per subject from ``slice_thickness_range``
    and ``inplane_spacing_range`` (isotropic in plane). The field of view has ``n_slices``
    sagittal slices and ``fov_ap_mm`` (drawn from ``fov_ap_range_mm`` if None) front to back; its
    height follows the anatomy: the top edge cuts ``cut_vertebra`` (default T12 if ``include_t12``
    else L1; vertebrae above it are outside), and the bottom edge lies below the sacral tip
    (``full_sacrum``) or 25–35 mm below the S1 endplate. L5, every disc from the one below the cut
    vertebra to L5/S1 and (with ``full_sacrum``) the sacrum are always fully in view; the cut
    vertebra is the only partial one. ``sequences`` are rendered at generation (others on demand
    by the writers); ``supersample`` (odd) sub-slices per thick slice give the partial-volume
    effect; ``noise`` is the Rician noise level relative to the brightest tissue, ``bias`` the
    bias-field strength; ``pose_deg`` bounds the random sagittal tilt of the spine.

    ``transitional_vertebra`` adds a transitional vertebra (``anatomy.TRANSITIONAL_VERTEBRAE``):
    ``labels.L6_ID`` (25, lumbarisation: six lumbar vertebrae above the sacrum) or ``labels.T13_ID``
    (28, between T12 and L1). Every mask carries its id (disc below it 100 + id); SPIDER masks count
    levels upward from the lowest lumbar vertebra (``labels.spider_levels``). Without ``include_t12``
    the top vertebra is the one below T12 (the T13 when there is one).

    ``cut_vertebra_choices`` (non-empty) replaces ``cut_vertebra`` by one drawn per subject, and
    ``full_sacrum_probability`` (not None) replaces ``full_sacrum`` by a per-subject draw; the
    subject's ``config`` records the values drawn. Both default to off.
    """

    spacing_zyx: Optional[Tuple[float, float, float]] = None
    slice_thickness_range: Tuple[float, float] = (3.3, 4.5)
    inplane_spacing_range: Tuple[float, float] = (0.6, 0.9)
    n_slices: int = 15
    fov_ap_mm: Optional[float] = None
    fov_ap_range_mm: Tuple[float, float] = (250.0, 300.0)
    include_t12: bool = True
    cut_vertebra: Optional[int] = None
    full_sacrum: bool = True
    sequences: Tuple[str, ...] = ("t1", "t2")
    supersample: int = 3
    noise: float = 0.03
    bias: float = 0.25
    pose_deg: float = 6.0
    transitional_vertebra: Optional[int] = None
    variation: A.ShapeVariation = A.ShapeVariation()
    """Controlled shape variation (thin discs, short bodies, slips, set lordosis; ``anatomy.ShapeVariation``)."""
    cut_vertebra_choices: Tuple[int, ...] = ()
    full_sacrum_probability: Optional[float] = None

    def __post_init__(self):
        unknown = [s for s in self.sequences if s not in mri.SEQUENCES]
        if unknown:
            raise ValueError(f"unknown sequences {unknown}; choose from {mri.SEQUENCES}")
        cuttable = self.levels[:-1]
        if self.cut_vertebra is not None and self.cut_vertebra not in cuttable:
            raise ValueError(f"cut_vertebra must be one of {cuttable} (every modelled vertebra but the lowest "
                             f"lumbar), got {self.cut_vertebra}")
        if self.cut_vertebra == 19 and not self.include_t12:
            raise ValueError("cut_vertebra=19 (T12) needs include_t12=True")
        bad = [v for v in self.cut_vertebra_choices if v not in cuttable or (v == 19 and not self.include_t12)]
        if bad:
            raise ValueError(f"cut_vertebra_choices {bad} cannot be cut (choose from {cuttable}; T12 needs include_t12)")
        if self.full_sacrum_probability is not None and not 0.0 <= self.full_sacrum_probability <= 1.0:
            raise ValueError(f"full_sacrum_probability must be in [0, 1], got {self.full_sacrum_probability}")

    @classmethod
    def tiny(cls, **overrides) -> "PhantomConfig":
        """Small coarse subjects for fast nnU-Net tests: 12 x ~75 x 60 voxels at 4 x 3 x 3 mm,
        every structure still labelled, the sacrum partly in view."""
        settings = dict(spacing_zyx=(4.0, 3.0, 3.0), n_slices=12, fov_ap_mm=180.0, full_sacrum=False, supersample=3)
        settings.update(overrides)
        return cls(**settings)

    @classmethod
    def varied(cls, **overrides) -> "PhantomConfig":
        """Subjects with the spread of real sagittal scans: in-plane spacing 0.5–1.5 mm, slice
        thickness 3–5 mm, the top edge through T12, L1 or L2, the sacrum fully in view or cut
        below S1 (even odds), 220–320 mm front to back."""
        settings = dict(inplane_spacing_range=(0.5, 1.5), slice_thickness_range=(3.0, 5.0),
                        cut_vertebra_choices=(19, 20, 21), full_sacrum_probability=0.5,
                        fov_ap_range_mm=(220.0, 320.0))
        settings.update(overrides)
        return cls(**settings)

    @property
    def levels(self) -> Tuple[int, ...]:
        """SPINEPS ids of the modelled vertebrae above the sacrum, top to bottom."""
        return A.spine_levels(self.transitional_vertebra)

    @property
    def top_vertebra(self) -> int:
        """SPINEPS id of the vertebra cut by the top edge (the topmost one in view)."""
        if self.cut_vertebra is not None:
            return self.cut_vertebra
        return self.levels[0] if self.include_t12 else self.levels[1]


@dataclass
class PhantomSubject:
    """A generated subject on a canonical PIR grid (array axes: left->right, superior->inferior,
    anterior->posterior).

    ``images``: sequence -> float32 (z, y, x); ``spine_mask``: SPINEPS semantic labels (uint8);
    ``vert_mask``: SPINEPS instance labels (uint16: vertebra ids, discs 100+X, endplates 200+X);
    ``vertebra_ids``: instance ids in view, top to bottom (sacrum 26 last); ``partial_ids``: those
    touching the in-plane field-of-view edge; ``body_centres``: id -> LPS world mm (x, y, z) of the
    vertebral body centre (for the sacrum: S1's). ``anatomy`` and ``fov`` allow re-rendering on
    another grid (``on_grid``).
    """

    images: Dict[str, np.ndarray]
    spine_mask: np.ndarray
    vert_mask: np.ndarray
    geometry: Geometry
    vertebra_ids: Tuple[int, ...]
    partial_ids: Tuple[int, ...]
    body_centres: Dict[int, Tuple[float, float, float]]
    anatomy: A.SpineAnatomy = field(repr=False)
    config: PhantomConfig = field(repr=False)
    seed: int = 0
    bone_id: Optional[np.ndarray] = field(default=None, repr=False)
    body_of: Optional[np.ndarray] = field(default=None, repr=False)
    generation_labels: Optional[np.ndarray] = field(default=None, repr=False)
    """Every painted tissue at the slice centres (``painting.GENERATION_LABELS``, uint8, same grid)."""

    @property
    def shape(self) -> Tuple[int, int, int]:
        return self.spine_mask.shape

    def bone_ids(self) -> np.ndarray:
        """SPINEPS vertebra id of every bone voxel, endplates assigned to their own vertebra (uint16)."""
        return self.bone_id.astype(np.uint16)

    def spider_mask(self) -> np.ndarray:
        """SPIDER labels of this subject (uint16), see ``labels.spider_mask_from_parts``."""
        discs = (self.vert_mask > L.SPINEPS_DISC_OFFSET) & (self.vert_mask < L.SPINEPS_ENDPLATE_OFFSET)
        disc_above = np.where(discs, self.vert_mask - L.SPINEPS_DISC_OFFSET, 0)
        canal = np.isin(self.spine_mask, (L.SPINAL_CANAL, L.SPINAL_CORD))
        return L.spider_mask_from_parts(self.bone_ids(), disc_above, canal, self.partial_ids)


def _spacing(config: PhantomConfig, rng: np.random.Generator) -> Tuple[float, float, float]:
    if config.spacing_zyx is not None:
        return tuple(float(s) for s in config.spacing_zyx)
    inplane = float(np.round(rng.uniform(*config.inplane_spacing_range), 3))
    return (float(np.round(rng.uniform(*config.slice_thickness_range), 2)), inplane, inplane)


def field_of_view(anatomy: A.SpineAnatomy, config: PhantomConfig, spacing_zyx, rng: np.random.Generator):
    """Origin (LPS, ITK order) and shape of the PIR grid for this anatomy."""
    s_lr, s_si, s_ap = spacing_zyx
    top = anatomy.bone(config.top_vertebra)
    bottom_of_top = top.centre_yz[1] - top.height / 2
    z_top = bottom_of_top + rng.uniform(0.35, 0.75) * top.height
    if config.full_sacrum:
        tip = anatomy.bones[-1]
        z_bottom = tip.centre_yz[1] - tip.height - rng.uniform(15.0, 40.0)
    else:
        z_bottom = -rng.uniform(25.0, 35.0)
    n_si = int(np.ceil((z_top - z_bottom) / s_si)) + 1
    fov_ap = config.fov_ap_mm if config.fov_ap_mm is not None else rng.uniform(*config.fov_ap_range_mm)
    n_ap = int(round(fov_ap / s_ap))
    # Posterior edge: behind the back of L3 (its skin line), sometimes cutting a little fat.
    l3 = anatomy.bone(22)
    back = (l3.canal_centre_t + l3.canal_ap + 4.0 + l3.spinous_length * np.cos(l3.spinous_angle)
            + anatomy.muscle_depth + anatomy.fat_depth)
    y_back = l3.centre_yz[0] + back * np.cos(l3.angle) + rng.uniform(-8.0, 20.0)
    # Every bone stays inside: from the most anterior body to the most posterior spinous tip.
    front = min(b.centre_yz[0] - 0.6 * b.depth for b in anatomy.bones)
    rear = max(b.centre_yz[0] + (b.canal_centre_t + 2 * b.canal_ap + b.spinous_length + 8.0) * abs(np.cos(b.angle))
               for b in anatomy.bones)
    if rear - front > (n_ap - 3) * s_ap:
        raise ValueError(f"fov_ap_mm={fov_ap:.0f} is too small for the spine ({rear - front:.0f} mm front to back)")
    y_back = float(np.clip(y_back, rear, front + (n_ap - 3) * s_ap))
    origin_y = y_back - (n_ap - 1) * s_ap
    # The operator centres the slices on the spine (at L4), give or take a quarter slice.
    centre_x = float(A.midline_x(anatomy, anatomy.bone(23).centre_yz[1]))
    origin_x = centre_x + (config.n_slices - 1) / 2 * s_lr + rng.uniform(-0.25, 0.25) * s_lr
    return (float(origin_x), float(origin_y), float(z_top)), (config.n_slices, n_si, n_ap)


def render_subject(anatomy: A.SpineAnatomy, config: PhantomConfig, geometry: Geometry, shape,
                   sequences, seed_key: Tuple[int, ...]):
    """Rasterise and render: (images, raster). Each sequence draws its contrast jitter, bias and
    noise from its own generator (``seed_key`` + the sequence's index), so an image does not
    depend on which other sequences are rendered."""
    first_bone = next(i for i, b in enumerate(anatomy.bones) if b.vertebra_id == config.top_vertebra)
    raster = P.rasterise(anatomy, geometry, shape, config.supersample, first_bone=first_bone)
    images = {}
    for seq in sequences:
        rng = np.random.default_rng(list(seed_key) + [mri.SEQUENCES.index(seq)])
        images[seq] = mri.render(raster, anatomy, seq, geometry.spacing_zyx, rng, config.noise, config.bias)
    return images, raster


def _edge_ids(vert_mask: np.ndarray) -> Tuple[int, ...]:
    """Vertebra ids cut by the in-plane field of view (``labels.values_cut_by_field_of_view``)."""
    return tuple(v for v in L.values_cut_by_field_of_view(vert_mask) if v < L.SPINEPS_DISC_OFFSET)


def _draw_field_of_view_choices(seed: int, config: PhantomConfig) -> PhantomConfig:
    """``config`` with ``cut_vertebra`` and ``full_sacrum`` drawn for this subject where asked."""
    if not config.cut_vertebra_choices and config.full_sacrum_probability is None:
        return config
    rng = np.random.default_rng([int(seed), _SEED_SALT, _FIELD_OF_VIEW_SALT])
    cut = int(rng.choice(config.cut_vertebra_choices)) if config.cut_vertebra_choices else config.cut_vertebra
    full = (bool(rng.random() < config.full_sacrum_probability) if config.full_sacrum_probability is not None
            else config.full_sacrum)
    return replace(config, cut_vertebra=cut, full_sacrum=full, cut_vertebra_choices=(), full_sacrum_probability=None)


def generate_subject(seed: int, config: PhantomConfig = PhantomConfig()) -> PhantomSubject:
    """Draw one subject deterministically from ``seed``: anatomy, field of view, images, labels."""
    config = _draw_field_of_view_choices(seed, config)
    rng = np.random.default_rng([int(seed), _SEED_SALT])
    anatomy = A.sample_anatomy(rng, config.pose_deg, config.transitional_vertebra, config.variation)
    spacing = _spacing(config, rng)
    origin, shape = field_of_view(anatomy, config, spacing, rng)
    geometry = P.pir_geometry(spacing, origin)
    images, raster = render_subject(anatomy, config, geometry, shape, config.sequences, (int(seed), _SEED_SALT, 0))
    present = set(int(v) for v in np.unique(raster.vert) if 0 < v < L.SPINEPS_DISC_OFFSET)
    order = [b.vertebra_id for b in anatomy.bones if b.sacral_index <= 0]
    vertebra_ids = tuple(v for v in order if v in present)
    centres = {}
    for b in anatomy.bones:
        if b.sacral_index <= 0 and b.vertebra_id in present:
            x = float(A.midline_x(anatomy, b.centre_yz[1]))
            centres[b.vertebra_id] = (x, b.centre_yz[0], b.centre_yz[1])
    return PhantomSubject(images=images, spine_mask=raster.spine, vert_mask=raster.vert, geometry=geometry,
                          vertebra_ids=vertebra_ids, partial_ids=_edge_ids(raster.vert), body_centres=centres,
                          anatomy=anatomy, config=config, seed=int(seed), bone_id=raster.bone_id, body_of=raster.body_of,
                          generation_labels=raster.generation_labels())


def on_grid(subject: PhantomSubject, spacing_zyx, sequences=("t2",), seed_offset: int = 1) -> PhantomSubject:
    """The same anatomy on another PIR grid covering the same field of view (e.g. t2_SPACE at
    near-isotropic spacing): new images and labels, same world positions. ``seed_offset=0`` on
    the subject's own spacing reproduces exactly what ``generate_subject`` renders."""
    old = subject.geometry
    extent = [(n - 1) * s for n, s in zip(subject.shape, old.spacing_zyx)]
    shape = tuple(int(round(e / s)) + 1 for e, s in zip(extent, spacing_zyx))
    # Keep the field-of-view centre: shift the origin by half the difference in covered extent.
    ox, oy, oz = old.origin_xyz
    dx = ((shape[0] - 1) * spacing_zyx[0] - extent[0]) / 2
    origin = (ox + dx, oy, oz)
    geometry = P.pir_geometry(spacing_zyx, origin)
    config = replace(subject.config, supersample=1 if spacing_zyx[0] <= 1.5 else subject.config.supersample)
    images, raster = render_subject(subject.anatomy, config, geometry, shape, sequences,
                                    (subject.seed, _SEED_SALT, seed_offset))
    return PhantomSubject(images=images, spine_mask=raster.spine, vert_mask=raster.vert, geometry=geometry,
                          vertebra_ids=subject.vertebra_ids, partial_ids=_edge_ids(raster.vert),
                          body_centres=subject.body_centres, anatomy=subject.anatomy, config=config,
                          seed=subject.seed, bone_id=raster.bone_id, body_of=raster.body_of,
                          generation_labels=raster.generation_labels())
