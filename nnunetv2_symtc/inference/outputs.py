"""Writing the outputs of ``symtc predict`` for one case, on the input image's own grid:

- ``<case>_seg-spine_msk.nii.gz``  semantic mask (SPINEPS values; 52/53 with ``split_endplates``)
- ``<case>_seg-vert_msk.nii.gz``   instance mask (SPINEPS values, or SPIDER values with ``spider_values``)
- ``<case>_seg-spine_ctd.json``    level name -> world (LPS mm) and voxel (z, y, x) coordinates
- ``<case>_seg-spine_snp.png``     mid-sagittal snapshot, one colour per level, with level names
- ``<case>_seg-spine_probabilities.npz``  phase-1 class probabilities (``save_probabilities``)
- ``<case>_metadata.json``         provenance, naming rule, fragments, merge agreement, QA warnings
  (written last: a case with this file is finished and skipped on resume unless ``overwrite``)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Sequence

import numpy as np
import SimpleITK as sitk

from nnunetv2_symtc.inference.inputs import SUFFIXES, InputCase
from nnunetv2_symtc.instance.assemble import CaseOutput
from nnunetv2_symtc.instance.labeling import spineps_to_spider, split_endplates
from nnunetv2_symtc.io import Geometry, reorient, to_sitk
from nnunetv2_symtc.labels import (ENDPLATE, ENDPLATE_INFERIOR, ENDPLATE_SUPERIOR, SPINEPS_DISC_OFFSET,
                                   SPINEPS_ENDPLATE_OFFSET, VERTEBRA_IDS_TOP_TO_BOTTOM, instance_value_name)

MASK_COMPRESSION_LEVEL = 1
"""zlib level of the written masks: label maps compress well even at the fastest level."""


def to_original_grid(array_pir: np.ndarray, case: InputCase) -> np.ndarray:
    """A PIR array back on the input image's voxel grid."""
    if case.reoriented_from is None:
        return array_pir
    image = reorient(to_sitk(array_pir, case.geometry), case.reoriented_from)
    return sitk.GetArrayFromImage(image)


def centroids(instance_pir: np.ndarray, case: InputCase) -> Dict[str, dict]:
    """Level name -> world (LPS mm, x/y/z) and voxel (z, y, x, input grid) centroid of each instance."""
    from scipy import ndimage
    values = [int(v) for v in np.unique(instance_pir) if v]
    original = Geometry.from_sitk(case.original)
    out = {}
    for value, index in zip(values, ndimage.center_of_mass(np.ones_like(instance_pir, dtype=np.uint8),
                                                           instance_pir, values)):
        world = case.geometry.index_to_world(np.asarray(index))
        out[instance_value_name(value)] = {"value": value, "world_mm_xyz": [round(float(v), 3) for v in world],
                                           "voxel_zyx": [round(float(v), 3) for v in original.world_to_index(world)]}
    return out


def level_colours() -> np.ndarray:
    """RGBA colour table ``(SPINEPS_ENDPLATE_OFFSET + 29, 4)`` indexed by SPINEPS instance value.

    Every vertebra id gets its own hue, spread along the anatomical order by the golden ratio so
    that neighbouring levels contrast; its disc (100 + X) is a lighter and its endplates (200 + X)
    a darker shade of the same hue. Index 0 and unused values are transparent.
    """
    from matplotlib.colors import hsv_to_rgb
    table = np.zeros((SPINEPS_ENDPLATE_OFFSET + max(VERTEBRA_IDS_TOP_TO_BOTTOM) + 1, 4))
    golden = (np.sqrt(5.0) - 1.0) / 2.0
    for position, vertebra in enumerate(VERTEBRA_IDS_TOP_TO_BOTTOM):
        hue = (position * golden) % 1.0
        for offset, saturation, value in ((0, 0.9, 1.0), (SPINEPS_DISC_OFFSET, 0.45, 1.0),
                                          (SPINEPS_ENDPLATE_OFFSET, 0.9, 0.6)):
            table[offset + vertebra, :3] = hsv_to_rgb((hue, saturation, value))
            table[offset + vertebra, 3] = 1.0
    return table


def snapshot_slice(semantic_pir: np.ndarray) -> int:
    """The mid-sagittal slice (PIR axis 0): the one with most spine voxels, else the middle one."""
    counts = (semantic_pir > 0).sum(axis=(1, 2))
    return int(np.argmax(counts)) if counts.any() else semantic_pir.shape[0] // 2


def snapshot_overlay(instance_slice: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """RGBA overlay ``(y, x, 4)`` of one sagittal slice of a SPINEPS instance map (``level_colours``)."""
    table = level_colours()
    table[:, 3] *= alpha
    values = instance_slice.astype(np.int64)
    return table[np.where(values < len(table), values, 0)]


def write_snapshot(path: Path, image_pir: np.ndarray, semantic_pir: np.ndarray, instance_pir: np.ndarray,
                   spacing_zyx: Sequence[float]) -> int:
    """PNG of the mid-sagittal slice (``snapshot_slice``): the image, every level in its own colour
    (``snapshot_overlay``) and the vertebra names. Returns the slice index."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    z = snapshot_slice(semantic_pir)
    height, width = image_pir.shape[1] * spacing_zyx[1], image_pir.shape[2] * spacing_zyx[2]
    fig, ax = plt.subplots(figsize=(4, 4 * height / max(width, 1e-6)), dpi=100)
    extent = (0, width, height, 0)
    ax.imshow(image_pir[z], cmap="gray", extent=extent)
    ax.imshow(snapshot_overlay(instance_pir[z]), extent=extent, interpolation="nearest")
    for value in np.unique(instance_pir[z]):
        if 0 < value < SPINEPS_DISC_OFFSET:
            y, x = np.argwhere(instance_pir[z] == value).mean(axis=0)
            ax.text(x * spacing_zyx[2], y * spacing_zyx[1], instance_value_name(int(value)), color="white",
                    fontsize=8, ha="center", va="center", fontweight="bold")
    ax.set_axis_off()
    ax.set_title(f"mid-sagittal slice {z}", fontsize=8)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return z


def write_case(output_folder: Path, case: InputCase, output: CaseOutput, spider_values: bool,
               split_endplate_labels: bool, provenance: dict) -> None:
    """Write every output file of one case; the metadata JSON last (it marks the case finished)."""
    output_folder.mkdir(parents=True, exist_ok=True)
    semantic = split_endplates(output.semantic, output.endplate_side) if split_endplate_labels else output.semantic
    instance = spineps_to_spider(output.instance, output.semantic, case.geometry.spacing_zyx) if spider_values \
        else output.instance
    original = Geometry.from_sitk(case.original)
    for key, array in (("semantic", semantic), ("instance", instance)):
        dtype = np.uint8 if int(array.max(initial=0)) <= np.iinfo(np.uint8).max else np.uint16
        image = sitk.GetImageFromArray(np.ascontiguousarray(to_original_grid(array.astype(dtype), case)))
        image.CopyInformation(case.original)
        sitk.WriteImage(image, str(output_folder / f"{case.name}{SUFFIXES[key]}"), True, MASK_COMPRESSION_LEVEL)
    with open(output_folder / f"{case.name}{SUFFIXES['centroids']}", "w") as f:
        json.dump(centroids(output.instance, case), f, indent=2)
    write_snapshot(output_folder / f"{case.name}{SUFFIXES['snapshot']}", case.data[0], output.semantic,
                   output.instance, case.geometry.spacing_zyx)
    if output.probabilities is not None:
        np.savez_compressed(output_folder / f"{case.name}{SUFFIXES['probabilities']}",
                            probabilities=np.stack([to_original_grid(p, case) for p in output.probabilities]))
    metadata = {"case": case.name, "inputs": [str(p) for p in case.files], **provenance,
                "input_orientation": original.orientation, "reoriented_for_models": case.reoriented_from is not None,
                "instance_values": "spider" if spider_values else "spineps",
                "semantic_endplates": f"{ENDPLATE_SUPERIOR}/{ENDPLATE_INFERIOR}" if split_endplate_labels
                else str(ENDPLATE),
                "warnings": output.warnings, **output.metadata}
    with open(output_folder / f"{case.name}{SUFFIXES['metadata']}", "w") as f:
        json.dump(metadata, f, indent=2, default=_json_scalar)


def _json_scalar(value):
    """numpy scalars -> Python numbers for ``json.dump``."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
