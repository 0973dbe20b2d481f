"""The phase-2 training dataset of the two-phase segmentation (``symtc instance-dataset``): one
nnU-Net case per vertebra, a cutout centred on its body centre, derived from ground-truth SPINEPS
or SPIDER data.

Inputs, target and grid follow ``instance.phase2_spec`` (``Phase2Spec``); cutout voxels outside the
source's field of view are 0 in every channel and ``source_cases.json`` records the padding.
Problems are handled as in the other converters: each one names its subject and file, the subject
is skipped, the rest is built, and ``dataset.json`` lists the skipped subjects; ``strict`` stops
at the first problem.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from nnunetv2_symtc.dataset_conversion.spider import find_series
from nnunetv2_symtc.dataset_conversion.spineps import SEMANTIC_VALUES, find_cases
from nnunetv2_symtc.dataset_conversion.validation import (ConversionError, Problem, ProblemFound, grid_problems,
                                                          image_problems, label_problems, raise_if_any, read_checked)
from nnunetv2_symtc.dataset_conversion.writer import (TRAIN, CaseResult, DatasetFolder, fail_fast, finish_dataset,
                                                      image_path, label_path, reoriented, write_volume)
from nnunetv2_symtc.errors import InputError
from nnunetv2_symtc.instance.cutouts import Cutout, CutoutSpec, make_cutout
from nnunetv2_symtc.instance.labeling import vertebrae_top_to_bottom
from nnunetv2_symtc.instance.phase2_spec import (SCHEMES, SPEC_KEY, Phase2Spec, spider_to_spineps_semantic)
from nnunetv2_symtc.io import CANONICAL_ORIENTATION, Geometry, PathLike
from nnunetv2_symtc.labels import (BODY_VALUES, L5_ID, PHASE2_ABOVE, PHASE2_BELOW, PHASE2_CENTRE, SPIDER_PARTIAL_OFFSET,
                                   SPINEPS_SEMANTIC_OPTIONAL_NAMES, VERTEBRA_INSTANCE_IDS, VERTEBRA_VALUES, LabelMap,
                                   is_spider_value, is_spineps_instance_value, spider_level_to_vertebra_id,
                                   spider_semantic_map, spineps_semantic_map)


def spider_instances(spider_mask: np.ndarray) -> np.ndarray:
    """SPIDER vertebra levels (1–25, partial 101–125) -> SPINEPS vertebra ids (L5 = 24 counted up)."""
    out = np.zeros(spider_mask.shape, dtype=np.uint8)
    for level in range(1, L5_ID + 1):
        out[(spider_mask == level) | (spider_mask == SPIDER_PARTIAL_OFFSET + level)] = spider_level_to_vertebra_id(level)
    return out


def body_centre(instance: np.ndarray, semantic: np.ndarray, vertebra_id: int) -> Optional[np.ndarray]:
    """Centroid (continuous index) of the vertebra's body voxels; ``None`` if it has no body in view."""
    coords = np.argwhere((instance == vertebra_id) & np.isin(semantic, BODY_VALUES))
    return coords.mean(axis=0) if len(coords) else None


@dataclass
class Phase2Case:
    """One phase-2 training case: ``inputs`` ``(C, *shape)``, ``target`` (classes 0–3), its cutout and record."""

    vertebra_id: int
    inputs: np.ndarray
    target: np.ndarray
    cutout: Cutout
    record: dict


def phase2_cases(semantic: np.ndarray, instance: np.ndarray, spacing_zyx: Sequence[float], spec: Phase2Spec,
                 image: Optional[np.ndarray] = None) -> Iterator[Phase2Case]:
    """Phase-2 cases of one PIR volume: one per vertebra with a body in view, top to bottom.

    ``semantic`` in SPINEPS values, ``instance`` with SPINEPS vertebra ids (other values ignored).
    Above/below are the neighbouring vertebrae of the instance mask (by body position).
    """
    vertebra_voxels = np.isin(semantic, VERTEBRA_VALUES)
    vertebrae = np.where(vertebra_voxels & np.isin(instance, VERTEBRA_INSTANCE_IDS), instance, 0)
    order = vertebrae_top_to_bottom(vertebrae, semantic, spacing_zyx)
    for position, vertebra_id in enumerate(order):
        centre = body_centre(vertebrae, semantic, vertebra_id)
        if centre is None:
            continue
        cutout = make_cutout(centre, semantic.shape, spacing_zyx, spec.cutout)
        ids = cutout.take(vertebrae)
        target = np.zeros(ids.shape, dtype=np.uint8)
        neighbours = {PHASE2_CENTRE: vertebra_id,
                      PHASE2_ABOVE: order[position - 1] if position > 0 else None,
                      PHASE2_BELOW: order[position + 1] if position + 1 < len(order) else None}
        for phase2_class, vid in neighbours.items():
            if vid is not None:
                target[ids == vid] = phase2_class
        record = {"vertebra": vertebra_id, "above": neighbours[PHASE2_ABOVE], "below": neighbours[PHASE2_BELOW],
                  **cutout.to_json()}
        yield Phase2Case(vertebra_id, spec.encode(semantic, cutout, image), target, cutout, record)


def cutout_geometry(cutout: Cutout, source: Geometry, spec: CutoutSpec) -> Geometry:
    """Geometry of a cutout grid: working spacing, the source's (PIR) direction, origin at voxel 0."""
    first = np.array([p[0] for p in cutout.position])
    return Geometry(tuple(spec.spacing_zyx), tuple(float(v) for v in source.index_to_world(first)), source.direction)


# --------------------------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceVolume:
    """One subject's volumes to derive phase-2 cases from (paths; read lazily)."""

    case: str
    subject: str
    semantic: Path
    instance: Path
    image: Optional[Path]
    scheme: str


def find_sources(root: PathLike, scheme: str) -> Tuple[List[SourceVolume], List[Problem]]:
    """SPINEPS/BIDS data (``find_cases`` of the SPINEPS converter) or a SPIDER root (``find_series``):
    the usable sources and the problems of the files that are not (each naming its file).
    ``ConversionError`` when no source is usable."""
    if scheme == "spineps":
        cases, problems = find_cases(root)
        sources = [SourceVolume(c.case, c.subject, c.semantic, c.instance, c.image, scheme) for c in cases]
    elif scheme == "spider":
        series, problems = find_series(root)
        sources = [SourceVolume(s.name, str(s.pid), s.mask, s.mask, s.image, scheme) for s in series]
    else:
        raise InputError(f"unknown source scheme {scheme!r}; choose one of {SCHEMES}")
    if not sources:
        raise ConversionError(problems, f"{root}: no usable {scheme} case found")
    return sources, problems


def _read_pir(path: Path, case: str) -> Tuple[np.ndarray, Geometry, np.ndarray, Geometry]:
    """-> (array, geometry) as stored, then reoriented to PIR; ``ProblemFound`` if unreadable or not 3D."""
    array, geometry = read_checked(path, case)
    return (array, geometry) + reoriented(array, geometry, CANONICAL_ORIENTATION)


def load_source(source: SourceVolume, with_image: bool) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray], Geometry]:
    """-> (SPINEPS semantic, SPINEPS vertebra ids, image or None, geometry), all PIR.

    Raises ``ProblemFound`` naming the file when a volume is unreadable, has values outside its
    label convention, is not on the mask's grid, or (``with_image``) is missing or not finite.
    """
    case = source.case
    raw_mask, raw_geometry, mask, geometry = _read_pir(source.semantic, case)
    if source.scheme == "spider":
        raise_if_any(label_problems(source.semantic, raw_mask, is_spider_value, "SPIDER", case))
        semantic, instance = spider_to_spineps_semantic(mask), spider_instances(mask)
    else:
        raise_if_any(label_problems(source.semantic, raw_mask, lambda v: v in SEMANTIC_VALUES, "SPINEPS semantic", case))
        raw_instance, instance_geometry, instance, _ = _read_pir(source.instance, case)
        raise_if_any(label_problems(source.instance, raw_instance, is_spineps_instance_value, "SPINEPS instance", case)
                     + grid_problems(source.semantic, raw_mask.shape, raw_geometry, source.instance,
                                     raw_instance.shape, instance_geometry, case))
        semantic = mask
    image = None
    if with_image:
        if source.image is None:
            raise ProblemFound([Problem(str(source.semantic), "--with-image needs an image; none found for this mask",
                                        case)])
        raw_image, image_geometry, image, _ = _read_pir(source.image, case)
        raise_if_any(image_problems(source.image, raw_image, case)
                     + grid_problems(source.semantic, raw_mask.shape, raw_geometry, source.image, raw_image.shape,
                                     image_geometry, case))
    return semantic, instance, image, geometry


def default_phase1_labels(scheme: str, semantic_values: Sequence[int] = ()) -> Dict[str, int]:
    """The phase-1 label set a phase-2 dataset of ``scheme`` expects (SPINEPS: plus 50/52/53 when present)."""
    if scheme == "spider":
        return spider_semantic_map().dataset_json_labels()
    return spineps_semantic_map([v for v in SPINEPS_SEMANTIC_OPTIONAL_NAMES if v in set(semantic_values)]).dataset_json_labels()


def build_instance_dataset(root: PathLike, dataset_id: int, dataset_name: Optional[str] = None, *,
                           scheme: str = "spineps", cutout: Optional[CutoutSpec] = None, with_image: bool = False,
                           phase1_labels: Optional[Dict[str, int]] = None, lowest_vertebra: int = L5_ID,
                           strict: bool = False, overwrite: bool = False, raw_dir: Optional[PathLike] = None) -> Path:
    """Write the phase-2 nnU-Net dataset ``DatasetXXX_<name>`` derived from ``root``; returns its path.

    ``phase1_labels`` (default: the scheme's semantic label set, SPINEPS with 50/52/53 if the data
    has them) is recorded so that ``symtc predict`` can refuse a mismatched phase-1 model. A subject
    with a problem (unreadable or invalid file, no vertebral body in view) is skipped and listed in
    ``dataset.json`` (``writer.skipped_cases``); ``strict`` raises ``ConversionError`` at the first one.
    """
    cutout = cutout or CutoutSpec.spineps_default()
    sources, problems = find_sources(root, scheme)
    fail_fast(problems, strict)
    results: List[CaseResult] = []
    values_seen = set()
    with DatasetFolder(dataset_id, dataset_name or f"{scheme.upper()}Instances", raw_dir, overwrite) as folder:
        encoder = Phase2Spec(cutout, scheme, {}, with_image, lowest_vertebra)
        for source in tqdm(sources, desc="phase-2 cutouts", unit="subject", disable=None):
            try:
                semantic, instance, image, geometry = load_source(source, with_image)
            except ProblemFound as e:
                fail_fast(e.problems, strict)
                problems += e.problems
                continue
            written = []
            for case in phase2_cases(semantic, instance, geometry.spacing_zyx, encoder, image):
                name = f"{source.case}_v{case.vertebra_id:02d}"
                grid = cutout_geometry(case.cutout, geometry, cutout)
                for channel, array in enumerate(case.inputs):
                    write_volume(image_path(folder.folder, TRAIN, name, channel), array, grid)
                write_volume(label_path(folder.folder, TRAIN, name), case.target, grid)
                record = {"source_case": source.case, "semantic": str(source.semantic), **case.record,
                          "geometry": {"spacing_zyx": grid.spacing_zyx, "origin_xyz": grid.origin_xyz,
                                       "direction": grid.direction}}
                written.append(CaseResult(name, TRAIN, source.subject, record=record))
            if not written:
                empty = [Problem(str(source.instance), "no vertebra with a vertebral body in view: no phase-2 case",
                                 source.case)]
                fail_fast(empty, strict)
                problems += empty
            results += written
            values_seen |= set(int(v) for v in np.unique(semantic))
        labels = phase1_labels or default_phase1_labels(scheme, sorted(values_seen))
        spec = Phase2Spec(cutout, scheme, labels, with_image, lowest_vertebra)
        target_map = LabelMap("phase2-instance", (("above", (PHASE2_ABOVE,)), ("centre", (PHASE2_CENTRE,)),
                                                  ("below", (PHASE2_BELOW,))))
        return finish_dataset(folder, results=results, problems=problems, label_map=target_map,
                              channel_names=spec.channel_names(), source=f"{scheme}-instance", source_root=root,
                              options={"cutout": cutout.to_json(), "with_image": with_image},
                              reverse_map="phase-2 classes: above/centre/below vertebra of the cutout centre",
                              orientation=CANONICAL_ORIENTATION, extra_json={SPEC_KEY: spec.to_json()})
