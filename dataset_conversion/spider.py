"""SPIDER (Zenodo 10159290) -> nnU-Net raw dataset.

Source layout (REFERENCE §4): ``images/<pid>_<seq>.mha``, ``masks/<pid>_<seq>.mha`` and
``overview.csv`` (columns ``new_file_name`` and ``subset``: training / validation). Each series
becomes the case ``<pid>_<seq>`` (e.g. ``12_t2``), reoriented to PIR. The official validation subset
goes to ``imagesTs``/``labelsTs`` unless ``keep_validation_in_training``. Folds group the series of
one patient.

Label schemes (``labels.spider_semantic_map`` / ``labels.spider_levels_map``):

- ``semantic``: vertebra, disc, spinal canal. Mapping back is approximate: it separates touching
  vertebrae, numbers them bottom-up (1, 2, …) and gives each disc 200 + the number of vertebrae
  below it + 1 (see ``reverse``).
- ``levels``: one class per vertebra level and disc level (bottom-up, as SPIDER counts) plus the
  canal; vertebrae 1–N, discs and the canal map back exactly. Partially visible vertebrae (101–125)
  have no class of their own, so that mark is lost (``PARTIAL_REVERSE_NOTES``): merged into level k
  (default) they come back as k.

With ``multichannel``, the requested sequences of one patient (which must share one grid) become one
case ``<pid>_<seq1>-<seq2>…`` with one channel per sequence and the first sequence's mask.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from nnunetv2_symtc.io import CANONICAL_ORIENTATION, PathLike
from nnunetv2_symtc.labels import LabelMap, is_spider_value, spider_levels_map, spider_semantic_map, SPIDER_MAX_LEVEL
from nnunetv2_symtc.dataset_conversion.validation import (
    Problem, grid_problems, image_problems, label_problems, pairing_problems, raise_if_any, read_checked)
from nnunetv2_symtc.dataset_conversion.writer import (
    TEST, TRAIN, CaseJob, CaseResult, DatasetFolder, fail_fast, finish_dataset, image_path, label_dtype,
    label_path, reoriented, run_jobs, write_volume)
from nnunetv2_symtc.errors import InputError

SPIDER_SEQUENCES: Tuple[str, ...] = ("t1", "t2", "t2_SPACE")
SPIDER_SCHEMES: Tuple[str, ...] = ("semantic", "levels")
SERIES_NAME = re.compile(r"^(?P<pid>\d+)_(?P<seq>.+)$")
SEQUENCE_NAME = re.compile(r"^[A-Za-z0-9_]+$")
VALIDATION_SUBSET = "validation"
TRAINING_SUBSET = "training"
SEMANTIC_REVERSE_NOTE = ("approximate: vertebrae (separated between the discs) are numbered bottom-up 1, 2, ... "
                         "and each disc gets 200 + (number of vertebrae below it) + 1")
LEVELS_REVERSE_NOTE = "exact for vertebrae, discs and the spinal canal"
PARTIAL_REVERSE_NOTES = {
    "vertebra": "partially visible vertebrae (101-125) were trained as vertebrae and come back as full ones (100 + k -> k)",
    "level": "partially visible vertebrae (101-125) were trained as their level and come back as full ones (100 + k -> k)",
    "ignore": "partially visible vertebrae (101-125) were not trained on (ignore label): a prediction there comes "
              "back as whatever the network predicted, the ignore label itself as 0",
    "background": "partially visible vertebrae (101-125) were trained as background and come back as 0",
}
"""What ``to-source`` returns for SPIDER's partially visible vertebrae, by ``partial`` choice: the
classes do not record that a vertebra was only partially visible."""


@dataclass(frozen=True)
class SpiderSeries:
    """One SPIDER series: patient id, sequence, image and mask files, official subset."""

    pid: int
    sequence: str
    image: Path
    mask: Path
    subset: str

    @property
    def name(self) -> str:
        return f"{self.pid}_{self.sequence}"


def spider_label_map(labels: str = "semantic", partial: Optional[str] = None,
                     max_level: int = SPIDER_MAX_LEVEL) -> LabelMap:
    """The ``LabelMap`` of a scheme; ``partial`` defaults to merging partial vertebrae into vertebrae."""
    if labels == "semantic":
        return spider_semantic_map(partial or "vertebra")
    if labels == "levels":
        return spider_levels_map(max_level, partial or "level")
    raise InputError(f"labels={labels!r}; choose one of {SPIDER_SCHEMES}")


def read_overview(root: Path) -> Dict[str, str]:
    """``overview.csv`` -> ``{series name: subset}`` (subset lower-cased, e.g. ``'validation'``)."""
    path = root / "overview.csv"
    if not path.is_file():
        raise InputError(f"{path}: not found; SPIDER's overview.csv (columns new_file_name, subset) says which "
                         "series belong to the official validation subset")
    with open(path, newline="") as f:
        text = f.read()
    try:
        dialect = csv.Sniffer().sniff(text.splitlines()[0], delimiters=",;\t")
    except (csv.Error, IndexError):
        raise InputError(f"{path}: not a CSV file with a header line") from None
    rows = list(csv.DictReader(text.splitlines(), dialect=dialect))
    columns = set(rows[0]) if rows else set()
    missing = {"new_file_name", "subset"} - columns
    if missing:
        raise InputError(f"{path}: missing column(s) {sorted(missing)} (has {sorted(columns)})")
    subsets = {}
    for row in rows:
        name = Path(row["new_file_name"].strip()).name
        subsets[name[:-4] if name.endswith(".mha") else name] = row["subset"].strip().lower()
    return subsets


def find_series(root: PathLike, sequences: Sequence[str] = SPIDER_SEQUENCES
                ) -> Tuple[List[SpiderSeries], List[Problem]]:
    """Pair ``images/*.mha`` with ``masks/*.mha`` for the requested sequences.

    Returns the complete series (sorted by patient, then sequence order) and the problems: unpaired
    files, file names that are not ``<pid>_<seq>.mha``, series missing from ``overview.csv`` or with an
    unknown subset.
    """
    root = Path(root)
    for sub in ("images", "masks"):
        if not (root / sub).is_dir():
            raise InputError(f"{root / sub}: not found; a SPIDER root holds images/, masks/ and overview.csv")
    subsets = read_overview(root)
    problems: List[Problem] = []
    found: Dict[str, Dict[str, Path]] = {}
    for sub in ("images", "masks"):
        found[sub] = {}
        for path in sorted((root / sub).iterdir()):
            if path.name.startswith(".") or path.is_dir():
                continue
            match = SERIES_NAME.match(path.name[:-4]) if path.suffix == ".mha" else None
            if match is None:
                problems.append(Problem(str(path), "not named <patient id>_<sequence>.mha", path.name))
            elif match["seq"] in sequences:
                found[sub][path.name[:-4]] = path
    problems += pairing_problems(found["images"], found["masks"])
    series = []
    for name in sorted(set(found["images"]) & set(found["masks"])):
        subset = subsets.get(name)
        if subset not in (TRAINING_SUBSET, VALIDATION_SUBSET):
            problem = "not listed in overview.csv" if subset is None else f"unknown subset {subset!r} in overview.csv"
            problems.append(Problem(str(found["images"][name]), problem, name))
            continue
        match = SERIES_NAME.match(name)
        series.append(SpiderSeries(int(match["pid"]), match["seq"], found["images"][name], found["masks"][name], subset))
    series.sort(key=lambda s: (s.pid, list(sequences).index(s.sequence)))
    return series, problems


def _group_series(series: Sequence[SpiderSeries], multichannel: bool, sequences: Sequence[str]
                  ) -> Tuple[List[Tuple[str, Tuple[SpiderSeries, ...]]], List[Problem]]:
    """Cases as ``(case id, series)``: one per series, or one per patient holding every sequence."""
    if not multichannel:
        return [(s.name, (s,)) for s in series], []
    by_patient: Dict[int, List[SpiderSeries]] = {}
    for s in series:
        by_patient.setdefault(s.pid, []).append(s)
    cases, problems = [], []
    for pid, group in sorted(by_patient.items()):
        present = [s.sequence for s in group]
        if present != list(sequences):
            missing = [q for q in sequences if q not in present]
            problems.append(Problem(str(group[0].image), f"patient {pid} lacks sequence(s) {missing} needed as "
                                    "channels (--multichannel)", f"{pid}"))
            continue
        subsets = {s.subset for s in group}
        if len(subsets) > 1:
            problems.append(Problem(str(group[0].image), f"patient {pid}'s series are in different subsets {sorted(subsets)}",
                                    f"{pid}"))
            continue
        cases.append((f"{pid}_" + "-".join(sequences), tuple(group)))
    return cases, problems


@dataclass(frozen=True)
class _SpiderPayload:
    series: Tuple[SpiderSeries, ...]
    label_map: LabelMap
    root: Path


def _convert_case(job: CaseJob, folder: Path) -> CaseResult:
    """Read, check and write one case (all channels plus the first series' mask)."""
    payload: _SpiderPayload = job.payload
    first = payload.series[0]
    images = []
    for s in payload.series:
        image, geometry = read_checked(s.image, job.case)
        images.append((s.image, image, geometry))
    mask, mask_geometry = read_checked(first.mask, job.case)
    problems = []
    for path, image, _ in images:
        problems += image_problems(path, image, job.case)
    reference_path, reference, reference_geometry = images[0]
    for path, image, geometry in images[1:]:
        problems += grid_problems(reference_path, reference.shape, reference_geometry, path, image.shape, geometry, job.case)
    problems += grid_problems(reference_path, reference.shape, reference_geometry, first.mask, mask.shape, mask_geometry, job.case)
    problems += label_problems(first.mask, mask, is_spider_value, "SPIDER", job.case)
    if not problems:
        unknown = payload.label_map.unknown_values(mask)
        if unknown:
            hint = "; raise --max-level (max_level)" if payload.label_map.scheme == "spider-levels" else ""
            problems.append(Problem(str(first.mask), f"label values {unknown} have no class in the "
                                    f"{payload.label_map.scheme!r} label map ({payload.label_map.notes}{hint})", job.case))
    raise_if_any(problems)

    classes = payload.label_map.encode(mask).astype(label_dtype(payload.label_map.num_classes + 1))
    classes, geometry = reoriented(classes, reference_geometry, CANONICAL_ORIENTATION)
    for channel, (_, image, _) in enumerate(images):
        array, _ = reoriented(image, reference_geometry, CANONICAL_ORIENTATION)
        write_volume(image_path(folder, job.subset, job.case, channel), array, geometry)
    write_volume(label_path(folder, job.subset, job.case), classes, geometry)
    record = {"images": [str(s.image.relative_to(payload.root)) for s in payload.series],
              "mask": str(first.mask.relative_to(payload.root)),
              "source_orientation": reference_geometry.orientation,
              "patient": job.group, "subset": first.subset,
              "geometry": {"spacing_zyx": geometry.spacing_zyx, "origin_xyz": geometry.origin_xyz,
                           "direction": geometry.direction}}
    return CaseResult(job.case, job.subset, job.group, record=record)


def convert_spider(root: PathLike, dataset_id: int, dataset_name: Optional[str] = None, *,
                   sequences: Sequence[str] = SPIDER_SEQUENCES, labels: str = "semantic",
                   partial: Optional[str] = None, max_level: int = SPIDER_MAX_LEVEL, multichannel: bool = False,
                   keep_validation_in_training: bool = False, strict: bool = False, overwrite: bool = False,
                   raw_dir: Optional[PathLike] = None, num_processes: int = 1) -> Path:
    """Convert a SPIDER root to ``<raw_dir or $nnUNet_raw>/DatasetXXX_<name>``; returns its path.

    ``labels``: ``semantic`` or ``levels``; ``partial``: what 101–125 become (``vertebra``/``level``,
    ``ignore``, ``background``); ``max_level``: highest level with its own class in ``levels``.
    Problems (listed in the output and in ``dataset.json`` ``symtc_conversion.skipped_cases``) skip
    their case, or raise ``ConversionError`` at the first one when ``strict``.
    """
    root = Path(root)
    sequences = tuple(sequences)
    if not sequences or len(set(sequences)) != len(sequences) or not all(SEQUENCE_NAME.match(q) for q in sequences):
        raise InputError(f"sequences {list(sequences)}: give distinct names of letters, digits and '_', "
                         f"such as {list(SPIDER_SEQUENCES)}")
    label_map = spider_label_map(labels, partial, max_level)
    with DatasetFolder(dataset_id, dataset_name or "SPIDER", raw_dir, overwrite) as folder:
        series, problems = find_series(root, sequences)
        fail_fast(problems, strict)
        cases, grouping_problems = _group_series(series, multichannel, sequences)
        problems += grouping_problems
        fail_fast(problems, strict)
        jobs = [CaseJob(case, TEST if group[0].subset == VALIDATION_SUBSET and not keep_validation_in_training else TRAIN,
                        str(group[0].pid), _SpiderPayload(group, label_map, root))
                for case, group in cases]
        results, case_problems = run_jobs(_convert_case, jobs, folder.folder, num_processes, strict, "SPIDER")
        channel_sequences = sequences if multichannel else ("MRI",)
        options = {"sequences": list(sequences), "labels": labels, "partial": partial or ("vertebra" if labels == "semantic" else "level"),
                   "max_level": max_level, "multichannel": multichannel,
                   "keep_validation_in_training": keep_validation_in_training}
        return finish_dataset(
            folder, results=results, problems=problems + case_problems, label_map=label_map,
            channel_names={str(i): q for i, q in enumerate(channel_sequences)}, source="spider", source_root=root,
            options=options, reverse_map=(f"{SEMANTIC_REVERSE_NOTE if labels == 'semantic' else LEVELS_REVERSE_NOTE}; "
                                     f"{PARTIAL_REVERSE_NOTES[options['partial']]}"),
            orientation=CANONICAL_ORIENTATION)
