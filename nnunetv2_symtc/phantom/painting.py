"""Painting a sampled anatomy (``anatomy.SpineAnatomy``) onto a PIR voxel grid: tissue classes
for the MR contrast and the SPINEPS labels (``rasterise``).

Coordinates and local bone frames (``u``, ``v``, ``t``) are those of ``anatomy``. Rasterisation
works per structure in its local bounding box on a grid that is finer across the thick sagittal
slices (``supersample`` sub-slices per slice): ``Rasterised`` holds a tissue class per fine voxel
(for the MR contrast) and the labels at the slice centres.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from nnunetv2_symtc import labels as L
from nnunetv2_symtc.io import Geometry
from nnunetv2_symtc.phantom.anatomy import POSTERIOR_WALL, Bone, SpineAnatomy, midline_x

# --------------------------------------------------------------------------------------------
# Tissue classes (MR contrast lives in mri.py; here only which voxel is which tissue)
# --------------------------------------------------------------------------------------------
AIR, FAT, MUSCLE, CORTEX, CSF, CORD, ANNULUS, ABDOMEN, BOWEL_FLUID, VESSEL, LIGAMENT, \
    POSTERIOR_MARROW, SACRAL_MARROW, EPIDURAL_FAT, URINE, NERVE_ROOT, BOWEL_WALL, SYNOVIAL = range(18)
MARROW_BASE = 32
"""Tissue ``MARROW_BASE + k`` is the body marrow of the k-th vertebra (top to bottom)."""
NUCLEUS_BASE = 48
"""Tissue ``NUCLEUS_BASE + k`` is the nucleus of the k-th disc (top to bottom)."""
N_TISSUES = 64

GENERATION_LABELS: Dict[str, int] = {
    "air": 0, "fat": 1, "muscle": 2, "cortical bone": 3, "vertebral body marrow": 4,
    "posterior element marrow": 5, "sacral marrow": 6, "disc annulus": 7, "disc nucleus": 8, "csf": 9,
    "spinal cord": 10, "nerve roots": 11, "abdominal soft tissue": 12, "bowel wall": 13,
    "fluid": 14, "vessels": 15, "ligament": 16,
}
"""Generation label map values (``Rasterised.generation_labels``): every tissue the phantom paints,
per-vertebra marrow and per-disc nuclei merged; ``fluid`` is bowel fluid, urine and synovial fluid,
``fat`` includes epidural fat, ``cortical bone`` the endplates."""


def _generation_lookup() -> np.ndarray:
    """Tissue class -> generation label (uint8 look-up table over ``N_TISSUES``)."""
    g = GENERATION_LABELS
    table = np.zeros(N_TISSUES, dtype=np.uint8)
    for tissues, name in (((AIR,), "air"), ((FAT, EPIDURAL_FAT), "fat"), ((MUSCLE,), "muscle"),
                          ((CORTEX,), "cortical bone"), ((POSTERIOR_MARROW,), "posterior element marrow"),
                          ((SACRAL_MARROW,), "sacral marrow"), ((ANNULUS,), "disc annulus"), ((CSF,), "csf"),
                          ((CORD,), "spinal cord"), ((NERVE_ROOT,), "nerve roots"),
                          ((ABDOMEN,), "abdominal soft tissue"), ((BOWEL_WALL,), "bowel wall"),
                          ((BOWEL_FLUID, URINE, SYNOVIAL), "fluid"), ((VESSEL,), "vessels"),
                          ((LIGAMENT,), "ligament")):
        table[list(tissues)] = g[name]
    table[MARROW_BASE:NUCLEUS_BASE] = g["vertebral body marrow"]
    table[NUCLEUS_BASE:] = g["disc nucleus"]
    return table

ENDPLATE_THICKNESS = 1.6
CORTEX_THICKNESS = 1.0
ENDPLATE_DIP = 1.2
"""Central concavity of each endplate surface (mm)."""
FACET_JOINT_GAP = 1.2
"""Width (mm) of the facet joint space between inferior and superior articular processes."""
RIM_ROUNDING = 1.8
"""How far (mm) the body's rim is rounded off at the endplate edges."""


def _surface_offset(rho2):
    """Inward offset (mm) of the endplate surface from the body's nominal half-height, as a
    function of the normalised radial position squared: central dip plus rounded rim."""
    rho = np.sqrt(np.clip(rho2, 0, None))
    return ENDPLATE_DIP * (1.0 - np.clip(rho2, 0, 1)) + RIM_ROUNDING * np.clip((rho - 0.8) / 0.2, 0, 1) ** 2


# --------------------------------------------------------------------------------------------
# Rasterisation
# --------------------------------------------------------------------------------------------
@dataclass
class Rasterised:
    """An anatomy sampled on a PIR grid of shape ``(n_lr, n_si, n_ap)``.

    ``tissue`` has ``supersample`` sub-slices per sagittal slice, shape ``(n_lr * supersample,
    n_si, n_ap)``; the label arrays are sampled at the slice centres: ``spine`` and ``vert`` (SPINEPS
    semantic and instance labels), ``bone_id`` (the SPINEPS id of the vertebra every bone voxel,
    endplates included, belongs to) and ``body_of`` (vertebral body voxels, endplates included,
    marked with 1 + the index of their bone in ``anatomy.bones``).
    """

    tissue: np.ndarray
    spine: np.ndarray
    vert: np.ndarray
    bone_id: np.ndarray
    body_of: np.ndarray
    supersample: int

    def generation_labels(self) -> np.ndarray:
        """``GENERATION_LABELS`` of the tissue at each slice centre, shape ``(n_lr, n_si, n_ap)`` (uint8)."""
        return _generation_lookup()[self.tissue[self.supersample // 2::self.supersample]]


class _Grid:
    """World coordinates of a PIR grid's fine sub-slices, rows and columns."""

    def __init__(self, geometry: Geometry, shape: Tuple[int, int, int], supersample: int):
        if geometry.orientation != "PIR" or not np.allclose(np.abs(geometry.direction), np.abs(_PIR_DIRECTION)):
            raise ValueError(f"phantom grids are axis-aligned PIR, got orientation {geometry.orientation}")
        if supersample < 1 or supersample % 2 == 0:
            raise ValueError(f"supersample must be odd (labels are sampled at slice centres), got {supersample}")
        self.shape, self.supersample = shape, supersample
        s_lr, s_si, s_ap = geometry.spacing_zyx
        ox, oy, oz = geometry.origin_xyz
        fine = (np.arange(shape[0] * supersample) + 0.5) / supersample - 0.5
        self.x = (ox - fine * s_lr).astype(np.float32)           # world x of each fine sub-slice
        self.z = (oz - np.arange(shape[1]) * s_si).astype(np.float32)  # world z of each row
        self.y = (oy + np.arange(shape[2]) * s_ap).astype(np.float32)  # world y of each column
        self.s_si, self.s_ap, self.oy, self.oz = s_si, s_ap, oy, oz

    def window(self, y_range: Tuple[float, float], z_range: Tuple[float, float]) -> Optional[Tuple[slice, slice]]:
        """Row and column slices covering a world (y, z) box, clipped to the grid; None if outside."""
        r0 = int(np.floor((self.oz - z_range[1]) / self.s_si))
        r1 = int(np.ceil((self.oz - z_range[0]) / self.s_si)) + 1
        c0 = int(np.floor((y_range[0] - self.oy) / self.s_ap))
        c1 = int(np.ceil((y_range[1] - self.oy) / self.s_ap)) + 1
        r0, c0 = max(r0, 0), max(c0, 0)
        r1, c1 = min(r1, self.shape[1]), min(c1, self.shape[2])
        return (slice(r0, r1), slice(c0, c1)) if r0 < r1 and c0 < c1 else None


_PIR_DIRECTION = (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)


def pir_geometry(spacing_zyx: Sequence[float], origin_xyz: Sequence[float]) -> Geometry:
    """Axis-aligned PIR geometry: array axes run right, inferior, posterior."""
    return Geometry(tuple(float(s) for s in spacing_zyx), tuple(float(o) for o in origin_xyz), _PIR_DIRECTION)


class _Painter:
    """Writes structure masks into the fine tissue array and the centre-slice label arrays.

    Bone of one vertebra never overwrites bone of another (processes do not interpenetrate):
    ``owner`` records, per fine voxel, the vertebra id that painted bone there first.
    """

    def __init__(self, grid: _Grid):
        self.grid = grid
        n_fine = grid.shape[0] * grid.supersample
        self.tissue = np.full((n_fine,) + grid.shape[1:], AIR, dtype=np.uint8)
        self.owner = np.zeros((n_fine,) + grid.shape[1:], dtype=np.uint8)
        self.spine = np.zeros(grid.shape, dtype=np.uint8)
        self.vert = np.zeros(grid.shape, dtype=np.uint16)
        self.bone_id = np.zeros(grid.shape, dtype=np.uint8)
        self.body_of = np.zeros(grid.shape, dtype=np.uint8)

    def paint(self, window, lr: slice, mask: np.ndarray, tissue=None, spine: Optional[int] = None,
              vert: Optional[int] = None, body_of: Optional[int] = None, bone: Optional[int] = None) -> np.ndarray:
        """Paint ``mask`` (bool, broadcastable to (fine sub-slices ``lr``, window rows, window cols))
        and return the painted mask.

        ``tissue`` (an int, or an array broadcastable to the mask) goes to every fine voxel of the
        mask; the labels that are not None go to the voxels whose slice centre is in the mask.
        ``bone`` (a vertebra id) paints bone: voxels owned by another vertebra are left out.
        """
        rows, cols = window
        mask = np.broadcast_to(mask, (lr.stop - lr.start,) + mask.shape[1:])
        if bone is not None:
            owner = self.owner[lr, rows, cols]
            mask = mask & ((owner == 0) | (owner == bone))
            owner[mask] = bone
        if not mask.any():
            return mask
        if tissue is not None:
            target = self.tissue[lr, rows, cols]
            target[mask] = tissue if np.isscalar(tissue) else np.broadcast_to(tissue, mask.shape)[mask]
        # Labels: the fine sub-slices that sit at slice centres.
        offset = (self.grid.supersample // 2 - lr.start) % self.grid.supersample
        centre_mask = mask[offset::self.grid.supersample]
        if centre_mask.size == 0 or not centre_mask.any():
            return mask
        first_slice = (lr.start + offset) // self.grid.supersample
        slices = slice(first_slice, first_slice + centre_mask.shape[0])
        for array, value in ((self.spine, spine), (self.vert, vert), (self.body_of, body_of), (self.bone_id, bone)):
            if value is not None:
                array[slices, rows, cols][centre_mask] = value
        return mask

    def keep_largest_bone_parts(self) -> None:
        """Drop the labels of bone fragments that the voxel grid cut off from their vertebra
        (face-connected components other than the largest, per vertebra)."""
        for vid, box in enumerate(ndimage.find_objects(self.bone_id), start=1):
            if box is None:
                continue
            components, n = ndimage.label(self.bone_id[box] == vid)
            if n < 2:
                continue
            sizes = np.bincount(components.ravel())[1:]
            fragments = (components > 0) & (components != 1 + int(np.argmax(sizes)))
            for array in (self.spine, self.vert, self.bone_id, self.body_of):
                array[box][fragments] = 0


def _local(grid: _Grid, window, centre_yz, angle: float):
    """Local (v, t) of a window's pixels, shape (1, rows, cols), for a frame at ``centre_yz``."""
    rows, cols = window
    dy = (grid.y[cols] - centre_yz[0])[None, None, :]
    dz = (grid.z[rows] - centre_yz[1])[None, :, None]
    s, c = np.float32(np.sin(angle)), np.float32(np.cos(angle))
    return dy * s + dz * c, dy * c - dz * s


def _box_window(grid: _Grid, centre_yz, angle: float, v_range, t_range):
    """Grid window around a local (v, t) box of a frame at ``centre_yz`` tilted by ``angle``."""
    corners = np.array([(v, t) for v in v_range for t in t_range])
    s, c = np.sin(angle), np.cos(angle)
    y = centre_yz[0] + corners[:, 0] * s + corners[:, 1] * c
    z = centre_yz[1] + corners[:, 0] * c - corners[:, 1] * s
    return grid.window((y.min(), y.max()), (z.min(), z.max()))


def _lr_range(grid: _Grid, centre_x: float, half_width: float) -> Optional[slice]:
    """Fine sub-slices within ``half_width`` mm of world x ``centre_x`` (None if there are none)."""
    inside = np.nonzero(np.abs(grid.x - centre_x) <= half_width)[0]
    return slice(int(inside[0]), int(inside[-1]) + 1) if inside.size else None


def _body_shape(u, v, t, bone: Bone):
    """Implicit vertebral body: (inside, distance to the top/bottom surface along v, cortex) masks.

    Fused sacral segments have cortex only around their sides (and on top of S1)."""
    a, b = bone.width / 2, bone.depth / 2
    rho2 = (u / a) ** 2 + (t / b) ** 2
    waist = 1.0 - 0.07 * (1.0 - np.clip((2 * v / bone.height) ** 2, 0, 1))
    posterior = t <= b * (POSTERIOR_WALL + 0.12 * (u / a) ** 2)
    half_height = bone.height / 2 - _surface_offset(rho2 / waist ** 2)
    inside = (rho2 <= waist ** 2) & posterior & (np.abs(v) <= half_height)
    surface_gap = half_height - np.abs(v)
    lateral_gap = (waist - np.sqrt(rho2)) * min(a, b)
    shell = (surface_gap < CORTEX_THICKNESS)
    if bone.sacral_index >= 0:
        shell = shell & (v > 0) if bone.sacral_index == 0 else np.zeros_like(shell)
    cortex = inside & ((lateral_gap < CORTEX_THICKNESS) | (t > b * POSTERIOR_WALL - CORTEX_THICKNESS) | shell)
    return inside, surface_gap, cortex


def _inferior_articular(bone: Bone, lateral, v, t, grow: float = 0.0):
    """Inferior articular process of ``bone`` on one side (``lateral`` = u towards that side),
    grown by ``grow`` mm: an ellipsoid hanging below the lamina."""
    a_c, b_c, t_c, H = bone.canal_lr, bone.canal_ap, bone.canal_centre_t, bone.height
    return (((lateral - (a_c + 0.5)) / (3.2 + grow)) ** 2 + ((v - (-0.5 * H - 2.0)) / (7.5 + grow)) ** 2
            + ((t - (t_c + 0.75 * b_c)) / (5.0 + grow)) ** 2 <= 1)


def _paint_bone(p: _Painter, anatomy: SpineAnatomy, index: int) -> None:
    """Paint ``anatomy.bones[index]``: posterior elements (arch 41, spinous 42, transverse 43/44,
    superior/inferior articular 45–48, or all 26 for the sacrum) with a cortical rim, then the
    body (49, or 26) with cortex and its endplates (62, instance 200 + the vertebra above the
    disc space each one faces)."""
    bone = anatomy.bones[index]
    grid = p.grid
    sacral = bone.sacral_index >= 0
    vid = bone.vertebra_id
    H, D = bone.height, bone.depth
    reach = max(bone.transverse_reach, bone.width / 2 + (28.0 if bone.sacral_index == 0 else 4.0))
    lr = _lr_range(grid, float(midline_x(anatomy, bone.centre_yz[1])), reach)
    t_back = bone.canal_centre_t + bone.canal_ap + 4.0 + bone.spinous_length + 6.0
    window = _box_window(grid, bone.centre_yz, bone.angle, (-H * (1.1 if sacral else 0.5) - 14.0, H / 2 + 12.0),
                         (-D / 2 - 1.0, t_back))
    if lr is None or window is None:
        return
    v, t = _local(grid, window, bone.centre_yz, bone.angle)
    u = (grid.x[lr] - midline_x(anatomy, bone.centre_yz[1]))[:, None, None]
    absu = np.abs(u)
    a_c, b_c, t_c = bone.canal_lr, bone.canal_ap, bone.canal_centre_t
    marrow = SACRAL_MARROW if sacral else POSTERIOR_MARROW

    elements = np.zeros((lr.stop - lr.start,) + v.shape[1:], dtype=bool)

    def paint_element(mask, semantic: int) -> None:
        nonlocal elements
        elements |= p.paint(window, lr, mask, marrow, spine=L.SACRUM if sacral else semantic, vert=vid, bone=vid)

    # Arch: pedicles + laminae around the canal.
    pw = bone.pedicle_width
    pedicle = ((((absu - (a_c + pw / 2)) / (pw / 2)) ** 2 + ((v - 0.18 * H) / (0.28 * H)) ** 2 <= 1)
               & (t >= bone.posterior_wall_t - 3.0) & (t <= t_c + 0.3 * b_c))
    ring_outer = (u / (a_c + 5.0)) ** 2 + ((t - t_c) / (b_c + 5.0)) ** 2 <= 1
    ring_inner = (u / a_c) ** 2 + ((t - t_c) / b_c) ** 2 >= 1
    if sacral:  # the fused laminae form one continuous dorsal wall
        lamina_v, lamina_half_height = 0.0 * t, 0.62 * H
    else:  # laminae slope downward posteriorly, leaving interlaminar windows
        lamina_v, lamina_half_height = 0.05 * H - 0.35 * (t - t_c), 0.36 * H
    lamina = ring_outer & ring_inner & (t >= t_c - 0.2 * b_c) & (np.abs(v - lamina_v) <= lamina_half_height)
    paint_element(pedicle | lamina, L.ARCUS)

    # Spinous process: a plate running posterior and downward from the laminae, taller at the tip.
    t0 = t_c + b_c + 2.0
    v0 = 0.0 if sacral else 0.05 * H - 0.35 * (t0 - t_c)
    beta = bone.spinous_angle
    along = (t - t0) * np.cos(beta) - (v - v0) * np.sin(beta)
    across = (t - t0) * np.sin(beta) + (v - v0) * np.cos(beta)
    frac = np.clip(along / bone.spinous_length, 0, 1)
    half_h = bone.spinous_height / 2 * (0.75 + 0.25 * frac)
    tip = np.sqrt(np.clip(1 - np.clip((along - 0.75 * bone.spinous_length) / (0.25 * bone.spinous_length + 1e-3), 0, 1) ** 2, 0, 1))
    spinous = (along >= -5.0) & (along <= bone.spinous_length) & (np.abs(across) <= half_h * tip) & (absu <= 2.6 + 1.6 * frac)
    paint_element(spinous, L.SPINOUS_PROCESS)

    # Transverse (costal) processes: rods running laterally from the pedicle-lamina junction.
    if bone.transverse_reach > 0:
        root = a_c + 0.45 * pw
        span = max(bone.transverse_reach - root, 1.0)
        for sign, semantic in ((1, L.COSTAL_PROCESS_LEFT), (-1, L.COSTAL_PROCESS_RIGHT)):
            w = sign * u
            along_w = np.clip((w - root) / span, 0, 1)
            taper = 1.0 - 0.35 * along_w
            rod = ((w >= root) & (w <= bone.transverse_reach)
                   & (((t - (t_c - 0.2 * b_c + 0.15 * (w - root))) / (3.8 * taper)) ** 2
                      + ((v - 0.15 * H) / (5.0 * taper)) ** 2 <= 1))
            paint_element(rod, semantic)

    # Articular processes: superior ones rise above the body, inferior ones hang below it,
    # medial and posterior to the superior processes of the vertebra below. The facet joint
    # between them is a thin layer of synovial fluid carved out of the superior process.
    if bone.sacral_index <= 0:
        upper = anatomy.bones[index - 1] if index > 0 else None
        if upper is not None:
            v_up, t_up = _local(grid, window, upper.centre_yz, upper.angle)
            u_up = (grid.x[lr] - midline_x(anatomy, upper.centre_yz[1]))[:, None, None]
        for sign, semantic in ((1, L.SUPERIOR_ARTICULAR_LEFT), (-1, L.SUPERIOR_ARTICULAR_RIGHT)):
            sap = (((sign * u - (a_c + 4.0)) / 3.2) ** 2 + ((v - (0.5 * H + 1.5)) / 7.0) ** 2
                   + ((t - (t_c + 0.1 * b_c)) / 5.5) ** 2 <= 1)
            if upper is not None:
                joint = sap & _inferior_articular(upper, sign * u_up, v_up, t_up, grow=FACET_JOINT_GAP)
                sap &= ~joint
                p.paint(window, lr, joint, SYNOVIAL)
            paint_element(sap, semantic)
    if not sacral:
        for sign, semantic in ((1, L.INFERIOR_ARTICULAR_LEFT), (-1, L.INFERIOR_ARTICULAR_RIGHT)):
            paint_element(_inferior_articular(bone, sign * u, v, t), semantic)

    # Sacral ala: the lateral wings of S1, reaching down along S2.
    if bone.sacral_index == 0:
        ala = (((absu - bone.width / 2 - 4.0) / 24.0) ** 2 + ((v + 0.25 * H) / (0.8 * H)) ** 2
               + ((t - 0.1 * D) / (0.5 * D)) ** 2 <= 1)
        paint_element(ala, L.SACRUM)
    # Cortical bone: a dark rim (one in-plane voxel) around the posterior elements.
    rim = elements & ~ndimage.binary_erosion(elements, structure=np.ones((1, 3, 3), dtype=bool))
    p.paint(window, lr, rim, CORTEX, bone=vid)

    # Body last: marrow, cortex, endplates.
    inside, surface_gap, cortex = _body_shape(u, v, t, bone)
    if not inside.any():
        return
    tissue = np.where(cortex, np.uint8(CORTEX), np.uint8(SACRAL_MARROW if sacral else MARROW_BASE + index))
    body_index = index + 1
    if sacral:
        p.paint(window, lr, inside, tissue, spine=L.SACRUM, vert=vid, body_of=body_index, bone=vid)
        if bone.sacral_index > 0:  # the fused remnant of the disc between sacral segments
            p.paint(window, lr, inside & (np.abs(v - (H / 2 - 1.5)) < 1.0), ANNULUS, bone=vid)
        return
    p.paint(window, lr, inside, tissue, spine=L.VERTEBRAL_BODY, vert=vid, body_of=body_index, bone=vid)
    endplate = inside & (surface_gap < ENDPLATE_THICKNESS)
    # The vertebra above the disc space this upper endplate faces.
    above_id = anatomy.bones[index - 1].vertebra_id if index > 0 else L.vertebra_id_above(vid)
    p.paint(window, lr, endplate & (v > 0), CORTEX, spine=L.ENDPLATE, vert=L.SPINEPS_ENDPLATE_OFFSET + above_id,
            body_of=body_index, bone=vid)
    p.paint(window, lr, endplate & (v < 0), CORTEX, spine=L.ENDPLATE, vert=L.SPINEPS_ENDPLATE_OFFSET + vid,
            body_of=body_index, bone=vid)


def _paint_disc(p: _Painter, anatomy: SpineAnatomy, upper_index: int) -> None:
    """Paint the disc below ``anatomy.bones[upper_index]`` (label 100, instance 100 + X): an
    annulus filling the space between the two endplate surfaces, and a nucleus in its centre."""
    upper, lower = anatomy.bones[upper_index], anatomy.bones[upper_index + 1]
    grid = p.grid
    centre = (upper.endplate_centre("bottom") + lower.endplate_centre("top")) / 2
    angle = (upper.angle + lower.angle) / 2
    a = (upper.width + lower.width) / 4 * 1.02
    b = (upper.depth + lower.depth) / 4 * 1.02
    lr = _lr_range(grid, float(midline_x(anatomy, centre[1])), a)
    window = _box_window(grid, centre, angle, (-12.0, 12.0), (-b - 1.0, b + 1.0))
    if lr is None or window is None:
        return
    v, t = _local(grid, window, centre, angle)
    u = (grid.x[lr] - midline_x(anatomy, centre[1]))[:, None, None]
    v_up, _ = _local(grid, window, upper.centre_yz, upper.angle)
    v_lo, _ = _local(grid, window, lower.centre_yz, lower.angle)
    rho2 = (u / a) ** 2 + (t / b) ** 2
    dip = _surface_offset(rho2)
    below_upper = (-upper.height / 2 + dip) - v_up  # distance below the upper body's surface
    above_lower = v_lo - (lower.height / 2 - dip)
    posterior = t <= b * (POSTERIOR_WALL + 0.12 * (u / a) ** 2) + 0.5
    disc = (rho2 <= 1) & posterior & (below_upper >= -0.4) & (above_lower >= -0.4)
    thickness = np.maximum(below_upper + above_lower, 1e-3)
    frac = np.clip(above_lower / thickness, 0, 1)
    nucleus = disc & ((u / (0.55 * a)) ** 2 + ((t - 0.1 * b) / (0.5 * b)) ** 2 + ((2 * frac - 1) / 0.7) ** 2 <= 1)
    nucleus &= np.abs(2 * frac - 1) > 0.1  # the adult intranuclear cleft: a thin dark line on T2
    tissue = np.where(nucleus, np.uint8(NUCLEUS_BASE + upper_index), np.uint8(ANNULUS))
    p.paint(window, lr, disc, tissue, spine=L.DISC, vert=L.SPINEPS_DISC_OFFSET + upper.vertebra_id)


def _axis_profile(anatomy: SpineAnatomy, z: np.ndarray, offset: str) -> Dict[str, np.ndarray]:
    """Spine axis per world height ``z``, through the bone centres (``offset='body'``, down to
    the coccyx) or the canal (``'canal'``, down to S2): world y, tilt, canal semi-axes and body
    depth, interpolated between bones and continued straight beyond the ends."""
    bones = [b for b in anatomy.bones if offset == "body" or b.sacral_index <= 1]
    points, angles, ap, lr, depth = [], [], [], [], []
    for b in bones:
        shift = b.canal_centre_t if offset == "canal" else 0.0
        points.append(np.asarray(b.centre_yz) + shift * b.axis("t"))
        angles.append(b.angle); ap.append(b.canal_ap); lr.append(b.canal_lr); depth.append(b.depth)
    # Continue straight beyond the ends (above the top bone, below the coccyx).
    top, bottom = bones[0], bones[-1]
    points.insert(0, points[0] + 200.0 * top.axis("v"))
    points.append(points[-1] - 200.0 * bottom.axis("v"))
    for lst, first, last in ((angles, top.angle, bottom.angle), (ap, top.canal_ap, bottom.canal_ap),
                             (lr, top.canal_lr, bottom.canal_lr), (depth, top.depth, bottom.depth)):
        lst.insert(0, first)
        lst.append(last)
    points = np.array(points)
    order = np.argsort(points[:, 1])
    zs = points[order, 1]

    def interp(values) -> np.ndarray:
        return np.interp(z, zs, np.asarray(values)[order]).astype(np.float32)

    return {"y": interp(points[:, 0]), "angle": interp(angles), "canal_ap": interp(ap), "canal_lr": interp(lr),
            "depth": interp(depth)}


def _paint_canal(p: _Painter, anatomy: SpineAnatomy) -> None:
    """Epidural fat, the CSF-filled canal (label 61), the cord (60) ending at the conus, and the
    cauda equina's roots (tissue only), all following the canal axis."""
    grid = p.grid
    prof = _axis_profile(anatomy, grid.z, "canal")
    end = anatomy.bones[-4]  # S2: the thecal sac ends here
    taper = np.sqrt(np.clip((grid.z - (end.centre_yz[1] - 0.3 * end.height)) / 15.0, 0, 1))
    rows = np.nonzero(taper > 0)[0]
    if rows.size == 0:
        return
    cols_lo = np.min(prof["y"][rows] - 25.0); cols_hi = np.max(prof["y"][rows] + 25.0)
    window = grid.window((cols_lo, cols_hi), (grid.z[rows[-1]], grid.z[rows[0]]))
    if window is None:
        return
    r, c = window
    cos = np.cos(prof["angle"][r])[None, :, None]
    t = (grid.y[c][None, None, :] - prof["y"][r][None, :, None]) * cos
    u = grid.x[:, None, None] - midline_x(anatomy, grid.z[r])[None, :, None]
    ap = (prof["canal_ap"][r] * taper[r])[None, :, None] + 1e-3
    lr_ = (prof["canal_lr"][r] * taper[r])[None, :, None] + 1e-3
    lr_all = slice(0, grid.x.size)
    epidural = ((u / (lr_ + 2.5)) ** 2 + (t / (ap + 2.5)) ** 2 <= 1) & (t > 0)
    p.paint(window, lr_all, epidural, EPIDURAL_FAT)
    canal = (u / lr_) ** 2 + (t / ap) ** 2 <= 1
    z = grid.z[r][None, :, None]
    roots = canal & (z < anatomy.conus_z + 5.0) & (np.abs(np.sin(u * 1.1)) > 0.97) & (t > 0.2 * ap)
    tissue = np.where(roots, np.uint8(NERVE_ROOT), np.uint8(CSF))
    p.paint(window, lr_all, canal, tissue, spine=L.SPINAL_CANAL, vert=0)
    cord_taper = np.sqrt(np.clip((z - anatomy.conus_z) / 18.0, 0, 1))
    cord = ((u / (4.6 * cord_taper + 1e-3)) ** 2 + ((t + 0.15 * ap) / (3.8 * cord_taper + 1e-3)) ** 2 <= 1) & (z > anatomy.conus_z)
    p.paint(window, lr_all, cord, CORD, spine=L.SPINAL_CORD, vert=0)


def smooth_field(rng: np.random.Generator, shape: Tuple[int, ...], cell: float) -> np.ndarray:
    """Smooth random field in [-1, 1]-ish of ``shape`` with features of about ``cell`` pixels."""
    coarse = [max(int(np.ceil(n / cell)) + 2, 3) for n in shape]
    noise = ndimage.gaussian_filter(rng.standard_normal(coarse), 0.8)
    noise /= noise.std() + 1e-6
    field_ = ndimage.zoom(noise, [n / c for n, c in zip(shape, coarse)], order=3)
    return field_[tuple(slice(0, n) for n in shape)].astype(np.float32)


def _paint_surroundings(p: _Painter, anatomy: SpineAnatomy) -> None:
    """Muscle, subcutaneous fat, air behind the back; abdomen, vessels and psoas in front."""
    grid = p.grid
    rng = np.random.default_rng(anatomy.texture_seed)
    prof = _axis_profile(anatomy, grid.z, "body")
    cos = np.cos(prof["angle"])[None, :, None]
    t = (grid.y[None, None, :] - prof["y"][None, :, None]) * cos  # (1, rows, cols)
    depth = prof["depth"][None, :, None]
    mean_back = np.mean([b.canal_centre_t + b.canal_ap + 4.0 + b.spinous_length * np.cos(b.spinous_angle)
                         for b in anatomy.vertebrae])
    muscle_end = mean_back + anatomy.muscle_depth
    skin = muscle_end + anatomy.fat_depth
    u = grid.x[:, None, None] - midline_x(anatomy, grid.z)[None, :, None]
    n_fine = grid.x.size
    # Abdomen: bowel loops (thin dark walls along the zero set of a smooth field, fluid-filled
    # lumina), mesenteric fat patches, all changing slowly from slice to slice.
    fields = [smooth_field(rng, grid.shape[1:], 14.0 / grid.s_ap)[None] for _ in range(3)]
    phase = ((grid.x - grid.x.mean()) / 30.0)[:, None, None]
    loops = np.cos(phase) * fields[0] + np.sin(phase) * fields[1]
    abdomen = np.full(loops.shape, ABDOMEN, dtype=np.uint8)
    abdomen[loops > 1.1] = BOWEL_FLUID
    abdomen[np.broadcast_to(fields[2] < -1.0, abdomen.shape)] = FAT
    abdomen[np.abs(loops) < 0.08] = BOWEL_WALL
    tissue = np.broadcast_to(abdomen, (n_fine,) + grid.shape[1:]).copy()
    back = np.broadcast_to(t > -depth / 2 - 3.0, tissue.shape)
    tissue[back] = MUSCLE
    tissue[np.broadcast_to(t > muscle_end, tissue.shape)] = FAT
    tissue[np.broadcast_to(t > skin, tissue.shape)] = AIR
    # Psoas beside the bodies (lateral slices), widening caudally from L1.
    z = grid.z[None, :, None]
    below_l1 = np.clip(anatomy.bone(L.L1_ID).centre_yz[1] - z, 0, None)
    psoas = (np.abs(u) > 12.0) & (np.abs(u) < np.minimum(12.0 + 0.3 * below_l1, 45.0)) \
        & (t > -depth / 2 - np.minimum(4.0 + 0.2 * below_l1, 20.0)) & (t < 0.2 * depth)
    tissue[psoas] = MUSCLE
    # Aorta (left) and vena cava (right) in front of the spine; below the bifurcation at L4 the
    # iliac vessels diverge laterally.
    below_bifurcation = np.clip(anatomy.bone(23).centre_yz[1] - z, 0, None)
    for x_offset, radius, gap in ((anatomy.aorta_x, 10.0, 3.0), (-anatomy.aorta_x - 6.0, 11.0, 2.0)):
        centre_x = x_offset + np.sign(x_offset) * 0.8 * below_bifurcation
        size = radius * np.where(below_bifurcation > 0, 0.7, 1.0)
        vessel = ((u - centre_x) / size) ** 2 + ((t + depth / 2 + gap + radius) / size) ** 2 <= 1
        tissue[vessel] = VESSEL
    alligament = (t > -depth / 2 - 1.5) & (t < -depth / 2 + 0.5) & (np.abs(u) < 15.0)
    tissue[np.broadcast_to(alligament, tissue.shape)] = LIGAMENT
    # Bladder in front of the lower sacrum.
    s3 = anatomy.bones[-3]
    by, bz = s3.centre_yz[0] - 75.0, s3.centre_yz[1] - 5.0
    bladder = ((u / 40.0) ** 2 + ((grid.y[None, None, :] - by) / 32.0) ** 2 + ((z - bz) / 28.0) ** 2) <= 1
    tissue[bladder] = URINE
    p.tissue[:] = tissue


def rasterise(anatomy: SpineAnatomy, geometry: Geometry, shape: Tuple[int, int, int], supersample: int = 3,
              first_bone: int = 0) -> Rasterised:
    """Sample ``anatomy`` on an axis-aligned PIR grid ``(n_lr, n_si, n_ap)``.

    Bones before ``anatomy.bones[first_bone]`` (above the field of view) are not drawn.
    """
    grid = _Grid(geometry, tuple(int(n) for n in shape), supersample)
    painter = _Painter(grid)
    _paint_surroundings(painter, anatomy)
    _paint_canal(painter, anatomy)
    n_spine = len(anatomy.vertebrae)
    for index in range(max(first_bone, 0), n_spine):
        _paint_disc(painter, anatomy, index)
    for index in range(first_bone, len(anatomy.bones)):
        _paint_bone(painter, anatomy, index)
    painter.keep_largest_bone_parts()
    return Rasterised(painter.tissue, painter.spine, painter.vert, painter.bone_id, painter.body_of, supersample)
