"""Evaluate prediction files against reference files: ``summary.json``, CSVs, a table, overlays.

``summary.json`` extends nnU-Net's schema (``nnunetv2.evaluation.evaluate_predictions``):
``metric_per_case[i]['metrics'][key]`` holds nnU-Net's Dice/IoU/TP/FP/FN/TN/n_ref/n_pred plus
``HD95``/``ASSD`` (mm), volumes and ``missed``; ``mean[key]`` and ``foreground_mean`` are computed
as nnU-Net does (nanmean over cases, then mean over foreground keys). Additions: ``definitions``,
``structure_names``, ``spacing`` per case, ``metric_per_case[i]['instances']`` (``--instances``)
and ``spider`` blocks (``scheme='spider'``).
"""
from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from nnunetv2_symtc.evaluation import metrics as M
from nnunetv2_symtc.io import Geometry, read_image
from nnunetv2_symtc.errors import InputError, InputFileError

IMAGE_ENDINGS = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".tif", ".tiff", ".png")
SCHEMES = ("spineps", "spider", "ssmspine", "nnunet")


def split_ending(name: str) -> Tuple[str, str]:
    """``'case_001.nii.gz' -> ('case_001', '.nii.gz')``; ending ``''`` if not an image ending."""
    for ending in IMAGE_ENDINGS:
        if name.endswith(ending):
            return name[: -len(ending)], ending
    return name, ""


def pair_files(reference_dir, prediction_dir) -> List[Tuple[str, Path, Path]]:
    """(case id, reference file, prediction file) for every image file, paired by name.

    Raises ``ValueError`` listing the files that have no partner, and ``OSError`` for a missing
    or empty folder.
    """
    found = []
    for folder in (Path(reference_dir), Path(prediction_dir)):
        if not folder.is_dir():
            raise InputFileError(f"{folder}: not a folder")
        files = {split_ending(f.name)[0]: f for f in sorted(folder.iterdir()) if split_ending(f.name)[1]}
        if not files:
            raise InputFileError(f"{folder}: holds no image files (endings {', '.join(IMAGE_ENDINGS)})")
        found.append(files)
    ref, pred = found
    unpaired = [str(ref[c]) for c in sorted(set(ref) - set(pred))] + [str(pred[c]) for c in sorted(set(pred) - set(ref))]
    if unpaired:
        raise InputError(f"{len(unpaired)} file(s) have no partner of the same name in the other folder: "
                         + ", ".join(unpaired))
    return [(c, ref[c], pred[c]) for c in sorted(ref)]


# ---------------------------------------------------------------------------------------------
# Label schemes: structure names and regions
# ---------------------------------------------------------------------------------------------
def value_namer(scheme: Optional[str]):
    """Function value -> human name for a label scheme (``None``: the value itself)."""
    from nnunetv2_symtc import labels as L

    if scheme is None or scheme == "nnunet":
        return str
    if scheme == "spider":
        return L.spider_value_name
    if scheme == "ssmspine":
        return lambda v: L.SSMSPINE_NAMES[int(v)]
    if scheme == "spineps":
        semantic = {**L.SPINEPS_SEMANTIC_NAMES, **L.SPINEPS_SEMANTIC_OPTIONAL_NAMES}
        return lambda v: semantic[int(v)] if int(v) in semantic else L.instance_value_name(int(v))
    raise ValueError(f"unknown scheme {scheme!r}; choose one of {SCHEMES}")


@dataclass
class LabelSetup:
    """Which structures to evaluate: fixed ``structures`` (or every value found), names, ignore label."""

    scheme: Optional[str] = None
    structures: Optional[Dict[str, Tuple[int, ...]]] = None
    names: Dict[str, str] = field(default_factory=dict)
    ignore_label: Optional[int] = None

    def name(self, key: str) -> str:
        if key in self.names:
            return self.names[key]
        try:
            return value_namer(self.scheme)(int(key))
        except (ValueError, KeyError):
            return f"{key} (not in {self.scheme})"


def nnunet_label_setup(dataset: str) -> LabelSetup:
    """Labels (or regions) and ignore label from an nnU-Net dataset's ``dataset.json`` (raw, else preprocessed)."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    name = maybe_convert_to_dataset_name(dataset)
    candidates = [Path(os.environ[v]) / name / "dataset.json" for v in ("nnUNet_raw", "nnUNet_preprocessed")
                  if os.environ.get(v)]
    for path in candidates:
        if path.is_file():
            dataset_json = json.loads(path.read_text())
            break
    else:
        raise InputFileError(f"no dataset.json for {name} in {', '.join(map(str, candidates)) or 'nnUNet_raw/nnUNet_preprocessed (unset)'}")
    manager = LabelManager(dataset_json["labels"], dataset_json.get("regions_class_order"))
    names_by_value = {}
    for label_name, value in dataset_json["labels"].items():
        names_by_value[tuple(value) if isinstance(value, (list, tuple)) else (int(value),)] = label_name
    keys = manager.foreground_regions if manager.has_regions else manager.foreground_labels
    structures, names = {}, {}
    for k in keys:
        values = tuple(int(v) for v in k) if isinstance(k, (list, tuple)) else (int(k),)
        key = str(k)
        structures[key] = values
        names[key] = names_by_value.get(values, key)
    return LabelSetup("nnunet", structures, names, manager.ignore_label)


# ---------------------------------------------------------------------------------------------
# One case
# ---------------------------------------------------------------------------------------------
@dataclass
class EvaluationOptions:
    """Everything a worker needs to evaluate one case (picklable)."""

    labels: LabelSetup = field(default_factory=LabelSetup)
    instances: bool = False
    distances: bool = True
    assd_definition: str = "pooled"
    symtc_compat: bool = False
    spider_official_spacing: bool = True
    check_position: bool = True
    """Also require the prediction's origin and direction to match the reference's (``--ignore-geometry``: not)."""

    def __post_init__(self):
        if self.symtc_compat and not self.distances:
            raise InputError("SymTC-compat metrics include HD95_symtc_px, so they need distances enabled")
        if self.assd_definition not in M.ASSD_DEFINITIONS:
            raise ValueError(f"unknown ASSD definition {self.assd_definition!r}; choose one of {M.ASSD_DEFINITIONS}")


def check_same_grid(reference_file, reference_shape, geometry_ref: Geometry, prediction_file, prediction_shape,
                    geometry_pred: Geometry, check_position: bool = True) -> None:
    """Raise ``InputError`` naming both files unless they share shape and spacing and, with
    ``check_position``, origin and direction (tolerances of ``dataset_conversion.validation.grid_problems``)."""
    from nnunetv2_symtc.dataset_conversion.validation import grid_problems

    placed_like_reference = replace(geometry_pred, origin_xyz=geometry_ref.origin_xyz, direction=geometry_ref.direction)

    def problems(geometry: Geometry):
        return grid_problems(reference_file, reference_shape, geometry_ref, prediction_file, prediction_shape, geometry)

    found = problems(geometry_pred if check_position else placed_like_reference)
    if found:
        hint = "" if problems(placed_like_reference) else ("; if both files hold the same voxels in different "
                                                           "world positions, --ignore-geometry skips this check")
        raise InputError(f"{found[0]}{hint}")


def evaluate_case(reference_file, prediction_file, options: EvaluationOptions) -> dict:
    """One ``metric_per_case`` entry: files, spacing (array order, mm), metrics (+ instances, spider)."""
    reference, geometry_ref = read_image(reference_file)
    prediction, geometry_pred = read_image(prediction_file)
    check_same_grid(reference_file, reference.shape, geometry_ref, prediction_file, prediction.shape, geometry_pred,
                    options.check_position)
    spacing = geometry_ref.spacing_zyx
    entry = {"reference_file": str(reference_file), "prediction_file": str(prediction_file),
             "spacing": list(spacing),
             "num_voxels": int(reference.size if options.labels.ignore_label is None
                               else np.count_nonzero(reference != options.labels.ignore_label)),
             "metrics": M.case_metrics(reference, prediction, spacing, options.labels.structures,
                                       options.labels.ignore_label, options.distances,
                                       options.assd_definition, options.symtc_compat)}
    if options.instances:
        summary, rows = M.instance_metrics(reference, prediction)
        voxel = float(np.prod(spacing))
        entry["instances"] = {**summary, "matches": [
            {"reference": r.reference, "prediction": r.prediction, "iou": r.iou, "dice": r.dice,
             "volume_ref_mm3": r.volume_ref_voxels * voxel, "volume_pred_mm3": r.volume_pred_voxels * voxel}
            for r in rows]}
    if options.labels.scheme == "spider":
        scores, per_label = M.spider_case_scores(reference, prediction, spacing, options.spider_official_spacing)
        entry["spider"] = {**scores, "per_label": {str(k): v for k, v in per_label.items()}}
    return entry


def _evaluate_case_star(args):
    return evaluate_case(*args)


# ---------------------------------------------------------------------------------------------
# Folders
# ---------------------------------------------------------------------------------------------
def _nanmean(values) -> float:
    values = np.asarray([v for v in values if v is not None], dtype=float)
    return float(np.nanmean(values)) if values.size and not np.all(np.isnan(values)) else float("nan")


def aggregate(per_case: List[dict], labels: LabelSetup, symtc_compat: bool) -> dict:
    """Fill structures a case lacks (absent from both files) and compute nnU-Net-style means."""
    keys = list(labels.structures) if labels.structures is not None else sorted(
        {k for c in per_case for k in c["metrics"]}, key=lambda k: int(k))
    for case in per_case:
        case["metrics"] = {k: case["metrics"].get(k) or M.empty_structure_metrics(case["num_voxels"], symtc_compat)
                           for k in keys}
    metric_names = list(M.empty_structure_metrics(0, symtc_compat))
    means = {k: {m: _nanmean(c["metrics"][k][m] for c in per_case) for m in metric_names} for k in keys}
    foreground = [k for k in keys if k != "0"]
    foreground_mean = {m: float(np.mean([means[k][m] for k in foreground])) if foreground else float("nan")
                       for m in metric_names}
    result = {"metric_per_case": per_case, "mean": means, "foreground_mean": foreground_mean}
    if per_case and "instances" in per_case[0]:
        inst_keys = [k for k in per_case[0]["instances"] if k != "matches"]
        result["instances_mean"] = {m: _nanmean(c["instances"][m] for c in per_case) for m in inst_keys}
    if per_case and "spider" in per_case[0]:
        result["spider"] = M.spider_aggregate([c["spider"] for c in per_case])
    return result


def definitions(options: EvaluationOptions) -> dict:
    """The ``definitions`` block of ``summary.json``: what every reported number means."""
    block = {k: v for k, v in M.DEFINITIONS.items() if options.symtc_compat or "symtc" not in k}
    block["assd_definition"] = options.assd_definition
    block["spacing"] = "mm per voxel in array order (z, y, x), from the reference file"
    block["mean"] = "nanmean over cases per structure; foreground_mean = mean of the structure means (as nnU-Net)"
    if options.instances:
        block["instances"] = M.INSTANCE_DEFINITION
    if options.labels.scheme == "spider":
        block["spider"] = M.SPIDER_DEFINITION
        block["spider_spacing"] = "official_xyz" if options.spider_official_spacing else "array_order"
    return block


def evaluate_folders(reference_dir, prediction_dir, output_dir, options: Optional[EvaluationOptions] = None,
                     num_processes: int = 1, overlays: int = 0, progress: bool = True) -> dict:
    """Evaluate every prediction file against the reference file of the same name.

    Writes ``summary.json``, ``metrics_per_case.csv`` (+ ``instances.csv``, ``spider_per_case.csv``)
    and, with ``overlays > 0``, PNGs of the worst cases to ``output_dir``; returns the summary.
    """
    from tqdm import tqdm

    options = options or EvaluationOptions()
    pairs = pair_files(reference_dir, prediction_dir)
    jobs = [(ref, pred, options) for _, ref, pred in pairs]
    bar = dict(total=len(jobs), desc="evaluating", unit="case", disable=not progress)
    if num_processes > 1 and len(jobs) > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(min(num_processes, len(jobs))) as pool:
            per_case = list(tqdm(pool.imap(_evaluate_case_star, jobs), **bar))
    else:
        per_case = [evaluate_case(*job) for job in tqdm(jobs, **bar)]
    for (case_id, _, _), entry in zip(pairs, per_case):
        entry["case"] = case_id
    summary = aggregate(per_case, options.labels, options.symtc_compat)
    summary["structure_names"] = {k: options.labels.name(k) for k in summary["mean"]}
    summary["definitions"] = definitions(options)
    summary["scheme"] = options.labels.scheme
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_summary(summary, output_dir / "summary.json")
    write_csvs(summary, output_dir)
    if overlays:
        write_worst_case_overlays(summary, output_dir / "worst_cases", overlays)
    return summary


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    return value


def write_summary(summary: dict, path) -> None:
    """``summary.json`` with NaN written as ``null`` (strict JSON), keys sorted like nnU-Net's."""
    Path(path).write_text(json.dumps(_json_safe(summary), indent=1, sort_keys=True))


def load_summary(path) -> dict:
    """Read a ``summary.json`` written by ``write_summary`` (``null`` back to NaN)."""
    def fix(value):
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v) for v in value]
        return float("nan") if value is None else value
    return fix(json.loads(Path(path).read_text()))


def write_csvs(summary: dict, output_dir) -> None:
    """``metrics_per_case.csv`` (one row per case and structure), ``instances.csv``, ``spider_per_case.csv``."""
    output_dir = Path(output_dir)
    names = summary["structure_names"]
    cases = summary["metric_per_case"]
    metric_names = list(next(iter(summary["mean"].values()), {}))
    with open(output_dir / "metrics_per_case.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["case", "structure", "name", *metric_names])
        for case in cases:
            for key, values in case["metrics"].items():
                writer.writerow([case["case"], key, names.get(key, key), *[values[m] for m in metric_names]])
    if cases and "instances" in cases[0]:
        with open(output_dir / "instances.csv", "w", newline="") as f:
            writer = csv.writer(f)
            columns = ["reference", "prediction", "iou", "dice", "volume_ref_mm3", "volume_pred_mm3"]
            writer.writerow(["case", *columns])
            for case in cases:
                for row in case["instances"]["matches"]:
                    writer.writerow([case["case"], *["" if row[c] is None else row[c] for c in columns]])
    if cases and "spider" in cases[0]:
        with open(output_dir / "spider_per_case.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["case", *M.SPIDER_SCORE_KEYS])
            for case in cases:
                writer.writerow([case["case"], *[case["spider"][k] for k in M.SPIDER_SCORE_KEYS]])


def _fmt(value: float, digits: int = 3) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def format_table(summary: dict) -> str:
    """A short text table: per structure mean Dice, HD95, ASSD and cases missed; then the overall rows."""
    names = summary["structure_names"]
    width = max([len("structure")] + [len(n) for n in names.values()])
    lines = [f"{'structure':<{width}}  {'Dice':>6}  {'HD95 mm':>8}  {'ASSD mm':>8}  {'missed':>6}"]
    for key, m in summary["mean"].items():
        missed = int(sum(c["metrics"][key]["missed"] for c in summary["metric_per_case"]))
        lines.append(f"{names.get(key, key):<{width}}  {_fmt(m['Dice']):>6}  {_fmt(m['HD95'], 2):>8}  "
                     f"{_fmt(m['ASSD'], 2):>8}  {missed:>6}")
    fg = summary["foreground_mean"]
    lines.append(f"{'foreground mean':<{width}}  {_fmt(fg['Dice']):>6}  {_fmt(fg['HD95'], 2):>8}  {_fmt(fg['ASSD'], 2):>8}")
    if "instances_mean" in summary:
        i = summary["instances_mean"]
        lines.append(f"instances: PQ {_fmt(i['pq'])}  SQ {_fmt(i['sq'])}  RQ {_fmt(i['rq'])}  "
                     f"PQ_dsc {_fmt(i['pq_dsc'])}  detection {_fmt(i['detection_rate'])}")
    if "spider" in summary:
        s = summary["spider"]
        lines.append("SPIDER: " + "  ".join(f"{k} {_fmt(s[k]['mean'])}" for k in M.SPIDER_SCORE_KEYS))
    if "HD95_symtc_px" in fg:
        lines.append(f"SymTC-compat (pixels, empty=0; for comparison with Chen et al. 2024 only): "
                     f"HD95_symtc_px {_fmt(fg['HD95_symtc_px'], 2)}  Dice_symtc {_fmt(fg['Dice_symtc'])}")
    return "\n".join(lines)


def write_worst_case_overlays(summary: dict, folder, count: int) -> List[Path]:
    """PNGs of the ``count`` cases with the lowest mean foreground Dice: reference and prediction on
    the slice (array axis 0) where they disagree most. Returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def case_dice(case):
        return _nanmean(m["Dice"] for k, m in case["metrics"].items() if k != "0")

    ranked = sorted(summary["metric_per_case"], key=lambda c: (np.nan_to_num(case_dice(c), nan=2.0)))[:count]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for case in ranked:
        reference, _ = read_image(case["reference_file"])
        prediction, _ = read_image(case["prediction_file"])
        if reference.ndim == 3:
            disagreement = (reference != prediction).reshape(reference.shape[0], -1).sum(1)
            index = int(np.argmax(disagreement))
            reference, prediction = reference[index], prediction[index]
            title = f"slice {index} (axis 0)"
        else:
            title = "2D"
        vmax = max(int(reference.max()), int(prediction.max()), 1)
        fig, axes = plt.subplots(1, 3, figsize=(12, 4))
        for ax, image, label in zip(axes, (reference, prediction, reference != prediction),
                                    ("reference", "prediction", "disagreement")):
            ax.imshow(image, cmap="nipy_spectral" if label != "disagreement" else "gray",
                      vmin=0, vmax=vmax if label != "disagreement" else 1, interpolation="nearest")
            ax.set_title(label)
            ax.axis("off")
        fig.suptitle(f"{case['case']}: mean foreground Dice {_fmt(case_dice(case))}, {title}")
        path = folder / f"{case['case']}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written
