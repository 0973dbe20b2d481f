"""Two-phase prediction (``symtc predict``): semantic nnU-Net(s) -> body centres -> phase-2 cutouts
-> merge -> levels.

``TwoPhasePredictor`` runs nnU-Net's ``nnUNetPredictor`` for both phases (phase 2 batched across
cutouts, ``batched_sliding_window``); everything between and after the networks is array logic in
``instance`` (``centres``, ``cutouts``, ``assemble``). Images are processed in PIR (reoriented when
needed, ``inputs``) and every output is written back on the input's own grid (``outputs``).
``predict_folder`` ties inputs, predictor and outputs together, with resume and parts.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

import nnunetv2_symtc
from nnunetv2_symtc.errors import InputError, InputFileError
from nnunetv2_symtc.inference.inputs import (SUFFIXES, InputCase, find_input_cases, find_semantic_inputs,
                                             load_input_case, load_semantic_input)
from nnunetv2_symtc.inference.outputs import write_case
from nnunetv2_symtc.instance.assemble import CaseOutput, assemble_instances
from nnunetv2_symtc.instance.centres import body_candidates, clean_semantic
from nnunetv2_symtc.instance.cutouts import make_cutout
from nnunetv2_symtc.instance.phase2_spec import Phase2Spec, phase1_label_map, read_dataset_json, spider_to_spineps_semantic
from nnunetv2_symtc.io import PathLike


def _checked_folds(folder: Path, folds: Optional[Sequence[str]], checkpoint: str) -> List[str]:
    if not folder.is_dir():
        raise InputFileError(f"model folder {folder} not found")
    if not (folder / "dataset.json").is_file() or not (folder / "plans.json").is_file():
        raise InputFileError(f"{folder}: not a trained nnU-Net model folder (dataset.json/plans.json missing)")
    if folds is None:
        folds = sorted(p.name[5:] for p in folder.glob("fold_*") if (p / checkpoint).is_file())
        if not folds:
            raise InputFileError(f"{folder}: no fold_*/{checkpoint} found")
    for f in folds:
        if not (folder / f"fold_{f}" / checkpoint).is_file():
            raise InputFileError(f"{folder}: fold {f} has no {checkpoint} ({folder / f'fold_{f}' / checkpoint})")
    return [str(f) for f in folds]


def _model_dim(folder: Path, folds: Sequence[str], checkpoint: str) -> int:
    """Spatial dimension (2 or 3) of a trained model: its checkpoint's configuration (what nnU-Net's
    predictor loads, ``init_args['configuration']``) looked up in its ``plans.json``. Raises
    ``InputFileError`` naming the file when either does not say."""
    import torch

    path = folder / f"fold_{folds[0]}" / checkpoint
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        configuration = saved["init_args"]["configuration"]
    except (KeyError, TypeError, RuntimeError, OSError) as error:
        raise InputFileError(f"{path}: not an nnU-Net checkpoint with init_args['configuration'] ({error!r})") from None
    with open(folder / "plans.json") as f:
        configurations = json.load(f)["configurations"]
    if configuration not in configurations or "patch_size" not in configurations[configuration]:
        raise InputFileError(f"{folder / 'plans.json'}: no configuration {configuration!r} with a patch_size "
                             f"(the configuration {path} was trained with)")
    return len(configurations[configuration]["patch_size"])


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


class TwoPhasePredictor:
    """Semantic model(s) + phase-2 instance model, checked for compatibility when constructed.

    Without semantic models (``semantic_models=()``) phase 1 is skipped: every case then needs a
    given semantic mask (``predict_case(..., semantic=...)``, ``--semantic-input``).
    """

    def __init__(self, semantic_models: Sequence[PathLike], instance_model: PathLike,
                 settings: PredictionSettings = PredictionSettings()):
        self.settings = settings
        self.semantic_folders = [Path(p) for p in semantic_models]
        self.instance_folder = Path(instance_model)
        self.semantic_folds = [_checked_folds(p, settings.folds, settings.checkpoint) for p in self.semantic_folders]
        self.instance_folds = _checked_folds(self.instance_folder, settings.folds, settings.checkpoint)
        self.spec = Phase2Spec.from_dataset_json(read_dataset_json(self.instance_folder), str(self.instance_folder))
        semantic_jsons = [read_dataset_json(p) for p in self.semantic_folders]
        for folder, dataset_json in zip(self.semantic_folders, semantic_jsons):
            if dataset_json["labels"] != semantic_jsons[0]["labels"]:
                raise InputError(f"semantic models {self.semantic_folders[0]} and {folder} have different label sets; "
                                 "only models of one label set can be averaged")
            if {k: int(v) for k, v in dataset_json["labels"].items()} != self.spec.phase1_labels:
                raise InputError(f"semantic model {folder} (labels {dataset_json['labels']}) does not match instance "
                                 f"model {self.instance_folder}, which expects phase-1 labels {self.spec.phase1_labels}")
        self.label_map = phase1_label_map(self.spec.scheme, self.spec.phase1_labels)
        self.num_channels: Optional[int] = len(semantic_jsons[0]["channel_names"]) if semantic_jsons else None
        """Image channels the semantic models read (``None`` without semantic models: any)."""
        self.model_dim = max((_model_dim(p, f, settings.checkpoint) for p, f in zip(self.semantic_folders,
                                                                                   self.semantic_folds)), default=3)
        """Largest spatial dimension of the semantic models (3 without them: 3D cases required)."""
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
        """Phase-1 classes -> SPINEPS semantic values (SPIDER semantics converted, see ``phase2_spec``)."""
        values = self.label_map.decode(classes)
        return spider_to_spineps_semantic(values) if self.spec.scheme == "spider" else values

    def predict_case(self, case: InputCase, lowest_vertebra: Optional[int] = None,
                     save_probabilities: bool = False, semantic: Optional[np.ndarray] = None) -> CaseOutput:
        """Both phases and everything after them for one case (PIR arrays). With a given
        ``semantic`` mask (SPINEPS values, PIR, ``inputs.load_semantic_input``) phase 1 and its
        clean-up are skipped: the mask is used as given."""
        timings = {}
        start = time.perf_counter()
        probabilities = None
        if semantic is None:
            if not self.semantic_folders:
                raise InputError(f"case {case.name!r}: no semantic model and no semantic mask given")
            classes, probabilities = self.semantic_prediction(case)
            timings["phase1_s"] = time.perf_counter() - start
            start = time.perf_counter()
            semantic, clean_report = clean_semantic(self.semantic_values(classes))
        else:
            if semantic.shape != case.data.shape[1:]:
                raise InputError(f"case {case.name!r}: semantic mask of shape {semantic.shape}, image "
                                 f"{case.data.shape[1:]}")
            clean_report = "semantic mask given: used as given"
        spacing = case.geometry.spacing_zyx
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


def predict_folder(predictor: TwoPhasePredictor, input_folder: PathLike, output_folder: PathLike, *,
                   overwrite: bool = False, num_parts: int = 1, part_id: int = 0,
                   lowest_vertebra: Optional[int] = None, spider_values: bool = False,
                   split_endplate_labels: bool = False, save_probabilities: bool = False,
                   semantic_input: Optional[PathLike] = None) -> List[str]:
    """Predict every case of ``input_folder`` in this part (``part_id`` of ``num_parts``); returns the
    cases predicted. Finished cases are skipped unless ``overwrite``. Every input is checked before
    any model runs.

    ``semantic_input``: a folder of ``<case>_seg-spine_msk.nii.gz`` (SPINEPS values, one per image
    case, on its image's grid) used instead of phase 1; the images still give the geometry and the
    snapshot background. It replaces the semantic models: give one or the other.
    """
    if not 0 <= part_id < num_parts:
        raise InputError(f"-part_id {part_id} must be in 0..{num_parts - 1} (-num_parts {num_parts})")
    if (semantic_input is None) == (not predictor.semantic_folders):
        raise InputError("give either semantic models (--semantic-model) or semantic masks (--semantic-input), "
                         "not both and not neither")
    if semantic_input is not None and save_probabilities:
        raise InputError("--save_probabilities saves phase-1 probabilities; with --semantic-input there are none")
    output_folder = Path(output_folder)
    cases = find_input_cases(input_folder)
    masks = find_semantic_inputs(semantic_input, sorted(cases)) if semantic_input is not None else {}
    names = sorted(cases)[part_id::num_parts]
    todo = [n for n in names if overwrite or not (output_folder / f"{n}{SUFFIXES['metadata']}").is_file()]
    if len(todo) < len(names):
        print(f"skipping {len(names) - len(todo)} finished case(s) (--overwrite to redo them)")
    for name in todo:  # check every input before any model runs
        case = load_input_case(name, cases[name], predictor.num_channels, predictor.model_dim)
        if name in masks:
            load_semantic_input(masks[name], case, predictor.spec.scheme)
    provenance = predictor.provenance()
    if semantic_input is not None:
        provenance["semantic_input"] = str(semantic_input)
    for name in tqdm(todo, desc="two-phase prediction", unit="case", disable=None):
        case = load_input_case(name, cases[name], predictor.num_channels, predictor.model_dim)
        semantic = load_semantic_input(masks[name], case, predictor.spec.scheme) if name in masks else None
        output = predictor.predict_case(case, lowest_vertebra, save_probabilities, semantic)
        write_case(output_folder, case, output, spider_values, split_endplate_labels, provenance)
    return todo
