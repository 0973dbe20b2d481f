"""Corresponding landmarks of a 2D sagittal spine: which classes are vertebrae and discs, in which
order, and each structure's contour as a fixed number of points.

Coordinates are ``(x, y)`` in pixels with ``x`` = column (array axis 2, anterior -> posterior) and
``y`` = row (array axis 1, superior -> inferior), the convention of SSMSpine's ``bone``/``disk``
arrays. A *shape* is one ``(M, 2)`` array: every vertebra's contour top to bottom, then every
disc's contour top to bottom (``SpineLayout`` says which rows belong to which structure).

Correspondence between cases comes from ``canonical_contour``: orientation fixed by the sign of
the polygon area, start point where the ray from the centroid towards anterior-superior (-x, -y)
leaves the structure, and points equally spaced in arc length from there.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage
from skimage import measure

from nnunetv2_symtc.labels import (SPIDER_DISC_OFFSET, SPIDER_MAX_LEVEL, VERTEBRA_IDS_TOP_TO_BOTTOM,
                                   VERTEBRA_NAMES, LabelMap)

START_DIRECTION_XY = np.array([-1.0, -1.0]) / np.sqrt(2.0)
"""Direction (x, y) from a structure's centroid to its start point: anterior (-x) and superior (-y)."""

CONTOUR_SMOOTHING = 2.0
"""Gaussian sigma, in marching-squares vertices (≤ 1 px apart), applied along extracted contours."""

DEFAULT_POINTS_PER_VERTEBRA = 64
DEFAULT_POINTS_PER_DISC = 48

_LEVEL_RANK: Dict[str, int] = {VERTEBRA_NAMES[v]: rank for rank, v in enumerate(VERTEBRA_IDS_TOP_TO_BOTTOM)}
_LEVEL_TOKEN = re.compile(r"(?<![A-Za-z])([CTLS]\d{1,2})(?!\d)")


@dataclass(frozen=True)
class Structure:
    """One modelled structure: its nnU-Net class and name."""

    name: str
    class_id: int


@dataclass(frozen=True)
class SpineLayout:
    """Which structures a shape holds and how many contour points each has.

    ``vertebrae`` and ``discs`` are ordered top (superior) to bottom. ``disc_neighbours[i]`` is the
    index (into ``vertebrae``) of the vertebra above and below disc ``i``, or ``None`` when either
    is not modelled.
    """

    vertebrae: Tuple[Structure, ...]
    discs: Tuple[Structure, ...]
    disc_neighbours: Tuple[Optional[Tuple[int, int]], ...]
    points_per_vertebra: int = DEFAULT_POINTS_PER_VERTEBRA
    points_per_disc: int = DEFAULT_POINTS_PER_DISC

    @property
    def structures(self) -> Tuple[Structure, ...]:
        return self.vertebrae + self.discs

    @property
    def point_counts(self) -> Tuple[int, ...]:
        return (self.points_per_vertebra,) * len(self.vertebrae) + (self.points_per_disc,) * len(self.discs)

    @property
    def num_points(self) -> int:
        return int(sum(self.point_counts))

    def split(self, shape: np.ndarray) -> List[np.ndarray]:
        """``(M, 2)`` shape -> one ``(P_i, 2)`` contour per structure (views)."""
        if shape.shape != (self.num_points, 2):
            raise ValueError(f"shape has {shape.shape}, layout expects ({self.num_points}, 2)")
        return np.split(shape, np.cumsum(self.point_counts)[:-1])

    def with_points(self, points_per_vertebra: int, points_per_disc: int) -> "SpineLayout":
        return SpineLayout(self.vertebrae, self.discs, self.disc_neighbours, points_per_vertebra, points_per_disc)

    def restricted_to(self, class_ids: Sequence[int]) -> "SpineLayout":
        """The layout with only the structures whose class is in ``class_ids``."""
        keep = set(int(c) for c in class_ids)
        vertebrae = tuple(s for s in self.vertebrae if s.class_id in keep)
        discs = tuple(s for s in self.discs if s.class_id in keep)
        return _with_neighbours(vertebrae, discs, self.points_per_vertebra, self.points_per_disc)

    def to_json(self) -> dict:
        return {"vertebrae": [[s.name, s.class_id] for s in self.vertebrae],
                "discs": [[s.name, s.class_id] for s in self.discs],
                "points_per_vertebra": self.points_per_vertebra, "points_per_disc": self.points_per_disc}


def _level_tokens(name: str) -> List[str]:
    return [t for t in _LEVEL_TOKEN.findall(name) if t in _LEVEL_RANK]


def _with_neighbours(vertebrae, discs, points_per_vertebra, points_per_disc) -> SpineLayout:
    index_of = {s.name: i for i, s in enumerate(vertebrae)}
    neighbours = []
    for disc in discs:
        tokens = disc.name.split("|")  # internal "above|below" names are set by spine_layout
        pair = (index_of.get(tokens[0]), index_of.get(tokens[-1])) if len(tokens) == 2 else (None, None)
        neighbours.append(pair if None not in pair else None)
    return SpineLayout(tuple(vertebrae), tuple(discs), tuple(neighbours), points_per_vertebra, points_per_disc)


def spine_layout(labels: Dict[str, int], label_map: Optional[LabelMap] = None,
                 points_per_vertebra: int = DEFAULT_POINTS_PER_VERTEBRA,
                 points_per_disc: int = DEFAULT_POINTS_PER_DISC) -> SpineLayout:
    """Vertebrae and discs of a dataset, top to bottom, from its ``dataset.json`` labels.

    A class whose name holds one level token (``L1``, ``S1``, ``T12 vertebra``) is a vertebra; one
    with two tokens (``L1/L2``, ``L4-L5 disc``) is the disc between them. Label maps of the SPIDER
    scheme whose class names carry no levels are read from their source values instead (vertebrae
    1–25 counted from the bottom, discs 200 + the vertebra above). Other classes (canal, sacrum
    parts...) are not modelled; the warp carries them along.
    """
    vertebrae: List[Tuple[int, str, int]] = []  # (rank, level name, class)
    discs: List[Tuple[int, str, str, int]] = []  # (rank, above, below, class)
    for name, class_id in labels.items():
        tokens = _level_tokens(name)
        if len(tokens) == 1:
            vertebrae.append((_LEVEL_RANK[tokens[0]], tokens[0], int(class_id)))
        elif len(tokens) == 2:
            above, below = sorted(tokens, key=_LEVEL_RANK.get)
            discs.append((_LEVEL_RANK[above], above, below, int(class_id)))
    if not vertebrae and label_map is not None and label_map.scheme.lower().startswith("spider"):
        for class_id, (name, values) in enumerate(label_map.classes, start=1):
            v = int(values[0])
            if 1 <= v <= SPIDER_MAX_LEVEL:
                vertebrae.append((-v, f"V{v}", class_id))
            elif 1 <= v - SPIDER_DISC_OFFSET <= SPIDER_MAX_LEVEL:
                level = v - SPIDER_DISC_OFFSET
                discs.append((-level, f"V{level}", f"V{level - 1}", class_id))
    if len(vertebrae) < 2:
        raise ValueError(f"labels {sorted(labels)} name fewer than two vertebrae (expected level names such "
                         "as 'L1'..'S1' and discs such as 'L1/L2'); cannot build a spine shape model")
    vertebrae.sort()
    discs.sort()
    vertebra_structs = [Structure(name, c) for _, name, c in vertebrae]
    disc_structs = [Structure(f"{above}|{below}", c) for _, above, below, c in discs]
    return _with_neighbours(vertebra_structs, disc_structs, points_per_vertebra, points_per_disc)


# --------------------------------------------------------------------------------------------
# contours
# --------------------------------------------------------------------------------------------
def polygon_area(polygon: np.ndarray) -> float:
    """Signed shoelace area of a closed ``(P, 2)`` polygon (positive = clockwise on screen, y down)."""
    x, y = polygon[:, 0], polygon[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def polygon_centroid(polygon: np.ndarray) -> np.ndarray:
    """Area centroid ``(x, y)`` of a closed polygon (vertex mean if degenerate)."""
    x, y = polygon[:, 0], polygon[:, 1]
    cross = x * np.roll(y, -1) - np.roll(x, -1) * y
    area = 0.5 * cross.sum()
    if abs(area) < 1e-9:
        return polygon.mean(axis=0)
    return np.array([((x + np.roll(x, -1)) * cross).sum(), ((y + np.roll(y, -1)) * cross).sum()]) / (6 * area)


def _ray_exit(polygon: np.ndarray, origin: np.ndarray, direction: np.ndarray) -> Tuple[int, float]:
    """Segment index and position along it where the ray leaves the polygon farthest from origin."""
    a = polygon
    edge = np.roll(polygon, -1, axis=0) - a
    denom = direction[0] * edge[:, 1] - direction[1] * edge[:, 0]
    rel = a - origin
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (rel[:, 0] * edge[:, 1] - rel[:, 1] * edge[:, 0]) / denom
        u = (rel[:, 0] * direction[1] - rel[:, 1] * direction[0]) / denom
    hit = np.isfinite(t) & (t > 0) & (u >= 0) & (u < 1)
    if not hit.any():
        index = int(np.argmax(polygon @ direction))
        return index, 0.0
    index = int(np.flatnonzero(hit)[np.argmax(t[hit])])
    return index, float(u[index])


def canonical_contour(polygon: np.ndarray, num_points: int, superior_xy: Optional[np.ndarray] = None) -> np.ndarray:
    """Closed ``(P, 2)`` polygon -> ``(num_points, 2)`` points with the canonical orientation, start
    point and equal arc-length spacing.

    The start point is where the ray from the centroid towards anterior-superior leaves the
    polygon. ``superior_xy`` is the local superior direction of the spine (unit (x, y); see
    ``spine_axes``), so the start point does not move with the tilt of the structure; without it
    the image's own axes are used (superior = -y, anterior = -x).
    """
    polygon = np.asarray(polygon, dtype=np.float64)
    if len(polygon) > 1 and np.allclose(polygon[0], polygon[-1]):
        polygon = polygon[:-1]
    if len(polygon) < 3:
        raise ValueError(f"a contour needs at least 3 points, got {len(polygon)}")
    if polygon_area(polygon) < 0:
        polygon = polygon[::-1]
    direction = START_DIRECTION_XY if superior_xy is None else _start_direction(np.asarray(superior_xy, float))
    index, u = _ray_exit(polygon, polygon_centroid(polygon), direction)
    nxt = (index + 1) % len(polygon)
    start = polygon[index] + u * (polygon[nxt] - polygon[index])
    ordered = np.concatenate([start[None], np.roll(polygon, -nxt, axis=0), start[None]])
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(ordered, axis=0), axis=1))])
    positions = np.linspace(0.0, arc[-1], num_points, endpoint=False)
    return np.stack([np.interp(positions, arc, ordered[:, 0]), np.interp(positions, arc, ordered[:, 1])], axis=1)


def _start_direction(superior_xy: np.ndarray) -> np.ndarray:
    """Anterior-superior diagonal for a local superior direction (anterior = the perpendicular towards -x)."""
    anterior = np.array([superior_xy[1], -superior_xy[0]])
    if anterior[0] > 0:
        anterior = -anterior
    direction = superior_xy + anterior
    return direction / np.linalg.norm(direction)


def spine_axes(contours: Sequence[np.ndarray], layout: SpineLayout) -> np.ndarray:
    """Local superior direction ``(S, 2)`` (unit (x, y)) of every structure: from the centroid of
    the structure below to the one above (vertebrae: the neighbouring vertebrae, one-sided at the
    ends; discs: their two vertebrae). Discs without modelled neighbours get the image's -y."""
    centroids = np.stack([polygon_centroid(np.asarray(c, np.float64)) for c in contours])
    nv = len(layout.vertebrae)
    axes = np.tile([0.0, -1.0], (len(centroids), 1))
    for i in range(nv):
        above, below = centroids[max(i - 1, 0)], centroids[min(i + 1, nv - 1)]
        axes[i] = above - below
    for d, neighbours in enumerate(layout.disc_neighbours):
        if neighbours is not None:
            axes[nv + d] = centroids[neighbours[0]] - centroids[neighbours[1]]
    norms = np.linalg.norm(axes, axis=1, keepdims=True)
    return np.where(norms > 0, axes / np.where(norms > 0, norms, 1.0), [0.0, -1.0])


def canonical_contours(contours: Sequence[np.ndarray], layout: SpineLayout,
                       point_counts: Optional[Sequence[int]] = None) -> np.ndarray:
    """Canonical ``(M, 2)`` shape from one closed polygon per structure (layout order), each
    resampled to ``point_counts`` (default: the layout's) with start points from ``spine_axes``."""
    axes = spine_axes(contours, layout)
    counts = layout.point_counts if point_counts is None else point_counts
    return np.concatenate([canonical_contour(c, n, a) for c, n, a in zip(contours, counts, axes)])


def mask_contour(mask: np.ndarray) -> np.ndarray:
    """Boundary ``(P, 2)`` polygon (x, y) of the largest connected component of a 2D mask; it runs
    half-way between inside and outside pixel centres, lightly smoothed along the contour so that
    its arc length is not inflated by the pixel staircase. ``ValueError`` if the mask is empty."""
    components, count = ndimage.label(mask)
    if count == 0:
        raise ValueError("structure is absent")
    if count > 1:
        sizes = ndimage.sum_labels(np.ones_like(components), components, index=np.arange(1, count + 1))
        mask = components == (1 + int(np.argmax(sizes)))
    padded = np.pad(mask.astype(np.float32), 1)
    contour = max(measure.find_contours(padded, 0.5), key=len)[:-1] - 1.0
    if len(contour) > 4 * CONTOUR_SMOOTHING:
        contour = ndimage.gaussian_filter1d(contour, CONTOUR_SMOOTHING, axis=0, mode="wrap")
    return contour[:, ::-1]


def extract_landmarks(label: np.ndarray, layout: SpineLayout) -> np.ndarray:
    """2D label map ``(H, W)`` (nnU-Net classes) -> ``(M, 2)`` shape. ``ValueError`` names a missing structure."""
    contours = []
    for structure in layout.structures:
        try:
            contours.append(mask_contour(label == structure.class_id))
        except ValueError as e:
            raise ValueError(f"{structure.name.replace('|', '/')} (class {structure.class_id}): {e}") from None
    return canonical_contours(contours, layout)


def canonical_shape(shape: np.ndarray, layout: SpineLayout) -> np.ndarray:
    """Re-parameterise every contour of a shape canonically (same point counts)."""
    return canonical_contours(layout.split(shape), layout)


# --------------------------------------------------------------------------------------------
# stored landmark files (SSMSpine ``bone``/``disk`` arrays)
# --------------------------------------------------------------------------------------------
def load_stored_landmarks(path: Path, layout: SpineLayout, label: Optional[np.ndarray] = None,
                          tolerance_px: float = 2.0) -> np.ndarray:
    """Read ``bone`` ``(V, P, 2)`` and ``disk`` ``(D, Q, 2)`` from an ``.npz`` -> canonical ``(M, 2)`` shape.

    ``layout`` must list the same number of vertebrae and discs (top to bottom) and the same point
    counts (see ``stored_point_counts``). With ``label``, every contour must lie on its structure's
    boundary (mean distance ≤ ``tolerance_px``), which catches landmarks in another pixel frame.
    """
    with np.load(path) as data:
        if "bone" not in data or "disk" not in data:
            raise ValueError(f"{path}: expected arrays 'bone' and 'disk', found {sorted(data.files)}")
        bone, disk = np.asarray(data["bone"], np.float64), np.asarray(data["disk"], np.float64)
    if bone.shape[0] != len(layout.vertebrae) or disk.shape[0] != len(layout.discs):
        raise ValueError(f"{path}: {bone.shape[0]} vertebra and {disk.shape[0]} disc contours, but the labels "
                         f"define {len(layout.vertebrae)} vertebrae and {len(layout.discs)} discs")
    counts = layout.with_points(bone.shape[1], disk.shape[1]).point_counts
    shape = canonical_contours(list(bone) + list(disk), layout, counts)
    if label is not None:
        for structure, contour in zip(layout.structures, layout.with_points(bone.shape[1], disk.shape[1]).split(shape)):
            mask = label == structure.class_id
            if not mask.any():
                raise ValueError(f"{path}: {structure.name.replace('|', '/')} has landmarks but no label pixels")
            boundary = mask_contour(mask)
            distance = np.sqrt(((contour[:, None, :] - boundary[None, :, :]) ** 2).sum(-1)).min(1).mean()
            if distance > tolerance_px:
                raise ValueError(f"{path}: {structure.name.replace('|', '/')} landmarks lie {distance:.1f} px from "
                                 "the label boundary on average; expected (x=column, y=row) pixel coordinates "
                                 "of the stored image")
    return shape


def stored_point_counts(path: Path) -> Tuple[int, int]:
    """``(points per vertebra, points per disc)`` of a stored landmark file."""
    with np.load(path) as data:
        return int(data["bone"].shape[1]), int(data["disk"].shape[1])


def save_landmarks(path: Path, shape: np.ndarray, layout: SpineLayout) -> None:
    """Write a shape as ``bone`` ``(V, P, 2)``, ``disk`` ``(D, Q, 2)`` (x, y pixels) plus structure names."""
    contours = layout.split(shape)
    nv = len(layout.vertebrae)
    bone = np.stack(contours[:nv]).astype(np.float32)
    disk = (np.stack(contours[nv:]) if layout.discs else np.zeros((0, layout.points_per_disc, 2))).astype(np.float32)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, bone=bone, disk=disk,
                        vertebra_names=np.array([s.name for s in layout.vertebrae]),
                        disc_names=np.array([s.name.replace("|", "/") for s in layout.discs]))
