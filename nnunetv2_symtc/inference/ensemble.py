"""Ensembles of any nnU-Net models (ours and nnU-Net's, 2D and 3D): average softmax probabilities.

nnU-Net exports every configuration's probabilities (``--save_probabilities``: ``case.npz`` with
``probabilities`` of shape ``(classes, *original image shape)`` plus ``case.pkl``) in the original
image geometry, so members of different trainers and configurations average voxel by voxel once
they agree on labels, cases and shapes. This module checks exactly that, naming the offending
folder, and then uses nnU-Net's own ``merge_files`` (average, argmax / region thresholds, export).
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from nnunetv2_symtc.errors import InputError, InputFileError

PathLike = Union[str, Path]


@dataclass(frozen=True)
class MemberFolder:
    """A folder of nnU-Net predictions with probabilities (what ``nnUNetv2_predict --save_probabilities`` writes)."""

    path: Path
    dataset_json: dict
    plans: dict
    case_ids: Tuple[str, ...]

    @classmethod
    def read(cls, path: PathLike) -> "MemberFolder":
        path = Path(path)
        if not path.is_dir():
            raise InputFileError(f"{path}: ensemble member is not a folder")
        jsons = {}
        for name in ("dataset.json", "plans.json"):
            if not (path / name).is_file():
                raise InputFileError(f"{path}: has no {name}; ensemble folders written by nnU-Net's predictor "
                              f"(nnUNetv2_predict/symtc predict --save_probabilities) contain one")
            jsons[name] = json.loads((path / name).read_text())
        case_ids = tuple(sorted(f.name[:-4] for f in path.glob("*.npz")))
        if not case_ids:
            raise InputFileError(f"{path}: holds no .npz probability files; predict with --save_probabilities")
        missing_pkl = [c for c in case_ids if not (path / f"{c}.pkl").is_file()]
        if missing_pkl:
            raise InputFileError(f"{path}: .npz without the matching .pkl properties file: {', '.join(missing_pkl)}")
        return cls(path, jsons["dataset.json"], jsons["plans.json"], case_ids)

    def probability_shape(self, case_id: str) -> Tuple[int, ...]:
        """Shape ``(classes, *spatial)`` of a case's probabilities, read from the .npz header only."""
        with zipfile.ZipFile(self.path / f"{case_id}.npz") as archive:
            try:
                with archive.open("probabilities.npy") as f:
                    major, _ = np.lib.format.read_magic(f)
                    read_header = (np.lib.format.read_array_header_1_0 if major == 1
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, _ = read_header(f)
            except KeyError:
                raise InputError(f"{self.path / (case_id + '.npz')}: has no 'probabilities' array") from None
        return tuple(shape)


def _label_definition(dataset_json: dict) -> dict:
    return {"labels": dataset_json.get("labels"), "regions_class_order": dataset_json.get("regions_class_order")}


def check_members(folders: Sequence[PathLike]) -> List[MemberFolder]:
    """Read the member folders and check they share labels, case ids and probability shapes.

    Raises ``ValueError`` naming the first folder that disagrees with the first member.
    """
    if len(folders) < 2:
        raise InputError(f"an ensemble needs at least two prediction folders, got {len(folders)}")
    members = [MemberFolder.read(f) for f in folders]
    first = members[0]
    for member in members[1:]:
        if _label_definition(member.dataset_json) != _label_definition(first.dataset_json):
            raise InputError(f"{member.path}: labels {member.dataset_json.get('labels')} differ from "
                             f"{first.path}: {first.dataset_json.get('labels')}")
        if member.case_ids != first.case_ids:
            only_here = sorted(set(member.case_ids) - set(first.case_ids))
            missing = sorted(set(first.case_ids) - set(member.case_ids))
            raise InputError(f"{member.path}: cases differ from {first.path} (missing: {missing or 'none'}; "
                             f"extra: {only_here or 'none'})")
        for case_id in first.case_ids:
            if member.probability_shape(case_id) != first.probability_shape(case_id):
                raise InputError(f"{member.path}: probabilities of {case_id} have shape "
                                 f"{member.probability_shape(case_id)}, {first.path} has "
                                 f"{first.probability_shape(case_id)}")
    return members


def ensemble_probability_folders(folders: Sequence[PathLike], output_folder: PathLike,
                                 save_probabilities: bool = False, num_processes: int = 1) -> List[Path]:
    """Average the probabilities of checked member folders and write segmentations (nnU-Net's
    ``merge_files``; labels from the first member's dataset.json/plans). Returns the written files."""
    from nnunetv2.ensembling.ensemble import merge_files
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    members = check_members(folders)
    first = members[0]
    plans_manager = PlansManager(first.plans)
    label_manager = plans_manager.get_label_manager(first.dataset_json)
    writer = plans_manager.image_reader_writer_class()
    ending = first.dataset_json["file_ending"]
    output_folder = Path(output_folder)
    output_folder.mkdir(parents=True, exist_ok=True)
    for name, content in (("dataset.json", first.dataset_json), ("plans.json", first.plans)):
        (output_folder / name).write_text(json.dumps(content, indent=2))
    (output_folder / "ensemble_members.json").write_text(json.dumps([str(m.path) for m in members], indent=2))
    jobs = [([str(m.path / f"{case_id}.npz") for m in members], str(output_folder / case_id), ending, writer,
             label_manager, save_probabilities) for case_id in first.case_ids]
    if num_processes > 1 and len(jobs) > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(min(num_processes, len(jobs))) as pool:
            pool.starmap(merge_files, jobs)
    else:
        for job in jobs:
            merge_files(*job)
    return [output_folder / f"{case_id}{ending}" for case_id in first.case_ids]


# ---------------------------------------------------------------------------------------------
# End to end: raw images -> member predictions -> ensemble
# ---------------------------------------------------------------------------------------------
def predict_member(model_folder: PathLike, input_folder: PathLike, output_folder: PathLike,
                   folds: Optional[Sequence[Union[int, str]]] = None, checkpoint: str = "checkpoint_final.pth",
                   device: str = "cpu", disable_tta: bool = False, num_processes: int = 1,
                   progress: bool = True) -> Path:
    """Predict ``input_folder`` (nnU-Net raw layout, ``case_0000.ext``) with one trained model folder
    via ``nnUNetPredictor``, saving probabilities. ``num_processes <= 1`` runs without worker processes."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    model_folder, output_folder = Path(model_folder), Path(output_folder)
    if not (model_folder / "plans.json").is_file():
        raise InputFileError(f"{model_folder}: not a trained nnU-Net model folder (no plans.json)")
    predictor = nnUNetPredictor(use_mirroring=not disable_tta, device=torch.device(device), verbose=False,
                                allow_tqdm=progress)
    predictor.initialize_from_trained_model_folder(str(model_folder), tuple(folds) if folds is not None else None,
                                                   checkpoint_name=checkpoint)
    output_folder.mkdir(parents=True, exist_ok=True)
    if num_processes <= 1:
        predictor.predict_from_files_sequential(str(input_folder), str(output_folder), save_probabilities=True)
    else:
        predictor.predict_from_files(str(input_folder), str(output_folder), save_probabilities=True,
                                     num_processes_preprocessing=num_processes,
                                     num_processes_segmentation_export=num_processes)
    return output_folder


def recommended_members(dataset: Union[int, str]) -> Tuple[List[Path], Tuple[int, ...], Optional[Path]]:
    """Model folders, folds and postprocessing file that ``nnUNetv2_find_best_configuration``
    recommended (``nnUNet_results/DatasetX/inference_information.json``)."""
    from nnunetv2.paths import nnUNet_results
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    name = maybe_convert_to_dataset_name(dataset)
    info_file = Path(nnUNet_results or "") / name / "inference_information.json"
    if not info_file.is_file():
        raise InputFileError(f"{info_file}: not found; run nnUNetv2_find_best_configuration {dataset} first")
    info = json.loads(info_file.read_text())
    best = info["best_model_or_ensemble"]
    folders = [Path(nnUNet_results) / name / f"{m['trainer']}__{m['plans_identifier']}__{m['configuration']}"
               for m in best["selected_model_or_models"]]
    postprocessing = Path(best["postprocessing_file"]) if best.get("postprocessing_file") else None
    return folders, tuple(info["folds"]), postprocessing


def run_ensemble(model_folders: Sequence[PathLike], input_folder: PathLike, output_folder: PathLike,
                 folds: Optional[Sequence[Union[int, str]]] = None, checkpoint: str = "checkpoint_final.pth",
                 device: str = "cpu", disable_tta: bool = False, num_processes: int = 1,
                 postprocessing_file: Optional[PathLike] = None, progress: bool = True) -> Dict[str, Path]:
    """Predict raw images with every model folder (any trainers/configurations of one dataset),
    average their probabilities and optionally apply nnU-Net postprocessing.

    Member predictions go to ``output_folder/members/<model folder name>``, the ensemble to
    ``output_folder/ensemble`` (and ``output_folder/postprocessed``). Returns those folders by name.
    A single model folder is predicted without averaging.
    """
    output_folder = Path(output_folder)
    names = [Path(m).name for m in model_folders]
    if len(set(names)) != len(names):
        raise InputError(f"model folders must differ by name (trainer__plans__configuration): {names}")
    member_outputs = [predict_member(m, input_folder, output_folder / "members" / Path(m).name, folds, checkpoint,
                                     device, disable_tta, num_processes, progress) for m in model_folders]
    result = {"members": output_folder / "members"}
    if len(member_outputs) == 1:
        result["ensemble"] = member_outputs[0]
    else:
        ensemble_probability_folders(member_outputs, output_folder / "ensemble", num_processes=num_processes)
        result["ensemble"] = output_folder / "ensemble"
    if postprocessing_file is not None:
        from batchgenerators.utilities.file_and_folder_operations import load_pickle
        from nnunetv2.postprocessing.remove_connected_components import apply_postprocessing_to_folder

        functions, kwargs = load_pickle(str(postprocessing_file))
        apply_postprocessing_to_folder(str(result["ensemble"]), str(output_folder / "postprocessed"), functions,
                                       kwargs, str(result["ensemble"] / "plans.json"),
                                       str(result["ensemble"] / "dataset.json"), max(num_processes, 1))
        result["postprocessed"] = output_folder / "postprocessed"
    return result
