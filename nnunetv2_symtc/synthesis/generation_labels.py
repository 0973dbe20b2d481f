"""Generation label maps of an nnU-Net dataset: declared in ``dataset.json``, preprocessed like
the training targets.

A dataset provides them by a ``dataset.json`` entry ``"symtc_generation_labels": "<folder>"``: a
folder of its raw dataset holding ``<case><file_ending>`` for every training case, on the grid of
the case's images, with integer labels for every tissue in view (0 may be background or air).
``prepare_generation_labels`` runs nnU-Net's own preprocessing of the configuration on them
(transpose, crop to the images' non-zero box, resampling as a segmentation), so each map matches
its preprocessed case voxel for voxel, and stores them where nnU-Net's dataset classes load a
previous stage's segmentation.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence

import numpy as np

from nnunetv2_symtc.errors import InputError

DATASET_JSON_KEY = "symtc_generation_labels"
"""``dataset.json`` entry naming the raw dataset's folder of generation label maps."""


def generation_label_folder(raw_dataset_folder: Path, dataset_json: dict) -> Optional[Path]:
    """The raw folder of generation label maps ``dataset.json`` declares (None: not declared)."""
    name = dataset_json.get(DATASET_JSON_KEY)
    if name is None:
        return None
    folder = Path(raw_dataset_folder) / str(name)
    if not folder.is_dir():
        raise InputError(f"{Path(raw_dataset_folder) / 'dataset.json'}: {DATASET_JSON_KEY} names {folder}, "
                         f"which is not a folder")
    return folder


def prepare_generation_labels(raw_dataset_folder: Path, preprocessed_output: Path, identifiers: Sequence[str],
                              dataset_class: type, plans_manager, configuration_manager, dataset_json: dict,
                              preprocessed_dataset_folder: Path) -> Path:
    """Preprocess the generation label maps of ``identifiers`` into ``preprocessed_output`` (files
    already there are kept) in ``dataset_class``'s format; returns the folder.

    Raises ``InputError`` naming the file when a map is missing or does not fit its preprocessed case.
    """
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    source = generation_label_folder(raw_dataset_folder, dataset_json)
    if source is None:
        raise InputError(f"{Path(raw_dataset_folder) / 'dataset.json'} declares no {DATASET_JSON_KEY}")
    files = get_filenames_of_train_images_and_targets(str(raw_dataset_folder), dataset_json)
    preprocessed_output = Path(preprocessed_output)
    preprocessed_output.mkdir(parents=True, exist_ok=True)
    preprocessor = DefaultPreprocessor(verbose=False)
    dataset = dataset_class(str(preprocessed_dataset_folder), list(identifiers))
    ending = dataset_json["file_ending"]
    for identifier in identifiers:
        if any((preprocessed_output / f"{identifier}{suffix}").is_file() for suffix in (".b2nd", ".npz")):
            continue
        label_file = source / f"{identifier}{ending}"
        if not label_file.is_file():
            raise InputError(f"{label_file}: missing generation label map of training case {identifier}")
        if identifier not in files:
            raise InputError(f"{label_file}: no training case {identifier} in {raw_dataset_folder}")
        _, labels, _ = preprocessor.run_case(files[identifier]["images"], str(label_file), plans_manager,
                                             configuration_manager, dataset_json)
        expected = tuple(dataset.load_case(identifier)[1].shape[1:])
        if tuple(labels.shape[1:]) != expected:
            raise InputError(f"{label_file}: preprocessed to shape {tuple(labels.shape[1:])}, but case "
                             f"{identifier} has {expected}; the map must lie on the grid of the case's images")
        temporary = preprocessed_output / f"tmp_{os.getpid()}_{identifier}"
        dataset_class.save_seg(np.ascontiguousarray(labels[0].astype(np.int16)), str(temporary))
        for suffix in (".b2nd", ".npz"):
            if (preprocessed_output / f"tmp_{os.getpid()}_{identifier}{suffix}").is_file():
                os.replace(preprocessed_output / f"tmp_{os.getpid()}_{identifier}{suffix}",
                           preprocessed_output / f"{identifier}{suffix}")
    return preprocessed_output


GENERATION_FOLDER = "generationTr"
"""Raw-dataset folder ``attach_generation_labels`` writes the maps to."""


def attach_generation_labels(raw_dataset_folder: Path, files: Mapping[str, Path]) -> Path:
    """Copy each training case's generation label map (case -> file, on the grid of the case's
    first image) into ``<raw dataset>/generationTr/<case><file_ending>`` and declare the folder in
    ``dataset.json``; returns the folder. Every training case needs a map.
    """
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    from nnunetv2_symtc.io import read_image

    raw_dataset_folder = Path(raw_dataset_folder)
    dataset_json_path = raw_dataset_folder / "dataset.json"
    dataset_json = json.loads(dataset_json_path.read_text())
    cases = get_filenames_of_train_images_and_targets(str(raw_dataset_folder), dataset_json)
    missing = sorted(set(cases) - set(files))
    if missing:
        raise InputError(f"{raw_dataset_folder}: no generation label map given for training case(s) {missing}")
    target = raw_dataset_folder / GENERATION_FOLDER
    target.mkdir(exist_ok=True)
    for case, source in sorted(files.items()):
        source = Path(source)
        if case not in cases:
            raise InputError(f"{source}: {raw_dataset_folder} has no training case {case}")
        if not source.is_file():
            raise InputError(f"{source}: generation label map of case {case} does not exist")
        (image, image_grid), (labels, label_grid) = read_image(cases[case]["images"][0]), read_image(source)
        same = image.shape == labels.shape and all(
            np.allclose(getattr(image_grid, k), getattr(label_grid, k), atol=1e-3)
            for k in ("spacing_zyx", "origin_xyz", "direction"))
        if not same:
            raise InputError(f"{source}: not on the grid of {cases[case]['images'][0]} (shape {labels.shape} "
                             f"{label_grid} vs {image.shape} {image_grid})")
        if not np.issubdtype(labels.dtype, np.integer):
            raise InputError(f"{source}: generation labels must be integers, got {labels.dtype}")
        shutil.copy(source, target / f"{case}{dataset_json['file_ending']}")
    dataset_json[DATASET_JSON_KEY] = GENERATION_FOLDER
    dataset_json_path.write_text(json.dumps(dataset_json, indent=2))
    return target


def spineps_generation_files(raw_dataset_folder: Path, spineps_root: Path,
                             suffix: str = "_seg-generation_msk.nii.gz") -> Dict[str, Path]:
    """Case -> generation label map of a dataset converted from ``spineps_root`` by
    ``convert_spineps`` (the map of ``sub-<id>_T2w.nii.gz`` is ``sub-<id>`` + ``suffix``, as
    ``phantom.write_spineps(generation_labels=True)`` writes it)."""
    sources = json.loads((Path(raw_dataset_folder) / "source_cases.json").read_text())
    files = {}
    for case, entry in sources.items():
        image = Path(spineps_root) / entry["image"]
        stem = image.name[:-len("_T2w.nii.gz")] if image.name.endswith("_T2w.nii.gz") else image.name.split("_")[0]
        files[case] = image.with_name(stem + suffix)
    return files
