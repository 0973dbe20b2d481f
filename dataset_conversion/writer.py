"""Shared machinery of the converters: the temporary dataset folder, per-case jobs run in
parallel, patient-grouped splits, and the JSON files written beside ``dataset.json``.

Layout written (nnU-Net raw format plus our side files)::

    DatasetXXX_Name/
      dataset.json          nnU-Net keys + symtc_axes, symtc_orientation, symtc_label_map, symtc_conversion
      label_map.json        LabelMap: nnU-Net classes <-> source values (reverse mapping)
      source_cases.json     case -> source files, source orientation, patient group, subset
      splits_final.json     folds grouping every case of one patient (copied by nnU-Net into preprocessed)
      imagesTr/ labelsTr/ imagesTs/ labelsTs/   <case>_0000.nii.gz, <case>.nii.gz

Output is written to ``nnUNet_raw/.symtc-convert-*`` (a name nnU-Net never matches) and renamed to
its final name only when complete. Re-running a conversion gives byte-identical files.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from nnunetv2_symtc.io import Geometry, PathLike, reorient, to_sitk
from nnunetv2_symtc.labels import LabelMap
from nnunetv2_symtc.dataset_conversion.validation import MAX_LISTED, ConversionError, Problem, ProblemFound, group_by_case
from nnunetv2_symtc.errors import InputError

FILE_ENDING = ".nii.gz"
TRAIN, TEST = "Tr", "Ts"
"""Subset suffixes of nnU-Net's folders (imagesTr / imagesTs)."""
LABEL_MAP_FILE = "label_map.json"
SOURCE_CASES_FILE = "source_cases.json"
SPLITS_FILE = "splits_final.json"
TEMP_PREFIX = ".symtc-convert-"
SPLIT_SEED = 12345
MAX_FOLDS = 5


def image_path(folder: Path, subset: str, case: str, channel: int = 0) -> Path:
    return folder / f"images{subset}" / f"{case}_{channel:04d}{FILE_ENDING}"


def label_path(folder: Path, subset: str, case: str) -> Path:
    return folder / f"labels{subset}" / f"{case}{FILE_ENDING}"


def side_path(folder: Path, kind: str, subset: str, case: str, ending: str = FILE_ENDING) -> Path:
    """A per-case side file, e.g. ``instancesTr/<case>.nii.gz`` or ``landmarksTs/<case>.npz``."""
    return folder / f"{kind}{subset}" / f"{case}{ending}"


def write_json(path: PathLike, data: Any) -> None:
    """JSON with a fixed layout (keys in insertion order, 2-space indent, trailing newline)."""
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")


def write_volume(path: Path, array_zyx: np.ndarray, geometry: Geometry) -> None:
    """Compressed NIfTI with ``geometry``; deterministic bytes (no timestamps in the gzip stream)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(to_sitk(array_zyx, geometry), str(path), True)


def reoriented(array_zyx: np.ndarray, geometry: Geometry, orientation: Optional[str]) -> Tuple[np.ndarray, Geometry]:
    """Permute/flip the voxel grid to ``orientation`` (``None`` keeps it); world positions unchanged."""
    if orientation is None or geometry.orientation == orientation:
        return array_zyx, geometry
    image = reorient(to_sitk(array_zyx, geometry), orientation)
    return sitk.GetArrayFromImage(image), Geometry.from_sitk(image)


def direction_for(orientation: str) -> Tuple[float, ...]:
    """Axis-aligned ITK direction matrix (row-major) whose orientation code is ``orientation``."""
    lps = {"L": (1, 0, 0), "R": (-1, 0, 0), "P": (0, 1, 0), "A": (0, -1, 0), "S": (0, 0, 1), "I": (0, 0, -1)}
    columns = np.array([lps[c] for c in orientation], dtype=float).T
    return tuple(float(v) for v in columns.ravel())


def label_dtype(num_classes: int):
    return np.uint8 if num_classes <= 255 else np.uint16


# --------------------------------------------------------------------------------------------
# per-case jobs
# --------------------------------------------------------------------------------------------
@dataclass
class CaseJob:
    """One nnU-Net case to produce: identifier, ``TRAIN``/``TEST``, patient group, source payload."""

    case: str
    subset: str
    group: str
    payload: Any


@dataclass
class CaseResult:
    """What a worker reports back: problems (case skipped) or the record for ``source_cases.json``."""

    case: str
    subset: str
    group: str
    problems: List[Problem] = field(default_factory=list)
    record: Dict[str, Any] = field(default_factory=dict)
    label_values: Tuple[int, ...] = ()


def _init_worker() -> None:
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)


class _JobRunner:
    """Picklable ``job -> result`` for ``Pool.imap``; a job's ``ProblemFound`` becomes its result."""

    def __init__(self, worker: Callable[[CaseJob, Path], CaseResult], folder: Path):
        self.worker, self.folder = worker, folder

    def __call__(self, job: CaseJob) -> CaseResult:
        try:
            return self.worker(job, self.folder)
        except ProblemFound as e:
            return CaseResult(job.case, job.subset, job.group,
                              [Problem(p.file, p.message, p.case or job.case) for p in e.problems])


def run_jobs(worker: Callable[[CaseJob, Path], CaseResult], jobs: Sequence[CaseJob], folder: Path,
             num_processes: int, strict: bool, desc: str) -> Tuple[List[CaseResult], List[Problem]]:
    """Run ``worker`` on every job (``num_processes`` spawned processes, results in job order).

    Returns the successful results and the problems of the failed ones. ``strict`` raises
    ``ConversionError`` at the first problem instead.
    """
    runner = _JobRunner(worker, folder)
    results: List[CaseResult] = []
    problems: List[Problem] = []
    progress = tqdm(total=len(jobs), desc=desc, unit="case", disable=None, file=sys.stderr)

    def consume(stream: Iterable[CaseResult]) -> None:
        for result in stream:
            progress.update()
            if result.problems:
                if strict:
                    raise ConversionError(result.problems[:1], "stopped at the first problem (--strict):")
                problems.extend(result.problems)
            else:
                results.append(result)

    try:
        if num_processes <= 1 or len(jobs) <= 1:
            consume(runner(job) for job in jobs)
        else:
            context = multiprocessing.get_context("spawn")
            with context.Pool(min(num_processes, len(jobs)), initializer=_init_worker) as pool:
                consume(pool.imap(runner, jobs, chunksize=max(1, min(16, len(jobs) // (4 * num_processes)))))
    finally:
        progress.close()
    return results, problems


# --------------------------------------------------------------------------------------------
# splits
# --------------------------------------------------------------------------------------------
def grouped_splits(case_groups: Dict[str, str], max_folds: int = MAX_FOLDS,
                   seed: int = SPLIT_SEED) -> Tuple[List[Dict[str, List[str]]], str]:
    """Cross-validation folds in which every case of one group (patient) is in the same fold.

    ``max_folds`` folds when there are that many groups; otherwise one fold per group (at least
    2). A single group gives one fold that trains and validates on the same cases. Returns nnU-Net's
    ``splits_final.json`` content and a sentence describing it.
    """
    groups = sorted(set(case_groups.values()))
    if not groups:
        raise InputError("no training cases to split")
    if len(groups) == 1:
        cases = sorted(case_groups)
        return ([{"train": cases, "val": cases}],
                f"only 1 patient ({groups[0]}): a single fold that trains and validates on the same "
                f"{len(cases)} case(s); prefer `-f all`")
    num_folds = min(max_folds, len(groups))
    order = np.random.RandomState(seed).permutation(len(groups))
    fold_of_group = {groups[g]: position % num_folds for position, g in enumerate(order)}
    splits = []
    for fold in range(num_folds):
        val = sorted(c for c, g in case_groups.items() if fold_of_group[g] == fold)
        train = sorted(c for c, g in case_groups.items() if fold_of_group[g] != fold)
        splits.append({"train": train, "val": val})
    note = f"{num_folds} folds grouped by patient ({len(groups)} patients, {len(case_groups)} cases)"
    if num_folds < max_folds:
        note += f"; fewer than {max_folds} patients, so only {num_folds} folds"
    return splits, note


# --------------------------------------------------------------------------------------------
# the dataset folder
# --------------------------------------------------------------------------------------------
def raw_folder(raw_dir: Optional[PathLike] = None) -> Path:
    """``raw_dir`` or ``$nnUNet_raw`` (which must exist)."""
    if raw_dir is None:
        if not os.environ.get("nnUNet_raw"):
            raise InputError("nnUNet_raw is not set; export it or pass an output folder (-o)")
        raw_dir = os.environ["nnUNet_raw"]
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    return raw_dir


def datasets_with_id(parent: Optional[Path], dataset_id: int) -> List[Path]:
    """Folders ``DatasetXXX_*`` of ``dataset_id`` in ``parent`` (nnU-Net's own matching rule)."""
    if parent is None or not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir() if p.is_dir() and p.name.startswith(f"Dataset{dataset_id:03d}_"))


def _env_folder(variable: str) -> Optional[Path]:
    return Path(os.environ[variable]) if os.environ.get(variable) else None


class DatasetFolder:
    """A dataset being written: a temporary folder that ``finish`` moves to ``DatasetXXX_Name``.

    Refuses an existing raw or preprocessed dataset with the same id unless ``overwrite``; then
    ``finish`` replaces the raw one and removes the stale ``nnUNet_preprocessed/DatasetXXX_*`` (its
    plans and ``splits_final.json`` describe the old data; nnU-Net would keep the old splits).
    Results trained on the old data are kept, with a warning. Use as a context manager: the temporary folder is
    removed if anything fails.
    """

    def __init__(self, dataset_id: int, dataset_name: str, raw_dir: Optional[PathLike] = None,
                 overwrite: bool = False):
        if not 1 <= int(dataset_id) <= 999:
            raise InputError(f"dataset id {dataset_id} must be 1-999 (nnU-Net's DatasetXXX)")
        if not dataset_name or any(c in dataset_name for c in "/\\ ") or "__" in dataset_name:
            raise InputError(f"dataset name {dataset_name!r} must be non-empty without spaces, slashes or '__'")
        self.dataset_id = int(dataset_id)
        self.raw_dir = raw_folder(raw_dir)
        self.target = self.raw_dir / f"Dataset{self.dataset_id:03d}_{dataset_name}"
        self.overwrite = overwrite
        self._refuse_existing()
        self.folder = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=self.raw_dir))

    def _refuse_existing(self) -> None:
        if self.overwrite:
            return
        existing = datasets_with_id(self.raw_dir, self.dataset_id) + datasets_with_id(_env_folder("nnUNet_preprocessed"),
                                                                                       self.dataset_id)
        if existing:
            raise InputError(f"{existing[0]} already exists (dataset id {self.dataset_id}); pass --overwrite "
                             "(overwrite=True) to replace it, or choose another id")

    def __enter__(self) -> "DatasetFolder":
        return self

    def __exit__(self, *exc) -> None:
        if self.folder.exists():
            shutil.rmtree(self.folder)

    def finish(self) -> Path:
        """Move the completed folder into place (replacing old datasets of this id if ``overwrite``)."""
        self._refuse_existing()
        for old in datasets_with_id(self.raw_dir, self.dataset_id):
            print(f"removing existing raw dataset {old} (--overwrite)")
            shutil.rmtree(old)
        for stale in datasets_with_id(_env_folder("nnUNet_preprocessed"), self.dataset_id):
            print(f"removing stale preprocessed dataset {stale} (its plans and splits describe the old data)")
            shutil.rmtree(stale)
        for trained in datasets_with_id(_env_folder("nnUNet_results"), self.dataset_id):
            warnings.warn(f"{trained} holds results trained on the old dataset {self.dataset_id}; they are kept")
        os.replace(self.folder, self.target)
        return self.target


def finish_dataset(folder: DatasetFolder, *, results: Sequence[CaseResult], problems: Sequence[Problem],
                   label_map: LabelMap, channel_names: Dict[str, str], source: str, source_root: PathLike,
                   options: Dict[str, Any], reverse_map: str, orientation: Optional[str],
                   extra_json: Optional[Dict[str, Any]] = None) -> Path:
    """Write ``dataset.json``, ``label_map.json``, ``source_cases.json`` and ``splits_final.json``,
    report skipped cases, and move the dataset into place. Raises if no training case is left."""
    results = sorted(results, key=lambda r: r.case)
    train = [r for r in results if r.subset == TRAIN]
    skipped = group_by_case(problems)
    if not train:
        raise ConversionError(problems, f"no valid training case found in {source_root}:")
    geometries = {Geometry(**r.record["geometry"]) for r in results}
    orientations = sorted({g.orientation for g in geometries})
    if len(orientations) != 1:
        raise InputError(f"cases have different orientations {orientations}; nnU-Net needs one orientation per dataset "
                         "(do not use keep-orientation for this data)")
    axes = next(iter(geometries)).anatomical_axes()
    splits, split_note = grouped_splits({r.case: r.group for r in train})
    dataset_json = {
        "name": folder.target.name.split("_", 1)[1],
        "channel_names": channel_names,
        "labels": label_map.dataset_json_labels(),
        "numTraining": len(train),
        "file_ending": FILE_ENDING,
        "symtc_axes": {k: axes[k] for k in ("left_right", "superior_inferior", "anterior_posterior")},
        "symtc_orientation": orientations[0],
        "symtc_label_map": LABEL_MAP_FILE,
        "symtc_conversion": {
            "source": source,
            "source_root": str(Path(source_root).resolve()),
            "options": options,
            "reoriented_to": orientation,
            "reverse_map": reverse_map,
            "splits": split_note,
            "num_test": len(results) - len(train),
            "skipped_cases": skipped,
        },
        **(extra_json or {}),
    }
    write_json(folder.folder / "dataset.json", dataset_json)
    label_map.save(folder.folder / LABEL_MAP_FILE)
    write_json(folder.folder / SOURCE_CASES_FILE, {r.case: r.record for r in results})
    write_json(folder.folder / SPLITS_FILE, splits)
    for subset in (TRAIN, TEST):  # nnU-Net expects these folders even when empty
        (folder.folder / f"images{subset}").mkdir(exist_ok=True)
    (folder.folder / "labelsTr").mkdir(exist_ok=True)
    target = folder.finish()
    print(f"wrote {target}: {len(train)} training and {len(results) - len(train)} test cases; {split_note}")
    print(f"labels: {label_map.scheme}; mapping back to source values: {reverse_map}")
    if problems:
        print(f"SKIPPED {len(skipped)} case(s) because of {len(problems)} problem(s):", file=sys.stderr)
        for p in problems[:MAX_LISTED]:
            print(f"  {p}", file=sys.stderr)
        if len(problems) > MAX_LISTED:
            print(f"  ... and {len(problems) - MAX_LISTED} more (all in {target / 'dataset.json'})", file=sys.stderr)
    return target


def skipped_cases(dataset_folder: PathLike) -> Dict[str, List[str]]:
    """Cases a conversion skipped, with their problems (empty when none), from ``dataset.json``."""
    with open(Path(dataset_folder) / "dataset.json") as f:
        return json.load(f).get("symtc_conversion", {}).get("skipped_cases", {})


def fail_fast(problems: Sequence[Problem], strict: bool) -> None:
    """In ``strict`` mode, raise on the first of ``problems`` found before the per-case jobs."""
    if strict and problems:
        raise ConversionError(problems[:1], "stopped at the first problem (--strict):")
