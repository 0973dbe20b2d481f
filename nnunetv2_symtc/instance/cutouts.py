"""Phase-2 cutouts: a fixed physical box around a body centre, resampled to a working spacing.

The cutout grid is axis-aligned with the (PIR) source grid, so resampling is separable: nearest
neighbour for labels, linear for images. Cutout voxels outside the field of view are padded (0) and
the padding is recorded; pasting a cutout prediction back writes only in-view source voxels.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from typing import Sequence, Tuple

import numpy as np

SPINEPS_CUTOUT_SHAPE_PIR = (248, 304, 64)
SPINEPS_CUTOUT_SPACING_PIR = (0.75, 0.75, 1.65)
"""SPINEPS's phase-2 cutout: voxels and mm per voxel in ITK order (P, I, R)."""


@dataclass(frozen=True)
class CutoutSpec:
    """Physical size (mm) and working spacing (mm/voxel) of phase-2 cutouts, array order
    ``(left_right, superior_inferior, anterior_posterior)``."""

    size_mm_zyx: Tuple[float, float, float]
    spacing_zyx: Tuple[float, float, float]

    @classmethod
    def spineps_default(cls) -> "CutoutSpec":
        """248x304x64 voxels at 0.75x0.75x1.65 mm in PIR: 105.6 x 228 x 186 mm (LR, SI, AP)."""
        shape_zyx = SPINEPS_CUTOUT_SHAPE_PIR[::-1]
        spacing_zyx = SPINEPS_CUTOUT_SPACING_PIR[::-1]
        return cls(tuple(float(n * s) for n, s in zip(shape_zyx, spacing_zyx)), tuple(map(float, spacing_zyx)))

    @property
    def shape(self) -> Tuple[int, int, int]:
        """Cutout shape in voxels (array order)."""
        return tuple(max(int(round(size / spacing)), 1) for size, spacing in zip(self.size_mm_zyx, self.spacing_zyx))

    def to_json(self) -> dict:
        return {"size_mm_zyx": list(self.size_mm_zyx), "spacing_zyx": list(self.spacing_zyx), "shape_zyx": list(self.shape)}

    @classmethod
    def from_json(cls, data: dict) -> "CutoutSpec":
        return cls(tuple(map(float, data["size_mm_zyx"])), tuple(map(float, data["spacing_zyx"])))


def _round(x: np.ndarray) -> np.ndarray:
    return np.floor(x + 0.5).astype(np.int64)


@dataclass
class Cutout:
    """Where one cutout sits in its source volume.

    ``source_index[a]``: for each cutout voxel along axis ``a``, the nearest source index (may lie
    outside the volume: padding). ``box``: source slices covered by the cutout; ``box_to_cutout[a]``:
    for each source index in the box, the nearest cutout index.
    """

    centre_index: np.ndarray
    source_shape: Tuple[int, ...]
    position: Tuple[np.ndarray, ...]
    box: Tuple[slice, ...]
    box_to_cutout: Tuple[np.ndarray, ...]

    @property
    def source_index(self) -> Tuple[np.ndarray, ...]:
        return tuple(_round(p) for p in self.position)

    @property
    def padding(self) -> Tuple[Tuple[int, int], ...]:
        """Padded cutout voxels ``(before, after)`` per axis."""
        return tuple((int((i < 0).sum()), int((i >= n).sum())) for i, n in zip(self.source_index, self.source_shape))

    def take(self, volume: np.ndarray, linear: bool = False) -> np.ndarray:
        """Resample ``volume`` (source grid) onto the cutout grid; outside the field of view is 0."""
        if not linear:
            index = self.source_index
            inside = [(i >= 0) & (i < n) for i, n in zip(index, self.source_shape)]
            out = volume[np.ix_(*[np.clip(i, 0, n - 1) for i, n in zip(index, self.source_shape)])]
            if not all(m.all() for m in inside):
                out[~reduce(np.logical_and, [m.reshape([-1 if a == k else 1 for a in range(3)])
                                             for k, m in enumerate(inside)])] = 0
            return out
        out = volume
        for axis, (position, n) in enumerate(zip(self.position, self.source_shape)):
            low = np.floor(position).astype(np.int64)
            weight = (position - low).astype(np.float32)
            shape = [1] * out.ndim
            shape[axis] = -1
            a = np.take(out, np.clip(low, 0, n - 1), axis=axis) * ((1 - weight) * ((low >= 0) & (low < n))).reshape(shape)
            b = np.take(out, np.clip(low + 1, 0, n - 1), axis=axis) * (weight * ((low + 1 >= 0) & (low + 1 < n))).reshape(shape)
            out = (a + b).astype(np.float32)
        return out

    def paste(self, cutout_array: np.ndarray) -> np.ndarray:
        """Resample a cutout-grid array back onto the source voxels of ``box`` (nearest neighbour)."""
        return cutout_array[np.ix_(*self.box_to_cutout)]

    def to_json(self) -> dict:
        return {"centre_index_zyx": [round(float(c), 3) for c in self.centre_index],
                "source_box_zyx": [[s.start, s.stop] for s in self.box],
                "padding_zyx": [list(p) for p in self.padding]}


def make_cutout(centre_index_zyx: Sequence[float], source_shape: Sequence[int],
                source_spacing_zyx: Sequence[float], spec: CutoutSpec) -> Cutout:
    """The cutout of ``spec`` centred on the continuous source index ``centre_index_zyx``."""
    centre = np.asarray(centre_index_zyx, dtype=np.float64)
    positions, box, box_to_cutout = [], [], []
    for c, n, s, m, w in zip(centre, source_shape, source_spacing_zyx, spec.shape, spec.spacing_zyx):
        half = (m - 1) / 2.0
        positions.append(c + (np.arange(m) - half) * w / s)
        low = max(int(np.floor(c - (half + 1) * w / s)), 0)
        high = min(int(np.ceil(c + (half + 1) * w / s)) + 1, n)
        source = np.arange(low, high)
        nearest = _round((source - c) * s / w + half)
        keep = (nearest >= 0) & (nearest < m)
        if not keep.any():
            raise ValueError(f"cutout centred at {centre.tolist()} lies outside the volume of shape {tuple(source_shape)}")
        source, nearest = source[keep], nearest[keep]
        box.append(slice(int(source[0]), int(source[-1]) + 1))
        box_to_cutout.append(nearest)
    return Cutout(centre, tuple(int(n) for n in source_shape), tuple(positions), tuple(box), tuple(box_to_cutout))


def semantic_channels(semantic_cutout: np.ndarray, channels: Sequence[Sequence[int]]) -> np.ndarray:
    """One binary float32 channel per group of semantic values: ``(len(channels), *shape)``."""
    out = np.zeros((len(channels),) + semantic_cutout.shape, dtype=np.float32)
    lut_size = max(int(semantic_cutout.max(initial=0)), max(v for group in channels for v in group)) + 1
    lut = np.full(lut_size, len(channels), dtype=np.uint8)
    for k, group in enumerate(channels):
        lut[list(group)] = k
    channel = lut[semantic_cutout.ravel()]
    voxels = np.flatnonzero(channel < len(channels))
    out.reshape(len(channels), -1)[channel[voxels], voxels] = 1
    return out
