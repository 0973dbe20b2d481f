"""``symtc postprocess``: a vertebra-only instance mask and a SPINEPS semantic mask -> the full
SPINEPS instance mask (discs 100+X, endplates 200+X), written on the semantic mask's grid."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import numpy as np
import SimpleITK as sitk

import nnunetv2_symtc
from nnunetv2_symtc.errors import InputError
from nnunetv2_symtc.inference.inputs import IMAGE_ENDINGS
from nnunetv2_symtc.instance.labeling import (add_discs_and_endplates, name_vertebrae, sequence_warnings,
                                              vertebrae_top_to_bottom)
from nnunetv2_symtc.io import CANONICAL_ORIENTATION, Geometry, PathLike, reorient
from nnunetv2_symtc.labels import L5_ID, VERTEBRA_INSTANCE_IDS


def postprocess_files(semantic_path: PathLike, instances_path: PathLike, output_path: PathLike,
                      relabel: bool = False, lowest_vertebra: Optional[int] = None,
                      default_lowest: int = L5_ID) -> dict:
    """Vertebra-only instance mask + SPINEPS semantic mask -> full instance mask (discs 100+X,
    endplates 200+X) on the grid of ``semantic_path``; writes ``output_path`` and a metadata JSON
    beside it (``<output>_metadata.json``) and returns the metadata.

    Vertebra ids are kept as given (an unusual sequence is a warning); ``relabel`` names levels
    by the naming rule instead (``labeling.name_vertebrae``).
    """
    semantic_image = sitk.ReadImage(str(semantic_path))
    instance_image = sitk.ReadImage(str(instances_path))
    if semantic_image.GetSize() != instance_image.GetSize() or not np.allclose(
            semantic_image.GetSpacing(), instance_image.GetSpacing(), atol=1e-3) or not np.allclose(
            semantic_image.GetDirection(), instance_image.GetDirection(), atol=1e-3):
        raise InputError(f"{instances_path}: grid (size {instance_image.GetSize()}, spacing {instance_image.GetSpacing()}) "
                         f"differs from {semantic_path} (size {semantic_image.GetSize()}, spacing {semantic_image.GetSpacing()})")
    original = Geometry.from_sitk(semantic_image)
    semantic_pir = reorient(semantic_image, CANONICAL_ORIENTATION)
    geometry = Geometry.from_sitk(semantic_pir)
    semantic = sitk.GetArrayFromImage(semantic_pir)
    given = sitk.GetArrayFromImage(reorient(instance_image, CANONICAL_ORIENTATION))
    warnings: List[str] = []
    vertebra_ids = [int(v) for v in np.unique(given) if v]
    other = [v for v in vertebra_ids if v not in VERTEBRA_INSTANCE_IDS]
    if other:
        warnings.append(f"values {other} in {instances_path} are not vertebra ids (1-25, 28) and were ignored")
    vertebrae = np.where(np.isin(given, VERTEBRA_INSTANCE_IDS), given, 0)
    naming = {"rule": "ids kept as given"}
    if relabel:
        vertebrae, naming = name_vertebrae(vertebrae, semantic, geometry.spacing_zyx, lowest_vertebra, default_lowest)
    order = vertebrae_top_to_bottom(vertebrae, semantic, geometry.spacing_zyx)
    warnings += sequence_warnings(order)
    instance, _, disc_warnings = add_discs_and_endplates(vertebrae, semantic, geometry.spacing_zyx)
    warnings += disc_warnings
    out = sitk.GetImageFromArray(instance)
    out = reorient(geometry.apply_to(out), original.orientation)
    out.CopyInformation(semantic_image)
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(out, str(output_path), True)
    metadata = {"semantic": str(semantic_path), "instances": str(instances_path), "output": str(output_path),
                "naming": naming, "vertebrae_top_to_bottom": order, "warnings": warnings,
                "package": "nnunetv2_symtc", "package_version": nnunetv2_symtc.__version__}
    with open(metadata_path_for(output_path), "w") as f:
        json.dump(metadata, f, indent=2)
    return metadata


def metadata_path_for(output_path: PathLike) -> Path:
    """``out.nii.gz`` -> ``out_metadata.json``."""
    path = Path(output_path)
    stem = next((path.name[:-len(e)] for e in IMAGE_ENDINGS if path.name.endswith(e)), path.stem)
    return path.with_name(f"{stem}_metadata.json")
