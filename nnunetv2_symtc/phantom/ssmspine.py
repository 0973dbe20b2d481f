"""SSMSpine-style 2D samples: a 512x512 mid-sagittal T2 slice of a phantom with labels and landmarks.

Slice convention (as a PIR slice): rows run superior->inferior, columns anterior->posterior.
Landmarks are ``(x, y) = (column, row)`` in pixels. Every contour starts at the structure's most
anterior-superior boundary point (smallest ``row + column``) and runs clockwise as displayed
(rows downward): posterior along the upper edge, down the posterior side, anterior along the
lower edge, up the anterior side. Bones are the vertebral bodies (endplates included) of L1–L5
and the first sacral segment; ``shape`` is the 6 x 236 bone points followed by each disc's 176
points subsampled to 56 (6*236 + 5*56 = 1696 rows; the real file's composition is not public).

Keys and dtypes of one sample: ``img``, ``img_corrected``, ``img_equalized`` float32 (512, 512)
in [0, 1]; ``label`` int64 (1, 512, 512) with values 0–11 (labels.SSMSPINE_NAMES); ``mask`` uint8
(11, 512, 512), channel k = label k+1; ``bone_mask`` uint8 (6, 512, 512) = mask[:6];
``disk_mask`` uint8 (5, 512, 512) = mask[6:]; ``bone`` float32 (6, 236, 2); ``disk`` float32
(5, 176, 2); ``shape`` float32 (1696, 2).

One patient (``p<ID>``) fixes the texture (contrast, bias field, tissue texture, noise level);
each ``aug<K>`` draws a new shape (sizes, lordosis, pose) with that texture.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Dict, List, Optional, Tuple

import numpy as np
from skimage import measure

from nnunetv2_symtc import labels as L
from nnunetv2_symtc.phantom import anatomy as A
from nnunetv2_symtc.phantom import painting as P
from nnunetv2_symtc.phantom import mri

IMAGE_SIZE = 512
BONE_POINTS, DISC_POINTS, DISC_POINTS_IN_SHAPE = 236, 176, 56
LUMBAR_IDS = tuple(range(L.L1_ID, L.L5_ID + 1))


def ssmspine_split(n_patients: int, n_test: Optional[int] = None) -> List[Tuple[int, str]]:
    """(patient id, ``'Train'``/``'Test'``) for ids 0..n-1: the last ``n_test`` are Test; by
    default ~20 % (at least one when n >= 2)."""
    if n_test is None:
        n_test = 0 if n_patients < 2 else max(1, int(round(0.2 * n_patients)))
    if not 0 <= n_test <= n_patients:
        raise ValueError(f"n_test must lie in [0, {n_patients}], got {n_test}")
    return [(p, "Test" if p >= n_patients - n_test else "Train") for p in range(n_patients)]


def _contour(mask: np.ndarray, n_points: int) -> np.ndarray:
    """Closed boundary of ``mask`` as ``n_points`` (x=col, y=row) points equally spaced in arc
    length, starting anterior-superior, clockwise as displayed."""
    padded = np.pad(mask.astype(np.float32), 1)
    contours = measure.find_contours(padded, 0.5)
    if not contours:
        raise ValueError("cannot trace the contour of an empty structure")
    rc = max(contours, key=len)[:-1] - 1.0  # (row, col), drop the repeated closing point
    xy = rc[:, ::-1]
    x, y = xy[:, 0], xy[:, 1]
    area = 0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)
    if area < 0:  # make it clockwise on screen (positive shoelace with y pointing down)
        xy = xy[::-1]
    xy = np.roll(xy, -int(np.argmin(xy.sum(axis=1))), axis=0)
    closed = np.vstack([xy, xy[:1]])
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(closed, axis=0), axis=1))])
    targets = np.linspace(0.0, arc[-1], n_points, endpoint=False)
    return np.stack([np.interp(targets, arc, closed[:, 0]), np.interp(targets, arc, closed[:, 1])], axis=1)


def _equalize(image: np.ndarray) -> np.ndarray:
    """Histogram equalisation to [0, 1] (rank of each pixel's value)."""
    values, inverse, counts = np.unique(image.ravel(), return_inverse=True, return_counts=True)
    cdf = np.cumsum(counts).astype(np.float64)
    cdf = (cdf - cdf[0]) / max(cdf[-1] - cdf[0], 1.0)
    return cdf[inverse].reshape(image.shape).astype(np.float32)


def generate_ssmspine_sample(seed: int, patient: int, aug: int) -> Dict[str, np.ndarray]:
    """One SSMSpine-style sample (see the module docstring for keys, shapes and dtypes)."""
    texture_rng = np.random.default_rng([int(seed), int(patient), 7])
    shape_rng = np.random.default_rng([int(seed), int(patient), int(aug), 11])
    anatomy = A.sample_anatomy(shape_rng, pose_deg=8.0)
    anatomy = replace(anatomy, texture_seed=int(texture_rng.integers(2 ** 31)), midline_x=0.0, scoliosis=0.0,
                      nucleus_brightness=tuple(texture_rng.uniform(0.7, 1.0, size=len(anatomy.nucleus_brightness))))
    spacing = float(texture_rng.uniform(0.55, 0.65))
    l3 = anatomy.bone(L.L3_ID)
    half = (IMAGE_SIZE - 1) / 2 * spacing
    shift_y, shift_z = shape_rng.uniform(-12.0, 12.0, size=2)
    origin = (0.0, l3.centre_yz[0] + 25.0 - half + shift_y, l3.centre_yz[1] - 15.0 + half + shift_z)
    geometry = P.pir_geometry((4.0, spacing, spacing), origin)
    first_bone = next(i for i, b in enumerate(anatomy.bones) if b.vertebra_id == L.T12_ID)
    raster = P.rasterise(anatomy, geometry, (1, IMAGE_SIZE, IMAGE_SIZE), supersample=3, first_bone=first_bone)

    noise = float(texture_rng.uniform(0.015, 0.04))
    bias_strength = float(texture_rng.uniform(0.15, 0.35))
    contrast_rng = np.random.default_rng([int(seed), int(patient), 13])
    corrected = mri.render(raster, anatomy, "t2", geometry.spacing_zyx, contrast_rng, noise=noise, bias=0.0)[0]
    bias = mri.bias_field(np.random.default_rng([int(seed), int(patient), 17]), (1, IMAGE_SIZE, IMAGE_SIZE),
                          geometry.spacing_zyx, bias_strength)[0]
    scale = float(np.percentile(corrected, 99.7))
    img_corrected = np.clip(corrected / scale, 0, 1).astype(np.float32)
    img = np.clip(corrected * bias / scale, 0, 1).astype(np.float32)

    label = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.int64)
    body_owner = raster.body_of[0]
    s1_index = next(i for i, b in enumerate(anatomy.bones) if b.sacral_index == 0)
    bone_indices = [next(i for i, b in enumerate(anatomy.bones) if b.vertebra_id == v) for v in LUMBAR_IDS] + [s1_index]
    for k, index in enumerate(bone_indices, start=1):
        label[body_owner == index + 1] = k
    vert = raster.vert[0]
    for k, above in enumerate(LUMBAR_IDS, start=7):  # disc below L1 = L1/L2 = 7 ...
        label[vert == L.SPINEPS_DISC_OFFSET + above] = k
    mask = np.stack([label == k for k in range(1, 12)]).astype(np.uint8)
    missing = [L.SSMSPINE_NAMES[k + 1] for k in range(11) if not mask[k].any()]
    if missing:
        raise RuntimeError(f"SSMSpine sample (seed {seed}, patient {patient}, aug {aug}) lacks {missing}")
    bone = np.stack([_contour(mask[k], BONE_POINTS) for k in range(6)]).astype(np.float32)
    disk = np.stack([_contour(mask[6 + k], DISC_POINTS) for k in range(5)]).astype(np.float32)
    subsample = np.linspace(0, DISC_POINTS, DISC_POINTS_IN_SHAPE, endpoint=False).astype(int)
    shape = np.concatenate([bone.reshape(-1, 2)] + [d[subsample] for d in disk]).astype(np.float32)
    return {"img": img, "img_corrected": img_corrected, "img_equalized": _equalize(img), "label": label[None],
            "mask": mask, "shape": shape, "bone": bone, "bone_mask": mask[:6].copy(), "disk": disk,
            "disk_mask": mask[6:].copy()}
