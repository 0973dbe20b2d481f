"""Reading and checking the inputs of ``symtc predict``: images (nnU-Net channels or one file per
case) and, with ``--semantic-input``, given semantic masks that replace phase 1.

File names follow SPINEPS (``SUFFIXES``); arrays are returned in PIR with their geometry.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from nnunetv2_symtc.errors import InputError, InputFileError
from nnunetv2_symtc.instance.labeling import merge_endplates
from nnunetv2_symtc.io import CANONICAL_ORIENTATION, Geometry, PathLike, is_sagittal, reorient
from nnunetv2_symtc.labels import (ARCUS, SPINAL_CANAL, SPINAL_CORD, SPINEPS_SEMANTIC_NAMES,
                                   SPINEPS_SEMANTIC_OPTIONAL_NAMES, VERTEBRA_CORPUS, VERTEBRA_SUBREGIONS,
                                   VERTEBRAL_BODY)

SUFFIXES = {"semantic": "_seg-spine_msk.nii.gz", "instance": "_seg-vert_msk.nii.gz", "centroids": "_seg-spine_ctd.json",
            "snapshot": "_seg-spine_snp.png", "probabilities": "_seg-spine_probabilities.npz",
            "metadata": "_metadata.json"}
"""Per-case output file endings (SPINEPS names); ``semantic`` is also the name ``--semantic-input`` reads."""
IMAGE_ENDINGS = (".nii.gz", ".nii", ".mha", ".nrrd")
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
SPINEPS_VALUES = frozenset({0} | set(SPINEPS_SEMANTIC_NAMES) | set(SPINEPS_SEMANTIC_OPTIONAL_NAMES))
"""Every value a SPINEPS semantic mask may hold."""


def find_input_cases(folder: PathLike) -> Dict[str, List[Path]]:
    """Images in ``folder`` grouped into cases: nnU-Net's ``<case>_XXXX.ext`` channels, or one file per case."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(f"{folder}: input folder not found")
    cases: Dict[str, Dict[int, Path]] = {}
    for path in sorted(folder.iterdir()):
        ending = next((e for e in IMAGE_ENDINGS if path.name.endswith(e)), None)
        if ending is None or not path.is_file():
            continue
        stem = path.name[:-len(ending)]
        match = _CHANNEL.match(stem)
        case, channel = (match["case"], int(match["channel"])) if match else (stem, 0)
        if channel in cases.setdefault(case, {}):
            raise InputError(f"{path}: case {case!r} has channel {channel} twice")
        cases[case][channel] = path
    if not cases:
        raise InputFileError(f"{folder}: no images ({', '.join(IMAGE_ENDINGS)})")
    out = {}
    for case, channels in cases.items():
        if sorted(channels) != list(range(len(channels))):
            raise InputError(f"case {case!r} in {folder}: channels {sorted(channels)} are not 0..{len(channels) - 1}")
        out[case] = [channels[c] for c in range(len(channels))]
    return out


@dataclass
class InputCase:
    """A validated input: channels ``(C, z, y, x)`` float32 in PIR, its PIR geometry and the original image's."""

    name: str
    files: List[Path]
    data: np.ndarray
    geometry: Geometry
    original: sitk.Image
    reoriented_from: Optional[str]


def load_input_case(name: str, files: Sequence[Path], num_channels: Optional[int], model_dim: int) -> InputCase:
    """Read and check one case: channel count (unless ``num_channels`` is ``None``: no semantic model
    reads the image), dimensionality, finite values, sagittal slices.

    Sagittal images in another orientation are reoriented to PIR; non-sagittal ones are refused.
    """
    if num_channels is not None and len(files) != num_channels:
        raise InputError(f"case {name!r}: {len(files)} channel file(s) {[f.name for f in files]}, but the semantic "
                         f"model expects {num_channels}")
    arrays, reference = [], None
    for path in files:
        image = sitk.ReadImage(str(path))
        if image.GetDimension() != 3 or (model_dim == 3 and min(image.GetSize()) < 2):
            raise InputError(f"{path}: a {image.GetDimension()}D image of size {image.GetSize()}; the models need "
                             "3D volumes")
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(f"{path}: {image.GetNumberOfComponentsPerPixel()} components per voxel; give each "
                             "channel as its own file <case>_XXXX")
        geometry = Geometry.from_sitk(image)
        if reference is None:
            reference = (image, geometry)
        elif image.GetSize() != reference[0].GetSize() or not np.allclose(geometry.spacing_zyx, reference[1].spacing_zyx):
            raise InputError(f"{path}: grid differs from {files[0]}")
        if not is_sagittal(geometry):
            raise InputError(f"{path}: not a sagittal acquisition (orientation {geometry.orientation}, spacing "
                             f"{geometry.spacing_xyz} mm in ITK order: the thickest axis is not left-right); "
                             "the models expect sagittal slices")
        pir = reorient(image, CANONICAL_ORIENTATION) if geometry.orientation != CANONICAL_ORIENTATION else image
        array = sitk.GetArrayFromImage(pir).astype(np.float32)
        if not np.isfinite(array).all():
            raise InputError(f"{path}: {int((~np.isfinite(array)).sum())} NaN/infinite voxels")
        arrays.append(array)
    original, geometry = reference
    pir_geometry = Geometry.from_sitk(reorient(original, CANONICAL_ORIENTATION))
    reoriented_from = None if geometry.orientation == CANONICAL_ORIENTATION else geometry.orientation
    return InputCase(name, list(files), np.stack(arrays), pir_geometry, original, reoriented_from)


def find_semantic_inputs(folder: PathLike, case_names: Sequence[str]) -> Dict[str, Path]:
    """``<case>_seg-spine_msk.nii.gz`` of every case in ``folder``: exactly one per image case.

    ``InputFileError`` names the folder and every missing file; ``InputError`` names files for
    which no image case exists."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(f"{folder}: --semantic-input folder not found")
    suffix = SUFFIXES["semantic"]
    found = {p.name[:-len(suffix)]: p for p in sorted(folder.iterdir()) if p.name.endswith(suffix) and p.is_file()}
    missing = [f"{name}{suffix}" for name in case_names if name not in found]
    if missing:
        raise InputFileError(f"{folder}: no semantic mask for {len(missing)} image case(s): {', '.join(missing)}")
    extra = [str(path) for name, path in found.items() if name not in set(case_names)]
    if extra:
        raise InputError(f"semantic mask(s) without an image case in -i: {', '.join(extra)}")
    return {name: found[name] for name in case_names}


def load_semantic_input(path: Path, case: InputCase, scheme: str) -> np.ndarray:
    """A given SPINEPS semantic mask of ``case`` as a PIR array, checked and ready for phase 2.

    Its grid (size, spacing, origin, direction) must be that of the case's image; its values must
    be SPINEPS semantic values. Endplates 52/53 are read as 62. For a phase-2 model trained on
    SPIDER-derived semantics (``scheme == "spider"``), subregions become what that model saw:
    the posterior elements 42-48 become 41, the corpus 50 the body 49, the cord 60 the canal 61.
    """
    image = sitk.ReadImage(str(path))
    reference = case.original
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{path}: a {image.GetDimension()}D image with {image.GetNumberOfComponentsPerPixel()} "
                         "component(s) per voxel; a semantic mask is a 3D label image")
    if image.GetSize() != reference.GetSize() or not np.allclose(image.GetSpacing(), reference.GetSpacing(), atol=1e-3) \
            or not np.allclose(image.GetOrigin(), reference.GetOrigin(), atol=1e-2) \
            or not np.allclose(image.GetDirection(), reference.GetDirection(), atol=1e-3):
        raise InputError(f"{path}: grid (size {image.GetSize()}, spacing {image.GetSpacing()}, origin "
                         f"{image.GetOrigin()}) differs from its image {case.files[0]} (size {reference.GetSize()}, "
                         f"spacing {reference.GetSpacing()}, origin {reference.GetOrigin()}); the semantic mask must "
                         "lie on the image's grid")
    if image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        raise InputError(f"{path}: floating-point voxels ({image.GetPixelIDTypeAsString()}); a semantic mask holds "
                         "integer SPINEPS labels")
    pir = reorient(image, CANONICAL_ORIENTATION) if Geometry.from_sitk(image).orientation != CANONICAL_ORIENTATION \
        else image
    semantic = sitk.GetArrayFromImage(pir)
    unknown = sorted(int(v) for v in np.unique(semantic) if int(v) not in SPINEPS_VALUES)
    if unknown:
        raise InputError(f"{path}: values {unknown} are not SPINEPS semantic labels "
                         f"({sorted(SPINEPS_VALUES - {0})})")
    semantic = merge_endplates(semantic.astype(np.uint8))
    if scheme == "spider":
        semantic[np.isin(semantic, [v for v in VERTEBRA_SUBREGIONS if v != VERTEBRAL_BODY])] = ARCUS
        semantic[semantic == VERTEBRA_CORPUS] = VERTEBRAL_BODY
        semantic[semantic == SPINAL_CORD] = SPINAL_CANAL
    return semantic
