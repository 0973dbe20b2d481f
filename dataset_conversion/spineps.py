"""SPINEPS / BIDS-named data -> nnU-Net raw dataset (phase 1, semantic) plus instance masks.

Finds images matching ``image_pattern`` (default ``*_T2w.nii.gz``) anywhere below the root and pairs
each with its semantic mask (``seg-spine`` or, as in tptbox's samples, ``seg-subreg``) and its
instance mask (``seg-vert``), both ``*_msk.nii.gz`` anywhere below the root. Files are matched by
their BIDS entities: a mask has the image's entities plus ``seg-…`` (and optionally ``mod-<image
suffix>``, as SPINEPS writes), in any order. The case id is the image's entities
(``sub-mri_label-6``); folds group by ``sub``. Subjects named in ``test_subjects`` go to
``imagesTs``/``labelsTs``/``instancesTs`` instead (BIDS data has no official test split).

Labels: one nnU-Net class per label of the fixed SPINEPS table (``labels.spineps_semantic_map``),
plus 50/52/53 when any case has them; maps back exactly. Instance masks (values checked with
``labels.is_spineps_instance_value``) are written unchanged, on the image grid, to
``instancesTr/<case>.nii.gz`` for phase 2 (``dataset.json`` ``symtc_instances`` names the folder).
Images are reoriented to PIR unless ``keep_orientation`` (recorded in ``dataset.json``).
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from nnunetv2_symtc.io import CANONICAL_ORIENTATION, PathLike, read_image
from nnunetv2_symtc.labels import (
    SPINEPS_SEMANTIC_NAMES, SPINEPS_SEMANTIC_OPTIONAL_NAMES, LabelMap, is_spineps_instance_value, spineps_semantic_map)
from nnunetv2_symtc.dataset_conversion.validation import (
    Problem, grid_problems, image_problems, label_problems, raise_if_any, read_checked)
from nnunetv2_symtc.dataset_conversion.writer import (
    TEST, TRAIN, CaseJob, CaseResult, DatasetFolder, fail_fast, finish_dataset, label_path, reoriented, run_jobs,
    side_path, write_volume, image_path)
from nnunetv2_symtc.errors import InputError

DEFAULT_IMAGE_PATTERN = "*_T2w.nii.gz"
SEMANTIC_SEGS: Tuple[str, ...] = ("spine", "subreg")
INSTANCE_SEG = "vert"
MASK_SUFFIX = "msk"
INSTANCES = "instances"
NIFTI_ENDINGS: Tuple[str, ...] = (".nii.gz", ".nii")
_MASK_ONLY_ENTITIES = ("seg", "mod")


@dataclass(frozen=True)
class BidsName:
    """A BIDS file name: ``key-value`` entities in file order, the suffix (``T2w``, ``msk``) and ending."""

    entities: Tuple[Tuple[str, str], ...]
    suffix: str
    ending: str

    @classmethod
    def parse(cls, filename: str) -> Optional["BidsName"]:
        """``None`` when ``filename`` is not ``key-value_…_suffix.nii[.gz]``."""
        ending = next((e for e in NIFTI_ENDINGS if filename.endswith(e)), None)
        if ending is None:
            return None
        *pairs, suffix = filename[:-len(ending)].split("_")
        if not pairs or not suffix or "-" in suffix or not all("-" in p and p.index("-") > 0 for p in pairs):
            return None
        entities = tuple(tuple(p.split("-", 1)) for p in pairs)
        if len({k for k, _ in entities}) != len(entities):
            return None
        return cls(entities, suffix, ending)

    def get(self, key: str) -> Optional[str]:
        return dict(self.entities).get(key)

    def match_key(self) -> Tuple[Tuple[str, str], ...]:
        """Entities that identify the acquisition (without ``seg``/``mod``), sorted."""
        return tuple(sorted((k, v) for k, v in self.entities if k not in _MASK_ONLY_ENTITIES))

    @property
    def stem(self) -> str:
        """The acquisition's entities in file order (``seg``/``mod`` left out): the case id."""
        return "_".join(f"{k}-{v}" for k, v in self.entities if k not in _MASK_ONLY_ENTITIES)


@dataclass(frozen=True)
class SpinepsCase:
    case: str
    subject: str
    image: Path
    semantic: Path
    instance: Path


def find_cases(root: PathLike, image_pattern: str = DEFAULT_IMAGE_PATTERN) -> Tuple[List[SpinepsCase], List[Problem]]:
    """Match every image below ``root`` with its ``seg-spine``/``seg-subreg`` and ``seg-vert`` masks.

    Returns complete cases (sorted by id) and problems: images without a mask, masks without an image,
    several candidate masks, duplicate case ids, image names that are not BIDS.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    problems: List[Problem] = []
    images: Dict[Tuple, List[Tuple[BidsName, Path]]] = {}
    masks: List[Tuple[BidsName, Path]] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = BidsName.parse(path.name)
        if name is not None and name.suffix == MASK_SUFFIX:
            if name.get("seg") in SEMANTIC_SEGS + (INSTANCE_SEG,):
                masks.append((name, path))
        elif fnmatch.fnmatch(path.name, image_pattern):
            if name is None or name.get("sub") is None:
                problems.append(Problem(str(path), "image name is not BIDS (sub-<id>[_<key>-<value>…]_<suffix>.nii.gz)"))
            else:
                images.setdefault(name.match_key(), []).append((name, path))
    if not images:
        raise InputError(f"{root}: no image matching {image_pattern!r} below it")

    found: Dict[Path, Dict[str, List[Path]]] = {}
    for name, path in masks:
        candidates = [(n, p) for n, p in images.get(name.match_key(), []) if name.get("mod") in (None, n.suffix)]
        if len(candidates) != 1:
            problem = "mask without image" if not candidates else f"matches several images {[str(p) for _, p in candidates]}"
            problems.append(Problem(str(path), problem, name.stem))
            continue
        kind = "semantic" if name.get("seg") in SEMANTIC_SEGS else "instance"
        found.setdefault(candidates[0][1], {}).setdefault(kind, []).append(path)

    cases: Dict[str, SpinepsCase] = {}
    for key in sorted(images):
        for name, path in images[key]:
            case = name.stem
            own = found.get(path, {})
            bad = False
            for kind, label in (("semantic", "seg-spine/seg-subreg"), ("instance", "seg-vert")):
                if len(own.get(kind, [])) != 1:
                    bad = True
                    problems.append(Problem(str(path), f"image without {label} mask" if kind not in own else
                                            f"several {label} masks: {[str(p) for p in own[kind]]}", case))
            if case in cases:
                bad = True
                problems.append(Problem(str(path), f"same case id {case!r} as {cases[case].image}", case))
            if not bad:
                cases[case] = SpinepsCase(case, name.get("sub"), path, own["semantic"][0], own["instance"][0])
    return [cases[c] for c in sorted(cases)], problems


SEMANTIC_VALUES = frozenset({0}) | frozenset(SPINEPS_SEMANTIC_NAMES) | frozenset(SPINEPS_SEMANTIC_OPTIONAL_NAMES)
FULL_SEMANTIC_MAP = spineps_semantic_map(tuple(SPINEPS_SEMANTIC_OPTIONAL_NAMES))
"""Every SPINEPS semantic label; cases are encoded with it, then narrowed to the labels present."""


@dataclass(frozen=True)
class _SpinepsPayload:
    source: SpinepsCase
    root: Path
    orientation: Optional[str]


def _convert_case(job: CaseJob, folder: Path) -> CaseResult:
    source: SpinepsCase = job.payload.source
    image, geometry = read_checked(source.image, job.case)
    semantic, semantic_geometry = read_checked(source.semantic, job.case)
    instance, instance_geometry = read_checked(source.instance, job.case)
    problems = image_problems(source.image, image, job.case)
    problems += grid_problems(source.image, image.shape, geometry, source.semantic, semantic.shape, semantic_geometry, job.case)
    problems += grid_problems(source.image, image.shape, geometry, source.instance, instance.shape, instance_geometry, job.case)
    problems += label_problems(source.semantic, semantic, lambda v: v in SEMANTIC_VALUES, "SPINEPS semantic", job.case)
    problems += label_problems(source.instance, instance, is_spineps_instance_value, "SPINEPS instance", job.case)
    raise_if_any(problems)

    present = tuple(int(v) for v in np.unique(semantic))
    orientation = job.payload.orientation
    classes, out_geometry = reoriented(FULL_SEMANTIC_MAP.encode(semantic), geometry, orientation)
    write_volume(image_path(folder, job.subset, job.case), reoriented(image, geometry, orientation)[0], out_geometry)
    write_volume(label_path(folder, job.subset, job.case), classes, out_geometry)
    instance_dtype = np.uint8 if instance.max() <= 255 else np.uint16
    write_volume(side_path(folder, INSTANCES, job.subset, job.case),
                 reoriented(instance.astype(instance_dtype), geometry, orientation)[0], out_geometry)
    root = job.payload.root
    record = {"image": str(source.image.relative_to(root)), "mask": str(source.semantic.relative_to(root)),
              "instance_mask": str(source.instance.relative_to(root)), "source_orientation": geometry.orientation,
              "patient": job.group,
              "geometry": {"spacing_zyx": out_geometry.spacing_zyx, "origin_xyz": out_geometry.origin_xyz,
                           "direction": out_geometry.direction}}
    return CaseResult(job.case, job.subset, job.group, record=record, label_values=present)


def _narrow_labels(folder: Path, results: List[CaseResult], label_map: LabelMap) -> None:
    """Re-encode label files written with ``FULL_SEMANTIC_MAP`` when ``label_map`` numbers differently."""
    if label_map.classes == FULL_SEMANTIC_MAP.classes[:len(label_map.classes)]:
        return
    optional = set(SPINEPS_SEMANTIC_OPTIONAL_NAMES)
    for result in results:
        if optional & set(result.label_values):
            path = label_path(folder, result.subset, result.case)
            classes, geometry = read_image(path)
            write_volume(path, label_map.encode(FULL_SEMANTIC_MAP.decode(classes)), geometry)


def convert_spineps(root: PathLike, dataset_id: int, dataset_name: Optional[str] = None, *,
                    image_pattern: str = DEFAULT_IMAGE_PATTERN, keep_orientation: bool = False,
                    strict: bool = False, overwrite: bool = False, raw_dir: Optional[PathLike] = None,
                    num_processes: int = 1, test_subjects: Sequence[str] = ()) -> Path:
    """Convert SPINEPS/BIDS data below ``root`` to ``DatasetXXX_<name>``; returns its path.

    ``keep_orientation`` writes the source voxel order instead of PIR (all cases must then share one
    orientation). ``test_subjects`` (``sub`` values, with or without ``sub-``) are held out as test
    cases; an unknown subject raises ``ValueError`` before anything is written. Problems skip their
    case (listed in the output and ``dataset.json``), or raise ``ConversionError`` at the first one
    when ``strict``.
    """
    root = Path(root)
    orientation = None if keep_orientation else CANONICAL_ORIENTATION
    held_out = {s[len("sub-"):] if s.startswith("sub-") else s for s in test_subjects}
    cases, problems = find_cases(root, image_pattern)
    unknown = sorted(held_out - {c.subject for c in cases})
    if unknown:
        raise InputError(f"{root}: test subject(s) {unknown} have no complete case below it; "
                         f"subjects found: {sorted({c.subject for c in cases})}")
    with DatasetFolder(dataset_id, dataset_name or "SPINEPS", raw_dir, overwrite) as folder:
        fail_fast(problems, strict)
        jobs = [CaseJob(c.case, TEST if c.subject in held_out else TRAIN, c.subject,
                        _SpinepsPayload(c, root, orientation)) for c in cases]
        results, case_problems = run_jobs(_convert_case, jobs, folder.folder, num_processes, strict, "SPINEPS")
        present = set().union(*(r.label_values for r in results)) if results else set()
        label_map = spineps_semantic_map(sorted(present & set(SPINEPS_SEMANTIC_OPTIONAL_NAMES)))
        _narrow_labels(folder.folder, results, label_map)
        image_suffixes = sorted({BidsName.parse(c.image.name).suffix for c in cases})
        return finish_dataset(
            folder, results=results, problems=problems + case_problems, label_map=label_map,
            channel_names={"0": "+".join(image_suffixes)}, source="spineps", source_root=root,
            options={"image_pattern": image_pattern, "keep_orientation": keep_orientation,
                     "test_subjects": sorted(held_out)},
            reverse_map="exact: each class maps back to its SPINEPS semantic label", orientation=orientation,
            extra_json={"symtc_instances": {"folders": [f"{INSTANCES}{subset}" for subset in (TRAIN, TEST)
                                                        if subset == TRAIN or held_out],
                                            "content": "SPINEPS instance masks (seg-vert values), on the image grid"}})
