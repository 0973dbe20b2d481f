"""Thin-plate-spline warping of 2D images and label maps from source landmarks to target landmarks.

Warping is backward: for every output pixel the TPS fitted from *target* to *source* landmarks
says where to read in the source image. The TPS is evaluated exactly on a coarse grid (every
``grid_step`` pixels) and its displacement upsampled with cubic splines, which is accurate because
the map is smooth (tested against the exact evaluation).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from nnunetv2_symtc.augmentation.landmarks import polygon_centroid
from nnunetv2_symtc.augmentation.shape_model import fit_similarity


def _kernel(squared_distance: np.ndarray) -> np.ndarray:
    """TPS radial basis U(r) = r² log r, written on r²."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(squared_distance > 0, 0.5 * squared_distance * np.log(squared_distance), 0.0)


@dataclass(frozen=True)
class ThinPlateSpline:
    """2D TPS ``f(p) = a0 + A p + sum_i w_i U(|p - c_i|)`` mapping (x, y) points to (x, y) points.

    Coordinates are normalised internally (centre and scale of the control points) for a
    well-conditioned system.
    """

    controls: np.ndarray  # (n, 2), normalised
    weights: np.ndarray  # (n, 2)
    affine: np.ndarray  # (3, 2)
    centre: np.ndarray
    scale: float

    @classmethod
    def fit(cls, source: np.ndarray, target: np.ndarray, regularization: float = 1e-6) -> "ThinPlateSpline":
        """TPS with ``f(source_i) ≈ target_i`` (exact for ``regularization`` 0); ``(n, 2)`` each, n ≥ 3."""
        source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
        centre = source.mean(0)
        scale = float(np.abs(source - centre).max()) or 1.0
        c = (source - centre) / scale
        t = (target - centre) / scale
        n = len(c)
        k = _kernel(((c[:, None] - c[None]) ** 2).sum(-1)) + regularization * np.eye(n)
        p = np.concatenate([np.ones((n, 1)), c], axis=1)
        system = np.zeros((n + 3, n + 3))
        system[:n, :n], system[:n, n:], system[n:, :n] = k, p, p.T
        rhs = np.concatenate([t, np.zeros((3, 2))])
        solution = np.linalg.solve(system, rhs)
        return cls(c, solution[:n], solution[n:], centre, scale)

    def __call__(self, points: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """Map ``(m, 2)`` points (x, y) -> ``(m, 2)``."""
        q = (np.asarray(points, np.float64) - self.centre) / self.scale
        out = np.empty_like(q)
        control_norms = (self.controls ** 2).sum(1)
        for start in range(0, len(q), chunk):
            block = q[start:start + chunk]
            squared = (block ** 2).sum(1)[:, None] + control_norms[None] - 2.0 * block @ self.controls.T
            u = _kernel(np.maximum(squared, 0.0))
            out[start:start + chunk] = u @ self.weights + self.affine[0] + block @ self.affine[1:]
        return out * self.scale + self.centre


def border_anchors(image_shape: Tuple[int, int], per_side: int = 8) -> np.ndarray:
    """Points (x, y) along the image border; mapped to themselves they keep the field of view still."""
    height, width = image_shape
    xs = np.linspace(0, width - 1, per_side + 1)
    ys = np.linspace(0, height - 1, per_side + 1)
    inner = ys[1:-1]
    points = [np.stack([xs, np.zeros_like(xs)], 1), np.stack([xs, np.full_like(xs, height - 1)], 1),
              np.stack([np.zeros_like(inner), inner], 1), np.stack([np.full_like(inner, width - 1), inner], 1)]
    return np.concatenate(points)


def select_controls(source: np.ndarray, target: np.ndarray, point_counts: Sequence[int],
                    spacing: float = 2.0, shared_radius: float = 4.0) -> Tuple[np.ndarray, np.ndarray]:
    """Landmark pairs to interpolate: per structure (in order), points at least ``spacing`` px
    apart along its source contour, leaving out points within ``shared_radius`` px of a point
    already kept from an earlier structure.

    Touching structures (a disc and its vertebrae) share a boundary, and their sampled contours
    may disagree *along* it by a few pixels; interpolating both would fold the map. The earlier
    structure (vertebrae come first) defines a shared boundary. Thinning also bounds the TPS size
    (cost grows as n³).
    """
    from scipy.spatial import cKDTree

    kept_source, kept_target = np.zeros((0, 2)), np.zeros((0, 2))
    start = 0
    for count in point_counts:
        src, tgt = source[start:start + count], target[start:start + count]
        start += count
        if len(kept_source):
            free = cKDTree(kept_source).query(src, distance_upper_bound=shared_radius)[0] == np.inf
            src, tgt = src[free], tgt[free]
        chosen, last = [], None
        for index, point in enumerate(src):
            if last is None or np.linalg.norm(point - last) >= spacing:
                chosen.append(index)
                last = point
        kept_source = np.concatenate([kept_source, src[chosen]])
        kept_target = np.concatenate([kept_target, tgt[chosen]])
    return kept_source, kept_target


def column_end_followers(source: np.ndarray, target: np.ndarray, point_counts: Sequence[int], column: Sequence[int],
                         image_shape: Tuple[int, int], levels: int = 2) -> Tuple[np.ndarray, np.ndarray, list]:
    """Landmark pairs that make the unmodelled anatomy beyond both ends of the spine column move with
    the end structure (T12 and T11 with L1, the rest of the sacrum with S1).

    ``column`` lists the structures (indices into ``point_counts``) of the modelled column, top to
    bottom (at least two). For each end, its source contour is shifted outwards by 1..``levels``
    level steps (the centroid offset from its neighbour in the column), and these copies are mapped
    by the similarity (with scale) that takes the end's source contour to its target contour.
    Points are kept only where source and target lie inside the image by at least 1.5 x their
    displacement + 4 px, so the fixed border anchors cannot make the map fold.
    Returns (source points ``(n, 2)``, target points ``(n, 2)``, points per copy).
    """
    if len(column) < 2:
        raise ValueError(f"a spine column needs at least two structures, got {len(column)}")
    bounds = np.cumsum([0, *point_counts])
    contours = [(source[bounds[i]:bounds[i + 1]], target[bounds[i]:bounds[i + 1]]) for i in range(len(point_counts))]
    limit = np.array([image_shape[1] - 1, image_shape[0] - 1], np.float64)
    sources, targets, counts = [], [], []
    for end, neighbour in ((column[0], column[1]), (column[-1], column[-2])):
        src_end, tgt_end = contours[end]
        step = polygon_centroid(src_end) - polygon_centroid(contours[neighbour][0])
        follow = fit_similarity(src_end, tgt_end, with_scale=True)
        for level in range(1, levels + 1):
            ghost_src = src_end + level * step
            ghost_tgt = follow(ghost_src)
            clearance = 1.5 * np.linalg.norm(ghost_tgt - ghost_src, axis=1, keepdims=True) + 4.0
            keep = np.all((ghost_src >= clearance) & (ghost_src <= limit - clearance)
                          & (ghost_tgt >= clearance) & (ghost_tgt <= limit - clearance), axis=1)
            if keep.sum() >= 3:
                sources.append(ghost_src[keep])
                targets.append(ghost_tgt[keep])
                counts.append(int(keep.sum()))
    if not counts:
        return np.zeros((0, 2)), np.zeros((0, 2)), []
    return np.concatenate(sources), np.concatenate(targets), counts


def backward_map(source_landmarks: np.ndarray, target_landmarks: np.ndarray, image_shape: Tuple[int, int],
                 point_counts: Optional[Sequence[int]] = None, grid_step: int = 2, shared_radius: float = 4.0,
                 regularization: float = 1e-6, exact: bool = False,
                 column: Optional[Sequence[int]] = None) -> Tuple[np.ndarray, float]:
    """Source-image coordinates ``(2, H, W)`` (row, column) to read for every output pixel, and the
    smallest Jacobian determinant of the map on the coarse grid (≤ 0 means the warp folds).

    Landmarks are ``(M, 2)`` (x, y) pixels; the output shows the source warped so that
    ``source_landmarks`` land on ``target_landmarks``. ``point_counts`` splits them into structures
    (``SpineLayout.point_counts``; see ``select_controls``). With ``column`` (the vertebrae's
    structure indices, top to bottom) the anatomy beyond the column's ends follows the end
    vertebrae (``column_end_followers``) instead of being stretched between them and the fixed
    image border. ``exact`` evaluates the TPS at every pixel.
    """
    height, width = image_shape
    anchors = border_anchors(image_shape)
    source_landmarks = np.asarray(source_landmarks, np.float64)
    target_landmarks = np.asarray(target_landmarks, np.float64)
    point_counts = list(point_counts or [len(source_landmarks)])
    if column is not None:
        extra_src, extra_tgt, extra_counts = column_end_followers(source_landmarks, target_landmarks, point_counts,
                                                                  column, image_shape)
        source_landmarks = np.concatenate([source_landmarks, extra_src])
        target_landmarks = np.concatenate([target_landmarks, extra_tgt])
        point_counts += extra_counts
    src, tgt = select_controls(source_landmarks, target_landmarks, point_counts, shared_radius=shared_radius)
    tps = ThinPlateSpline.fit(np.concatenate([tgt, anchors]), np.concatenate([src, anchors]), regularization)
    if exact:
        rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
        mapped = tps(np.stack([cols.ravel(), rows.ravel()], 1))
        coordinates = np.stack([mapped[:, 1].reshape(height, width), mapped[:, 0].reshape(height, width)])
        jac = _min_jacobian(coordinates, 1.0)
        return coordinates, jac
    coarse_rows = np.arange(0, height + grid_step, grid_step, dtype=np.float64)
    coarse_cols = np.arange(0, width + grid_step, grid_step, dtype=np.float64)
    grid_r, grid_c = np.meshgrid(coarse_rows, coarse_cols, indexing="ij")
    mapped = tps(np.stack([grid_c.ravel(), grid_r.ravel()], 1))
    coarse = np.stack([mapped[:, 1].reshape(grid_r.shape), mapped[:, 0].reshape(grid_r.shape)])
    jac = _min_jacobian(coarse, float(grid_step))
    displacement = coarse - np.stack([grid_r, grid_c])
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    at = np.stack([rows / grid_step, cols / grid_step])
    coordinates = np.stack([ndimage.map_coordinates(d, at, order=3, mode="nearest") for d in displacement])
    return coordinates + np.stack([rows, cols]), jac


def _min_jacobian(coordinates: np.ndarray, spacing: float) -> float:
    d_row = np.gradient(coordinates[0], spacing)
    d_col = np.gradient(coordinates[1], spacing)
    return float((d_row[0] * d_col[1] - d_row[1] * d_col[0]).min())


def warp_image(image: np.ndarray, coordinates: np.ndarray, order: int = 3) -> np.ndarray:
    """Resample a 2D image at ``coordinates`` ``(2, H, W)``; cubic by default, clipped to the
    source's value range (no spline overshoot), same dtype as the input."""
    warped = ndimage.map_coordinates(image.astype(np.float64), coordinates, order=order, mode="nearest")
    warped = np.clip(warped, image.min(), image.max())
    if np.issubdtype(image.dtype, np.integer):
        warped = np.rint(warped)
    return warped.astype(image.dtype)


def warp_labels(label: np.ndarray, coordinates: np.ndarray) -> np.ndarray:
    """Nearest-neighbour resampling of a 2D label map at ``coordinates`` ``(2, H, W)``."""
    return ndimage.map_coordinates(label, coordinates, order=0, mode="nearest").astype(label.dtype)
