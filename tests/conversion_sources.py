"""Tiny hand-made source datasets (SPIDER .mha, SSMSpine .pt, BIDS NIfTI) for the conversion tests.

Volumes are built in PIR (array axes: left-right, superior->inferior, anterior->posterior) and then
reoriented to a source orientation, so a test can check that conversion recovers the PIR arrays.
"""
from __future__ import annotations

import zlib
from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple

import numpy as np
import SimpleITK as sitk

from nnunetv2_symtc.io import Geometry, reorient, to_sitk
from nnunetv2_symtc.dataset_conversion.writer import direction_for

SHAPE_PIR = (6, 40, 12)
"""(left-right, superior-inferior, anterior-posterior) voxels of the hand-made volumes."""
SPACING_PIR = (4.0, 1.0, 1.0)


def pir_geometry(origin=(10.0, -20.0, 30.0)) -> Geometry:
    return Geometry(SPACING_PIR, origin, direction_for("PIR"))


def spider_mask_pir(num_vertebrae: int = 3, partial_top: bool = False) -> np.ndarray:
    """SPIDER-valued mask in PIR: vertebrae 1..n bottom-up with discs 201..n between/below, canal 100.

    Rows (axis 1) run superior -> inferior, so vertebra 1 (lowest) has the largest row indices.
    With ``partial_top`` the top vertebra is labelled 100 + n (partially visible).
    """
    mask = np.zeros(SHAPE_PIR, dtype=np.uint16)
    rows = SHAPE_PIR[1]
    for level in range(1, num_vertebrae + 1):
        bottom = rows - 2 - (level - 1) * 8     # vertebra occupies rows [bottom-5, bottom-1]
        mask[1:5, bottom - 5:bottom, 1:7] = 100 + level if (partial_top and level == num_vertebrae) else level
        mask[1:5, bottom:bottom + 2, 1:7] = 200 + level   # disc below vertebra `level`
    mask[2:4, 2:rows - 2, 8:10] = 100
    return mask


def image_for(mask: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (np.minimum(mask, 1).astype(np.int16) * 300 + rng.integers(0, 50, mask.shape)).astype(np.int16)


def write_oriented(path: Path, array_pir: np.ndarray, orientation: str, geometry: Optional[Geometry] = None) -> None:
    """Write a PIR array reoriented to ``orientation`` (same world positions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = reorient(to_sitk(array_pir, geometry or pir_geometry()), orientation)
    sitk.WriteImage(image, str(path), True)


def make_spider(root: Path, series: Dict[str, Tuple[np.ndarray, np.ndarray]], subsets: Dict[str, str],
                orientation: str = "LPS") -> Path:
    """``images/<name>.mha``, ``masks/<name>.mha`` (from PIR arrays) and ``overview.csv``."""
    for name, (image, mask) in series.items():
        write_oriented(root / "images" / f"{name}.mha", image, orientation)
        write_oriented(root / "masks" / f"{name}.mha", mask, orientation)
    lines = ["new_file_name,subset,num_vertebrae"] + [f"{n},{s},3" for n, s in sorted(subsets.items())]
    (root / "overview.csv").write_text("\n".join(lines) + "\n")
    return root


def standard_spider(root: Path, pids: Iterable[int] = (1, 2, 3, 4), validation: Iterable[int] = (4,),
                    partial_top: bool = False) -> Path:
    """t1 + t2 per patient (same grid), patients in ``validation`` in the official validation subset."""
    series, subsets = {}, {}
    for pid in pids:
        for k, seq in enumerate(("t1", "t2")):
            mask = spider_mask_pir(3, partial_top)
            series[f"{pid}_{seq}"] = (image_for(mask, seed=pid * 10 + k), mask)
            subsets[f"{pid}_{seq}"] = "validation" if pid in set(validation) else "training"
    return make_spider(root, series, subsets)


def ssm_sample(seed: int, size: int = 32) -> dict:
    """One SSMSpine-like dict (numpy values), ``size``×``size`` instead of 512×512."""
    rng = np.random.default_rng(seed)
    label = np.zeros((1, size, size), dtype=np.int64)
    for value in range(1, 12):
        label[0, 2 * value:2 * value + 2, 4:20] = value
    return {"img": rng.random((size, size)).astype(np.float32),
            "img_corrected": rng.random((size, size)).astype(np.float32),
            "img_equalized": rng.random((size, size)).astype(np.float32),
            "label": label,
            "bone": rng.random((6, 236, 2)) * size, "disk": rng.random((5, 176, 2)) * size,
            "shape": rng.random((1696, 2)) * size}


def make_ssmspine(root: Path, train: Dict[str, int], test: Dict[str, int], as_tensors: bool = True) -> Path:
    """``{Train,Test}/p<ID>/aug<K>.pt`` with ``train``/``test`` = {patient folder: number of files}."""
    import torch

    for subset, patients in (("Train", train), ("Test", test)):
        for patient, count in patients.items():
            for k in range(count):
                sample = ssm_sample(zlib.crc32(f"{subset}/{patient}/{k}".encode()))
                if as_tensors:
                    sample = {key: torch.from_numpy(np.asarray(v)) for key, v in sample.items()}
                (root / subset / patient).mkdir(parents=True, exist_ok=True)
                torch.save(sample, root / subset / patient / f"aug{k}.pt")
    return root


def spineps_arrays_pir(seed: int = 0) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, semantic, instance) PIR arrays with SPINEPS values (two lumbar vertebrae and a disc)."""
    semantic = np.zeros(SHAPE_PIR, dtype=np.uint8)
    instance = np.zeros(SHAPE_PIR, dtype=np.uint8)
    semantic[1:5, 5:12, 1:6] = 49
    semantic[1:5, 5:12, 6:8] = 41
    instance[1:5, 5:12, 1:8] = 23
    semantic[1:5, 12:14, 1:6] = 100
    instance[1:5, 12:14, 1:6] = 123
    semantic[1:5, 14:21, 1:6] = 49
    semantic[1:5, 14:21, 6:8] = 42
    instance[1:5, 14:21, 1:8] = 24
    semantic[2:4, 2:30, 9:11] = 61
    return image_for(semantic, seed), semantic, instance
