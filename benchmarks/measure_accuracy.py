"""Accuracy of ``symtc measure`` on the phantom's reference masks against its true anatomy (prints a table).

    python benchmarks/measure_accuracy.py [-n 3] [--out benchmarks/results/measure_accuracy.md]
    python benchmarks/measure_accuracy.py --predicted DEMO_OUT/two_phase/<variant> [--demo-seed 0] [--budget cpu]

Subjects: ``-n`` seeds for each controlled variation (``VARIATIONS``: the random spine, thin
discs, a short body, slips, flat and deep lordosis), drawn with 4 mm sagittal slices at 1 mm and
at 2 mm (the demo's) in-plane spacing. Truth: ``phantom.truth`` (the shape model, not the masks).
Per measurement: the mean and largest absolute error over every level measured in both, and the
share of true values that were measured. Targets (issue 20): at 1 mm in-plane, mean absolute
error <= 0.5 mm for heights and diameters, <= 2 degrees for angles. ``--predicted``: the same
errors on the masks ``symtc demo`` predicted for its held-out subjects (their truth from their seeds).
"""
import argparse
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import SimpleITK as sitk

from nnunetv2_symtc.measurement import LEVEL_FIELDS, measure_images, measure_masks
from nnunetv2_symtc.phantom import PhantomConfig, generate_subject
from nnunetv2_symtc.phantom.anatomy import ShapeVariation
from nnunetv2_symtc.phantom.truth import true_measurements

VARIATIONS: Dict[str, ShapeVariation] = {
    "random": ShapeVariation(),
    "thin L4/L5, L5/S1 discs (x0.45)": ShapeVariation(disc_height_factors=((23, 0.45), (24, 0.45))),
    "short L2 body (x0.75)": ShapeVariation(body_height_factors=((21, 0.75),)),
    "L4 slip 6 mm": ShapeVariation(slips_mm=((23, 6.0),)),
    "L5 slip 9 mm": ShapeVariation(slips_mm=((24, 9.0),)),
    "flat lordosis (x0.3)": ShapeVariation(lordosis_scale=0.3),
    "deep lordosis (x1.6)": ShapeVariation(lordosis_scale=1.6),
}
SPACINGS = {"1 mm": (4.0, 1.0, 1.0), "2 mm (demo)": (4.0, 2.0, 2.0)}
"""In-plane spacings measured (PIR mm: 4 mm sagittal slices)."""
N_SLICES = 15
TARGETS = {"mm": 0.5, "deg": 2.0}
"""Mean absolute error targets at 1 mm in-plane, by unit."""
LORDOSIS = "lumbar_lordosis_deg"


def _unit(field: str) -> str:
    return field.rsplit("_", 1)[-1] if field.endswith(("_mm", "_deg", "_percent")) else ""


def compare(measured, truth) -> Dict[str, List[float]]:
    """Signed errors (measured - true) per measurement, and NaN for true values not measured."""
    errors: Dict[str, List[float]] = {f: [] for f in LEVEL_FIELDS if "volume" not in f}
    errors[LORDOSIS] = []
    for row in truth.levels:
        try:
            got = measured.level(row.level)
        except KeyError:
            continue
        for field in errors:
            if field != LORDOSIS and row.values[field] is not None:
                value = got.values[field]
                errors[field].append(np.nan if value is None else value - row.values[field])
    if truth.lumbar_lordosis_deg is not None:
        value = measured.lumbar_lordosis_deg
        errors[LORDOSIS].append(np.nan if value is None else value - truth.lumbar_lordosis_deg)
    return errors


def error_table(errors: Dict[str, Dict[str, List[float]]], target_column: str) -> Tuple[str, List[str]]:
    """Markdown table of mean/largest absolute errors and coverage per measurement and column,
    and the measurements whose mean error in ``target_column`` misses ``TARGETS``."""
    columns = list(errors)
    header = "| measurement | " + " | ".join(f"MAE {c} | max {c} | measured {c}" for c in columns) + " | target |"
    lines = [header, "|" + "---|" * (2 + 3 * len(columns))]
    failed = []
    for field in errors[columns[0]]:
        cells = []
        for column in columns:
            e = np.asarray(errors[column][field], dtype=float)
            found = np.abs(e[np.isfinite(e)])
            cells.append(f"{found.mean():.2f} | {found.max():.2f} | {found.size}/{e.size}" if found.size else "- | - | 0")
        target = TARGETS.get(_unit(field))
        if target is not None and target_column in errors:
            e = np.asarray(errors[target_column][field], dtype=float)
            if not np.isfinite(e).any() or float(np.abs(e[np.isfinite(e)]).mean()) > target:
                failed.append(field)
        lines.append(f"| {field} | " + " | ".join(cells) + f" | {'' if target is None else f'<= {target}'} |")
    return "\n".join(lines), failed


def predicted_errors(folder: Path, demo_seed: int, budget: str) -> Dict[str, List[float]]:
    """Errors of the measurements on a folder of predicted masks of the demo's held-out subjects
    (``<case>_seg-vert_msk.nii.gz`` with case ``sub-<id>_T2w``, drawn with seed ``demo_seed + id``
    under the demo budget ``budget``'s phantom) against those subjects' truth."""
    from nnunetv2_symtc.demo import BUDGETS
    from nnunetv2_symtc.measurement.tables import find_mask_pairs

    errors: Dict[str, List[float]] = {}
    config = replace(BUDGETS[budget].phantom, sequences=())
    for case, semantic, instance in find_mask_pairs(folder):
        subject_id = case[len("sub-"):].split("_")[0]
        if not case.startswith("sub-") or not subject_id.isdigit():
            raise ValueError(f"{case}: not a demo case name (sub-<id>_T2w)")
        truth = true_measurements(generate_subject(demo_seed + int(subject_id), config).anatomy, case)
        measured = measure_images(sitk.ReadImage(str(semantic)), sitk.ReadImage(str(instance)), case)
        for field, values in compare(measured, truth).items():
            errors.setdefault(field, []).extend(values)
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=3, help="seeds per variation")
    parser.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    parser.add_argument("--predicted", type=Path, default=None, metavar="FOLDER",
                        help="instead: errors on the demo's predicted masks in FOLDER (e.g. DEMO_OUT/two_phase/<variant>)")
    parser.add_argument("--demo-seed", type=int, default=0, help="with --predicted: the demo's --seed")
    parser.add_argument("--budget", default="cpu", help="with --predicted: the demo's budget")
    args = parser.parse_args()
    if args.predicted is not None:
        table, _ = error_table({"predicted": predicted_errors(args.predicted, args.demo_seed, args.budget)}, "")
        summary = f"predicted masks in {args.predicted} against the phantom truth"
    else:
        errors: Dict[str, Dict[str, List[float]]] = {name: {} for name in SPACINGS}
        for variation_name, variation in VARIATIONS.items():
            for seed in range(args.n):
                truth = None
                for spacing_name, spacing in SPACINGS.items():
                    config = PhantomConfig(spacing_zyx=spacing, n_slices=N_SLICES, sequences=(), variation=variation)
                    subject = generate_subject(seed, config)
                    if truth is None:
                        truth = true_measurements(subject.anatomy, f"seed {seed}")
                    measured = measure_masks(subject.spine_mask, subject.vert_mask, subject.geometry.spacing_zyx)
                    for field, values in compare(measured, truth).items():
                        errors[spacing_name].setdefault(field, []).extend(values)
            print(f"done: {variation_name}", flush=True)
        table, failed = error_table(errors, "1 mm")
        summary = (f"{args.n} seed(s) x {len(VARIATIONS)} variations, 4 mm sagittal slices; target column: 1 mm; "
                   + ("every target met at 1 mm in-plane" if not failed
                      else f"targets missed at 1 mm: {', '.join(failed)}"))
    print(table)
    print(summary)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(f"# `symtc measure` against phantom truth\n\n{summary}\n\n{table}\n")


if __name__ == "__main__":
    main()
