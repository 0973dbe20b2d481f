"""Map nnU-Net predictions (or converted labels) of a converted dataset back to the source's labels.

Uses ``label_map.json`` (values) and ``source_cases.json`` (source orientation and mask file name)
written beside ``dataset.json``:

- SPINEPS and SSMSpine: ``LabelMap.decode`` — exact.
- SPIDER ``levels``: ``LabelMap.decode`` — exact for vertebrae 1–N, discs and the canal. Partially
  visible vertebrae (101–125) have no class of their own, so the mark "partially visible" is lost:
  with ``--partial level`` (the default) or ``vertebra`` they come back as full vertebrae
  (100 + k -> k); with ``ignore`` as whatever the network predicts there (the ignore label of a
  converted mask as 0); with ``background`` as 0
  (``spider.PARTIAL_REVERSE_NOTES``, recorded in ``dataset.json``). ``symtc predict --spider-values``
  re-derives 101–125 from the field of view instead.
- SPIDER ``semantic`` (approximate): one vertebra class cannot say which level it is, so the
  vertebra mask is split into vertebrae (``separate_vertebrae``: one seed per vertebral body
  between neighbouring discs, grown over the mask), numbered bottom-up 1, 2, … along the
  superior–inferior axis; each disc component gets 200 + (number of vertebrae below it) + 1
  (SPIDER's 200 + the vertebra above), and the canal 100. Partial vertebrae (101–125) come back
  as full ones, and voxels where neighbouring vertebrae touch may go to either. This matches
  SPIDER's numbering when the lowest labelled vertebra (usually L5) is in the image.

Each output is reoriented back to the source orientation of its case (unless disabled) and named
like the source mask (``12_t2.mha``, ``sub-…_seg-spine_msk.nii.gz``); cases the dataset does not know
(new images) keep the dataset's orientation and the prediction's file name.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np
from scipy import ndimage

from nnunetv2_symtc.io import Geometry, PathLike, read_image, write_image
from nnunetv2_symtc.labels import SPIDER_CANAL, SPIDER_DISC_OFFSET, SPIDER_MAX_LEVEL, LabelMap
from nnunetv2_symtc.dataset_conversion.writer import LABEL_MAP_FILE, SOURCE_CASES_FILE, datasets_with_id, reoriented
from nnunetv2_symtc.errors import InputError

SPIDER_SEMANTIC_SCHEME = "spider-semantic"


def resolve_dataset(dataset: Union[int, str, PathLike], raw_dir: Optional[PathLike] = None) -> Path:
    """A dataset folder from a path, an id (``3``) or a name (``Dataset003_SPIDER``) in ``nnUNet_raw``."""
    if Path(str(dataset)).is_dir() and (Path(str(dataset)) / "dataset.json").is_file():
        return Path(str(dataset))
    raw = Path(raw_dir or os.environ.get("nnUNet_raw", ""))
    if str(dataset).isdigit():
        matches = datasets_with_id(raw, int(dataset))
        if len(matches) != 1:
            raise InputError(f"dataset id {dataset}: {'no' if not matches else 'several'} DatasetXXX folders in {raw}"
                             + (f" ({[m.name for m in matches]})" if matches else ""))
        return matches[0]
    if (raw / str(dataset) / "dataset.json").is_file():
        return raw / str(dataset)
    raise InputError(f"{dataset}: not a dataset folder, id or name in nnUNet_raw ({raw})")


BODY_MARGIN = 0.25
"""Fraction of the spacing between neighbouring disc centres kept clear of vertebral-body seeds."""
MIN_SEED_FRACTION = 0.05
"""Seeds smaller than this fraction of the largest seed are noise, not vertebrae."""


def _heights(shape, geometry: Geometry) -> np.ndarray:
    """Voxel index along the superior–inferior axis, signed so that larger means more superior (broadcast)."""
    axis, sign = geometry.anatomical_axes()["superior_inferior"], geometry.superior_sign()
    view = [1] * len(shape)
    view[axis] = shape[axis]
    return np.broadcast_to((sign * np.arange(shape[axis], dtype=np.float64)).reshape(view), shape)


def separate_vertebrae(vertebra: np.ndarray, disc: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Split a binary vertebra mask (z, y, x) into vertebrae labelled 1..n bottom-up, guided by the discs.

    Vertebrae touch at the facet joints, but discs separate their bodies: a seed per vertebral body
    is the part of the mask inside the discs' anterior–posterior range and between two neighbouring
    disc centres (keeping ``BODY_MARGIN`` of the gap clear; below the lowest and above the highest
    disc too). Seeds grow back over the mask by a watershed on the distance to its border. Without
    discs, connected components are the vertebrae.
    """
    from skimage.segmentation import watershed  # slow to import; only this function needs it

    height = _heights(vertebra.shape, geometry)
    structure = np.ones((3,) * vertebra.ndim, dtype=bool)
    discs, disc_count = ndimage.label(disc, structure=structure)
    if disc_count == 0 or not vertebra.any():
        seeds, count = ndimage.label(vertebra, structure=structure)
    else:
        centres = np.sort(np.asarray(ndimage.mean(height, discs, np.arange(1, disc_count + 1)), dtype=np.float64))
        gap = float(np.median(np.diff(centres))) if disc_count > 1 else float(np.ptp(height[disc > 0]) + 1) * 2
        bounds = np.concatenate([[-np.inf], centres, [np.inf]])
        ap_axis = geometry.anatomical_axes()["anterior_posterior"]
        ap = np.flatnonzero(disc.any(axis=tuple(a for a in range(disc.ndim) if a != ap_axis)))
        body_column = np.zeros(vertebra.shape[ap_axis], dtype=bool)
        body_column[ap.min():ap.max() + 1] = True
        view = [1] * vertebra.ndim
        view[ap_axis] = -1
        candidates = vertebra & body_column.reshape(view)
        seeds = np.zeros(vertebra.shape, dtype=np.int32)
        count = 0
        for low, high in zip(bounds[:-1], bounds[1:]):
            inside = candidates & (height > low + BODY_MARGIN * gap) & (height < high - BODY_MARGIN * gap)
            if inside.any():
                count += 1
                seeds[inside] = count
    if count == 0:
        return np.zeros(vertebra.shape, dtype=np.int32)
    sizes = np.bincount(seeds.ravel(), minlength=count + 1)[1:]
    keep = np.flatnonzero(sizes >= MIN_SEED_FRACTION * sizes.max()) + 1
    order = keep[np.argsort(np.asarray(ndimage.mean(height, seeds, keep)), kind="stable")]
    relabel = np.zeros(count + 1, dtype=np.int32)
    relabel[order] = np.arange(1, len(order) + 1)
    depth = ndimage.distance_transform_edt(vertebra, sampling=geometry.spacing_zyx[-vertebra.ndim:])
    return watershed(-depth, markers=relabel[seeds], mask=vertebra, connectivity=vertebra.ndim).astype(np.int32)


def spider_semantic_to_source(classes: np.ndarray, geometry: Geometry, label_map: LabelMap) -> np.ndarray:
    """SPIDER-semantic classes (z, y, x) -> SPIDER values: vertebrae 1..n bottom-up, disc components
    200 + (vertebrae below their centre) + 1, canal 100 (see the module docstring)."""
    labels = label_map.dataset_json_labels()
    out = np.zeros(classes.shape, dtype=np.uint16)
    out[classes == labels["spinal_canal"]] = SPIDER_CANAL
    disc = classes == labels["disc"]
    vertebrae = separate_vertebrae(classes == labels["vertebra"], disc, geometry)
    count = int(vertebrae.max(initial=0))
    if count > SPIDER_MAX_LEVEL:
        raise InputError(f"{count} vertebrae; SPIDER numbers at most {SPIDER_MAX_LEVEL}")
    out[vertebrae > 0] = vertebrae[vertebrae > 0]
    height = _heights(classes.shape, geometry)
    vertebra_heights = np.sort(np.asarray(ndimage.mean(height, vertebrae, np.arange(1, count + 1)), dtype=np.float64))
    discs, disc_count = ndimage.label(disc, structure=np.ones((3,) * classes.ndim, dtype=bool))
    disc_heights = np.asarray(ndimage.mean(height, discs, np.arange(1, disc_count + 1)), dtype=np.float64)
    disc_levels = np.minimum(np.searchsorted(vertebra_heights, disc_heights) + 1, SPIDER_MAX_LEVEL)
    lookup = np.concatenate([[0], SPIDER_DISC_OFFSET + disc_levels]).astype(np.uint16)
    out[discs > 0] = lookup[discs[discs > 0]]
    return out


def classes_to_source(classes: np.ndarray, geometry: Geometry, label_map: LabelMap) -> np.ndarray:
    """nnU-Net classes -> source values (exact decode, or bottom-up numbering for SPIDER semantic)."""
    if label_map.scheme == SPIDER_SEMANTIC_SCHEME:
        return spider_semantic_to_source(classes, geometry, label_map)
    return label_map.decode(classes)


def map_to_source(dataset: Union[int, str, PathLike], prediction_dir: PathLike, output_dir: PathLike, *,
                  restore_orientation: bool = True, raw_dir: Optional[PathLike] = None) -> List[Path]:
    """Map every prediction in ``prediction_dir`` back to source values; returns the files written.

    ``dataset``: id, name or folder of the converted dataset (its ``label_map.json`` and
    ``source_cases.json`` are used). ``output_dir`` must differ from ``prediction_dir``.
    """
    folder = resolve_dataset(dataset, raw_dir)
    prediction_dir, output_dir = Path(prediction_dir), Path(output_dir)
    if not prediction_dir.is_dir():
        raise InputError(f"{prediction_dir}: prediction folder not found")
    if output_dir.resolve() == prediction_dir.resolve():
        raise InputError(f"{output_dir}: output folder must differ from the prediction folder")
    with open(folder / "dataset.json") as f:
        file_ending = json.load(f)["file_ending"]
    if not (folder / LABEL_MAP_FILE).is_file():
        raise InputError(f"{folder / LABEL_MAP_FILE}: not found; only datasets written by `symtc convert` can be mapped back")
    label_map = LabelMap.load(folder / LABEL_MAP_FILE)
    cases: Dict[str, dict] = {}
    if (folder / SOURCE_CASES_FILE).is_file():
        with open(folder / SOURCE_CASES_FILE) as f:
            cases = json.load(f)
    predictions = sorted(p for p in prediction_dir.iterdir() if p.name.endswith(file_ending) and p.is_file())
    if not predictions:
        raise InputError(f"{prediction_dir}: no {file_ending} predictions")
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in predictions:
        case = path.name[:-len(file_ending)]
        classes, geometry = read_image(path)
        try:
            values = classes_to_source(classes, geometry, label_map)
        except ValueError as e:
            raise InputError(f"{path}: {e}") from None
        record = cases.get(case)
        name = path.name
        if record is not None:
            if restore_orientation and record.get("source_orientation"):
                values, geometry = reoriented(values, geometry, record["source_orientation"])
            if record.get("mask"):
                name = Path(record["mask"]).name
        else:
            print(f"{path.name}: case {case!r} is not in {SOURCE_CASES_FILE}; kept in the dataset orientation")
        write_image(output_dir / name, values, geometry)
        written.append(output_dir / name)
    print(f"wrote {len(written)} file(s) to {output_dir} ({label_map.scheme}: {label_map.notes or 'exact'})")
    return written
