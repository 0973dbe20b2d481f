"""Measurement files: a folder of two-phase outputs in, CSV and JSON out.

- ``measurements.csv``: one row per case and level (``CSV_COLUMNS``), empty cells for values
  not measured and their reasons in ``reasons`` (``field: reason; ...``);
- ``spine.csv``: one row per case, the lumbar lordosis and why a case has no levels;
- ``<case>_measurements.json``: the same for one case (``measurements_to_json``);
- ``<case>_measurements.png``: the heights and canal diameters drawn on the mid-sagittal slice.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import SimpleITK as sitk

from nnunetv2_symtc.errors import InputError, InputFileError
from nnunetv2_symtc.inference.inputs import SUFFIXES
from nnunetv2_symtc.io import Geometry, PathLike, reorient
from nnunetv2_symtc.measurement.definitions import LEVEL_FIELDS, SpineMeasurements
from nnunetv2_symtc.measurement.drawing import draw_measurements
from nnunetv2_symtc.measurement.masks import measure_images

CSV_COLUMNS: Tuple[str, ...] = ("case", "level", "vertebra_id", "disc") + LEVEL_FIELDS + ("reasons",)
SPINE_COLUMNS: Tuple[str, ...] = ("case", "levels", "lumbar_lordosis_deg", "lordosis_reason", "reason")
MEASUREMENTS_SUFFIX = "_measurements.json"
DRAWING_SUFFIX = "_measurements.png"


def _rounded(value: Optional[float], digits: int = 3) -> Optional[float]:
    return None if value is None else round(float(value), digits)


def measurements_to_json(m: SpineMeasurements) -> Dict:
    """A JSON-ready dict of one case: levels (values rounded to 0.001, reasons), lordosis, reasons."""
    return {"case": m.case, "reason": m.reason, "lumbar_lordosis_deg": _rounded(m.lumbar_lordosis_deg),
            "lordosis_reason": m.lordosis_reason,
            "levels": [{"level": row.level, "vertebra_id": row.vertebra_id, "disc": row.disc,
                        **{f: _rounded(row.values[f]) for f in LEVEL_FIELDS}, "reasons": dict(row.reasons)}
                       for row in m.levels]}


def _cell(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.2f}"


def write_tables(out: PathLike, results: Sequence[SpineMeasurements]) -> Path:
    """Write ``measurements.csv``, ``spine.csv`` and one JSON per case into ``out``; returns the CSV path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "measurements.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for m in results:
            for row in m.levels:
                reasons = "; ".join(f"{k}: {v}" for k, v in row.reasons.items())
                writer.writerow([m.case, row.level, row.vertebra_id, row.disc]
                                + [_cell(row.values[f]) for f in LEVEL_FIELDS] + [reasons])
    with open(out / "spine.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(SPINE_COLUMNS)
        for m in results:
            writer.writerow([m.case, len(m.levels), _cell(m.lumbar_lordosis_deg), m.lordosis_reason, m.reason])
    for m in results:
        with open(out / f"{m.case}{MEASUREMENTS_SUFFIX}", "w") as f:
            json.dump(measurements_to_json(m), f, indent=1)
    return out / "measurements.csv"


def find_mask_pairs(folder: PathLike) -> List[Tuple[str, Path, Path]]:
    """(case, semantic path, instance path) of every ``<case>_seg-spine_msk.nii.gz`` /
    ``<case>_seg-vert_msk.nii.gz`` pair in ``folder``. ``InputFileError`` for a missing folder,
    no masks at all, or a mask without its partner."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(f"{folder}: mask folder not found")
    found: Dict[str, Dict[str, Path]] = {}
    for path in sorted(folder.iterdir()):
        for kind in ("semantic", "instance"):
            if path.name.endswith(SUFFIXES[kind]):
                found.setdefault(path.name[:-len(SUFFIXES[kind])], {})[kind] = path
    if not found:
        raise InputFileError(f"{folder}: no {SUFFIXES['semantic']} / {SUFFIXES['instance']} masks")
    unpaired = [f"{case} (no {SUFFIXES['instance' if 'semantic' in kinds else 'semantic']})"
                for case, kinds in found.items() if len(kinds) < 2]
    if unpaired:
        raise InputFileError(f"{folder}: masks without their partner: {', '.join(unpaired)}")
    return [(case, kinds["semantic"], kinds["instance"]) for case, kinds in found.items()]


def _read(path: Path) -> sitk.Image:
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise InputFileError(f"{path}: cannot be read as an image ({str(e).strip().splitlines()[-1]})") from None


def measure_folder(folder: PathLike, out: PathLike) -> Tuple[List[SpineMeasurements], List[str]]:
    """Measure every mask pair in ``folder`` and write the tables and drawings into ``out``: (measured
    cases, errors). A case whose files are unreadable or not on one grid is an error (named,
    the other cases are still measured); missing structures give empty values with reasons."""
    results, errors = [], []
    for case, semantic_path, instance_path in find_mask_pairs(folder):
        try:
            semantic, instance = _read(semantic_path), _read(instance_path)
            results.append(measure_images(semantic, instance, case))
        except InputError as e:
            errors.append(str(e))
            continue
        semantic_pir, instance_pir = reorient(semantic), reorient(instance)
        Path(out).mkdir(parents=True, exist_ok=True)
        draw_measurements(Path(out) / f"{case}{DRAWING_SUFFIX}", sitk.GetArrayFromImage(semantic_pir),
                          sitk.GetArrayFromImage(instance_pir), Geometry.from_sitk(semantic_pir).spacing_zyx,
                          results[-1])
    write_tables(out, results)
    return results, errors
