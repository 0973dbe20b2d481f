"""Write phantom subjects in the three source formats we convert from (files only at this edge).

- SPIDER: ``images/<pid>_<seq>.mha``, ``masks/<pid>_<seq>.mha`` and ``overview.csv``, stored in
  ``SPIDER_ORIENTATION`` (not PIR, so converters must reorient).
- SPINEPS: flat ``sub-<id>_T2w.nii.gz``, ``sub-<id>_seg-spine_msk.nii.gz``,
  ``sub-<id>_seg-vert_msk.nii.gz`` in PIR (SPINEPS's own orientation).
- SSMSpine: ``{Train,Test}/p<ID>/aug<K>.pt`` (see ``phantom.ssmspine``).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from nnunetv2_symtc import labels as L
from nnunetv2_symtc.io import PathLike, reorient, to_sitk
from nnunetv2_symtc.phantom.subject import PhantomSubject, on_grid

SPIDER_ORIENTATION = "LPS"
"""ITK orientation of SPIDER phantom files: sagittal slices along ITK x (array axis 2), rows of
the array running inferior->superior. A DICOM-to-LPS export; converters reorient to PIR."""
T2_SPACE_SPACING_ZYX = (1.0, 0.9, 0.9)
"""Near-isotropic grid of the 3D T2 SPACE sequence (mm, PIR array order)."""
SPIDER_SEQUENCES = ("t1", "t2", "t2_SPACE")


def _write(image: sitk.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), True)


def _sequence_view(subject: PhantomSubject, sequence: str) -> PhantomSubject:
    """The subject with ``sequence`` rendered: its own grid, or T2 SPACE's near-isotropic grid."""
    if sequence == "t2_SPACE":
        return on_grid(subject, T2_SPACE_SPACING_ZYX, ("t2_SPACE",), seed_offset=2)
    if sequence not in subject.images:
        return on_grid(subject, subject.geometry.spacing_zyx, (sequence,), seed_offset=0)
    return subject


def write_spider(root: PathLike, subjects: Sequence[Tuple[int, PhantomSubject]], sequences: Sequence[str] = ("t2",),
                 validation_pids: Sequence[int] = (), append: bool = False) -> Path:
    """Write subjects as a SPIDER-style dataset under ``root``; returns the ``overview.csv`` path.

    Masks use SPIDER labels (``PhantomSubject.spider_mask``); every sequence of a patient shows
    the same anatomy. Patients in ``validation_pids`` get ``subset = validation``. With
    ``append``, rows are added to an existing ``overview.csv`` (to write subjects one at a time).
    """
    root = Path(root)
    unknown = [s for s in sequences if s not in SPIDER_SEQUENCES]
    if unknown:
        raise ValueError(f"unknown SPIDER sequences {unknown}; choose from {SPIDER_SEQUENCES}")
    rows = []
    validation = {int(p) for p in validation_pids}
    for pid, subject in subjects:
        if int(pid) != pid or pid < 0:
            raise ValueError(f"SPIDER patient ids are non-negative integers, got {pid!r}")
        for sequence in sequences:
            view = _sequence_view(subject, sequence)
            name = f"{int(pid)}_{sequence}"
            image = reorient(to_sitk(view.images[sequence].astype(np.float32), view.geometry), SPIDER_ORIENTATION)
            mask = reorient(to_sitk(view.spider_mask(), view.geometry), SPIDER_ORIENTATION)
            _write(image, root / "images" / f"{name}.mha")
            _write(mask, root / "masks" / f"{name}.mha")
            rows.append({"new_file_name": name, "patient_id": int(pid), "sequence": sequence,
                         "subset": "validation" if int(pid) in validation else "training",
                         "num_vertebrae": len([v for v in view.vertebra_ids if v != L.SACRUM_ID]),
                         "spacing_zyx": "x".join(f"{s:g}" for s in view.geometry.spacing_zyx)})
    overview = root / "overview.csv"
    root.mkdir(parents=True, exist_ok=True)
    if append and overview.exists():
        with open(overview, newline="") as f:
            rows = list(csv.DictReader(f)) + rows
    with open(overview, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["new_file_name", "subset"])
        writer.writeheader()
        writer.writerows(rows)
    return overview


GENERATION_SUFFIX = "_seg-generation_msk.nii.gz"
"""File ending of a subject's generation label map (``write_spineps(generation_labels=True)``);
SPINEPS converters ignore it (``seg-generation`` is no SPINEPS mask)."""


def write_spineps(root: PathLike, subjects: Sequence[Tuple[str, PhantomSubject]],
                  generation_labels: bool = False) -> Path:
    """Write subjects flat under ``root`` as SPINEPS/BIDS files (T2w image, semantic ``seg-spine``
    and instance ``seg-vert`` masks), in PIR. Returns ``root``. ``generation_labels`` also writes
    each subject's generation label map (``sub-<id>`` + ``GENERATION_SUFFIX``, on the image's grid)."""
    root = Path(root)
    for subject_id, subject in subjects:
        subject_id = str(subject_id)
        if not subject_id or not subject_id.replace("-", "").isalnum() or "_" in subject_id:
            raise ValueError(f"BIDS subject ids are alphanumeric (no '_'), got {subject_id!r}")
        view = _sequence_view(subject, "t2")
        stem = root / f"sub-{subject_id}"
        _write(to_sitk(view.images["t2"].astype(np.float32), view.geometry), Path(f"{stem}_T2w.nii.gz"))
        _write(to_sitk(view.spine_mask, view.geometry), Path(f"{stem}_seg-spine_msk.nii.gz"))
        _write(to_sitk(view.vert_mask, view.geometry), Path(f"{stem}_seg-vert_msk.nii.gz"))
        if generation_labels:
            _write(to_sitk(view.generation_labels, view.geometry), Path(f"{stem}{GENERATION_SUFFIX}"))
    return root


def write_ssmspine(root: PathLike, n_patients: int, augs: int = 2, seed: int = 0, progress: bool = False,
                   n_test: Optional[int] = None) -> Path:
    """Write ``n_patients`` SSMSpine-style patients with ``augs`` images each under ``root``
    (``Train``/``Test`` split by patient: the last ``n_test``, by default about 20 % and at least
    one when n >= 2, are Test). Values are torch tensors. ``progress`` shows a tqdm bar over patients."""
    import torch
    from tqdm import tqdm

    from nnunetv2_symtc.phantom.ssmspine import generate_ssmspine_sample, ssmspine_split

    root = Path(root)
    if n_patients < 1 or augs < 1:
        raise ValueError(f"need at least one patient and one aug, got n_patients={n_patients}, augs={augs}")
    for patient, subset in tqdm(ssmspine_split(n_patients, n_test), desc="phantom ssmspine", unit="patient",
                                disable=not progress):
        for aug in range(augs):
            sample = generate_ssmspine_sample(seed, patient, aug)
            path = root / subset / f"p{patient}" / f"aug{aug}.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({k: torch.from_numpy(v) for k, v in sample.items()}, path)
    return root
