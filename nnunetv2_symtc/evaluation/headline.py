"""Headline scores of a two-phase spine segmentation, as the demo prints them.

Definitions (issue 13; arrays in SPINEPS values, same grid):

- **Whole vertebrae:** Dice of the union of the vertebra subregions 41–50 and the sacrum 26
  (endplates 52, 53, 62 are not counted).
- **Discs:** Dice of label 100. **Canal:** Dice of the union of 60 and 61.
- **Vertebra PQ:** panoptic quality at IoU > 0.5 over vertebra instance ids 1–25 and 28 (the sacrum,
  discs and endplates are left out of both maps; a vertebra cut by the field of view counts).
- **Level accuracy:** a reference vertebra (same ids) is correctly named when the majority non-zero
  id of the predicted instance map inside it equals its own id; no predicted voxel there is wrong.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from nnunetv2_symtc.evaluation.metrics import dice, instance_metrics
from nnunetv2_symtc.labels import (DISC, SACRUM, SACRUM_ID, SPINAL_CANAL, SPINAL_CORD, VERTEBRA_IDS_TOP_TO_BOTTOM,
                                   VERTEBRA_VALUES)

WHOLE_VERTEBRA_VALUES: Tuple[int, ...] = VERTEBRA_VALUES + (SACRUM,)
CANAL_VALUES: Tuple[int, ...] = (SPINAL_CORD, SPINAL_CANAL)
SCORED_VERTEBRA_IDS: Tuple[int, ...] = tuple(i for i in VERTEBRA_IDS_TOP_TO_BOTTOM if i != SACRUM_ID)
"""Instance ids scored by PQ and level accuracy: 1–25 and 28 (T13); not the sacrum."""

SEMANTIC_GROUPS: Dict[str, Tuple[int, ...]] = {"vertebrae": WHOLE_VERTEBRA_VALUES, "discs": (DISC,),
                                               "canal": CANAL_VALUES}


def union_dice(reference: np.ndarray, prediction: np.ndarray, values: Sequence[int]) -> float:
    """Dice of ``isin(reference, values)`` against ``isin(prediction, values)``; NaN if both are empty."""
    ref, pred = np.isin(reference, values), np.isin(prediction, values)
    if not ref.any() and not pred.any():
        return float("nan")
    return dice(ref, pred)


def vertebrae_only(instance: np.ndarray) -> np.ndarray:
    """``instance`` with every value outside ``SCORED_VERTEBRA_IDS`` set to 0."""
    return np.where(np.isin(instance, SCORED_VERTEBRA_IDS), instance, 0)


def level_naming(reference: np.ndarray, prediction: np.ndarray) -> Tuple[int, int]:
    """(correctly named, total) reference vertebrae among ``SCORED_VERTEBRA_IDS``."""
    correct = total = 0
    for vertebra in np.unique(reference):
        if vertebra not in SCORED_VERTEBRA_IDS:
            continue
        total += 1
        inside = prediction[(reference == vertebra) & (prediction > 0)]
        if inside.size:
            values, counts = np.unique(inside, return_counts=True)
            correct += int(values[np.argmax(counts)] == vertebra)
    return correct, total


def score_case(reference_semantic: np.ndarray, predicted_semantic: np.ndarray,
               reference_instance: np.ndarray, predicted_instance: np.ndarray) -> Dict[str, float]:
    """Union Dice per group, vertebra PQ/SQ/RQ and level naming counts of one case."""
    row = {f"Dice {g}": union_dice(reference_semantic, predicted_semantic, v) for g, v in SEMANTIC_GROUPS.items()}
    panoptic, _ = instance_metrics(vertebrae_only(reference_instance), vertebrae_only(predicted_instance))
    row.update(PQ=panoptic["pq"], SQ=panoptic["sq"], RQ=panoptic["rq"])
    row["levels correct"], row["levels total"] = level_naming(reference_instance, predicted_instance)
    return row


def aggregate(rows: Sequence[Dict[str, float]]) -> Dict[str, float]:
    """Mean over cases (NaN skipped) of every score; level accuracy pooled over all vertebrae."""
    keys = [k for k in rows[0] if not k.startswith("levels ")]
    summary = {k: float(np.nanmean([r[k] for r in rows])) for k in keys}
    total = sum(r["levels total"] for r in rows)
    summary["level accuracy"] = sum(r["levels correct"] for r in rows) / total if total else float("nan")
    return summary


def score_folders(reference_semantic: Path, predicted_semantic: Path, reference_instance: Path,
                  predicted_instance: Path) -> Tuple[Dict[str, float], List[dict]]:
    """Score every case of four folders paired by file name; returns (aggregate, per-case rows)."""
    from nnunetv2_symtc.evaluation.report import pair_files, split_ending
    from nnunetv2_symtc.inference.inputs import SUFFIXES
    from nnunetv2_symtc.io import read_image

    semantic_tag, instance_tag = (split_ending(SUFFIXES[kind])[0] for kind in ("semantic", "instance"))
    semantic_pairs = pair_files(reference_semantic, predicted_semantic)
    instance_pairs = {case: (r, p) for case, r, p in pair_files(reference_instance, predicted_instance)}
    rows = []
    for case, ref_sem, pred_sem in semantic_pairs:
        case_instance = case.removesuffix(semantic_tag) + instance_tag
        if case_instance not in instance_pairs:
            raise ValueError(f"{ref_sem}: no instance mask {case_instance} in {reference_instance}")
        ref_inst, pred_inst = instance_pairs[case_instance]
        arrays = [read_image(p)[0] for p in (ref_sem, pred_sem, ref_inst, pred_inst)]
        rows.append({"case": case, **score_case(*arrays)})
    if not rows:
        raise ValueError(f"{reference_semantic}: no case to score")
    return aggregate([{k: v for k, v in r.items() if k != "case"} for r in rows]), rows
