"""Sagittal-plane geometry shared by the measurements and the phantom's truth: regions sampled
along straight lines, and straight lines fitted to surfaces.

Plane coordinates are ``(a, s)`` in mm: ``a`` towards posterior, ``s`` towards superior (the
phantom's world ``(y, z)``). A *region* is a callable taking points ``(N, 2)`` and returning
values ``(N,)``: >= 0.5 inside, < 0.5 outside, NaN where it is not known (outside the image).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy as np
from scipy import ndimage

Region = Callable[[np.ndarray], np.ndarray]

LINE_STEP_MM = 0.05
"""Sampling step along measurement lines (mm)."""
LINE_REACH_MM = 80.0
"""How far (mm) a measurement line reaches from its start point in each direction."""


def unit(vector) -> np.ndarray:
    """``vector`` (2,) scaled to length 1."""
    vector = np.asarray(vector, dtype=np.float64)
    return vector / np.linalg.norm(vector)


def direction_angle_deg(direction) -> float:
    """Angle (degrees) of a direction ``(a, s)`` in the plane, counter-clockwise from posterior
    towards superior; a line pointing posterior-superior has a positive angle."""
    return float(np.degrees(np.arctan2(direction[1], direction[0])))


class MaskRegion:
    """A 2D sagittal mask (rows superior -> inferior, columns anterior -> posterior, as a PIR
    slice) as a region: bilinear interpolation of the mask, NaN beyond half a pixel outside."""

    def __init__(self, mask: np.ndarray, spacing_si: float, spacing_ap: float):
        self.values = mask.astype(np.float32)
        self.spacing = (float(spacing_si), float(spacing_ap))

    def index(self, points: np.ndarray) -> np.ndarray:
        """(rows, columns) continuous indices ``(2, N)`` of plane points ``(N, 2)``."""
        points = np.asarray(points, dtype=np.float64)
        return np.stack([-points[:, 1] / self.spacing[0], points[:, 0] / self.spacing[1]])

    def points(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Plane points ``(N, 2)`` of pixel centres."""
        return np.stack([columns * self.spacing[1], -rows * self.spacing[0]], axis=1).astype(np.float64)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        index = self.index(points)
        shape = np.asarray(self.values.shape)[:, None]
        known = np.all((index >= -0.5) & (index <= shape - 0.5), axis=0)
        values = ndimage.map_coordinates(self.values, index, order=1, mode="nearest")
        return np.where(known, values, np.nan)


@dataclass(frozen=True)
class Run:
    """A stretch of a line inside a region: from ``low`` to ``high`` mm along the line (from its
    start point); ``cut_low``/``cut_high`` when that end reaches where the region is not known
    (the field-of-view edge) or the end of the line."""

    low: float
    high: float
    cut_low: bool
    cut_high: bool

    @property
    def length(self) -> float:
        return self.high - self.low

    @property
    def cut(self) -> bool:
        """Either end is cut."""
        return self.cut_low or self.cut_high


def _samples(region: Region, start, direction, low: float, high: float) -> Tuple[np.ndarray, np.ndarray]:
    s = np.arange(low, high + LINE_STEP_MM / 2, LINE_STEP_MM)
    points = np.asarray(start, dtype=np.float64)[None, :] + s[:, None] * unit(direction)[None, :]
    return s, region(points)


def _crossing(s: np.ndarray, values: np.ndarray, i: int, j: int) -> float:
    """Where the line crosses 0.5 between samples ``i`` and ``j`` (linear interpolation)."""
    vi, vj = values[i], values[j]
    if not (np.isfinite(vi) and np.isfinite(vj)) or vi == vj:
        return float((s[i] + s[j]) / 2)
    return float(s[i] + (0.5 - vi) / (vj - vi) * (s[j] - s[i]))


def _run_around(s: np.ndarray, values: np.ndarray, k: int) -> Run:
    """The run of inside samples containing sample ``k`` (which is inside)."""
    inside = values >= 0.5
    unknown = ~np.isfinite(values)
    lo = k
    while lo > 0 and inside[lo - 1]:
        lo -= 1
    hi = k
    while hi < len(s) - 1 and inside[hi + 1]:
        hi += 1
    low = float(s[lo]) if lo == 0 else _crossing(s, values, lo - 1, lo)
    high = float(s[hi]) if hi == len(s) - 1 else _crossing(s, values, hi, hi + 1)
    return Run(low, high, bool(lo == 0 or unknown[lo - 1]), bool(hi == len(s) - 1 or unknown[hi + 1]))


def run_through(region: Region, start, direction, reach: float = LINE_REACH_MM) -> Optional[Run]:
    """The run of ``region`` along the line through ``start`` that contains ``start`` (None if
    ``start`` is outside the region)."""
    s, values = _samples(region, start, direction, -reach, reach)
    k = int(np.argmin(np.abs(s)))
    if not values[k] >= 0.5:
        return None
    return _run_around(s, values, k)


def first_run(region: Region, start, direction, reach: float = LINE_REACH_MM) -> Optional[Run]:
    """The first run of ``region`` met going from ``start`` along ``direction`` (None if none
    within ``reach`` mm, or if the line leaves the known area before meeting one)."""
    s, values = _samples(region, start, direction, 0.0, reach)
    hits = np.nonzero(values >= 0.5)[0]
    if hits.size == 0 or (~np.isfinite(values[:hits[0]])).any():
        return None
    return _run_around(s, values, int(hits[0]))


def surface_points(region: Region, centre, long_axis, short_axis, positions: np.ndarray,
                   side: int) -> Tuple[np.ndarray, bool]:
    """Points ``(N, 2)`` of the top (``side=1``) or bottom (``-1``) surface of a region, one per
    line along ``short_axis`` through ``centre + position * long_axis`` (lines that miss the
    region are skipped), and whether any of them reached the field-of-view edge on that side."""
    points = []
    for position in positions:
        start = np.asarray(centre) + position * np.asarray(long_axis)
        run = run_through(region, start, short_axis)
        if run is None:
            continue
        if run.cut_high if side > 0 else run.cut_low:
            return np.zeros((0, 2)), True
        points.append(start + (run.high if side > 0 else run.low) * np.asarray(short_axis))
    return np.asarray(points).reshape(-1, 2), False


def central_positions(low: float, high: float, fraction: float, step: float) -> np.ndarray:
    """Positions every ``step`` mm over the central ``fraction`` of ``[low, high]``."""
    margin = (1 - fraction) / 2 * (high - low)
    return np.arange(low + margin, high - margin + step / 2, step)


def fit_line(points: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Total-least-squares line through ``points`` (N, 2): (a point on it, unit direction with a
    non-negative first coordinate, i.e. pointing posterior)."""
    centre = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - centre, full_matrices=False)
    direction = vt[0] if vt[0][0] >= 0 else -vt[0]
    return centre, direction


def principal_frame(points: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centroid and principal axes of a flat, wide shape such as a vertebral body or a disc:
    (centre, long axis pointing posterior, short axis pointing superior)."""
    centre, long_axis = fit_line(points)
    short_axis = np.array([-long_axis[1], long_axis[0]])
    return centre, long_axis, short_axis if short_axis[1] >= 0 else -short_axis
