"""Segmentation metrics: pure functions on label arrays plus spacing in array order (mm).

Definitions (REFERENCE §7; also written into every ``summary.json`` as ``definitions``):

- **Dice** ``2|R∩P| / (|R|+|P|)``; both empty gives NaN (excluded from means, as in nnU-Net).
- **HD95** (default, medpy's pooled definition): boundary = mask XOR its binary erosion with the
  face-connected structure (connectivity 1) and border value 0; exact Euclidean distance transform
  (``scipy.ndimage.distance_transform_edt`` with ``sampling`` = spacing in array order) to the other
  mask's boundary, in both directions; ``numpy.percentile(pooled, 95)`` with linear interpolation.
  Identical to ``medpy.metric.binary.hd95(pred, ref, voxelspacing=spacing)``.
- **ASSD**: ``"pooled"`` (default, medpy >= 0.5): mean of the pooled distances of both directions;
  ``"mean_of_directed_means"`` (older medpy, panoptica): mean of the two directed mean distances.
- **One mask empty**: the structure is missed; distances are NaN (never 0) and ``missed`` is set.
- **SymTC-compat** (only for comparison with Chen et al. 2024): ``HD95_symtc_px`` is the same HD95
  in voxel units (spacing ignored) with 0 when either mask is empty, and ``Dice_symtc`` is 1 when
  both are empty.

Speed: every structure is cropped to the union bounding box of reference and prediction plus a
one-voxel margin (so the erosion at the crop border behaves as at the image border) before the
distance transforms; bounding boxes of all labels of a case come from one ``find_objects`` pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from scipy.ndimage import binary_erosion, distance_transform_edt, find_objects, generate_binary_structure

Spacing = Sequence[float]
Structures = Mapping[str, Tuple[int, ...]]
"""Structure key -> the label values that make up the structure (one value, or a region)."""

ASSD_DEFINITIONS = ("pooled", "mean_of_directed_means")

DEFINITIONS: Dict[str, str] = {
    "Dice": "2|R&P|/(|R|+|P|); NaN when reference and prediction are both empty (excluded from means).",
    "IoU": "|R&P|/|R|P|; NaN when both are empty.",
    "HD95": "mm. medpy pooled definition: boundary = mask XOR binary_erosion(face-connected structure, "
            "connectivity 1, border value 0); exact Euclidean distance transform with spacing in array "
            "order to the other mask's boundary, both directions pooled; numpy.percentile(.., 95), linear. "
            "NaN when either mask is empty (structure missed, flagged by 'missed').",
    "ASSD": "mm. Average symmetric surface distance over the same boundaries and distances as HD95; "
            "definition named in 'assd_definition': 'pooled' = mean of the pooled distances of both "
            "directions (medpy >= 0.5), 'mean_of_directed_means' = mean of the two directed means "
            "(older medpy, panoptica). NaN when either mask is empty.",
    "volume_ref_mm3": "number of reference voxels x voxel volume (mm^3).",
    "volume_pred_mm3": "number of predicted voxels x voxel volume (mm^3).",
    "missed": "1 when exactly one of reference and prediction is empty (no distance exists), else 0.",
    "HD95_symtc_px": "SymTC-compat only (Chen et al. 2024): the HD95 above in voxel units (spacing ignored), "
                     "0 when either mask is empty. Not comparable with HD95 in mm.",
    "Dice_symtc": "SymTC-compat only: Dice with 1 when both masks are empty.",
}


# ---------------------------------------------------------------------------------------------
# Binary masks
# ---------------------------------------------------------------------------------------------
def boundary(mask: np.ndarray, connectivity: int = 1) -> np.ndarray:
    """Boundary voxels of a boolean mask: ``mask XOR erosion(mask)`` (border value 0)."""
    structure = generate_binary_structure(mask.ndim, connectivity)
    return mask ^ binary_erosion(mask, structure=structure, iterations=1, border_value=0)


def dice(reference: np.ndarray, prediction: np.ndarray) -> float:
    """Dice of two boolean masks; NaN when both are empty."""
    total = int(np.count_nonzero(reference)) + int(np.count_nonzero(prediction))
    return float("nan") if total == 0 else 2.0 * np.count_nonzero(reference & prediction) / total


def union_box(masks: Sequence[np.ndarray], margin: int = 1) -> Optional[Tuple[slice, ...]]:
    """Bounding box of the union of ``masks`` grown by ``margin`` voxels (clipped), or None if empty."""
    union = np.logical_or.reduce([np.asarray(m, dtype=bool) for m in masks])
    box = find_objects(union.astype(np.uint8))
    return None if not box else _grow(box[0], union.shape, margin)


def _grow(box: Tuple[slice, ...], shape: Sequence[int], margin: int) -> Tuple[slice, ...]:
    return tuple(slice(max(s.start - margin, 0), min(s.stop + margin, n)) for s, n in zip(box, shape))


def surface_distances(reference: np.ndarray, prediction: np.ndarray, spacing: Optional[Spacing] = None,
                      connectivity: int = 1, crop: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """Directed boundary distances (mm) ``(prediction -> reference, reference -> prediction)``.

    ``reference``/``prediction``: boolean masks of one shape; ``spacing`` in array order (None = 1).
    Raises ``ValueError`` when either mask is empty.
    """
    reference = np.asarray(reference, dtype=bool)
    prediction = np.asarray(prediction, dtype=bool)
    if not reference.any() or not prediction.any():
        raise ValueError("surface distances need both masks to be non-empty")
    if crop:
        box = union_box([reference, prediction])
        reference, prediction = reference[box], prediction[box]
    return _directed_distances(reference, prediction, spacing, connectivity)


def _directed_distances(reference: np.ndarray, prediction: np.ndarray, spacing: Optional[Spacing],
                        connectivity: int) -> Tuple[np.ndarray, np.ndarray]:
    sampling = None if spacing is None else np.asarray(spacing, dtype=np.float64)
    border_ref, border_pred = boundary(reference, connectivity), boundary(prediction, connectivity)
    pred_to_ref = distance_transform_edt(~border_ref, sampling=sampling)[border_pred]
    ref_to_pred = distance_transform_edt(~border_pred, sampling=sampling)[border_ref]
    return pred_to_ref, ref_to_pred


def hd95_from_distances(pred_to_ref: np.ndarray, ref_to_pred: np.ndarray) -> float:
    """95th percentile (linear) of the pooled directed distances."""
    return float(np.percentile(np.concatenate([pred_to_ref, ref_to_pred]), 95))


def assd_from_distances(pred_to_ref: np.ndarray, ref_to_pred: np.ndarray, definition: str = "pooled") -> float:
    """ASSD of directed distances: ``"pooled"`` mean or ``"mean_of_directed_means"``."""
    if definition == "pooled":
        return float(np.concatenate([pred_to_ref, ref_to_pred]).mean())
    if definition == "mean_of_directed_means":
        return float((pred_to_ref.mean() + ref_to_pred.mean()) / 2)
    raise ValueError(f"unknown ASSD definition {definition!r}; choose one of {ASSD_DEFINITIONS}")


def hd95(reference: np.ndarray, prediction: np.ndarray, spacing: Optional[Spacing] = None) -> float:
    """HD95 in mm (medpy pooled definition); NaN when either mask is empty."""
    if not np.any(reference) or not np.any(prediction):
        return float("nan")
    return hd95_from_distances(*surface_distances(reference, prediction, spacing))


def assd(reference: np.ndarray, prediction: np.ndarray, spacing: Optional[Spacing] = None,
         definition: str = "pooled") -> float:
    """ASSD in mm (see module docstring for ``definition``); NaN when either mask is empty."""
    if not np.any(reference) or not np.any(prediction):
        return float("nan")
    return assd_from_distances(*surface_distances(reference, prediction, spacing), definition=definition)


# ---------------------------------------------------------------------------------------------
# Label maps: all structures of a case in one pass
# ---------------------------------------------------------------------------------------------
def structures_from_values(*label_arrays: np.ndarray) -> Dict[str, Tuple[int, ...]]:
    """Every non-zero value in the union of the arrays as its own structure, keyed ``str(value)``."""
    values = sorted({int(v) for a in label_arrays for v in np.unique(a) if v != 0})
    return {str(v): (v,) for v in values}


def _check_labels(array: np.ndarray, what: str) -> np.ndarray:
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.mod(array, 1) == 0):
            raise ValueError(f"{what} holds non-integer values; expected a label map")
        array = array.astype(np.int64)
    if array.size and array.min() < 0:
        raise ValueError(f"{what} holds negative label values")
    return array


def _value_boxes(labels: np.ndarray) -> Dict[int, Tuple[slice, ...]]:
    return {v + 1: box for v, box in enumerate(find_objects(labels)) if box is not None}


def _box_union(boxes: List[Tuple[slice, ...]]) -> Tuple[slice, ...]:
    return tuple(slice(min(b[d].start for b in boxes), max(b[d].stop for b in boxes)) for d in range(len(boxes[0])))


def empty_structure_metrics(total_voxels: int, symtc_compat: bool = False) -> Dict[str, float]:
    """Metrics of a structure absent from both reference and prediction."""
    nan = float("nan")
    metrics = {"Dice": nan, "IoU": nan, "TP": 0, "FP": 0, "FN": 0, "TN": int(total_voxels), "n_ref": 0,
               "n_pred": 0, "HD95": nan, "ASSD": nan, "volume_ref_mm3": 0.0, "volume_pred_mm3": 0.0, "missed": 0}
    if symtc_compat:
        metrics.update({"Dice_symtc": 1.0, "HD95_symtc_px": 0.0})
    return metrics


def case_metrics(reference: np.ndarray, prediction: np.ndarray, spacing: Spacing,
                 structures: Optional[Structures] = None, ignore_label: Optional[int] = None,
                 distances: bool = True, assd_definition: str = "pooled",
                 symtc_compat: bool = False) -> Dict[str, Dict[str, float]]:
    """Per-structure metrics of one case.

    ``reference``/``prediction``: integer label maps of one shape (2D or 3D); ``spacing``: mm per
    voxel in array order. ``structures``: key -> label values (default: every non-zero value of
    either array). Voxels where the reference equals ``ignore_label`` are left out of every count
    and distance. Returns key -> {Dice, IoU, TP, FP, FN, TN, n_ref, n_pred, HD95, ASSD,
    volume_ref_mm3, volume_pred_mm3, missed} (+ SymTC-compat keys).
    """
    if assd_definition not in ASSD_DEFINITIONS:
        raise ValueError(f"unknown ASSD definition {assd_definition!r}; choose one of {ASSD_DEFINITIONS}")
    if symtc_compat and not distances:
        raise ValueError("SymTC-compat metrics include HD95_symtc_px, so they need distances enabled")
    reference = _check_labels(np.asarray(reference), "reference")
    prediction = _check_labels(np.asarray(prediction), "prediction")
    if reference.shape != prediction.shape:
        raise ValueError(f"reference shape {reference.shape} != prediction shape {prediction.shape}")
    if len(spacing) != reference.ndim:
        raise ValueError(f"spacing {tuple(spacing)} has {len(spacing)} values for a {reference.ndim}D array")
    if structures is None:
        structures = structures_from_values(reference, prediction)
    voxel_volume = float(np.prod(spacing))
    ignore = None if ignore_label is None else reference == ignore_label
    total = reference.size - (0 if ignore is None else int(np.count_nonzero(ignore)))
    boxes_ref, boxes_pred = _value_boxes(reference), _value_boxes(prediction)

    results = {}
    for key, values in structures.items():
        boxes = [b for v in values for b in (boxes_ref.get(v), boxes_pred.get(v)) if b is not None]
        if not boxes:
            results[key] = empty_structure_metrics(total, symtc_compat)
            continue
        box = _grow(_box_union(boxes), reference.shape, 1)
        ref_mask = np.isin(reference[box], values)
        pred_mask = np.isin(prediction[box], values)
        if ignore is not None:
            keep = ~ignore[box]
            ref_mask &= keep
            pred_mask &= keep
        results[key] = _structure_metrics(ref_mask, pred_mask, spacing, total, voxel_volume, distances,
                                          assd_definition, symtc_compat)
    return results


def _structure_metrics(ref_mask: np.ndarray, pred_mask: np.ndarray, spacing: Spacing, total: int,
                       voxel_volume: float, distances: bool, assd_definition: str,
                       symtc_compat: bool) -> Dict[str, float]:
    tp = int(np.count_nonzero(ref_mask & pred_mask))
    n_ref, n_pred = int(np.count_nonzero(ref_mask)), int(np.count_nonzero(pred_mask))
    fp, fn = n_pred - tp, n_ref - tp
    metrics = empty_structure_metrics(total, symtc_compat)
    metrics.update({"TP": tp, "FP": fp, "FN": fn, "TN": total - tp - fp - fn, "n_ref": n_ref, "n_pred": n_pred,
                    "volume_ref_mm3": n_ref * voxel_volume, "volume_pred_mm3": n_pred * voxel_volume,
                    "missed": int((n_ref == 0) != (n_pred == 0))})
    if tp + fp + fn:
        metrics["Dice"] = 2 * tp / (2 * tp + fp + fn)
        metrics["IoU"] = tp / (tp + fp + fn)
        if symtc_compat:
            metrics["Dice_symtc"] = metrics["Dice"]
    if distances and n_ref and n_pred:
        pred_to_ref, ref_to_pred = _directed_distances(ref_mask, pred_mask, spacing, 1)
        metrics["HD95"] = hd95_from_distances(pred_to_ref, ref_to_pred)
        metrics["ASSD"] = assd_from_distances(pred_to_ref, ref_to_pred, assd_definition)
        if symtc_compat:
            metrics["HD95_symtc_px"] = hd95_from_distances(*_directed_distances(ref_mask, pred_mask, None, 1))
    return metrics


# ---------------------------------------------------------------------------------------------
# Instances: one-to-one matching at IoU > 0.5, panoptic quality
# ---------------------------------------------------------------------------------------------
INSTANCE_DEFINITION = (
    "Each distinct non-zero value is one instance (no connected-component splitting). Instances are "
    "matched one-to-one at IoU > 0.5 whatever their values. tp/fp/fn count matched pairs, unmatched "
    "predictions and unmatched references; rq = tp/(tp + fp/2 + fn/2); sq = mean IoU of the matched pairs; "
    "pq = sq*rq; sq_dsc/pq_dsc use Dice instead of IoU; detection_rate = tp/n_ref; mean_instance_dice = "
    "mean over reference instances of the Dice with their match (0 when missed). No instance in either "
    "file: NaN; instances but no match: sq = pq = 0.")


@dataclass
class InstanceMatch:
    """One row of the instance table: a reference instance, a predicted one, or a matched pair."""

    reference: Optional[int]
    prediction: Optional[int]
    iou: float
    dice: float
    volume_ref_voxels: int
    volume_pred_voxels: int


def _pair_overlaps(reference: np.ndarray, prediction: np.ndarray):
    """(ref ids, ref sizes), (pred ids, pred sizes), {(r, p): intersection} for non-zero values."""
    r, p = reference.ravel().astype(np.int64), prediction.ravel().astype(np.int64)
    ref_ids, ref_sizes = np.unique(r[r > 0], return_counts=True)
    pred_ids, pred_sizes = np.unique(p[p > 0], return_counts=True)
    both = (r > 0) & (p > 0)
    stride = int(p.max(initial=0)) + 1
    keys, counts = np.unique(r[both] * stride + p[both], return_counts=True)
    overlaps = {(int(k // stride), int(k % stride)): int(c) for k, c in zip(keys, counts)}
    return dict(zip(ref_ids.tolist(), ref_sizes.tolist())), dict(zip(pred_ids.tolist(), pred_sizes.tolist())), overlaps


def instance_metrics(reference: np.ndarray, prediction: np.ndarray,
                     iou_threshold: float = 0.5) -> Tuple[Dict[str, float], List[InstanceMatch]]:
    """Panoptic metrics of two instance maps: each distinct non-zero value is one instance (no
    connected-component splitting); one-to-one matching at IoU > ``iou_threshold`` (>= 0.5 makes the
    match unique), whatever the values.

    Returns (summary, rows). Summary: tp, fp, fn, rq = tp/(tp + fp/2 + fn/2), sq = mean IoU of the
    matches, pq = sq*rq, sq_dsc = mean Dice of the matches, pq_dsc = sq_dsc*rq, detection_rate =
    tp/n_ref, mean_instance_dice (missed reference instances count as 0), n_ref, n_pred. With no
    instance in either map everything is NaN; with instances but no match, sq = pq = 0.
    Rows: matched pairs, then missed reference and unmatched predicted instances.
    """
    if iou_threshold < 0.5:
        raise ValueError("IoU threshold below 0.5 does not give a one-to-one matching")
    reference = _check_labels(np.asarray(reference), "reference")
    prediction = _check_labels(np.asarray(prediction), "prediction")
    if reference.shape != prediction.shape:
        raise ValueError(f"reference shape {reference.shape} != prediction shape {prediction.shape}")
    ref_sizes, pred_sizes, overlaps = _pair_overlaps(reference, prediction)
    rows: List[InstanceMatch] = []
    for (r, p), inter in sorted(overlaps.items()):
        iou = inter / (ref_sizes[r] + pred_sizes[p] - inter)
        if iou > iou_threshold:
            rows.append(InstanceMatch(r, p, iou, 2 * inter / (ref_sizes[r] + pred_sizes[p]), ref_sizes[r], pred_sizes[p]))
    matched_ref = {m.reference for m in rows}
    matched_pred = {m.prediction for m in rows}
    rows += [InstanceMatch(r, None, 0.0, 0.0, n, 0) for r, n in ref_sizes.items() if r not in matched_ref]
    rows += [InstanceMatch(None, p, 0.0, 0.0, 0, n) for p, n in pred_sizes.items() if p not in matched_pred]

    tp = len(matched_ref)
    fp, fn = len(pred_sizes) - tp, len(ref_sizes) - tp
    nan = float("nan")
    if tp + fp + fn == 0:
        rq = sq = sq_dsc = nan
    else:
        rq = tp / (tp + 0.5 * fp + 0.5 * fn)
        sq = float(np.mean([m.iou for m in rows[:tp]])) if tp else 0.0
        sq_dsc = float(np.mean([m.dice for m in rows[:tp]])) if tp else 0.0
    summary = {"tp": tp, "fp": fp, "fn": fn, "n_ref": len(ref_sizes), "n_pred": len(pred_sizes),
               "rq": rq, "sq": sq, "pq": sq * rq, "sq_dsc": sq_dsc, "pq_dsc": sq_dsc * rq,
               "detection_rate": tp / len(ref_sizes) if ref_sizes else nan,
               "mean_instance_dice": float(np.mean([m.dice for m in rows if m.reference is not None]))
               if ref_sizes else nan}
    return summary, rows


# ---------------------------------------------------------------------------------------------
# SPIDER challenge rules
# ---------------------------------------------------------------------------------------------
SPIDER_DETECTION_THRESHOLD = 0.1
SPIDER_MISSING_CANAL = 999.0
SPIDER_SCORE_KEYS = ("DiceScoreVertebrae", "DiceScoreDiscs", "DiceScoreSpinalCanal", "OveralDiceScore",
                     "DetectionRateVertebrae", "DetectionRateDiscs", "ASDVertebrae", "ASDDiscs",
                     "ASDSpinalCanal", "OveralASD")
"""Per-case scores of the official SPIDER evaluation script, under its own names (sic)."""

SPIDER_DEFINITION = (
    "Official SPIDER challenge rules (DIAGNijmegen/SPIDER-Evaluation evaluation.py, re-implemented): each "
    "reference label is matched to the predicted non-zero label it overlaps most (ties: smallest value; "
    "several reference labels may share one prediction); no overlap gives Dice 0 and ASD NaN. Vertebrae are "
    "reference values 1-99, discs > 200, canal 100; partial vertebrae 101-200 count only in the overall "
    "scores. Dice < 0.1 = missed: counted against the detection rate and left out of the vertebra/disc mean "
    "Dice (but kept in OveralDiceScore, the mean over all reference labels, and in the ASD means). "
    "DetectionRate = detected / total. ASD = mean of the pooled distances of both directions with "
    "full-connectivity boundaries (connectivity = ndim); means are plain means, so one NaN makes the mean "
    "NaN. A case without canal gets 999 for DiceScoreSpinalCanal and ASDSpinalCanal, as in the script. The "
    "script passes SimpleITK's (x, y, z) spacing to (z, y, x) arrays; 'spider_spacing' in the metadata says "
    "whether that was reproduced ('official_xyz') or corrected ('array_order'). Over cases: mean and "
    "sample std (ddof 1) skipping NaN, as pandas does. Where the script would divide by zero (no "
    "vertebra or no disc in the reference) the rate is NaN here.")


def spider_case_scores(reference: np.ndarray, prediction: np.ndarray, spacing: Spacing,
                       official_spacing: bool = True) -> Tuple[Dict[str, float], Dict[int, Dict[str, float]]]:
    """SPIDER challenge scores of one case (see ``SPIDER_DEFINITION``).

    ``spacing`` is in array order; with ``official_spacing`` it is reversed before use, reproducing
    the official script. Returns (scores under ``SPIDER_SCORE_KEYS``, reference value ->
    {matched_prediction, Dice, ASD, detected}).
    """
    from nnunetv2_symtc.labels import SPIDER_CANAL, SPIDER_DISC_OFFSET

    reference = _check_labels(np.asarray(reference), "reference")
    prediction = _check_labels(np.asarray(prediction), "prediction")
    if reference.shape != prediction.shape:
        raise ValueError(f"reference shape {reference.shape} != prediction shape {prediction.shape}")
    sampling = tuple(spacing)[::-1] if official_spacing else tuple(spacing)
    ref_sizes, pred_sizes, overlaps = _pair_overlaps(reference, prediction)
    best: Dict[int, Tuple[int, int]] = {}
    for (r, p), inter in sorted(overlaps.items()):  # ascending p, so ties keep the smallest value
        if r not in best or inter > best[r][1]:
            best[r] = (p, inter)
    boxes_ref, boxes_pred = _value_boxes(reference), _value_boxes(prediction)

    per_label: Dict[int, Dict[str, float]] = {}
    for r in sorted(ref_sizes):
        if r not in best:
            per_label[r] = {"matched_prediction": None, "Dice": 0.0, "ASD": float("nan")}
            continue
        p, inter = best[r]
        box = _grow(_box_union([boxes_ref[r], boxes_pred[p]]), reference.shape, 1)
        d1, d2 = _directed_distances(reference[box] == r, prediction[box] == p, sampling, reference.ndim)
        per_label[r] = {"matched_prediction": p, "Dice": 2 * inter / (ref_sizes[r] + pred_sizes[p]),
                        "ASD": float(np.concatenate([d1, d2]).mean())}
    for entry in per_label.values():
        entry["detected"] = int(entry["Dice"] >= SPIDER_DETECTION_THRESHOLD)

    def group(predicate):
        return [per_label[r] for r in per_label if predicate(r)]

    vertebrae = group(lambda r: 0 < r < SPIDER_CANAL)
    discs = group(lambda r: r > SPIDER_DISC_OFFSET)
    canal = per_label.get(SPIDER_CANAL)
    nan = float("nan")

    def mean(values):
        return float(np.mean(values)) if len(values) else nan

    scores = {
        "DiceScoreVertebrae": mean([e["Dice"] for e in vertebrae if e["detected"]]),
        "DiceScoreDiscs": mean([e["Dice"] for e in discs if e["detected"]]),
        "DiceScoreSpinalCanal": canal["Dice"] if canal else SPIDER_MISSING_CANAL,
        "OveralDiceScore": mean([e["Dice"] for e in per_label.values()]),
        "DetectionRateVertebrae": mean([e["detected"] for e in vertebrae]),
        "DetectionRateDiscs": mean([e["detected"] for e in discs]),
        "ASDVertebrae": mean([e["ASD"] for e in vertebrae]),
        "ASDDiscs": mean([e["ASD"] for e in discs]),
        "ASDSpinalCanal": canal["ASD"] if canal else SPIDER_MISSING_CANAL,
        "OveralASD": mean([e["ASD"] for e in per_label.values()]),
    }
    return scores, per_label


def spider_aggregate(case_scores: Sequence[Mapping[str, float]]) -> Dict[str, Dict[str, float]]:
    """Mean and sample std (ddof 1) of each SPIDER score over cases, skipping NaN (as pandas does)."""
    out = {}
    for key in SPIDER_SCORE_KEYS:
        values = np.array([c[key] for c in case_scores], dtype=float)
        values = values[~np.isnan(values)]
        out[key] = {"mean": float(values.mean()) if values.size else float("nan"),
                    "std": float(values.std(ddof=1)) if values.size > 1 else float("nan")}
    return out
