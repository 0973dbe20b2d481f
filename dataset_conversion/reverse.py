"""Map nnU-Net predictions (or converted labels) of a converted dataset back to the source's labels.

Uses ``label_map.json`` (values) and ``source_cases.json`` (source orientation and mask file name)
written beside ``dataset.json``:

- SPINEPS, SSMSpine and SPIDER ``levels``: ``LabelMap.decode`` — exact.
- SPIDER ``semantic``: one vertebra class cannot say which level it is, so the vertebra mask is
  split into vertebrae (``separate_touching``: touching vertebrae are separated by in-plane
  erosion seeds), numbered bottom-up 1, 2, … by their centroid along the superior–inferior axis;
  each disc component gets 200 + (number of vertebrae below it) + 1 (SPIDER's 200 + the vertebra
  above), and the canal 100. Partial vertebrae (101–125) come back as full ones. This matches
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
from skimage.segmentation import watershed

from nnunetv2_symtc.io import Geometry, PathLike, read_image, write_image
from nnunetv2_symtc.labels import SPIDER_CANAL, SPIDER_DISC_OFFSET, SPIDER_MAX_LEVEL, LabelMap
from nnunetv2_symtc.dataset_conversion.writer import LABEL_MAP_FILE, SOURCE_CASES_FILE, datasets_with_id, reoriented

SPIDER_SEMANTIC_SCHEME = "spider-semantic"


def resolve_dataset(dataset: Union[int, str, PathLike], raw_dir: Optional[PathLike] = None) -> Path:
    """A dataset folder from a path, an id (``3``) or a name (``Dataset003_SPIDER``) in ``nnUNet_raw``."""
    if Path(str(dataset)).is_dir() and (Path(str(dataset)) / "dataset.json").is_file():
        return Path(str(dataset))
    raw = Path(raw_dir or os.environ.get("nnUNet_raw", ""))
    if str(dataset).isdigit():
        matches = datasets_with_id(raw, int(dataset))
        if len(matches) != 1:
            raise ValueError(f"dataset id {dataset}: {'no' if not matches else 'several'} DatasetXXX folders in {raw}"
                             + (f" ({[m.name for m in matches]})" if matches else ""))
        return matches[0]
    if (raw / str(dataset) / "dataset.json").is_file():
        return raw / str(dataset)
    raise ValueError(f"{dataset}: not a dataset folder, id or name in nnUNet_raw ({raw})")


MAX_SEPARATING_EROSIONS = 4
MIN_SEED_FRACTION = 0.1
"""A seed (eroded component) counts as a vertebra if it has this fraction of the largest seed's voxels."""


def separate_touching(mask: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Split a binary vertebra mask (z, y, x) into vertebrae labelled 1..n (arbitrary order).

    Vertebrae that touch (facet joints, partial-volume bridges) form one connected component, so the
    mask is eroded in the sagittal plane 0..``MAX_SEPARATING_EROSIONS`` times; the erosion with the
    most seeds (components with at least ``MIN_SEED_FRACTION`` of the largest) wins, and the seeds
    grow back over the mask by a watershed on the distance to the mask's border, so the cut between
    two vertebrae falls at the narrowest contact.
    """
    if not mask.any():
        return np.zeros(mask.shape, dtype=np.int32)
    structure = np.ones((3,) * mask.ndim, dtype=bool)
    in_plane = structure
    if mask.ndim == 3:  # erode within sagittal slices only: slices are thick
        left_right = geometry.anatomical_axes()["left_right"]
        in_plane = np.zeros_like(structure)
        in_plane[tuple(1 if a == left_right else slice(None) for a in range(3))] = True
    best, best_count, eroded = None, 0, mask
    for _ in range(MAX_SEPARATING_EROSIONS + 1):
        seeds, count = ndimage.label(eroded, structure=structure)
        if count == 0:
            break
        sizes = np.bincount(seeds.ravel())[1:]
        keep = np.flatnonzero(sizes >= MIN_SEED_FRACTION * sizes.max()) + 1
        if len(keep) > best_count:
            relabel = np.zeros(count + 1, dtype=np.int32)
            relabel[keep] = np.arange(1, len(keep) + 1)
            best, best_count = relabel[seeds], len(keep)
        eroded = ndimage.binary_erosion(eroded, structure=in_plane)
    depth = ndimage.distance_transform_edt(mask, sampling=geometry.spacing_zyx[-mask.ndim:])
    return watershed(-depth, markers=best, mask=mask, connectivity=mask.ndim).astype(np.int32)


def spider_semantic_to_source(classes: np.ndarray, geometry: Geometry, label_map: LabelMap) -> np.ndarray:
    """SPIDER-semantic classes (z, y, x) -> SPIDER values, numbering components bottom-up (module doc)."""
    labels = label_map.dataset_json_labels()
    out = np.zeros(classes.shape, dtype=np.uint16)
    out[classes == labels["spinal_canal"]] = SPIDER_CANAL
    axis, sign = geometry.anatomical_axes()["superior_inferior"], geometry.superior_sign()
    shape = [1] * classes.ndim
    shape[axis] = classes.shape[axis]
    height = np.broadcast_to((sign * np.arange(classes.shape[axis], dtype=np.float64)).reshape(shape), classes.shape)
    structure = np.ones((3,) * classes.ndim, dtype=bool)

    def components(class_index: int):
        components_map, count = ndimage.label(classes == class_index, structure=structure)
        heights = np.asarray(ndimage.mean(height, components_map, np.arange(1, count + 1)), dtype=np.float64)
        return components_map, heights

    vertebrae = separate_touching(classes == labels["vertebra"], geometry)
    count = int(vertebrae.max(initial=0))
    vertebra_heights = np.asarray(ndimage.mean(height, vertebrae, np.arange(1, count + 1)), dtype=np.float64)
    if count > SPIDER_MAX_LEVEL:
        raise ValueError(f"{count} vertebrae; SPIDER numbers at most {SPIDER_MAX_LEVEL}")
    lookup = np.zeros(count + 1, dtype=np.uint16)
    lookup[1 + np.argsort(vertebra_heights, kind="stable")] = np.arange(1, count + 1)
    out[vertebrae > 0] = lookup[vertebrae[vertebrae > 0]]
    discs, disc_heights = components(labels["disc"])
    below = np.searchsorted(np.sort(vertebra_heights), disc_heights)  # vertebrae lower than each disc
    disc_levels = np.minimum(below + 1, SPIDER_MAX_LEVEL)
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
        raise ValueError(f"{prediction_dir}: prediction folder not found")
    if output_dir.resolve() == prediction_dir.resolve():
        raise ValueError(f"{output_dir}: output folder must differ from the prediction folder")
    with open(folder / "dataset.json") as f:
        file_ending = json.load(f)["file_ending"]
    if not (folder / LABEL_MAP_FILE).is_file():
        raise ValueError(f"{folder / LABEL_MAP_FILE}: not found; only datasets written by `symtc convert` can be mapped back")
    label_map = LabelMap.load(folder / LABEL_MAP_FILE)
    cases: Dict[str, dict] = {}
    if (folder / SOURCE_CASES_FILE).is_file():
        with open(folder / SOURCE_CASES_FILE) as f:
            cases = json.load(f)
    predictions = sorted(p for p in prediction_dir.iterdir() if p.name.endswith(file_ending) and p.is_file())
    if not predictions:
        raise ValueError(f"{prediction_dir}: no {file_ending} predictions")
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in predictions:
        case = path.name[:-len(file_ending)]
        classes, geometry = read_image(path)
        try:
            values = classes_to_source(classes, geometry, label_map)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
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
