"""Point-distribution shape model of the spine: Procrustes alignment, PCA, sampling, plausibility.

Shapes are ``(M, 2)`` arrays of corresponding landmarks in (x, y) pixels (see ``landmarks``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
from skimage.draw import polygon as rasterize_polygon

from nnunetv2_symtc.augmentation.landmarks import SpineLayout, polygon_centroid


@dataclass(frozen=True)
class Similarity:
    """``x -> scale * x @ rotation.T + translation`` for ``(..., 2)`` points."""

    scale: float
    rotation: np.ndarray
    translation: np.ndarray

    def __call__(self, points: np.ndarray) -> np.ndarray:
        return self.scale * points @ self.rotation.T + self.translation


def fit_similarity(source: np.ndarray, target: np.ndarray, with_scale: bool) -> Similarity:
    """Least-squares rotation (+ uniform scale), no reflection, mapping ``source`` onto ``target`` (``(M, 2)``)."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    a, b = source - mu_s, target - mu_t
    u, sigma, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    correction = np.diag([1.0, d])
    rotation = u @ correction @ vt
    scale = float((sigma * np.diag(correction)).sum() / (a ** 2).sum()) if with_scale else 1.0
    return Similarity(scale, rotation, mu_t - scale * mu_s @ rotation.T)


def procrustes_align(shapes: np.ndarray, with_scale: bool, iterations: int = 20) -> Tuple[np.ndarray, np.ndarray]:
    """Generalised Procrustes analysis of ``(n, M, 2)`` shapes -> (aligned shapes, mean), both centred.

    With ``with_scale`` every shape is normalised to unit centroid size and the mean is too;
    otherwise only translation and rotation are removed. The first shape fixes the orientation.
    """
    aligned = shapes - shapes.mean(axis=1, keepdims=True)
    if with_scale:
        aligned = aligned / np.linalg.norm(aligned, axis=(1, 2), keepdims=True)
    mean = aligned[0].copy()
    for _ in range(iterations):
        aligned = np.stack([fit_similarity(s, mean, with_scale)(s) for s in aligned])
        new_mean = aligned.mean(axis=0)
        new_mean = fit_similarity(new_mean, mean, False)(new_mean)  # keep the reference orientation
        if with_scale:
            new_mean /= np.linalg.norm(new_mean)
        converged = np.abs(new_mean - mean).max() < 1e-10 * max(1.0, np.abs(mean).max())
        mean = new_mean
        if converged:
            break
    return aligned, mean


@dataclass(frozen=True)
class ShapeModel:
    """PCA shape model in the Procrustes frame.

    ``mean`` ``(M, 2)``; ``modes`` ``(K, 2M)`` orthonormal rows; ``variances`` ``(K,)`` of each mode;
    ``explained`` the fraction of the total variance the K modes keep; ``training_cases`` the
    case identifiers it was fitted on.
    """

    mean: np.ndarray
    modes: np.ndarray
    variances: np.ndarray
    explained: float
    with_scale: bool
    training_cases: Tuple[str, ...]

    @classmethod
    def fit(cls, shapes: np.ndarray, case_ids: Sequence[str], variance_fraction: float = 0.95,
            with_scale: bool = False) -> "ShapeModel":
        """Fit on ``(n, M, 2)`` shapes (n ≥ 2), keeping the fewest modes that explain at least
        ``variance_fraction`` of the variance. Deterministic: mode signs are fixed."""
        if not 0 < variance_fraction <= 1:
            raise ValueError(f"variance fraction must be in (0, 1], got {variance_fraction}")
        if len(shapes) < 2:
            raise ValueError(f"a shape model needs at least 2 training shapes, got {len(shapes)}")
        aligned, mean = procrustes_align(np.asarray(shapes, np.float64), with_scale)
        deviations = (aligned - mean).reshape(len(aligned), -1)
        _, singular, vt = np.linalg.svd(deviations, full_matrices=False)
        variances = singular ** 2 / (len(aligned) - 1)
        total = variances.sum()
        if total <= 1e-12 * float((mean ** 2).sum()):  # identical up to pose (and size): nothing to model
            keep, explained = 0, 1.0
        else:
            cumulative = np.cumsum(variances) / total
            keep = int(np.searchsorted(cumulative, variance_fraction - 1e-12) + 1)
            keep = min(keep, int((variances > total * 1e-12).sum()))
            explained = float(cumulative[keep - 1])
        modes = vt[:keep]
        signs = np.sign(modes[np.arange(keep), np.argmax(np.abs(modes), axis=1)])
        return cls(mean, modes * signs[:, None], variances[:keep], explained, with_scale, tuple(case_ids))

    @property
    def num_modes(self) -> int:
        return len(self.variances)

    def instance(self, coefficients: np.ndarray) -> np.ndarray:
        """Shape for mode coefficients in standard deviations ``(K,)`` -> ``(M, 2)`` (model frame)."""
        offset = (np.asarray(coefficients) * np.sqrt(self.variances)) @ self.modes
        return self.mean + offset.reshape(self.mean.shape)

    def sample_coefficients(self, rng: np.random.Generator, k: float) -> np.ndarray:
        """Standard-normal coefficients truncated to ``[-k, k]`` (redrawn, not clipped)."""
        coefficients = rng.standard_normal(self.num_modes)
        while np.any(out := np.abs(coefficients) > k):
            coefficients[out] = rng.standard_normal(int(out.sum()))
        return coefficients

    def placed_like(self, shape_model_frame: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """Move a model-frame shape into the pose (and, with a scale-free model, the size) of
        ``reference`` ``(M, 2)``, a shape in image pixels."""
        return fit_similarity(self.mean, reference, self.with_scale)(shape_model_frame)

    def summary(self) -> dict:
        return {"training_cases": list(self.training_cases), "num_modes": self.num_modes,
                "explained_variance": self.explained, "mode_variances": self.variances.tolist(),
                "procrustes_scale": self.with_scale}


# --------------------------------------------------------------------------------------------
# plausibility of a sampled shape
# --------------------------------------------------------------------------------------------
def _segments_cross(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Proper crossings between segments ``p`` ``(n, 2, 2)`` and ``q`` ``(m, 2, 2)`` -> bool ``(n, m)``."""
    def orient(a, b, c):
        return (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0])
    p1, p2 = p[:, None, 0], p[:, None, 1]
    q1, q2 = q[None, :, 0], q[None, :, 1]
    return ((orient(p1, p2, q1) * orient(p1, p2, q2) < 0) & (orient(q1, q2, p1) * orient(q1, q2, p2) < 0))


def is_simple_polygon(polygon: np.ndarray) -> bool:
    """True if no two non-adjacent edges of the closed polygon cross."""
    segments = np.stack([polygon, np.roll(polygon, -1, axis=0)], axis=1)
    crossing = _segments_cross(segments, segments)
    n = len(polygon)
    i, j = np.triu_indices(n, k=2)
    valid = ~((i == 0) & (j == n - 1))
    return not crossing[i[valid], j[valid]].any()


def shape_problem(shape: np.ndarray, layout: SpineLayout, image_shape: Tuple[int, int],
                  max_overlap_fraction: float = 0.05) -> Optional[str]:
    """Why a shape is implausible, or ``None`` if it is fine.

    Checks: every point inside the image; every contour a simple polygon with positive area;
    vertebrae strictly ordered top to bottom (rows of centroids increase); every disc centroid
    between its two vertebrae; no two structures overlapping by more than
    ``max_overlap_fraction`` of the smaller one (rasterised; contours of touching structures
    share a boundary, so a little overlap is normal).
    """
    height, width = image_shape
    if shape.min() < 0 or np.any(shape[:, 0] > width - 1) or np.any(shape[:, 1] > height - 1):
        return "outside the image"
    contours = layout.split(shape)
    for structure, contour in zip(layout.structures, contours):
        if not is_simple_polygon(contour):
            return f"{structure.name.replace('|', '/')} self-intersects"
    centroids = np.stack([polygon_centroid(c) for c in contours])
    nv = len(layout.vertebrae)
    if np.any(np.diff(centroids[:nv, 1]) <= 0):
        return "vertebrae out of top-to-bottom order"
    for disc_index, neighbours in enumerate(layout.disc_neighbours):
        if neighbours is None:
            continue
        above, below = centroids[neighbours[0]], centroids[neighbours[1]]
        axis = below - above
        t = float(np.dot(centroids[nv + disc_index] - above, axis) / np.dot(axis, axis))
        if not 0 < t < 1:
            return f"disc {layout.discs[disc_index].name.replace('|', '/')} is not between its vertebrae"
    masks = []
    for contour in contours:
        rows, cols = rasterize_polygon(contour[:, 1], contour[:, 0], shape=image_shape)
        if len(rows) == 0:
            return "a structure has no area"
        masks.append(rows.astype(np.int64) * width + cols)
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            overlap = np.intersect1d(masks[i], masks[j], assume_unique=True).size
            if overlap > max_overlap_fraction * min(masks[i].size, masks[j].size):
                return (f"{layout.structures[i].name.replace('|', '/')} and "
                        f"{layout.structures[j].name.replace('|', '/')} overlap")
    return None
