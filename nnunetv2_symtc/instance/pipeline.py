"""Two-phase prediction: semantic nnU-Net -> body centres -> phase-2 cutouts -> merge -> levels.

``TwoPhasePredictor`` runs nnU-Net's ``nnUNetPredictor`` for both phases; everything between the
networks is in ``centres``, ``cutouts``, ``merge`` and ``labeling``. Images are processed in PIR
(reoriented when needed) and every output is written back on the input's own grid.

Per case ``<case>`` the output folder gets (SPINEPS names):

- ``<case>_seg-spine_msk.nii.gz``  semantic mask (SPINEPS values; 52/53 with ``split_endplates``)
- ``<case>_seg-vert_msk.nii.gz``   instance mask (SPINEPS values, or SPIDER values with ``spider_values``)
- ``<case>_seg-spine_ctd.json``    level name -> world (LPS mm) and voxel (z, y, x) coordinates
- ``<case>_seg-spine_snp.png``     mid-sagittal snapshot with level names
- ``<case>_seg-spine_probabilities.npz``  phase-1 class probabilities (``save_probabilities``)
- ``<case>_metadata.json``         provenance, naming rule, merge agreement, QA warnings (written last:
  a case with this file is finished and skipped on resume unless ``overwrite``)
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

import nnunetv2_symtc
from nnunetv2_symtc.instance.centres import body_candidates, clean_semantic
from nnunetv2_symtc.instance.cutouts import make_cutout
from nnunetv2_symtc.instance.phase2_spec import Phase2Spec, phase1_label_map, read_dataset_json, spider_to_spineps_semantic
from nnunetv2_symtc.instance.labeling import (absorb_fragments, add_discs_and_endplates, clean_instances, name_vertebrae,
                                              sequence_warnings, spineps_to_spider, split_endplates,
                                              vertebrae_top_to_bottom)
from nnunetv2_symtc.instance.merge import cutout_votes, merge_by_agreement
from nnunetv2_symtc.io import CANONICAL_ORIENTATION, Geometry, PathLike, is_sagittal, reorient, to_sitk
from nnunetv2_symtc.labels import (L5_ID, SPINEPS_DISC_OFFSET, SPINEPS_ENDPLATE_OFFSET, VERTEBRA_IDS_TOP_TO_BOTTOM,
                                   VERTEBRA_INSTANCE_IDS, VERTEBRA_VALUES, instance_value_name)

SUFFIXES = {"semantic": "_seg-spine_msk.nii.gz", "instance": "_seg-vert_msk.nii.gz", "centroids": "_seg-spine_ctd.json",
            "snapshot": "_seg-spine_snp.png", "probabilities": "_seg-spine_probabilities.npz",
            "metadata": "_metadata.json"}
IMAGE_ENDINGS = (".nii.gz", ".nii", ".mha", ".nrrd")
MASK_COMPRESSION_LEVEL = 1
"""zlib level of the written masks: label maps compress well even at the fastest level."""
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------
def find_input_cases(folder: PathLike) -> Dict[str, List[Path]]:
    """Images in ``folder`` grouped into cases: nnU-Net's ``<case>_XXXX.ext`` channels, or one file per case."""
    folder = Path(folder)
    if not folder.is_dir():
        raise OSError(f"{folder}: input folder not found")
    cases: Dict[str, Dict[int, Path]] = {}
    for path in sorted(folder.iterdir()):
        ending = next((e for e in IMAGE_ENDINGS if path.name.endswith(e)), None)
        if ending is None or not path.is_file():
            continue
        stem = path.name[:-len(ending)]
        match = _CHANNEL.match(stem)
        case, channel = (match["case"], int(match["channel"])) if match else (stem, 0)
        if channel in cases.setdefault(case, {}):
            raise ValueError(f"{path}: case {case!r} has channel {channel} twice")
        cases[case][channel] = path
    if not cases:
        raise OSError(f"{folder}: no images ({', '.join(IMAGE_ENDINGS)})")
    out = {}
    for case, channels in cases.items():
        if sorted(channels) != list(range(len(channels))):
            raise ValueError(f"case {case!r} in {folder}: channels {sorted(channels)} are not 0..{len(channels) - 1}")
        out[case] = [channels[c] for c in range(len(channels))]
    return out


@dataclass
class InputCase:
    """A validated input: channels ``(C, z, y, x)`` float32 in PIR, its PIR geometry and the original image's."""

    name: str
    files: List[Path]
    data: np.ndarray
    geometry: Geometry
    original: sitk.Image
    reoriented_from: Optional[str]


def load_input_case(name: str, files: Sequence[Path], num_channels: int, model_dim: int) -> InputCase:
    """Read and check one case: channel count, dimensionality, finite values, sagittal slices.

    Sagittal images in another orientation are reoriented to PIR; non-sagittal ones are refused.
    """
    if len(files) != num_channels:
        raise ValueError(f"case {name!r}: {len(files)} channel file(s) {[f.name for f in files]}, but the semantic "
                         f"model expects {num_channels}")
    arrays, reference = [], None
    for path in files:
        image = sitk.ReadImage(str(path))
        if image.GetDimension() != 3 or (model_dim == 3 and min(image.GetSize()) < 2):
            raise ValueError(f"{path}: a {image.GetDimension()}D image of size {image.GetSize()}; the models need "
                             "3D volumes")
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise ValueError(f"{path}: {image.GetNumberOfComponentsPerPixel()} components per voxel; give each "
                             "channel as its own file <case>_XXXX")
        geometry = Geometry.from_sitk(image)
        if reference is None:
            reference = (image, geometry)
        elif image.GetSize() != reference[0].GetSize() or not np.allclose(geometry.spacing_zyx, reference[1].spacing_zyx):
            raise ValueError(f"{path}: grid differs from {files[0]}")
        if not is_sagittal(geometry):
            raise ValueError(f"{path}: not a sagittal acquisition (orientation {geometry.orientation}, spacing "
                             f"{geometry.spacing_xyz} mm in ITK order: the thickest axis is not left-right); "
                             "the models expect sagittal slices")
        pir = reorient(image, CANONICAL_ORIENTATION) if geometry.orientation != CANONICAL_ORIENTATION else image
        array = sitk.GetArrayFromImage(pir).astype(np.float32)
        if not np.isfinite(array).all():
            raise ValueError(f"{path}: {int((~np.isfinite(array)).sum())} NaN/infinite voxels")
        arrays.append(array)
    original, geometry = reference
    pir_geometry = Geometry.from_sitk(reorient(original, CANONICAL_ORIENTATION))
    reoriented_from = None if geometry.orientation == CANONICAL_ORIENTATION else geometry.orientation
    return InputCase(name, list(files), np.stack(arrays), pir_geometry, original, reoriented_from)


# --------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------
def _checked_folds(folder: Path, folds: Optional[Sequence[str]], checkpoint: str) -> List[str]:
    if not folder.is_dir():
        raise OSError(f"model folder {folder} not found")
    if not (folder / "dataset.json").is_file() or not (folder / "plans.json").is_file():
        raise OSError(f"{folder}: not a trained nnU-Net model folder (dataset.json/plans.json missing)")
    if folds is None:
        folds = sorted(p.name[5:] for p in folder.glob("fold_*") if (p / checkpoint).is_file())
        if not folds:
            raise OSError(f"{folder}: no fold_*/{checkpoint} found")
    for f in folds:
        if not (folder / f"fold_{f}" / checkpoint).is_file():
            raise OSError(f"{folder}: fold {f} has no {checkpoint} ({folder / f'fold_{f}' / checkpoint})")
    return [str(f) for f in folds]


def _model_dim(folder: Path) -> int:
    with open(folder / "plans.json") as f:
        plans = json.load(f)
    trainer_plans_config = folder.name.split("__")
    config = trainer_plans_config[-1] if len(trainer_plans_config) == 3 else None
    configuration = plans["configurations"].get(config) if config else None
    return len(configuration["patch_size"]) if configuration else 3


@dataclass
class PredictionSettings:
    """nnU-Net predictor settings shared by both phases."""

    folds: Optional[Sequence[str]] = None
    device: str = "cuda"
    step_size: float = 0.5
    use_mirroring: bool = True
    checkpoint: str = "checkpoint_final.pth"
    num_processes_preprocessing: int = 1
    num_processes_segmentation_export: int = 1
    phase2_batch_size: int = 4


@dataclass
class CaseOutput:
    """Everything predicted for one case (PIR arrays), before it is written."""

    semantic: np.ndarray
    instance: np.ndarray
    endplate_side: np.ndarray
    probabilities: Optional[np.ndarray]
    metadata: dict
    warnings: List[str] = field(default_factory=list)


class TwoPhasePredictor:
    """Semantic model(s) + phase-2 instance model, checked for compatibility when constructed."""

    def __init__(self, semantic_models: Sequence[PathLike], instance_model: PathLike,
                 settings: PredictionSettings = PredictionSettings()):
        self.settings = settings
        self.semantic_folders = [Path(p) for p in semantic_models]
        self.instance_folder = Path(instance_model)
        if not self.semantic_folders:
            raise ValueError("at least one --semantic-model folder is needed")
        self.semantic_folds = [_checked_folds(p, settings.folds, settings.checkpoint) for p in self.semantic_folders]
        self.instance_folds = _checked_folds(self.instance_folder, settings.folds, settings.checkpoint)
        self.spec = Phase2Spec.from_dataset_json(read_dataset_json(self.instance_folder), str(self.instance_folder))
        semantic_jsons = [read_dataset_json(p) for p in self.semantic_folders]
        for folder, dataset_json in zip(self.semantic_folders, semantic_jsons):
            if dataset_json["labels"] != semantic_jsons[0]["labels"]:
                raise ValueError(f"semantic models {self.semantic_folders[0]} and {folder} have different label sets; "
                                 "only models of one label set can be averaged")
            if {k: int(v) for k, v in dataset_json["labels"].items()} != self.spec.phase1_labels:
                raise ValueError(f"semantic model {folder} (labels {dataset_json['labels']}) does not match instance "
                                 f"model {self.instance_folder}, which expects phase-1 labels {self.spec.phase1_labels}")
        self.semantic_json = semantic_jsons[0]
        self.label_map = phase1_label_map(self.spec.scheme, self.spec.phase1_labels)
        self.num_channels = len(self.semantic_json["channel_names"])
        self.model_dim = max(_model_dim(p) for p in self.semantic_folders)
        self._semantic_predictors = None
        self._instance_predictor = None

    def _predictor(self, folder: Path, folds: Sequence[str]):
        import torch
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
        device = torch.device(self.settings.device)
        predictor = nnUNetPredictor(tile_step_size=self.settings.step_size, use_gaussian=True,
                                    use_mirroring=self.settings.use_mirroring,
                                    perform_everything_on_device=device.type == "cuda", device=device,
                                    verbose=False, verbose_preprocessing=False, allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(str(folder), [f if f == "all" else int(f) for f in folds],
                                                       self.settings.checkpoint)
        return predictor

    def load_models(self) -> None:
        """Load every checkpoint (done lazily on the first case)."""
        if self._semantic_predictors is None:
            self._semantic_predictors = [self._predictor(p, f) for p, f in zip(self.semantic_folders, self.semantic_folds)]
            self._instance_predictor = self._predictor(self.instance_folder, self.instance_folds)

    def provenance(self) -> dict:
        return {"semantic_models": [{"folder": str(p), "folds": f} for p, f in zip(self.semantic_folders, self.semantic_folds)],
                "instance_model": {"folder": str(self.instance_folder), "folds": self.instance_folds},
                "checkpoint": self.settings.checkpoint, "tta": self.settings.use_mirroring,
                "step_size": self.settings.step_size, "phase2": self.spec.to_json(),
                "package": "nnunetv2_symtc", "package_version": nnunetv2_symtc.__version__}

    # ---- the two network phases --------------------------------------------------------------
    def _run(self, predictor, arrays: Sequence[np.ndarray], spacing_zyx, probabilities: bool) -> list:
        """nnU-Net prediction of several arrays on one spacing: in this process by default, or through
        nnU-Net's background preprocessing/export workers when ``-npp``/``-nps`` exceed 1."""
        properties = {"spacing": [float(s) for s in spacing_zyx]}
        settings = self.settings
        if settings.num_processes_preprocessing > 1 or settings.num_processes_segmentation_export > 1:
            return predictor.predict_from_list_of_npy_arrays(
                list(arrays), None, [dict(properties) for _ in arrays], None, settings.num_processes_preprocessing,
                probabilities, settings.num_processes_segmentation_export)
        return [predictor.predict_single_npy_array(a, dict(properties), None, None, probabilities) for a in arrays]

    def semantic_prediction(self, case: InputCase) -> Tuple[np.ndarray, np.ndarray]:
        """Phase 1: nnU-Net classes ``(z, y, x)`` and probabilities ``(K, z, y, x)``, averaged over the
        semantic models (one model: nnU-Net's own segmentation)."""
        self.load_models()
        total, classes = None, None
        for predictor in self._semantic_predictors:
            classes, probabilities = self._run(predictor, [case.data], case.geometry.spacing_zyx, True)[0]
            total = probabilities.astype(np.float32) if total is None else total + probabilities
        if len(self._semantic_predictors) > 1:
            total /= len(self._semantic_predictors)
            classes = np.argmax(total, axis=0)
        return np.asarray(classes), total

    def instance_predictions(self, inputs: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Phase 2: classes 0–3 on each cutout grid.

        With ``settings.phase2_batch_size`` > 1 the sliding-window tiles of all cutouts run in batches
        (``batched_sliding_window``); with 1, each cutout goes through nnU-Net's predictor.
        """
        if not inputs:
            return []
        self.load_models()
        spacing = self.spec.cutout.spacing_zyx
        if self.settings.phase2_batch_size > 1:
            return batched_sliding_window(self._instance_predictor, inputs, spacing, self.settings.phase2_batch_size)
        return [np.asarray(p) for p in self._run(self._instance_predictor, inputs, spacing, False)]

    # ---- one case ------------------------------------------------------------------------------
    def semantic_values(self, classes: np.ndarray) -> np.ndarray:
        """Phase-1 classes -> SPINEPS semantic values (SPIDER semantics converted, see ``dataset``)."""
        values = self.label_map.decode(classes)
        return spider_to_spineps_semantic(values) if self.spec.scheme == "spider" else values

    def predict_case(self, case: InputCase, lowest_vertebra: Optional[int] = None,
                     save_probabilities: bool = False) -> CaseOutput:
        timings = {}
        start = time.perf_counter()
        classes, probabilities = self.semantic_prediction(case)
        timings["phase1_s"] = time.perf_counter() - start
        start = time.perf_counter()
        spacing = case.geometry.spacing_zyx
        semantic, clean_report = clean_semantic(self.semantic_values(classes))
        centres, candidate_report, candidate_warnings = body_candidates(semantic, spacing)
        cutouts = [make_cutout(c.index_zyx, semantic.shape, spacing, self.spec.cutout) for c in centres]
        image = case.data[0] if self.spec.with_image else None
        inputs = [self.spec.encode(semantic, c, image) for c in cutouts]
        timings["other_s"] = time.perf_counter() - start
        start = time.perf_counter()
        predictions = self.instance_predictions(inputs)
        timings["phase2_s"] = time.perf_counter() - start
        start = time.perf_counter()
        output = self.assemble(semantic, predictions, cutouts, spacing, lowest_vertebra)
        output.metadata.update(cleaning=clean_report, candidates=candidate_report, centres=[c.to_json() for c in centres])
        output.warnings[:0] = candidate_warnings
        output.probabilities = probabilities if save_probabilities else None
        timings["other_s"] += time.perf_counter() - start
        output.metadata["timings"] = {k: round(v, 3) for k, v in timings.items()}
        return output

    def assemble(self, semantic: np.ndarray, predictions: Sequence[np.ndarray], cutouts, spacing_zyx,
                 lowest_vertebra: Optional[int] = None) -> CaseOutput:
        """Merge phase-2 predictions and post-process (everything after the networks)."""
        return assemble_instances(semantic, predictions, cutouts, spacing_zyx, lowest_vertebra,
                                  self.spec.lowest_vertebra, self.spec.naming_convention)


def assemble_instances(semantic: np.ndarray, predictions: Sequence[np.ndarray], cutouts, spacing_zyx,
                       lowest_vertebra: Optional[int], default_lowest: int, default_rule: str) -> CaseOutput:
    """Merge by agreement, mask and clean, name levels, add discs and endplates (PIR arrays)."""
    warnings: List[str] = []
    vertebra_voxels = np.isin(semantic, VERTEBRA_VALUES)
    votes = [v for k, (cutout, prediction) in enumerate(zip(cutouts, predictions))
             for v in cutout_votes(k, cutout, prediction, vertebra_voxels)]
    merged, records = merge_by_agreement(votes, semantic.shape)
    cleaned, clean_report = clean_instances(merged, semantic)
    if not cutouts:
        warnings.append("no vertebral body found: the instance mask is empty")
    elif not cleaned.any():
        warnings.append("phase 2 assigned no vertebra voxel: the instance mask is empty")
    absorbed, fragments = absorb_fragments(cleaned, semantic, spacing_zyx)
    named, naming = name_vertebrae(absorbed, semantic, spacing_zyx, lowest_vertebra, default_lowest, default_rule,
                                   sacrum_id=None)  # merged ids are candidate numbers; the sacrum comes from semantic
    instance, side, disc_warnings = add_discs_and_endplates(named, semantic, spacing_zyx)
    warnings += disc_warnings
    unnamed = naming.get("unnamed_top_candidates", 0)
    if unnamed:
        warnings.append(f"{unnamed} vertebra candidate(s) above the highest nameable level were removed; "
                        "check the phase-1 segmentation or pass --lowest-vertebra")
    lut = dict(zip(naming["candidates_top_to_bottom"], naming["ids_top_to_bottom"]))
    for fragment in fragments:
        fragment["into_vertebra"] = lut.get(fragment["into"])
        if fragment["action"] != "kept: cut by the field of view":
            warnings.append(f"instance {fragment['instance']} ({fragment['voxels']} voxels, {fragment['ml']} ml) is "
                            f"a fragment, not a vertebra: {fragment['action']}")
    for record in records:
        record["vertebra"] = lut.get(record["instance"])
        if record["flagged"]:
            warnings.append(f"phase-2 cutouts disagree about vertebra slot {record['slot']} "
                            f"(votes {record['dice']}); the centre cutout's answer was used")
    metadata = {"naming": naming, "fragments": fragments, "merge": records, "instance_cleaning": clean_report,
                "cutouts": [c.to_json() for c in cutouts]}
    return CaseOutput(semantic, instance, side, None, metadata, warnings)


def batched_sliding_window(predictor, arrays: Sequence[np.ndarray], spacing_zyx: Sequence[float],
                           batch_size: int) -> List[np.ndarray]:
    """nnU-Net segmentations of ``arrays`` with the sliding-window tiles of all of them run in
    batches of ``batch_size`` (one network call per batch instead of per tile and image).

    Each step is nnU-Net's: its preprocessor, ``pad_nd_image`` to the patch, its tile slicers,
    mirroring TTA, Gaussian weighting accumulated in fp16 (as ``nnUNetPredictor`` does), fold
    averaging and ``convert_predicted_logits_to_segmentation_with_correct_shape``.
    """
    import torch
    from acvl_utils.cropping_and_padding.padding import pad_nd_image
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian

    configuration, plans = predictor.configuration_manager, predictor.plans_manager
    preprocessor = configuration.preprocessor_class(verbose=False)
    device = predictor.device
    prepared, tiles = [], []
    for index, array in enumerate(arrays):
        data, _, properties = preprocessor.run_case_npy(array, None, {"spacing": [float(s) for s in spacing_zyx]},
                                                        plans, configuration, predictor.dataset_json)
        padded, slicer = pad_nd_image(torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)),
                                      configuration.patch_size, "constant", {"value": 0}, True, None)
        prepared.append((padded, slicer, properties))
        tiles += [(index, tile) for tile in predictor._internal_get_sliding_window_slicers(padded.shape[1:])]
    heads = predictor.label_manager.num_segmentation_heads
    gaussian = compute_gaussian(tuple(configuration.patch_size), sigma_scale=1. / 8, value_scaling_factor=10,
                                device=torch.device("cpu")) if predictor.use_gaussian else None
    network = predictor.network.to(device)
    network.eval()
    module = getattr(network, "_orig_mod", network)
    autocast = torch.autocast(device.type) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    summed: List[Optional[torch.Tensor]] = [None] * len(prepared)
    with torch.inference_mode(), autocast:
        for parameters in predictor.list_of_parameters:
            module.load_state_dict(parameters)
            logits = [torch.zeros((heads, *p.shape[1:]), dtype=torch.half) for p, _, _ in prepared]
            weights = [torch.zeros(p.shape[1:], dtype=torch.half) for p, _, _ in prepared]
            for start in range(0, len(tiles), batch_size):
                chunk = tiles[start:start + batch_size]
                batch = torch.stack([prepared[i][0][tile] for i, tile in chunk]).to(device)
                output = predictor._internal_maybe_mirror_and_predict(batch).float().cpu()
                for (i, tile), item in zip(chunk, output):
                    logits[i][tile] += item * gaussian if gaussian is not None else item
                    weights[i][tile[1:]] += gaussian if gaussian is not None else 1
            for i, (item, weight) in enumerate(zip(logits, weights)):
                item = (item / weight)[(slice(None), *prepared[i][1][1:])].float()
                summed[i] = item if summed[i] is None else summed[i] + item
    return [np.asarray(convert_predicted_logits_to_segmentation_with_correct_shape(
        item / len(predictor.list_of_parameters), plans, configuration, predictor.label_manager, properties, False))
        for item, (_, _, properties) in zip(summed, prepared)]


# --------------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------------
def to_original_grid(array_pir: np.ndarray, case: InputCase) -> np.ndarray:
    """A PIR array back on the input image's voxel grid."""
    if case.reoriented_from is None:
        return array_pir
    image = reorient(to_sitk(array_pir, case.geometry), case.reoriented_from)
    return sitk.GetArrayFromImage(image)


def centroids(instance_pir: np.ndarray, case: InputCase) -> Dict[str, dict]:
    """Level name -> world (LPS mm, x/y/z) and voxel (z, y, x, input grid) centroid of each instance."""
    from scipy import ndimage
    values = [int(v) for v in np.unique(instance_pir) if v]
    original = Geometry.from_sitk(case.original)
    out = {}
    for value, index in zip(values, ndimage.center_of_mass(np.ones_like(instance_pir, dtype=np.uint8),
                                                           instance_pir, values)):
        world = case.geometry.index_to_world(np.asarray(index))
        out[instance_value_name(value)] = {"value": value, "world_mm_xyz": [round(float(v), 3) for v in world],
                                           "voxel_zyx": [round(float(v), 3) for v in original.world_to_index(world)]}
    return out


def level_colours() -> np.ndarray:
    """RGBA colour table ``(SPINEPS_ENDPLATE_OFFSET + 29, 4)`` indexed by SPINEPS instance value.

    Every vertebra id gets its own hue, spread along the anatomical order by the golden ratio so
    that neighbouring levels contrast; its disc (100 + X) is a lighter and its endplates (200 + X)
    a darker shade of the same hue. Index 0 and unused values are transparent.
    """
    from matplotlib.colors import hsv_to_rgb
    table = np.zeros((SPINEPS_ENDPLATE_OFFSET + max(VERTEBRA_IDS_TOP_TO_BOTTOM) + 1, 4))
    golden = (np.sqrt(5.0) - 1.0) / 2.0
    for position, vertebra in enumerate(VERTEBRA_IDS_TOP_TO_BOTTOM):
        hue = (position * golden) % 1.0
        for offset, saturation, value in ((0, 0.9, 1.0), (SPINEPS_DISC_OFFSET, 0.45, 1.0),
                                          (SPINEPS_ENDPLATE_OFFSET, 0.9, 0.6)):
            table[offset + vertebra, :3] = hsv_to_rgb((hue, saturation, value))
            table[offset + vertebra, 3] = 1.0
    return table


def snapshot_slice(semantic_pir: np.ndarray) -> int:
    """The mid-sagittal slice (PIR axis 0): the one with most spine voxels, else the middle one."""
    counts = (semantic_pir > 0).sum(axis=(1, 2))
    return int(np.argmax(counts)) if counts.any() else semantic_pir.shape[0] // 2


def snapshot_overlay(instance_slice: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """RGBA overlay ``(y, x, 4)`` of one sagittal slice of a SPINEPS instance map (``level_colours``)."""
    table = level_colours()
    table[:, 3] *= alpha
    values = instance_slice.astype(np.int64)
    return table[np.where(values < len(table), values, 0)]


def write_snapshot(path: Path, image_pir: np.ndarray, semantic_pir: np.ndarray, instance_pir: np.ndarray,
                   spacing_zyx: Sequence[float]) -> int:
    """PNG of the mid-sagittal slice (``snapshot_slice``): the image, every level in its own colour
    (``snapshot_overlay``) and the vertebra names. Returns the slice index."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    z = snapshot_slice(semantic_pir)
    height, width = image_pir.shape[1] * spacing_zyx[1], image_pir.shape[2] * spacing_zyx[2]
    fig, ax = plt.subplots(figsize=(4, 4 * height / max(width, 1e-6)), dpi=100)
    extent = (0, width, height, 0)
    ax.imshow(image_pir[z], cmap="gray", extent=extent)
    ax.imshow(snapshot_overlay(instance_pir[z]), extent=extent, interpolation="nearest")
    for value in np.unique(instance_pir[z]):
        if 0 < value < SPINEPS_DISC_OFFSET:
            y, x = np.argwhere(instance_pir[z] == value).mean(axis=0)
            ax.text(x * spacing_zyx[2], y * spacing_zyx[1], instance_value_name(int(value)), color="white",
                    fontsize=8, ha="center", va="center", fontweight="bold")
    ax.set_axis_off()
    ax.set_title(f"mid-sagittal slice {z}", fontsize=8)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return z


def write_case(output_folder: Path, case: InputCase, output: CaseOutput, spider_values: bool,
               split_endplate_labels: bool, provenance: dict) -> None:
    """Write every output file of one case; the metadata JSON last (it marks the case finished)."""
    output_folder.mkdir(parents=True, exist_ok=True)
    semantic = split_endplates(output.semantic, output.endplate_side) if split_endplate_labels else output.semantic
    instance = spineps_to_spider(output.instance, output.semantic, case.geometry.spacing_zyx) if spider_values \
        else output.instance
    original = Geometry.from_sitk(case.original)
    for key, array in (("semantic", semantic), ("instance", instance)):
        dtype = np.uint8 if int(array.max(initial=0)) <= np.iinfo(np.uint8).max else np.uint16
        image = sitk.GetImageFromArray(np.ascontiguousarray(to_original_grid(array.astype(dtype), case)))
        image.CopyInformation(case.original)
        sitk.WriteImage(image, str(output_folder / f"{case.name}{SUFFIXES[key]}"), True, MASK_COMPRESSION_LEVEL)
    with open(output_folder / f"{case.name}{SUFFIXES['centroids']}", "w") as f:
        json.dump(centroids(output.instance, case), f, indent=2)
    write_snapshot(output_folder / f"{case.name}{SUFFIXES['snapshot']}", case.data[0], output.semantic,
                   output.instance, case.geometry.spacing_zyx)
    if output.probabilities is not None:
        np.savez_compressed(output_folder / f"{case.name}{SUFFIXES['probabilities']}",
                            probabilities=np.stack([to_original_grid(p, case) for p in output.probabilities]))
    metadata = {"case": case.name, "inputs": [str(p) for p in case.files], **provenance,
                "input_orientation": original.orientation, "reoriented_for_models": case.reoriented_from is not None,
                "instance_values": "spider" if spider_values else "spineps",
                "semantic_endplates": "52/53" if split_endplate_labels else "62",
                "warnings": output.warnings, **output.metadata}
    with open(output_folder / f"{case.name}{SUFFIXES['metadata']}", "w") as f:
        json.dump(metadata, f, indent=2, default=_json_scalar)


def _json_scalar(value):
    """numpy scalars -> Python numbers for ``json.dump``."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def predict_folder(predictor: TwoPhasePredictor, input_folder: PathLike, output_folder: PathLike, *,
                   overwrite: bool = False, num_parts: int = 1, part_id: int = 0,
                   lowest_vertebra: Optional[int] = None, spider_values: bool = False,
                   split_endplate_labels: bool = False, save_probabilities: bool = False) -> List[str]:
    """Predict every case of ``input_folder`` in this part (``part_id`` of ``num_parts``); returns the
    cases predicted. Finished cases are skipped unless ``overwrite``. Every input is checked before
    any model runs."""
    if not 0 <= part_id < num_parts:
        raise ValueError(f"-part_id {part_id} must be in 0..{num_parts - 1} (-num_parts {num_parts})")
    output_folder = Path(output_folder)
    cases = find_input_cases(input_folder)
    names = sorted(cases)[part_id::num_parts]
    todo = [n for n in names if overwrite or not (output_folder / f"{n}{SUFFIXES['metadata']}").is_file()]
    if len(todo) < len(names):
        print(f"skipping {len(names) - len(todo)} finished case(s) (--overwrite to redo them)")
    for name in todo:  # check every input before any model runs
        load_input_case(name, cases[name], predictor.num_channels, predictor.model_dim)
    provenance = predictor.provenance()
    for name in tqdm(todo, desc="two-phase prediction", unit="case", disable=None):
        case = load_input_case(name, cases[name], predictor.num_channels, predictor.model_dim)
        output = predictor.predict_case(case, lowest_vertebra, save_probabilities)
        write_case(output_folder, case, output, spider_values, split_endplate_labels, provenance)
    return todo


# --------------------------------------------------------------------------------------------
# post-processing on its own
# --------------------------------------------------------------------------------------------
def postprocess_files(semantic_path: PathLike, instances_path: PathLike, output_path: PathLike,
                      relabel: bool = False, lowest_vertebra: Optional[int] = None,
                      default_lowest: int = L5_ID) -> dict:
    """Vertebra-only instance mask + SPINEPS semantic mask -> full instance mask (discs 100+X,
    endplates 200+X) on the grid of ``semantic_path``; writes ``output_path`` and a metadata JSON
    beside it (``<output>_metadata.json``) and returns the metadata.

    Vertebra ids are kept as given (an unusual sequence is a warning); ``relabel`` names levels
    by the naming rule instead (``labeling.name_vertebrae``).
    """
    semantic_image = sitk.ReadImage(str(semantic_path))
    instance_image = sitk.ReadImage(str(instances_path))
    if semantic_image.GetSize() != instance_image.GetSize() or not np.allclose(
            semantic_image.GetSpacing(), instance_image.GetSpacing(), atol=1e-3) or not np.allclose(
            semantic_image.GetDirection(), instance_image.GetDirection(), atol=1e-3):
        raise ValueError(f"{instances_path}: grid (size {instance_image.GetSize()}, spacing {instance_image.GetSpacing()}) "
                         f"differs from {semantic_path} (size {semantic_image.GetSize()}, spacing {semantic_image.GetSpacing()})")
    original = Geometry.from_sitk(semantic_image)
    semantic_pir = reorient(semantic_image, CANONICAL_ORIENTATION)
    geometry = Geometry.from_sitk(semantic_pir)
    semantic = sitk.GetArrayFromImage(semantic_pir)
    given = sitk.GetArrayFromImage(reorient(instance_image, CANONICAL_ORIENTATION))
    warnings: List[str] = []
    vertebra_ids = [int(v) for v in np.unique(given) if v]
    other = [v for v in vertebra_ids if v not in VERTEBRA_INSTANCE_IDS]
    if other:
        warnings.append(f"values {other} in {instances_path} are not vertebra ids (1-25, 28) and were ignored")
    vertebrae = np.where(np.isin(given, VERTEBRA_INSTANCE_IDS), given, 0)
    naming = {"rule": "ids kept as given"}
    if relabel:
        vertebrae, naming = name_vertebrae(vertebrae, semantic, geometry.spacing_zyx, lowest_vertebra, default_lowest)
    order = vertebrae_top_to_bottom(vertebrae, semantic, geometry.spacing_zyx)
    warnings += sequence_warnings(order)
    instance, _, disc_warnings = add_discs_and_endplates(vertebrae, semantic, geometry.spacing_zyx)
    warnings += disc_warnings
    out = sitk.GetImageFromArray(instance)
    out = reorient(geometry.apply_to(out), original.orientation)
    out.CopyInformation(semantic_image)
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(out, str(output_path), True)
    metadata = {"semantic": str(semantic_path), "instances": str(instances_path), "output": str(output_path),
                "naming": naming, "vertebrae_top_to_bottom": order, "warnings": warnings,
                "package": "nnunetv2_symtc", "package_version": nnunetv2_symtc.__version__}
    with open(metadata_path_for(output_path), "w") as f:
        json.dump(metadata, f, indent=2)
    return metadata


def metadata_path_for(output_path: PathLike) -> Path:
    """``out.nii.gz`` -> ``out_metadata.json``."""
    path = Path(output_path)
    stem = next((path.name[:-len(e)] for e in IMAGE_ENDINGS if path.name.endswith(e)), path.stem)
    return path.with_name(f"{stem}_metadata.json")
